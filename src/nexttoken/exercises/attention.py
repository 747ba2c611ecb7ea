"""Exercises of notebook 03 (self-attention)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from . import report, unanswered

__all__ = ["check_causal_mask", "check_attention_weights", "check_visible_words", "check_scale"]


def check_causal_mask(answer: Any, n: int = 5) -> bool:
    """A boolean ``(n, n)`` mask, True where query ``i`` may look at key ``j`` (``j <= i``)."""
    name = "causal mask"
    hint = "torch.ones(n, n, dtype=torch.bool).tril(): row i is True for columns 0..i"
    if unanswered(answer, name, hint):
        return False
    if not isinstance(answer, torch.Tensor) or tuple(answer.shape) != (n, n):
        got = tuple(answer.shape) if isinstance(answer, torch.Tensor) else type(answer).__name__
        return report(False, name, hint, f"expected a ({n}, {n}) tensor, got {got}")
    m = answer.bool()
    expected = torch.ones(n, n, dtype=torch.bool).tril()
    if (m & ~expected).any():
        return report(False, name, hint, "some query can see a later token (the future)")
    if not m.diagonal().all():
        return report(False, name, hint, "a token must be allowed to look at itself (the diagonal)")
    return report(torch.equal(m, expected), name, hint, "some query cannot see an earlier token")


def _reference(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    n = q.size(-2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    scores = scores.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
    return torch.softmax(scores, dim=-1)


def check_attention_weights(fn: Callable | None) -> bool:
    """``fn(q, k)`` for ``q, k`` ``(N, d_head)``: the causal attention weights ``(N, N)``."""
    name = "causal attention weights"
    hint = "scores = q @ k.T / sqrt(d_head); mask the future with -inf; softmax over dim=-1 (keys)"
    if unanswered(fn, name, hint):
        return False
    if not callable(fn):
        return report(False, name, hint, "answer must be a function fn(q, k) -> weights")
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(6, 16, generator=g) * 2, torch.randn(6, 16, generator=g) * 2
    try:
        w = fn(q.clone(), k.clone())
    except Exception as err:  # the reader's code may raise anything
        return report(False, name, hint, f"it raised {type(err).__name__}: {err}")
    expected = _reference(q, k)
    if not isinstance(w, torch.Tensor) or w.shape != expected.shape:
        return report(False, name, hint, f"expected a tensor of shape {tuple(expected.shape)}")
    if torch.triu(w, diagonal=1).abs().max() > 1e-6:
        return report(False, name, hint, "weights on future tokens are not zero: apply the mask")
    if not torch.allclose(w.sum(-1), torch.ones(6), atol=1e-5):
        return report(False, name, hint, "rows do not sum to 1: softmax over the keys (dim=-1)")
    if not torch.allclose(w, expected, atol=1e-5):
        unscaled = torch.softmax(
            (q @ k.T).masked_fill(~torch.ones(6, 6, dtype=torch.bool).tril(), float("-inf")), -1
        )
        if torch.allclose(w, unscaled, atol=1e-5):
            return report(False, name, hint, "scores were not divided by sqrt(d_head)")
        return report(False, name, hint, "values differ from the reference")
    return report(True, name)


def check_visible_words(answer: Any, words: list[str], query: str) -> bool:
    """The set of words that ``query`` can attend to in ``words`` under a causal mask."""
    name = f"what {query!r} can see"
    hint = "a token sees itself and every earlier token, never a later one"
    if unanswered(answer, name, hint):
        return False
    if not isinstance(answer, (set, list, tuple)):
        return report(False, name, hint, "answer must be a set of words")
    i = words.index(query)
    expected = set(words[: i + 1])
    got = set(answer)
    if got & set(words[i + 1 :]) - expected:
        return report(False, name, hint, "a later word is in your set: the mask hides the future")
    if query not in got:
        return report(False, name, hint, "a token also attends to itself")
    return report(got == expected, name, hint, "some earlier word is missing")


def check_scale(answer: Any, d_head: int = 128) -> bool:
    """The number the scores are divided by in GPT-3 175B's attention (``d_head``)."""
    name = f"score scale for d_head = {d_head}"
    hint = "the standard deviation of q . k for unit-variance q, k is sqrt(d_head)"
    if unanswered(answer, name, hint):
        return False
    if not isinstance(answer, (int, float)) or isinstance(answer, bool):
        return report(False, name, hint, f"answer must be a number, got {type(answer).__name__}")
    if math.isclose(answer, d_head):
        return report(False, name, hint, "dividing by d_head shrinks the scores too much")
    ok = math.isclose(answer, math.sqrt(d_head), rel_tol=1e-3)
    return report(ok, name, hint, f"{answer} is not sqrt({d_head})")
