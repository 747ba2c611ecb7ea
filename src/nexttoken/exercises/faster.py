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
from . import Hints, check_prediction, failed, passed, unanswered
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
)
ACCEPT_HINTS = Hints(
    "accept probability",
    "The draft proposed x with probability q(x); the target would have chosen it with p(x). Keep "
    "x more often when the target likes it at least as much as the draft.",
    "If p(x) >= q(x), x is never over-proposed: keep it always. If p(x) < q(x), the draft proposes "
    "x too often, by the factor q(x) / p(x): keep only that share.",
    "A probability is at most 1: check what your rule gives when p(x) is twice q(x).",
)
ROUND_HINTS = Hints(
    "tokens per round",
    "A round always emits at least one token: the target's own, after the kept proposals.",
    "The first proposal is kept with probability alpha, the first two with alpha^2, and so on; "
    "each kept proposal adds one token, and the target adds one more.",
    "Sum the probabilities that each of the k proposals is reached and kept, plus the target's "
    "token: 1 + alpha + alpha^2 + ... + alpha^k (and when alpha = 1, every term is 1).",
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
    if not (isinstance(q, torch.Tensor) and isinstance(s, torch.Tensor)):
        return failed(name, "w_int8 and scale must be tensors", hints)
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


def _check_formula(
    fn: Any,
    hints: Hints,
    cases: list[tuple],
    right: Callable[..., float],
    wrong: list[tuple[Callable[..., float], str]],
    fallback: Callable[[list[float]], str],
    **tol: float,
) -> bool:
    """Call ``fn(*case)`` for every case; pass if it agrees with ``right`` (within ``tol``, as
    :func:`math.isclose` takes it) on all of them, else fail with the message of the first ``wrong``
    formula it agrees with, or ``fallback(got)``."""
    name = hints.name
    if unanswered(fn, name, hints):
        return False
    if not callable(fn):
        return failed(name, f"the answer must be a function, got {type(fn).__name__}", hints)
    got = []
    for case in cases:
        out, err = _call(fn, *case)
        if err:
            return failed(name, err, hints)
        try:
            got.append(float(out))
        except (TypeError, ValueError):
            return failed(name, f"return a number, got {type(out).__name__}", hints)

    def close(f: Callable[..., float]) -> bool:
        return all(math.isclose(g, f(*c), **tol) for g, c in zip(got, cases, strict=True))

    if close(right):
        return passed(name)
    for formula, why in wrong:
        if close(formula):
            return failed(name, why, hints)
    return failed(name, fallback(got), hints)


def check_accept_probability(fn: Callable[[float, float], float] | None) -> bool:
    """``fn(p_x, q_x)``: the probability of keeping a proposal ``x`` the draft drew with
    probability ``q_x``, when the target gives it ``p_x`` (``min(1, p_x / q_x)``).

    Recognised: the ratio without the cap at 1; the ratio upside down; the target's probability
    alone; keeping every proposal the target does not rule out.
    """
    cases = [(0.5, 0.25), (0.2, 0.4), (0.0, 0.3), (0.3, 0.3), (0.05, 0.5)]
    upside_down = ("the ratio is upside down: keep less when the draft over-proposes (q > p), not "
                   "when the target likes x more")  # fmt: skip
    wrong = [
        (lambda p, q: p / q, "p/q can exceed 1 (0.5 / 0.25 = 2): a probability must be capped at 1"),
        (lambda p, q: min(1.0, q / p) if p else 1.0, upside_down),
        (lambda p, q: q / p if p else math.inf, upside_down),
        (lambda p, q: p, "the target's probability alone ignores how often the draft proposes x: "
         "the output would follow p x q, not p"),
        (lambda p, q: 1.0 if p > 0 else 0.0, "keeping every proposal the target allows gives the "
         "draft's distribution, not the target's"),
    ]  # fmt: skip
    return _check_formula(
        fn, ACCEPT_HINTS, cases, lambda p, q: min(1.0, p / q), wrong,
        lambda got: f"for (p, q) = {cases[1]} you keep with probability {got[1]:g}", abs_tol=1e-9,
    )  # fmt: skip


def check_tokens_per_round(fn: Callable[[float, int], float] | None) -> bool:
    """``fn(alpha, k)``: the expected tokens one round emits when each of the ``k`` proposals is
    kept with probability ``alpha`` (a rejection ends the round).

    Recognised: ``k * alpha`` (each proposal independent of the ones before, no target token);
    forgetting the target's own token; ``alpha ** k`` alone.
    """
    cases = [(0.5, 1), (0.8, 4), (0.3, 2), (1.0, 3), (0.0, 5)]
    not_alpha = ("proposal i counts only if proposals 1..i-1 were all kept: its chance is alpha^i, "
                 "not alpha")  # fmt: skip
    wrong = [
        (lambda a, k: expected_tokens_per_round(a, k) - 1, "the target's own token is missing: a "
         "round emits at least one token, even when the first proposal is rejected"),
        (lambda a, k: k * a, not_alpha),
        (lambda a, k: k * a + 1, not_alpha),
        (lambda a, k: a**k, "alpha^k is the chance that all k are kept, not the expected count"),
    ]  # fmt: skip
    return _check_formula(
        fn, ROUND_HINTS, cases, expected_tokens_per_round, wrong,
        lambda got: f"for alpha = 0.8, k = 4 you give {got[1]:g} tokens", rel_tol=1e-6,
    )  # fmt: skip


def check_verify_cost_prediction(answer: float | None, actual: float) -> bool:
    """Predict, then run: how many times a one-token step does the target's pass over 5 tokens
    cost? (``actual``: the ratio the notebook computes from ``benchmarks/results_faster.json``, as
    ``benchmarks/faster.py`` measured it, so the same on every reader's CPU.) Within 30%."""
    return check_prediction(
        answer,
        actual,
        "verify cost prediction",
        rel_tol=0.3,
        explain="at batch 1 a step reads every weight for one row of products; with more rows the "
        "same weights serve them all, but on a CPU the matrix kernel turns compute-bound from a "
        "few rows on, so 5 rows cost more than 1 (on a GPU, nearly the same)",
    )
