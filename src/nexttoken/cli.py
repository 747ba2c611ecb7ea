"""The command line: ``python -m nexttoken generate "PROMPT"`` and ``python -m nexttoken train``.

``generate`` streams the book model's continuation of a prompt as it is produced; ``--show-probs``
prints, at every step, the top candidates and their probabilities (the whole pipeline, in a
terminal). ``train`` trains the book model from scratch (or resumes) and can ship the result into
the package with its model card; ``train --arch llama`` trains its Llama-family twin
(``nexttoken.book.book_llama_config``, notebook 14) the same way.

Exit codes: 0 done; 2 bad input, with a one-line ``error: ...`` on stderr and no traceback (bad
arguments, a closed or full stdout, an output folder that is a file, a run too big for this
machine's memory: ``train`` checks all of it before any work); 1 a training run that diverged
(a non-finite loss: the last good checkpoint is kept); 130 interrupted. A resumed run that has
nothing left to do says so and exits 0.
"""

from __future__ import annotations

import argparse
import codecs
import shlex
import sys
import time
from pathlib import Path

__all__ = ["main", "build_parser"]


class _ArgError(Exception):
    pass


class _OutputError(Exception):
    pass


class _Out:
    """``sys.stdout``, with a write error (``/dev/full``...) turned into a one-line error."""

    def __init__(self, stream) -> None:
        if stream is None:
            raise _OutputError("stdout is closed: there is nowhere to write the text")
        self.stream = stream

    def _do(self, fn, *args):
        try:
            return fn(*args)
        except BrokenPipeError:
            raise
        except (OSError, ValueError) as err:  # ValueError: "I/O operation on closed file"
            raise _OutputError(f"cannot write to stdout: {err}") from None

    def write(self, text: str) -> None:
        self._do(self.stream.write, text)

    def flush(self) -> None:
        self._do(self.stream.flush)


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


def _int_between(lowest: int, highest: int, shown: str):
    """An argparse type: an integer in ``[lowest, highest]`` (``shown`` spells the range)."""

    def parse(text: str) -> int:
        v = _int_at_least(lowest)(text)
        if v > highest:
            raise argparse.ArgumentTypeError(f"expected an integer in {shown}, got {v}")
        return v

    return parse


_seed = _int_between(0, 2**64 - 1, "[0, 2**64 - 1]")  # what torch.Generator.manual_seed takes
_train_seed = _int_between(0, 2**40, "[0, 2**40]")  # nexttoken.train.MAX_SEED


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
    g.add_argument("--seed", type=_seed, default=0, help="seed of the sampler (0)")
    g.add_argument("--show-probs", action="store_true", help="print each step's top candidates")
    g.add_argument("--n-probs", type=_positive_int, default=5, help="candidates shown (5)")

    t = sub.add_parser("train", help="train the book model from scratch (or resume)")
    t.add_argument("--out", required=True, help="output folder (checkpoint, optimizer, log)")
    t.add_argument("--config", default="book", help="model configuration name (book)")
    t.add_argument(
        "--arch",
        choices=("gpt", "llama"),
        default="gpt",
        help="gpt: the book's GPT (default); llama: its Llama-family twin (notebook 14), "
        "with --config book only",
    )
    t.add_argument("--steps", type=_positive_int, default=1500)
    t.add_argument("--batch-size", type=_positive_int, default=16)
    t.add_argument("--lr", type=_float, default=2e-3)
    t.add_argument("--min-lr", type=_float, default=2e-4)
    t.add_argument("--warmup", type=_nonneg_int, default=100)
    t.add_argument("--eval-every", type=_positive_int, default=100)
    t.add_argument("--seed", type=_train_seed, default=0)
    t.add_argument("--threads", type=_positive_int, default=1, help="torch CPU threads (1)")
    t.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    t.add_argument(
        "--ship", action="store_true", help="copy the checkpoint + model card into the package"
    )
    t.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return p


def _generate(args) -> int:
    out = _Out(sys.stdout)  # before any work (even importing torch): a closed stdout fails now

    import torch

    from .book import load_book_encoding, load_book_model
    from .generate import check_max_new_tokens, generate
    from .sampling import check_sampling_args, filtered_probs

    check_max_new_tokens(args.max_new_tokens)
    if not args.prompt:
        raise ValueError("the prompt is empty: give some text to continue")
    enc = load_book_encoding()
    check_sampling_args(enc.n_vocab, args.temperature, args.top_k, args.top_p)
    ids = enc.encode(args.prompt, allowed_special={"<|endoftext|>"})
    model = load_book_model()
    context = list(ids)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
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

    import torch

    from .book import (
        MODEL_FILE,
        assets_dir,
        book_datasets,
        held_out_metrics,
        write_model_card,
    )
    from .model import GPT
    from .train import (
        LOG_JSON,
        TrainConfig,
        available_memory,
        estimate_train_memory,
        read_log,
        train_model,
    )

    # every check before any work: arguments, the output folder, the memory the run needs
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        min_lr=args.min_lr,
        warmup=args.warmup,
        eval_every=args.eval_every,
        seed=args.seed,
    )
    config, build = _model_config(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if args.resume:
        if not (out / LOG_JSON).is_file():
            raise ValueError(f"--resume: {out} holds no run to resume (no {LOG_JSON})")
        done = len(read_log(out)["losses"])
        if done > cfg.steps:
            raise ValueError(
                f"--resume: the run in {out} has already done {done} steps, more than "
                f"--steps {cfg.steps}; pass a larger --steps to continue it"
            )
        if done == cfg.steps:
            print(
                f"nothing to do: the run in {out} has already done all {done} steps "
                f"(pass a larger --steps to continue it)",
                file=sys.stderr,
            )
            return 0
    elif (out / LOG_JSON).exists():
        raise ValueError(
            f"--out {out} already holds a training run ({LOG_JSON}); pass --resume to continue "
            f"it, or choose another folder (nothing was overwritten)"
        )
    need, have = estimate_train_memory(config, cfg.batch_size), available_memory()
    if have is not None and need > have:
        raise ValueError(
            f"a training run of config {args.config!r} ({config.n_layer} layers, d_model "
            f"{config.n_embd}) with --batch-size {cfg.batch_size} needs about "
            f"{_bytes(need)} of memory (weights, gradients, AdamW state, activations); this "
            f"machine has {_bytes(have)} available. Use a smaller --batch-size or config"
        )
    out.mkdir(parents=True, exist_ok=True)  # a folder we cannot create fails now
    torch.set_num_threads(args.threads)
    train_ids, held_ids = book_datasets()
    if config.vocab_size < int(train_ids.max()) + 1:
        raise ValueError(f"config {args.config!r} has too small a vocabulary for the book encoding")
    torch.manual_seed(args.seed)
    model = build(config)
    command = "python -m nexttoken " + shlex.join(argv)

    def ship(row: dict, m: GPT) -> None:
        if args.arch == "llama":  # shipped once, at the end, beside (never over) the book model
            if row["step"] == cfg.steps:
                from .book import ship_llama_model

                ship_llama_model(out, command=command)
            return
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


def _model_config(args):
    """``(config, model class)`` for ``--config`` and ``--arch``."""
    from .configs import get_config

    if args.arch == "gpt":
        from .model import GPT

        return get_config(args.config), GPT
    if args.config != "book":
        raise ValueError(
            f"--arch llama trains the book model's Llama-family twin and takes --config book "
            f"(the default) only; got --config {args.config!r}"
        )
    from .book import book_llama_config
    from .llama import Llama

    return book_llama_config(), Llama


def _bytes(n: int) -> str:
    """``n`` bytes in readable units (decimal: kB, MB, GB, TB)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


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
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly
        _silence_stdout()
        return 0
    except _OutputError as err:
        _silence_stdout()  # so that the interpreter's last flush does not fail again
        return _fail(err, 2)
    except (_ArgError, ValueError, TypeError, OSError) as err:
        return _fail(err, 2)
    except FloatingPointError as err:  # a diverged training run
        return _fail(err, 1)
    except KeyboardInterrupt:
        return 130


def _fail(err: BaseException, code: int) -> int:
    text = " ".join(str(err).split())  # one line, whatever the message holds
    print(f"error: {text}", file=sys.stderr)
    return code


def _silence_stdout() -> None:
    import os

    if sys.stdout is None:
        return
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass
