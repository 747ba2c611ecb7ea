"""Exercises of notebook 08 (training the book model)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from . import report, unanswered

__all__ = [
    "check_cross_entropy",
    "check_uniform_loss",
    "check_perplexity",
    "check_nats_per_char",
    "check_targets",
]


def _call(fn: Callable, *args: Any) -> tuple[Any, str]:
    try:
        return fn(*args), ""
    except Exception as err:  # the reader's code may raise anything
        return None, f"it raised {type(err).__name__}: {err}"


def _number(x: Any) -> float | None:
    if isinstance(x, torch.Tensor) and x.numel() == 1:
        return float(x)
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x)
    return None


def check_cross_entropy(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None) -> bool:
    """``fn(logits, targets)``: logits ``(B, N, V)``, targets ``(B, N)`` -> the mean of
    ``-log softmax(logits)[target]`` over all ``B x N`` positions, in nats."""
    name = "cross-entropy"
    hint = (
        "log_softmax over the LAST axis (the vocabulary), pick the target's entry with gather, "
        "negate, then average over every position"
    )
    if unanswered(fn, name, hint):
        return False
    if not callable(fn):
        return report(False, name, hint, "answer must be a function fn(logits, targets)")
    g = torch.Generator().manual_seed(8)
    for shape in ((2, 3, 5), (1, 4, 7)):
        logits = torch.randn(*shape, generator=g) * 2
        targets = torch.randint(0, shape[-1], shape[:2], generator=g)
        want = float(F.cross_entropy(logits.flatten(0, 1), targets.flatten()))
        out, err = _call(fn, logits.clone(), targets.clone())
        if err:
            return report(False, name, hint, err)
        got = _number(out)
        if got is None:
            return report(False, name, hint, "return one number (a 0-d tensor or a float)")
        if got < 0:
            return report(False, name, hint, f"got {got:.4f} < 0: a loss -log p is never negative")
        if abs(got - want) > 1e-4:
            return report(False, name, hint, f"shape {shape}: expected {want:.4f}, got {got:.4f}")
    return report(True, name)


def check_uniform_loss(answer: Any, vocab_size: int = 4096) -> bool:
    """The loss (nats per token) of a model that gives all ``vocab_size`` tokens equal probability."""
    name = "loss of a uniform guess"
    hint = "every token has probability 1/V, and the loss is -log p with the natural log"
    if unanswered(answer, name, hint):
        return False
    got = _number(answer)
    want = math.log(vocab_size)
    if got is None:
        return report(False, name, hint, "answer must be a number")
    if abs(got - math.log2(vocab_size)) < 1e-3:
        return report(False, name, hint, "that is in bits (log2); the loss uses nats (ln)")
    return report(abs(got - want) < 1e-3, name, hint, f"got {got:.4f}")


def check_perplexity(fn: Callable[[float], float] | None) -> bool:
    """``fn(loss)``: the perplexity of a model whose loss is ``loss`` nats per token."""
    name = "perplexity"
    hint = "perplexity undoes the log: it is e ** loss (the loss is in nats)"
    if unanswered(fn, name, hint):
        return False
    if not callable(fn):
        return report(False, name, hint, "answer must be a function fn(loss)")
    for loss in (0.0, 1.0, math.log(4096), 4.3):
        out, err = _call(fn, loss)
        if err:
            return report(False, name, hint, err)
        got = _number(out)
        if got is None or abs(got - math.exp(loss)) > 1e-6 * max(1.0, math.exp(loss)):
            return report(
                False, name, hint, f"loss {loss:.3f}: expected {math.exp(loss):.3f}, got {out!r}"
            )
    return report(True, name)


def check_nats_per_char(fn: Callable[[float, int, int], float] | None) -> bool:
    """``fn(nats_per_token, tokens, characters)``: the same total loss spread over the characters."""
    name = "nats per character"
    hint = "the total loss is nats_per_token * tokens; divide it by the number of characters"
    if unanswered(fn, name, hint):
        return False
    if not callable(fn):
        return report(
            False, name, hint, "answer must be a function fn(nats_per_token, tokens, chars)"
        )
    for args in ((4.0, 100, 300), (2.5, 30, 45), (4.2, 34098, 96839)):
        out, err = _call(fn, *args)
        if err:
            return report(False, name, hint, err)
        want = args[0] * args[1] / args[2]
        got = _number(out)
        if got is None or abs(got - want) > 1e-9 * max(1.0, want):
            detail = f"for {args}: expected {want:.4f}, got {out!r}"
            if got is not None and abs(got - args[0] * args[2] / args[1]) < 1e-6:
                detail += " (tokens and characters are swapped)"
            return report(False, name, hint, detail)
    return report(True, name)


def check_targets(fn: Callable[[torch.Tensor, int, int], tuple] | None) -> bool:
    """``fn(data, start, n)``: the input window ``x`` and its targets ``y`` (both ``(n,)``) that start
    at ``start`` in the 1-D token stream ``data``: ``y[i]`` is the token that follows ``x[i]``."""
    name = "inputs and next-token targets"
    hint = "x = data[start : start + n], y is the same window moved one token to the right"
    if unanswered(fn, name, hint):
        return False
    if not callable(fn):
        return report(False, name, hint, "answer must be a function fn(data, start, n)")
    data = torch.tensor([5, 9, 2, 7, 7, 1, 3, 8, 4, 6])
    for start, n in ((0, 4), (3, 5), (5, 4)):
        out, err = _call(fn, data.clone(), start, n)
        if err:
            return report(False, name, hint, err)
        if not (isinstance(out, tuple) and len(out) == 2):
            return report(False, name, hint, "return a pair (x, y)")
        x, y = (torch.as_tensor(t) for t in out)
        want_x, want_y = data[start : start + n], data[start + 1 : start + n + 1]
        if not torch.equal(x, want_x):
            return report(False, name, hint, f"start={start}, n={n}: x should be {want_x.tolist()}")
        if torch.equal(y, x):
            return report(
                False, name, hint, "y equals x: the model would learn to copy, not predict"
            )
        if not torch.equal(y, want_y):
            return report(False, name, hint, f"start={start}, n={n}: y should be {want_y.tolist()}")
    return report(True, name)
