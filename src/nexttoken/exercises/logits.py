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


# Rows with a small spread (safe for any softmax), with huge values (the naive exp overflows or
# underflows), and with a spread above 88 (shifting by the minimum still overflows).
_SMALL = torch.tensor([[0.5, -1.2, 2.0, 0.3], [3.0, 1.0, -2.0, 0.0], [-0.7, 0.1, 0.4, 1.5]])
_HUGE = torch.tensor([[1000.0, 999.0, 990.0, 995.0], [-1000.0, -1001.0, -1010.0, -1003.0]])
_WIDE = torch.tensor([[60.0, -60.0, 0.0, 10.0]])


_SOFTMAX_CASES = [
    Case((_SMALL,), "logits of a small spread"),
    Case((_HUGE,), "logits near +-1000"),
    Case((_WIDE,), "a row whose scores span 120"),
]


def _sm_right(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=-1)


def _exp_over(x: torch.Tensor, shift: torch.Tensor | float, total: str = "row") -> torch.Tensor:
    """exp(x - shift) divided by its row sums (or by its sum over the whole batch), in float32:
    the overflow and underflow of a wrong shift happen as they would in the reader's code."""
    e = (x - shift).exp()
    return e / (e.sum() if total == "batch" else e.sum(-1, keepdim=True))


_SOFTMAX_MISTAKES = [
    Mistake(lambda x: torch.log_softmax(x, dim=-1), "these are log-probabilities (log_softmax): "
            "exponentiate them"),
    Mistake(lambda x: torch.softmax(x, dim=0), "normalised over the wrong dimension (dim=0, across "
            "the batch): each ROW, the vocabulary, must sum to 1"),
    Mistake(lambda x: (x - x.amax(-1, keepdim=True)).exp(), "not normalised: the exponentials must "
            "be divided by their row's sum"),
    Mistake(lambda x: x.exp(), "not normalised: the exponentials must be divided by their row's "
            "sum"),
    Mistake(lambda x: _exp_over(x, 0.0, "batch"), "divided by the sum over the whole batch: each "
            "row (one position's scores) is a distribution of its own"),
    Mistake(lambda x: _exp_over(x, 0.0), "exp overflowed: for logits near +1000 exp(s) is inf "
            "(inf/inf = nan), near -1000 it is 0 (0/0 = nan). Softmax needs the shift that keeps "
            "exp in range"),
    Mistake(lambda x: _exp_over(x, x.max()), "shifted by the maximum of the whole batch, not of "
            "each row: a row far below that maximum underflows to 0 / 0 = nan. Each row needs its "
            "own maximum"),
    Mistake(lambda x: _exp_over(x, x.amin(-1, keepdim=True)), "a row whose scores span more than "
            "88 overflows: shifting by the minimum (or by any constant other than the row's "
            "maximum) can still leave an exponent above 88"),
]  # fmt: skip


def _same_softmax(got: torch.Tensor, want: torch.Tensor) -> bool:
    """Same shape, equal up to float32 rounding (nan where the mistake gives nan)."""
    got, want = got.double(), want.double()
    return got.shape == want.shape and torch.allclose(
        got, want, rtol=1e-4, atol=1e-6, equal_nan=True
    )


def _softmax_differ(case: Case, got: torch.Tensor, want: torch.Tensor) -> str:
    at = f"for {case.show()}"
    if got.shape != want.shape:
        return (
            f"{at}: expected a tensor of the input's shape {tuple(want.shape)}, got shape "
            f"{tuple(got.shape)}: softmax gives one probability per score"
        )
    if not bool(torch.isfinite(got).all()):
        return (
            f"{at}: the result has nan or inf: exp overflows above 88 and underflows far below 0. "
            "Softmax needs the shift that keeps exp in range"
        )
    ones = torch.ones(got.shape[:-1], dtype=got.dtype)
    if not torch.allclose(got.sum(-1), ones, atol=1e-5):
        return f"{at}: each row (the last dimension) must sum to 1"
    return f"{at}: the values differ from softmax over the last dimension"


def check_softmax(fn: Callable[[torch.Tensor], torch.Tensor] | None) -> bool:
    """``fn(logits)`` must be a stable softmax over the last dimension of a ``(B, V)`` tensor,
    judged on every case of ``_SOFTMAX_CASES`` (a small spread, logits near +-1000, a row spanning
    120); a mistake is named only when the answer matches it on all of them.

    Recognised: exp overflow without the max shift; the wrong dimension; no normalisation; one sum
    over the whole batch; the whole batch's maximum; a shift by the minimum; log-probabilities
    instead of probabilities.
    """
    return check_function(
        None if fn is None else (lambda x: fn(x.clone())) if callable(fn) else fn,
        SOFTMAX_HINTS, _SOFTMAX_CASES, _sm_right, _SOFTMAX_MISTAKES,
        normalise=lambda out: as_tensor(out, None, "a tensor of the input's shape"),
        same=_same_softmax, signature="fn(logits) -> probabilities", differ=_softmax_differ,
    )  # fmt: skip


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
