"""Logits to probabilities to one chosen token.

The model's last layer gives *logits* ``(..., V)``: real-valued scores, not probabilities. This
module turns them into a probability distribution (a numerically stable softmax, optionally with a
temperature), filters it (top-k, top-p) and picks a token — greedily, or by a draw from an explicit
``torch.Generator`` so that a seed makes every draw reproducible.

All functions work on the last dimension and accept any leading shape, e.g. ``(B, V)``.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "softmax",
    "greedy",
    "top_k_filter",
    "top_p_filter",
    "filtered_probs",
    "sample",
    "check_sampling_args",
]


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    if logits.dim() == 0 or logits.size(-1) == 0:
        raise ValueError(f"logits must have a non-empty last dimension, got {tuple(logits.shape)}")


def check_sampling_args(
    vocab_size: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> None:
    """Raise ValueError/TypeError unless the sampling settings are allowed for ``vocab_size``."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a number, got {type(temperature).__name__}")
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(
            f"temperature must be a finite number >= 0 (0 = greedy), got {temperature}"
        )
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            raise TypeError(f"top_k must be an int or None, got {type(top_k).__name__}")
        if not 1 <= top_k <= vocab_size:
            raise ValueError(
                f"top_k must be in [1, {vocab_size}] (the vocabulary size), got {top_k}"
            )
    if top_p is not None:
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float)):
            raise TypeError(f"top_p must be a number or None, got {type(top_p).__name__}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def softmax(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Probabilities from logits: ``exp((s - max s) / T) / sum(...)`` over the last dimension.

    Subtracting the maximum changes nothing mathematically (softmax is shift-invariant) but keeps
    ``exp`` from overflowing. ``temperature`` must be > 0: below 1 it sharpens, above 1 it flattens.
    Entries of ``-inf`` (filtered out) get probability 0.
    """
    _check_logits(logits)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a number, got {type(temperature).__name__}")
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(
            f"softmax needs temperature > 0, got {temperature} (temperature 0 means greedy())"
        )
    z = logits / temperature
    z = z - z.amax(dim=-1, keepdim=True)
    e = torch.exp(z)
    return e / e.sum(dim=-1, keepdim=True)


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """The highest-scoring token: ``argmax`` over the last dimension, shape ``logits.shape[:-1]``.

    Ties go to the lowest id (as ``torch.argmax``).
    """
    _check_logits(logits)
    return logits.argmax(dim=-1)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` highest logits, set the others to ``-inf``.

    Ties at the k-th value are all kept (so slightly more than ``k`` tokens may survive).
    """
    _check_logits(logits)
    check_sampling_args(logits.size(-1), top_k=k)
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of top tokens whose probabilities sum to >= ``p``.

    The most likely token is always kept. Probabilities are those of ``softmax(logits)``; apply the
    temperature to the logits first if you want it to shape the nucleus.
    """
    _check_logits(logits)
    check_sampling_args(logits.size(-1), top_p=p)
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = softmax(sorted_logits)
    cumulative = probs.cumsum(dim=-1)
    # drop a token when the tokens ranked above it already reach p
    drop_sorted = (cumulative - probs) >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def filtered_probs(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """The distribution actually sampled from: temperature, then top-k, then top-p, then softmax.

    ``temperature=0`` gives the greedy choice as a one-hot distribution.
    """
    _check_logits(logits)
    check_sampling_args(logits.size(-1), temperature, top_k, top_p)
    if temperature == 0:
        return torch.nn.functional.one_hot(greedy(logits), logits.size(-1)).to(logits.dtype)
    z = logits / temperature
    if top_k is not None:
        z = top_k_filter(z, top_k)
    if top_p is not None:
        z = top_p_filter(z, top_p)
    return softmax(z)


def sample(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Choose one token per row of ``logits`` ``(..., V)``; returns ids of shape ``logits.shape[:-1]``.

    ``temperature=0`` is greedy (no randomness). Otherwise one draw from :func:`filtered_probs` with
    ``torch.multinomial`` and the given ``generator`` (pass a seeded one for reproducible draws).
    """
    _check_logits(logits)
    check_sampling_args(logits.size(-1), temperature, top_k, top_p)
    if temperature == 0:
        return greedy(logits)
    probs = filtered_probs(logits, temperature, top_k, top_p)
    flat = probs.reshape(-1, probs.size(-1))
    ids = torch.multinomial(flat, 1, generator=generator)
    return ids.reshape(probs.shape[:-1])
