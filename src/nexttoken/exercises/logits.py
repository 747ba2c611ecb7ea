"""Exercises of notebook 05 (logits and softmax)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..configs import get_config
from . import report, unanswered

__all__ = ["check_softmax", "check_projection_params", "check_entropy"]


def _call(fn: Callable, *args: Any) -> tuple[Any, str]:
    try:
        return fn(*args), ""
    except Exception as err:  # the reader's code may raise anything
        return None, f"it raised {type(err).__name__}: {err}"


def check_softmax(fn: Callable[[torch.Tensor], torch.Tensor] | None) -> bool:
    """``fn(logits)`` must be a stable softmax over the last dimension of a ``(B, V)`` tensor."""
    name = "stable softmax"
    hint = "subtract the max of each row (dim=-1, keepdim=True) before exp, divide by the row sum"
    if unanswered(fn, name, hint):
        return False
    if not callable(fn):
        return report(False, name, hint, "answer must be a function fn(logits) -> probs")
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 7, generator=g) * 3
    out, err = _call(fn, x.clone())
    if err:
        return report(False, name, hint, err)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return report(
            False, name, hint, f"expected a tensor of shape {tuple(x.shape)}, got {shape}"
        )
    if not torch.allclose(out.sum(dim=-1), torch.ones(3), atol=1e-5):
        return report(False, name, hint, "each row (the last dimension) must sum to 1")
    if not torch.allclose(out, torch.softmax(x, dim=-1), atol=1e-6):
        return report(False, name, hint, "values differ from torch.softmax(logits, dim=-1)")
    big = torch.tensor([[1000.0, 999.0, 990.0], [-1000.0, -1001.0, -1010.0]])
    out, err = _call(fn, big)
    if err:
        return report(False, name, hint, err)
    if not torch.isfinite(out).all() or not torch.allclose(out, torch.softmax(big, -1), atol=1e-6):
        return report(False, name, hint, "logits of ±1000 give inf/nan: exp overflowed")
    return report(True, name)


def check_projection_params(answer: int | None) -> bool:
    """Weights of GPT-3 175B's output projection (``d_model -> vocab``, no bias)."""
    name = "GPT-3 projection size"
    hint = "d_model x vocab_size, read both from get_config('gpt3-175b'); GPT-2/3 have no bias here"
    if unanswered(answer, name, hint):
        return False
    cfg = get_config("gpt3-175b")
    expected = cfg.n_embd * cfg.vocab_size
    if isinstance(answer, bool) or not isinstance(answer, int):
        return report(False, name, hint, f"answer must be an int, got {type(answer).__name__}")
    if answer == cfg.n_embd * 50000:
        return report(False, name, hint, "the vocabulary is 50,257 tokens, not 50,000")
    if answer == expected + cfg.vocab_size:
        return report(False, name, hint, "the projection has no bias (lm_head: bias=False)")
    return report(answer == expected, name, hint, f"got {answer:,}")


def check_entropy(fn: Callable[[torch.Tensor], torch.Tensor] | None) -> bool:
    """``fn(probs)`` ``(..., V) -> (...)``: entropy in nats, with ``0 log 0 = 0``."""
    name = "entropy"
    hint = "-(p * log p).sum(-1), treating p = 0 terms as 0 (torch.where or torch.special.xlogy)"
    if unanswered(fn, name, hint):
        return False
    if not callable(fn):
        return report(False, name, hint, "answer must be a function fn(probs) -> entropy")
    cases = [
        (torch.full((8,), 1 / 8), math.log(8), "uniform over 8 tokens"),
        (torch.tensor([1.0, 0.0, 0.0]), 0.0, "a one-hot distribution (certain)"),
        (torch.tensor([0.5, 0.5, 0.0, 0.0]), math.log(2), "two equal tokens and two zeros"),
    ]
    for p, want, what in cases:
        out, err = _call(fn, p)
        if err:
            return report(False, name, hint, err)
        try:
            val = float(out)
        except (TypeError, ValueError):
            return report(False, name, hint, f"expected one number for a (V,) input, got {out!r}")
        if not math.isfinite(val) or abs(val - want) > 1e-5:
            return report(False, name, hint, f"{what}: expected {want:.4f}, got {val:.4f}")
    batch = torch.tensor([[0.25] * 4, [1.0, 0.0, 0.0, 0.0]])
    out, err = _call(fn, batch)
    if err or not isinstance(out, torch.Tensor) or out.shape != (2,):
        return report(False, name, hint, "a (2, V) input must give 2 entropies (one per row)")
    return report(True, name)
