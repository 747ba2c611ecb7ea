"""The command line: ``python -m nexttoken generate "PROMPT"`` and ``python -m nexttoken train``.

``generate`` streams the book model's continuation of a prompt as it is produced; ``--show-probs``
prints, at every step, the top candidates and their probabilities (the whole pipeline, in a
terminal). ``train`` trains the book model from scratch (or resumes) and can ship the result into
the package with its model card. Bad arguments give a one-line error and exit code 2.
"""

from __future__ import annotations

import argparse
import codecs
import shlex
import sys
import time

__all__ = ["main", "build_parser"]


class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 2, no usage dump or traceback
        raise _ArgError(message)


def _int_at_least(lowest: int):
    """An argparse type: an integer >= ``lowest``, else a one-line error."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lowest:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lowest}, got {v}")
        return v

    return parse


_positive_int = _int_at_least(1)
_nonneg_int = _int_at_least(0)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m nexttoken", description="The book model, in a terminal.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    g = sub.add_parser("generate", help="continue a prompt with the book model (streamed)")
    g.add_argument("prompt", help="the text to continue")
    g.add_argument("--max-new-tokens", type=_nonneg_int, default=100, help="tokens to add (100)")
    g.add_argument("--temperature", type=_float, default=0.8, help="0 = greedy (0.8)")
    g.add_argument("--top-k", type=_positive_int, default=None, help="keep the k best tokens")
    g.add_argument("--top-p", type=_float, default=None, help="nucleus: keep mass p (0 < p <= 1)")
    g.add_argument("--seed", type=int, default=0, help="seed of the sampler (0)")
    g.add_argument("--show-probs", action="store_true", help="print each step's top candidates")
    g.add_argument("--n-probs", type=_positive_int, default=5, help="candidates shown (5)")

    t = sub.add_parser("train", help="train the book model from scratch (or resume)")
    t.add_argument("--out", required=True, help="output folder (checkpoint, optimizer, log)")
    t.add_argument("--config", default="book", help="model configuration name (book)")
    t.add_argument("--steps", type=_positive_int, default=1500)
    t.add_argument("--batch-size", type=_positive_int, default=16)
    t.add_argument("--lr", type=_float, default=2e-3)
    t.add_argument("--min-lr", type=_float, default=2e-4)
    t.add_argument("--warmup", type=_nonneg_int, default=100)
    t.add_argument("--eval-every", type=_positive_int, default=100)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=_positive_int, default=1, help="torch CPU threads (1)")
    t.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    t.add_argument(
        "--ship", action="store_true", help="copy the checkpoint + model card into the package"
    )
    t.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return p


def _generate(args) -> int:
    import torch

    from .book import load_book_encoding, load_book_model
    from .generate import generate
    from .sampling import check_sampling_args, filtered_probs

    enc = load_book_encoding()
    model = load_book_model()
    check_sampling_args(model.config.vocab_size, args.temperature, args.top_k, args.top_p)
    if not args.prompt:
        raise ValueError("the prompt is empty: give some text to continue")
    ids = enc.encode(args.prompt, allowed_special={"<|endoftext|>"})
    context = list(ids)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = sys.stdout
    out.write(args.prompt)
    out.flush()
    block = model.config.block_size

    def on_token(new: torch.Tensor) -> None:
        tok = int(new[0])
        if args.show_probs:
            with torch.inference_mode():
                logits = model.run(torch.tensor([context[-block:]]), last_only=True).logits[0, -1]
            probs = filtered_probs(logits, args.temperature, args.top_k, args.top_p)
            top = torch.topk(probs, min(args.n_probs, probs.numel()))
            cands = "  ".join(
                f"{enc.decode([int(i)])!r} {float(p):.3f}"
                for p, i in zip(top.values, top.indices, strict=True)
            )
            out.write(f"\n[step {len(context) - len(ids) + 1}] {cands}  -> {enc.decode([tok])!r}")
        context.append(tok)
        if not args.show_probs:
            out.write(decoder.decode(enc.decode_single_token_bytes(tok)))
        out.flush()

    gen = torch.Generator().manual_seed(args.seed)
    result = generate(
        model,
        ids,
        args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        generator=gen,
        on_token=on_token,
    )
    if args.show_probs:
        out.write("\n\n" + enc.decode(result[0].tolist()))
    else:
        out.write(decoder.decode(b"", final=True))
    out.write("\n")
    out.flush()
    return 0


def _train(args, argv: list[str]) -> int:
    import shutil
    from pathlib import Path

    import torch

    from .book import (
        MODEL_FILE,
        assets_dir,
        book_datasets,
        held_out_metrics,
        write_model_card,
    )
    from .configs import get_config
    from .model import GPT
    from .train import TrainConfig, train_model

    torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        min_lr=args.min_lr,
        warmup=args.warmup,
        eval_every=args.eval_every,
        seed=args.seed,
    )
    config = get_config(args.config)
    train_ids, held_ids = book_datasets()
    if config.vocab_size < int(train_ids.max()) + 1:
        raise ValueError(f"config {args.config!r} has too small a vocabulary for the book encoding")
    torch.manual_seed(args.seed)
    model = GPT(config)
    command = "python -m nexttoken " + shlex.join(argv)
    out = Path(args.out)

    def ship(row: dict, m: GPT) -> None:
        final = row["step"] == cfg.steps
        metrics = held_out_metrics(m) if final else _metrics_from_row(row, held_ids)
        dest = assets_dir()
        tmp = dest / (MODEL_FILE + ".tmp")
        shutil.copyfile(out / "model.safetensors", tmp)
        tmp.replace(dest / MODEL_FILE)
        log = __import__("json").loads((out / "training_log.json").read_text())
        write_model_card(dest, m, log, command=command, metrics=metrics, final=final)

    def report(row: dict, m: GPT) -> None:
        if args.ship:
            ship(row, m)
        print(
            f"step {row['step']}: train {row['train_loss']:.4f} held-out {row['held_loss']:.4f} "
            f"nats/token, {row['elapsed_s']:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    t0 = time.perf_counter()
    train_model(
        model,
        train_ids,
        held_ids,
        cfg,
        out_dir=out,
        resume=args.resume,
        progress=not args.no_progress,
        on_eval=report,
        extra_log={"command": command},
    )
    print(f"done in {time.perf_counter() - t0:.0f} s; saved in {out}", file=sys.stderr)
    return 0


def _metrics_from_row(row: dict, held_ids) -> dict:
    import math

    from .data import HELD_OUT, load_plays

    chars = len(load_plays()[HELD_OUT])
    n = int(held_ids.numel()) - 1
    per_char = row["held_loss"] * n / chars
    return {
        "play": HELD_OUT,
        "tokens": n,
        "characters": chars,
        "nats_per_token": row["held_loss"],
        "nats_per_char": round(per_char, 4),
        "bits_per_char": round(per_char / math.log(2), 4),
        "perplexity": round(math.exp(row["held_loss"]), 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for bad arguments)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "generate":
            return _generate(args)
        return _train(args, argv)
    except (_ArgError, ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
