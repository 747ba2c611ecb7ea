"""The autoregressive loop, one step at a time, and what it costs.

:func:`nexttoken.generate.generate` runs the loop; this module looks *inside* it:

- :func:`next_step` / :func:`trace_generation`: step-by-step records (the context, the chosen token,
  its probability and its rank) made with exactly the computation ``generate(use_cache=False)``
  performs, so the tokens agree with it;
- :func:`kv_cache_bytes_per_token` / :func:`kv_cache_bytes`: the KV cache's memory for a config,
  ``2 x n_layer x n_embd x bytes`` per token (keys and values of every layer);
- :func:`decode_times`: the time each generated token takes, position by position, with or without
  the cache (measured through ``generate``'s ``on_token`` callback, so it times the real loop).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .generate import as_ids, check_max_new_tokens, generate
from .model import GPT, GPTConfig
from .sampling import check_sampling_args, sample, softmax
from .tokenizer import visible_token

__all__ = [
    "StepRecord",
    "next_step",
    "trace_generation",
    "format_steps",
    "kv_cache_bytes_per_token",
    "kv_cache_bytes",
    "dtype_bytes",
    "decode_times",
    "MiB",
]

MiB = 2**20


@dataclass(frozen=True)
class StepRecord:
    """One step of the loop.

    - ``step``: 1 for the first generated token;
    - ``context``: the ids the model read at this step (after the sliding window), a tuple;
    - ``token``: the chosen id; ``prob``: its probability under the model's softmax (temperature
      1, no filtering: what the model "thinks"); ``rank``: 1 if it was the most likely token;
    - ``top_ids`` / ``top_probs``: the model's most likely candidates at this step, best first.
    """

    step: int
    context: tuple[int, ...]
    token: int
    prob: float
    rank: int
    top_ids: tuple[int, ...]
    top_probs: tuple[float, ...]


def _check_model(model: GPT) -> None:
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a nexttoken GPT, got {type(model).__name__}")


@torch.inference_mode()
def next_step(
    model: GPT,
    ids: torch.Tensor | Sequence[int],
    *,
    step: int = 1,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    n_top: int = 5,
) -> StepRecord:
    """Run one step of the loop on ``ids`` (a list or ``(N,)`` / ``(1, N)`` tensor).

    The model reads the last ``block_size`` ids, its last position's logits ``(V,)`` are turned into
    a choice by :func:`nexttoken.sampling.sample` (``temperature=0`` is greedy). Nothing is
    appended: the caller appends ``record.token`` (that is the loop).
    """
    _check_model(model)
    idx = as_ids(ids, model.config.vocab_size)
    if idx.size(0) != 1:
        raise ValueError(f"ids must hold one sequence (batch size 1), got {idx.size(0)}")
    check_sampling_args(model.config.vocab_size, temperature, top_k, top_p)
    if isinstance(n_top, bool) or not isinstance(n_top, int) or n_top < 1:
        raise ValueError(f"n_top must be an int >= 1, got {n_top!r}")
    context = idx[:, -model.config.block_size :].to(model.device)
    was_training = model.training
    model.eval()
    try:
        logits = model.run(context, last_only=True).logits[:, -1, :]  # (1, V)
    finally:
        model.train(was_training)
    token = int(sample(logits, temperature, top_k, top_p, generator)[0])
    probs = softmax(logits[0].float())
    rank = int((probs > probs[token]).sum()) + 1
    top = torch.topk(probs, min(n_top, probs.numel()))
    return StepRecord(
        step=step,
        context=tuple(int(i) for i in context[0]),
        token=token,
        prob=float(probs[token]),
        rank=rank,
        top_ids=tuple(int(i) for i in top.indices),
        top_probs=tuple(float(p) for p in top.values),
    )


def trace_generation(
    model: GPT,
    ids: torch.Tensor | Sequence[int],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    stop_token: int | None = None,
    n_top: int = 5,
) -> list[StepRecord]:
    """Generate ``max_new_tokens`` tokens after ``ids`` and return one :class:`StepRecord` per step.

    The same computation as ``generate(..., use_cache=False)``: with the same seeded generator, the
    chosen tokens are the same. Stops after ``stop_token`` if it is produced.
    """
    _check_model(model)
    check_max_new_tokens(max_new_tokens)
    seq = [int(i) for i in as_ids(ids, model.config.vocab_size)[0]]
    records = []
    for step in range(1, max_new_tokens + 1):
        rec = next_step(
            model,
            seq,
            step=step,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            generator=generator,
            n_top=n_top,
        )
        records.append(rec)
        seq.append(rec.token)  # the loop: the chosen token becomes part of the input
        if stop_token is not None and rec.token == stop_token:
            break
    return records


def format_steps(
    records: Sequence[StepRecord],
    decode: Callable[[list[int]], str],
    *,
    context_chars: int = 28,
) -> str:
    """A plain-text table: step, the end of the context, the chosen token, its probability, rank.

    ``decode`` maps a list of ids to text (e.g. ``encoding.decode``). Spaces in tokens show as ``␣``
    and newlines as ``↵`` so that a token's boundaries are visible.
    """

    lines = [
        f"{'step':>4}  {'context (end)':<{context_chars + 1}}  {'token':<12} {'prob':>6} {'rank':>5}"
    ]
    for r in records:
        ctx = visible_token(decode(list(r.context)))
        if len(ctx) > context_chars:
            ctx = "…" + ctx[-context_chars:]
        tok = repr(visible_token(decode([r.token])))
        lines.append(
            f"{r.step:>4}  {ctx:<{context_chars + 1}}  {tok:<12} {r.prob:>6.3f} {r.rank:>5}"
        )
    return "\n".join(lines)


_DTYPE_BYTES = {
    "float32": 4,
    "fp32": 4,
    "float16": 2,
    "fp16": 2,
    "bfloat16": 2,
    "bf16": 2,
    "int8": 1,
}


def dtype_bytes(dtype: torch.dtype | str | int) -> int:
    """Bytes per number: a ``torch.dtype``, a name (``"fp16"``, ``"float32"``...) or an int."""
    if isinstance(dtype, torch.dtype):
        return torch.empty((), dtype=dtype).element_size()
    if isinstance(dtype, str):
        try:
            return _DTYPE_BYTES[dtype.lower()]
        except KeyError:
            raise ValueError(
                f"unknown dtype {dtype!r}; known: {', '.join(_DTYPE_BYTES)} (or a torch.dtype)"
            ) from None
    if isinstance(dtype, int) and not isinstance(dtype, bool) and dtype >= 1:
        return dtype
    raise TypeError(f"dtype must be a torch.dtype, a dtype name or a positive int, got {dtype!r}")


def kv_cache_bytes_per_token(config: GPTConfig, dtype: torch.dtype | str | int = "fp16") -> int:
    """Memory the KV cache needs for one more token: ``2 x n_layer x n_embd x bytes``.

    Each layer stores one key and one value per token, each ``n_head x d_head = n_embd`` numbers.
    GPT-3 175B in fp16: 2 x 96 x 12288 x 2 bytes = 4.5 MiB per token.
    """
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
    return 2 * config.n_layer * config.n_embd * dtype_bytes(dtype)


def kv_cache_bytes(
    config: GPTConfig,
    n_tokens: int | None = None,
    dtype: torch.dtype | str | int = "fp16",
    batch_size: int = 1,
) -> int:
    """KV cache memory for ``batch_size`` sequences of ``n_tokens`` (default: the full context)."""
    n_tokens = config.block_size if n_tokens is None else n_tokens
    for name, v in (("n_tokens", n_tokens), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be an int >= 0, got {v!r}")
    return batch_size * n_tokens * kv_cache_bytes_per_token(config, dtype)


def decode_times(
    model: GPT,
    ids: torch.Tensor | Sequence[int],
    max_new_tokens: int,
    *,
    use_cache: bool,
    repeats: int = 1,
) -> tuple[list[int], list[float]]:
    """Seconds spent on each generated token (greedy), against the position it is generated at.

    Runs ``generate(model, ids, max_new_tokens, temperature=0, use_cache=use_cache)`` ``repeats``
    times and times the gaps between its ``on_token`` callbacks; keeps, for each position, the
    fastest of the repeats (the least disturbed by other work on the machine). Returns
    ``(positions, seconds)``, where a position is the length of the context read at that step.
    """
    _check_model(model)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    n_prompt = as_ids(ids, model.config.vocab_size).size(1)
    best: list[float] | None = None
    for _ in range(repeats):
        stamps = [time.perf_counter()]
        generate(
            model,
            ids,
            max_new_tokens,
            temperature=0,
            use_cache=use_cache,
            on_token=lambda _t, s=stamps: s.append(time.perf_counter()),
        )
        gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
        best = gaps if best is None else [min(a, b) for a, b in zip(best, gaps, strict=True)]
    assert best is not None
    positions = [min(n_prompt + i, model.config.block_size) for i in range(len(best))]
    return positions, best
