"""Exercises of notebook 11 (faster tokens: int8 weights and speculative decoding).

Each checker recognises the usual wrong answers and names the misconception behind them; its hints
are staged (:class:`nexttoken.exercises.Hints`) and never print the answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..quantize import dequantize, quantize_int8
from ..speculative import expected_tokens_per_round
from . import (
    Case,
    Hints,
    Mistake,
    as_number,
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
    "check_quantize_int8",
    "check_accept_probability",
    "check_tokens_per_round",
    "check_verify_cost_prediction",
]

QUANT_HINTS = Hints(
    "int8 per-channel quantization",
    "Each output channel (a row of the (out, in) weight) gets its own scale, so a row of small "
    "weights is not crushed by another row's large ones.",
    "The scale maps the row's largest |weight| to the largest int8 you use (127), so nothing "
    "overflows and the whole range is used.",
    "Divide by the scale, round to the nearest integer (not towards zero), clamp to "
    "[-127, 127] and store as torch.int8; return the weights and the scales (one per row).",
    solution="quantize",
)
ACCEPT_HINTS = Hints(
    "accept probability",
    "The draft proposed x with probability q(x); the target would have chosen it with p(x). Keep "
    "x more often when the target likes it at least as much as the draft.",
    "If p(x) >= q(x), x is never over-proposed. If p(x) < q(x), the draft proposes x too often: "
    "what share of those proposals must survive for x to come out with probability p(x)?",
    "A probability is at most 1: check what your rule gives when p(x) is twice q(x), and when "
    "p(x) is 0.",
    solution="accept",
)
ROUND_HINTS = Hints(
    "tokens per round",
    "A round always emits at least one token: the target's own, after the kept proposals.",
    "The first proposal is kept with probability alpha, the first two with alpha^2, and so on; "
    "each kept proposal adds one token, and the target adds one more.",
    "Add up, for each of the k proposals, the chance that it is reached and kept, then count "
    "the target's token; check your formula by hand at alpha = 0 and alpha = 1.",
    solution="tokens per round",
)
HINTS = {h.name: h for h in (QUANT_HINTS, ACCEPT_HINTS, ROUND_HINTS)}


def check_quantize_int8(fn: Callable[[torch.Tensor], Any] | None) -> bool:
    """``fn(w)`` for a ``(out, in)`` float weight returns ``(w_int8, scale)``: int8 weights and one
    scale per output channel (row), with ``scale * w_int8`` close to ``w``.

    Recognised: one scale for the whole matrix; a scale per column; a scale from 128 or 255
    (overflow or half the range); truncation instead of rounding; weights not stored as int8.
    """
    name, hints = QUANT_HINTS.name, QUANT_HINTS
    if unanswered(fn, name, hints):
        return False
    if not callable(fn):
        return failed(name, f"the answer must be a function, got {type(fn).__name__}", hints)
    g = torch.Generator().manual_seed(11)
    w = torch.randn(6, 10, generator=g) * torch.tensor([0.01, 0.1, 1.0, 3.0, 0.5, 0.02])[:, None]
    out, err = _call(fn, w.clone())
    if err:
        return failed(name, err, hints)
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        return failed(name, "return two things: (w_int8, scale)", hints)
    q, s = out
    if type(q).__module__ == "numpy" and hasattr(q, "dtype"):
        q = torch.from_numpy(q)
    if not isinstance(q, torch.Tensor):
        return failed(name, f"w_int8 must be a tensor of torch.int8, got {type(q).__name__}", hints)
    s, err = as_tensor(s, what="scale")
    if err:
        return failed(name, err, hints)
    if q.dtype != torch.int8:
        return failed(
            name, f"the weights must be stored as torch.int8 (1 byte), got {q.dtype}", hints
        )
    s = s.reshape(-1).float()
    if s.numel() == 1:
        return failed(name, "one scale for the whole matrix: the rows of small weights lose "
                      "almost all their precision", hints)  # fmt: skip
    if s.numel() == w.size(1) and s.numel() != w.size(0):
        return failed(name, "a scale per column (input channel): the scales belong to the rows, "
                      "the output channels", hints)  # fmt: skip
    if s.numel() != w.size(0) or q.shape != w.shape:
        return failed(
            name, f"expected weights of shape {tuple(w.shape)} and {w.size(0)} scales", hints
        )
    want_q, want_s = quantize_int8(w)
    ratio = float((s / want_s).median())
    if math.isclose(ratio, 127 / 128, rel_tol=1e-3) or math.isclose(ratio, 127 / 255, rel_tol=1e-3):
        return failed(name, "the scale maps the largest |weight| to 128 or 255, which int8 cannot "
                      "hold (it goes up to 127) or which wastes half the range", hints)  # fmt: skip
    if not torch.allclose(s, want_s, rtol=1e-4):
        return failed(name, "the scales are not max|row| / 127", hints)
    if torch.equal(q, torch.trunc(w / want_s[:, None]).to(torch.int8)) and not torch.equal(
        q, want_q
    ):
        return failed(name, "the weights are truncated towards zero: round to the nearest "
                      "integer, or the error doubles", hints)  # fmt: skip
    if (dequantize(q, s) - w).abs().max() > float(want_s.max()) * 0.51:
        return failed(name, "scale * w_int8 is further than half a step from w", hints)
    return passed(name)


def _fraction(out: Any) -> tuple[float | None, str]:
    return as_number(out, "a probability (a number)")


def _close_fraction(a: float, b: float) -> bool:
    """A probability within 1e-4: float32 rounding and an answer rounded to 4 digits both pass."""
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-4)


_ACCEPT_CASES = [Case((p, q), f"p={p}, q={q}") for p, q in (
    (0.5, 0.25), (0.2, 0.4), (0.3, 0.3), (0.05, 0.5), (0.9, 0.1), (0.0, 0.3)
)]  # fmt: skip
_UPSIDE_DOWN = ("the ratio is upside down: keep less when the draft over-proposes (q > p), not "
                "when the target likes x more")  # fmt: skip
_ACCEPT_MISTAKES = [
    Mistake(lambda p, q: p / q, "p/q can exceed 1 (0.5 / 0.25 = 2): a probability must be capped "
            "at 1"),
    Mistake(lambda p, q: min(1.0, q / p) if p else 1.0, _UPSIDE_DOWN),
    Mistake(lambda p, q: q / p if p else math.inf, _UPSIDE_DOWN),
    Mistake(lambda p, q: p, "the target's probability alone ignores how often the draft proposes "
            "x: the output would follow p x q, not p"),
    Mistake(lambda p, q: 1.0 if p > 0 else 0.0, "keeping every proposal the target allows gives "
            "the draft's distribution, not the target's"),
    Mistake(lambda p, q: min(1.0, p / q) * 100, "that is a percentage; a probability is a fraction "
            "between 0 and 1"),
    Mistake(lambda p, q: max(0.0, 1 - q / p) if p else 0.0, "1 - q/p is the share REJECTED when "
            "the draft under-proposes; it is not the keep probability"),
    Mistake(lambda p, q: min(p, q), "min(p, q) is the probability that draft and target AGREE on "
            "x, not the share of the draft's proposals of x to keep"),
]  # fmt: skip


def check_accept_probability(fn: Callable[[float, float], float] | None) -> bool:
    """``fn(p_x, q_x)``: the probability of keeping a proposal ``x`` the draft drew with
    probability ``q_x``, when the target gives it ``p_x``. Any numeric type (a float32 tensor too)
    within 1e-4.

    Recognised: the ratio without the cap at 1; the ratio upside down; the target's probability
    alone; keeping every proposal the target does not rule out; a percentage; 1 - q/p; min(p, q).
    """
    return check_function(
        fn, ACCEPT_HINTS, _ACCEPT_CASES, lambda p, q: min(1.0, p / q), _ACCEPT_MISTAKES,
        normalise=_fraction, same=_close_fraction, signature="fn(p_x, q_x)",
    )  # fmt: skip


_SINGULAR_ALPHA = (
    "your function divides by zero at alpha = 1, a singular point of a closed form with "
    "(1 - alpha) in the denominator (0 / 0 there). At alpha = 1 every proposal is kept: handle "
    "that value on its own"
)
_ROUND_CASES = [
    Case((a, k), f"alpha={a}, k={k}", _SINGULAR_ALPHA if a == 1.0 else "")
    for a, k in ((0.5, 1), (0.8, 4), (0.3, 2), (1.0, 3), (0.0, 5), (0.6, 3))
]
_NOT_ALPHA = ("proposal i counts only if proposals 1..i-1 were all kept: its chance is alpha^i, "
              "not alpha")  # fmt: skip
_ROUND_MISTAKES = [
    Mistake(lambda a, k: expected_tokens_per_round(a, k) - 1, "the target's own token is missing: "
            "a round emits at least one token, even when the first proposal is rejected"),
    Mistake(lambda a, k: k * a, _NOT_ALPHA),
    Mistake(lambda a, k: k * a + 1, _NOT_ALPHA),
    Mistake(lambda a, k: a**k, "alpha^k is the chance that all k are kept, not the expected count"),
    Mistake(lambda a, k: 1 / (1 - a), "that is the INFINITE series 1 + alpha + alpha^2 + ...: a "
            "round has only k proposals, so the sum stops"),
    Mistake(lambda a, k: expected_tokens_per_round(a, k - 1), "an off-by-one range: the sum stops "
            "one proposal early (the k-th proposal's term is missing)"),
    Mistake(lambda a, k: expected_tokens_per_round(a, k + 1), "an off-by-one range: the sum goes "
            "one proposal too far (there are only k proposals)"),
    Mistake(lambda a, k: k + 1, "k + 1 is the most a round can emit (every proposal kept): the "
            "expected count weighs each proposal by its chance"),
]  # fmt: skip


def check_tokens_per_round(fn: Callable[[float, int], float] | None) -> bool:
    """``fn(alpha, k)``: the expected tokens one round emits when each of the ``k`` proposals is
    kept with probability ``alpha`` (a rejection ends the round). Within 1e-6 (relative).

    Recognised: ``k * alpha`` (each proposal independent of the ones before, no target token);
    forgetting the target's own token; ``alpha ** k`` alone; the infinite series; a sum one term
    short or long; the maximum k + 1. A closed form that is 0/0 at alpha = 1 is told so.
    """
    return check_function(
        fn, ROUND_HINTS, _ROUND_CASES, expected_tokens_per_round, _ROUND_MISTAKES,
        normalise=lambda out: as_number(out, "a number of tokens"),
        same=lambda a, b: math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9),
        signature="fn(alpha, k)",
    )  # fmt: skip


def check_verify_cost_prediction(answer: float | None, actual: float) -> bool:
    """Predict, then run: how many times a one-token step does the book model's pass over 5 tokens
    cost? (``actual``: the ratio the notebook computes from ``benchmarks/results_faster.json``, as
    ``benchmarks/faster.py`` measured it, so the same on every reader's CPU; the notebook's tables
    print GPT-2's shape, not this model.) Within 30%."""
    return check_prediction(
        answer,
        actual,
        "verify cost prediction",
        rel_tol=0.3,
        explain="a pass has costs that do not grow with its rows (the weights are read once for "
        "all of them, each layer runs the same small operations), and on a CPU the few-row matrix "
        "kernel is inefficient (notebook 11, section 1), so 5 rows cost more than 1 but far less "
        "than 5; in a model as small as the book model the fixed costs are a larger share than in "
        "GPT-2's shape (about 2 there)",
    )
