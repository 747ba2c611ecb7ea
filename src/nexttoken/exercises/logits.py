"""Exercises of notebook 05 (logits and softmax).

Each checker recognises the usual wrong answers and names the misconception behind them; its hints
are staged (:class:`nexttoken.exercises.Hints`) and never print the answer.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..configs import get_config
from . import (
    Case,
    Hints,
    Mistake,
    as_count,
    as_tensor,
    check_function,
    check_prediction,
    failed,
    passed,
    unanswered,
)
from . import call_answer as _call

__all__ = [
    "HINTS",
    "check_entropy",
    "check_projection_params",
    "check_shift_prediction",
    "check_softmax",
    "check_temperature_ratio_prediction",
]

SOFTMAX_HINTS = Hints(
    "stable softmax",
    "softmax(s) = exp(s_i) / sum_j exp(s_j), over the vocabulary: the LAST dimension of a (B, V) "
    "tensor.",
    "Adding the same constant to every score of a row leaves the softmax unchanged; choose the "
    "constant so that the largest exponent is exp(0) = 1.",
    "Per row: find the constant with a reduction over dim=-1 that keeps the dimension (so that "
    "it broadcasts), and test your function on logits near +1000 and near -1000.",
    solution="softmax",
)
PROJECTION_HINTS = Hints(
    "GPT-3 projection size",
    "The projection maps one d_model-wide vector to one score per token of the vocabulary.",
    "It is a weight matrix with one row per vocabulary token and one column per dimension of "
    "d_model; read both sizes from get_config('gpt3-175b'), do not type them.",
    "There is no bias, and there is one projection (after the last block), not one per layer.",
    solution="projection",
)
ENTROPY_HINTS = Hints(
    "entropy",
    "H(p) = -sum_i p_i ln p_i, in nats (natural log), summed over the last dimension only.",
    "A token of probability 0 contributes 0 (the limit of p ln p), but 0 * log(0) is 0 * -inf = nan "
    "in floating point: replace those terms before summing.",
    "torch.special.xlogy(x, y) computes x * log(y) and gives 0 where x == 0; mind the minus sign and "
    "sum with dim=-1.",
    solution="entropy",
)
HINTS = {h.name: h for h in (SOFTMAX_HINTS, PROJECTION_HINTS, ENTROPY_HINTS)}


def _close(out: Any, want: torch.Tensor, atol: float = 1e-6) -> bool:
    """Same shape, finite, and equal up to float32 rounding (relative 1e-4, absolute ``atol``)."""
    t, bad = as_tensor(out, tuple(want.shape))
    return (
        not bad
        and bool(torch.isfinite(t).all())
        and torch.allclose(t, want.double(), rtol=1e-4, atol=atol)
    )


# Rows with a small spread (safe for any softmax), with huge values (the naive exp overflows or
# underflows), and with a spread above 88 (shifting by the minimum still overflows).
_SMALL = torch.tensor([[0.5, -1.2, 2.0, 0.3], [3.0, 1.0, -2.0, 0.0], [-0.7, 0.1, 0.4, 1.5]])
_HUGE = torch.tensor([[1000.0, 999.0, 990.0, 995.0], [-1000.0, -1001.0, -1010.0, -1003.0]])
_WIDE = torch.tensor([[60.0, -60.0, 0.0, 10.0]])


def check_softmax(fn: Callable[[torch.Tensor], torch.Tensor] | None) -> bool:
    """``fn(logits)`` must be a stable softmax over the last dimension of a ``(B, V)`` tensor.

    Recognised: exp overflow without the max shift; the wrong dimension; no normalisation; one sum
    over the whole batch; a shift by the minimum; log-probabilities instead of probabilities.
    """
    name, hints = SOFTMAX_HINTS.name, SOFTMAX_HINTS
    if unanswered(fn, name, hints):
        return False
    if not callable(fn):
        return failed(name, "the answer must be a function fn(logits) -> probabilities", hints)
    out, err = _call(fn, _SMALL.clone())
    if err:
        return failed(name, err, hints)
    t, bad = as_tensor(out, tuple(_SMALL.shape), "a tensor of the input's shape")
    if bad:
        return failed(name, f"{bad}: softmax gives one probability per score", hints)
    want = torch.softmax(_SMALL, dim=-1)
    if not _close(out, want):
        if _close(out, torch.log_softmax(_SMALL, dim=-1), 1e-5):
            return failed(
                name, "these are log-probabilities (log_softmax): exponentiate them", hints
            )
        if _close(out, torch.softmax(_SMALL, dim=0)):
            return failed(
                name,
                "normalised over the wrong dimension (dim=0, across the batch): each ROW, the "
                "vocabulary, must sum to 1",
                hints,
            )
        e = (_SMALL - _SMALL.amax(-1, keepdim=True)).exp()
        if _close(out, e, 1e-5) or _close(out, _SMALL.exp(), 1e-5):
            return failed(
                name, "not normalised: the exponentials must be divided by their row's sum", hints
            )
        if _close(out, _SMALL.exp() / _SMALL.exp().sum()):
            return failed(
                name,
                "divided by the sum over the whole batch: each row (one position's scores) is a "
                "distribution of its own",
                hints,
            )
        if not torch.allclose(t.sum(-1), torch.ones(3, dtype=t.dtype), atol=1e-5):
            return failed(name, "each row (the last dimension) must sum to 1", hints)
        return failed(name, "the values differ from softmax over the last dimension", hints)
    out, err = _call(fn, _HUGE.clone())
    if err:
        return failed(name, err, hints)
    if not _close(out, torch.softmax(_HUGE, dim=-1)):
        rows = [_call(fn, _HUGE[i : i + 1].clone())[0] for i in range(_HUGE.size(0))]
        if all(_close(r, torch.softmax(_HUGE[i : i + 1], -1)) for i, r in enumerate(rows)):
            return failed(
                name,
                "shifted by the maximum of the whole batch, not of each row: a row far below "
                "that maximum underflows to 0 / 0 = nan. Each row needs its own maximum",
                hints,
            )
        t, bad = as_tensor(out, tuple(_HUGE.shape), "a tensor of the input's shape")
        if bad:
            return failed(name, f"for logits near +-1000: {bad}", hints)
        if not bool(torch.isfinite(t).all()):
            return failed(
                name,
                "exp overflowed: for logits near +1000 exp(s) is inf (inf/inf = nan), near -1000 "
                "it is 0 (0/0 = nan). Softmax needs the shift that keeps exp in range",
                hints,
            )
        return failed(name, "for logits near +-1000 the values differ from softmax", hints)
    out, err = _call(fn, _WIDE.clone())
    if err:
        return failed(name, err, hints)
    if not _close(out, torch.softmax(_WIDE, dim=-1)):
        return failed(
            name,
            "a row whose scores span more than 88 overflows: shifting by the minimum (or by any "
            "constant other than the row's maximum) can still leave an exponent above 88",
            hints,
        )
    return passed(name)


def check_projection_params(answer: int | None) -> bool:
    """Weights of GPT-3 175B's output projection (``d_model -> vocab``, no bias).

    Recognised: a vocabulary of 50,000; a bias added; GPT-2 small's width; the MLP's width d_ff;
    one projection per layer; a non-integer answer.
    """
    name, hints = PROJECTION_HINTS.name, PROJECTION_HINTS
    if unanswered(answer, name, hints):
        return False
    answer, bad = as_count(answer, "a count (a whole number)")
    if bad:
        return failed(name, bad, hints)
    cfg = get_config("gpt3-175b")
    d, v = cfg.n_embd, cfg.vocab_size
    expected = d * v
    if answer == expected:
        return passed(name)
    wrong = {
        d * 50_000: "the vocabulary is 50,257 tokens (r50k_base), not a round 50,000",
        expected + v: "the output projection has no bias in GPT-2/GPT-3 (bias=False)",
        768 * v: "768 is GPT-2 small's width; GPT-3 175B's d_model is 12,288",
        cfg.d_ff * v: "d_ff is the MLP's hidden width; the projection reads the d_model-wide "
        "output of the last block",
        cfg.n_layer * expected: "there is one projection, after the last block, not one per layer",
        2 * expected: "that counts two matrices; the question is the projection alone (and in "
        "GPT-2 it IS the embedding table, tied)",
        cfg.d_head * v: "d_head is the width of one attention head; the projection reads the "
        "whole d_model-wide vector",
    }
    if answer in wrong:
        return failed(name, wrong[answer], hints)
    return failed(name, f"got {answer:,}, which is not d_model x vocabulary", hints)


def _entropy_value(out: Any) -> tuple[torch.Tensor | None, str]:
    """A float64 tensor from a number (nan allowed: it is diagnosed), a tensor, an array or a list."""
    if isinstance(out, (numbers.Real, np.generic)) and not isinstance(out, (bool, np.bool_)):
        return torch.tensor(float(out), dtype=torch.float64), ""
    return as_tensor(out, None, "one number per distribution")


def _entropy_right(p: torch.Tensor) -> torch.Tensor:
    return -torch.special.xlogy(p.double(), p.double()).sum(-1)


# (V,) inputs and a (2, V) batch: with and without zero probabilities, more than one row
_ENTROPY_CASES = [
    Case((torch.full((8,), 1 / 8),), "uniform over 8 tokens"),
    Case((torch.tensor([0.5, 0.5, 0.0, 0.0]),), "two equal tokens and two zeros"),
    Case((torch.tensor([1.0, 0.0, 0.0]),), "a one-hot distribution (certain)"),
    Case((torch.tensor([[0.25] * 4, [1.0, 0.0, 0.0, 0.0]]),), "a (2, V) batch"),
]
_ENTROPY_MISTAKES = [
    Mistake(lambda p: -(p.double() * p.double().log()).sum(-1), "the result is nan where a token "
            "has probability 0: 0 * log(0) = 0 * -inf = nan; its term must count as 0"),
    Mistake(lambda p: _entropy_right(p) / math.log(2), "in bits (log base 2); the book uses nats "
            "(ln)"),
    Mistake(lambda p: -_entropy_right(p), "it has the wrong sign: H = -sum p ln p >= 0"),
    Mistake(lambda p: _entropy_right(p).sum(), "on a (2, V) batch it summed over the whole batch: "
            "expected 2 entropies, one per row (sum over dim=-1 only)"),
    Mistake(lambda p: -torch.special.xlogy(p.double(), p.double()).sum(0), "on a (2, V) batch it "
            "summed over the wrong dimension: sum over the last dimension (each row)"),
]  # fmt: skip


def _same_entropy(got: torch.Tensor, want: torch.Tensor) -> bool:
    return got.shape == want.shape and torch.allclose(
        got, want, rtol=1e-4, atol=1e-5, equal_nan=True
    )


def _show_entropy(t: torch.Tensor) -> str:
    if t.dim() == 0:
        return f"{float(t):.4f}"
    return "[" + ", ".join(f"{v:.4f}" for v in t.reshape(-1).tolist()) + "]"


def _entropy_differ(case: Case, got: torch.Tensor, want: torch.Tensor) -> str:
    if bool(torch.isnan(got).any()):
        return (
            f"for {case.show()}: the result is nan: a token of probability 0 gives 0 * log(0) = "
            "0 * -inf = nan; its term must count as 0"
        )
    if got.shape != want.shape:
        what = "one number" if want.dim() == 0 else "one entropy per row"
        return f"for {case.show()}: expected {what}, got shape {tuple(got.shape)}"
    return f"for {case.show()}: expected {_show_entropy(want)} nats, got {_show_entropy(got)}"


def check_entropy(fn: Callable[[torch.Tensor], torch.Tensor] | None) -> bool:
    """``fn(probs)`` ``(..., V) -> (...)``: entropy in nats, with ``0 log 0 = 0``; judged on every
    case (three ``(V,)`` distributions and a ``(2, V)`` batch).

    Recognised: nan from ``0 * log 0``; bits instead of nats; the sign; a sum over the whole batch;
    the wrong dimension.
    """
    return check_function(
        None if fn is None else (lambda p: fn(p.clone())) if callable(fn) else fn,
        ENTROPY_HINTS, _ENTROPY_CASES, _entropy_right, _ENTROPY_MISTAKES,
        normalise=_entropy_value, same=_same_entropy, signature="fn(probs) -> entropy",
        show=_show_entropy, differ=_entropy_differ,
    )  # fmt: skip


def check_shift_prediction(answer: float | None, actual: float) -> bool:
    """Predict-then-run: the top token's probability after adding 100 to every logit."""
    return check_prediction(
        answer,
        actual,
        "prediction: logits + 100",
        abs_tol=0.005,
        explain="softmax depends only on the DIFFERENCES between logits: exp(s_i + c) / "
        "sum_j exp(s_j + c) = exp(s_i) / sum_j exp(s_j). Adding the same number to every score "
        "changes nothing (that is also why subtracting the max is safe)",
    )


def check_temperature_ratio_prediction(answer: float | None, actual: float) -> bool:
    """Predict-then-run: p(first) / p(second) at temperature 0.5, from their logits."""
    return check_prediction(
        answer,
        actual,
        "prediction: ratio at T = 0.5",
        rel_tol=0.1,
        explain="p_i / p_j = exp((s_i - s_j) / T): the ratio of two probabilities is the exp of "
        "their logit gap divided by T. Halving T doubles the gap, so the ratio is SQUARED "
        "(it does not just double)",
    )
