"""Checkers for notebook 13 (why this token? looking inside the model): the logit lens by hand, one
part's direct logit attribution, a previous-token score, an induction score, and the first place
where two runs part.

Each function answer is judged on several cases (:func:`check_function`); a misconception is named
only when the answer matches it on every case. Hints are staged and never print the answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from . import Case, Hints, Mistake, as_count, as_number, as_tensor, check_function

__all__ = [
    "HINTS",
    "check_logit_lens",
    "check_part_attribution",
    "check_previous_token_score",
    "check_induction_score",
    "check_first_divergence",
]

_EPS = 1e-5  # the book model's LayerNorm eps

LENS_HINTS = Hints(
    "logit lens by hand",
    "The model's own logits are the final LayerNorm, then the unembedding, applied to the last "
    "residual stream. The lens applies exactly those two steps to an earlier one.",
    "LayerNorm: subtract each vector's mean, divide by its standard deviation (biased, with eps "
    "= 1e-5 inside the square root), then scale by gamma and shift by beta, over the last dim.",
    "The unembedding W_U is stored as (V, d), one row per token: a (N, d) input gives (N, V) "
    "logits. Logits, not probabilities.",
    solution="logit lens",
)
ATTRIBUTION_HINTS = Hints(
    "one part's attribution",
    "With the final LayerNorm's scale frozen, LayerNorm is linear: each part of the residual "
    "stream goes through it on its own, and the results add up.",
    "What is linear in LayerNorm: subtracting the mean, dividing by the frozen sigma (the whole "
    "stream's, not this part's), multiplying by gamma. The shift beta is added once, not per part.",
    "Then take the dot product with the token's row of the unembedding: one number, in logits.",
    solution="attribution",
)
PREVIOUS_HINTS = Hints(
    "previous-token score",
    "Row i of the pattern is where position i looks. Which entry of that row is the token just "
    "before it?",
    "Those entries form one diagonal of the (N, N) pattern, just below the main one. Row 0 has no "
    "previous token.",
    "Average the N - 1 entries of that diagonal: torch.diagonal takes an offset.",
    solution="previous token",
)
INDUCTION_HINTS = Hints(
    "induction score",
    "In the second copy, position i holds the same token as position i - T. An induction head "
    "predicts what came NEXT last time.",
    "So position i (in the second copy only) should look at the position just after i - T.",
    "Average that one entry over the T positions of the second copy: a number between 0 and 1.",
    solution="induction",
)
DIVERGENCE_HINTS = Hints(
    "first divergence",
    "Walk the two lists together, in order, and stop at the first pair that differs by more than "
    "atol.",
    "The size of a difference between two tensors: the largest absolute difference of any of "
    "their numbers. Compare it with atol: strictly more than atol counts.",
    "Return the index of that pair (0-based); every case here has one.",
    solution="divergence",
)
HINTS = {
    h.name: h
    for h in (LENS_HINTS, ATTRIBUTION_HINTS, PREVIOUS_HINTS, INDUCTION_HINTS, DIVERGENCE_HINTS)
}


# ---------------------------------------------------------------------------------------------
# Exercise 1: the logit lens by hand
# ---------------------------------------------------------------------------------------------


def _lens_case(seed: int, n: int, d: int, v: int) -> Case:
    g = torch.Generator().manual_seed(seed)
    resid = torch.randn(n, d, generator=g) * 3 + 1.5  # a mean and a spread far from 0 and 1
    gamma = 0.5 + torch.rand(d, generator=g)
    beta = torch.randn(d, generator=g) * 0.5
    w_u = torch.randn(v, d, generator=g)
    return Case((resid, gamma, beta, w_u), f"resid ({n}, {d}), W_U ({v}, {d})")


_LENS_CASES = [_lens_case(13, 3, 8, 11), _lens_case(14, 2, 6, 5)]


def _ln(x, gamma=None, beta=None, dim=-1):
    mu = x.mean(dim, keepdim=True)
    var = x.var(dim, keepdim=True, unbiased=False)
    z = (x - mu) / torch.sqrt(var + _EPS)
    return z * (1 if gamma is None else gamma) + (0 if beta is None else beta)


def _lens_right(resid, gamma, beta, w_u):
    return F.layer_norm(resid, (resid.size(-1),), gamma, beta, _EPS) @ w_u.T


_LENS_MISTAKES = [
    Mistake(lambda r, g, b, w: r @ w.T, "the final LayerNorm is missing: the unembedding reads a "
            "normalised vector, and the raw stream's scale would change every logit"),
    Mistake(lambda r, g, b, w: _ln(r) @ w.T, "gamma and beta are missing: the final LayerNorm has "
            "learned weights, and the lens must use them as the model does"),
    Mistake(lambda r, g, b, w: _ln(r, g) @ w.T, "beta (the shift) is missing"),
    Mistake(lambda r, g, b, w: _ln(r, None, b) @ w.T, "gamma (the scale) is missing"),
    Mistake(lambda r, g, b, w: ((r - r.mean(-1, keepdim=True)) * g + b) @ w.T, "only centred: "
            "LayerNorm also divides by the standard deviation"),
    Mistake(lambda r, g, b, w: torch.softmax(_lens_right(r, g, b, w), -1), "those are "
            "probabilities: the lens gives logits, as the model's last layer does"),
    Mistake(lambda r, g, b, w: _ln(r, g, b, dim=0) @ w.T, "normalised over the positions (dim 0): "
            "each position's vector is normalised on its own, over d"),
]  # fmt: skip


def _same_tensor(got: torch.Tensor, want: torch.Tensor) -> bool:
    got, want = got.double(), want.double()
    return got.shape == want.shape and torch.allclose(got, want, atol=1e-4, rtol=1e-4)


def _tensor_differ(case: Case, got: torch.Tensor, want: torch.Tensor) -> str:
    at = f"for {case.show()}"
    if got.shape != want.shape:
        return f"{at}: expected a tensor of shape {tuple(want.shape)}, got shape {tuple(got.shape)}"
    return f"{at}: the values differ from the final LayerNorm followed by the unembedding"


def check_logit_lens(fn: Callable | None) -> bool:
    """``fn(resid, gamma, beta, W_U)``: the logits ``(N, V)`` that the final LayerNorm (weight
    ``gamma``, bias ``beta``, eps 1e-5) and the unembedding ``W_U`` ``(V, d)`` give for a residual
    stream ``resid`` ``(N, d)``. Any float dtype, within 1e-4.

    Recognised: no LayerNorm; LayerNorm without gamma and beta, without one of them, or only
    centred; probabilities instead of logits; normalised over the positions."""
    return check_function(
        _cloning(fn), LENS_HINTS, _LENS_CASES, _lens_right, _LENS_MISTAKES,
        normalise=lambda out: as_tensor(out, None, "a tensor of logits"), same=_same_tensor,
        signature="fn(resid, gamma, beta, W_U) -> logits", differ=_tensor_differ,
    )  # fmt: skip


def _cloning(fn):
    """The reader's function, called on copies: an in-place edit cannot spoil the next case."""
    if fn is None or not callable(fn):
        return fn
    return lambda *a: fn(*(x.clone() if isinstance(x, torch.Tensor) else x for x in a))


# ---------------------------------------------------------------------------------------------
# Exercise 2: one part's direct logit attribution
# ---------------------------------------------------------------------------------------------


def _attr_case(seed: int, d: int, sigma: float) -> Case:
    g = torch.Generator().manual_seed(seed)
    part = torch.randn(d, generator=g) * 2 + 0.7  # a part whose mean is far from 0
    gamma = 0.5 + torch.rand(d, generator=g)
    beta = torch.randn(d, generator=g)
    u = torch.randn(d, generator=g)
    return Case((part, sigma, gamma, beta, u), f"d={d}, sigma={sigma}")


_ATTR_CASES = [_attr_case(23, 8, 2.5), _attr_case(24, 6, 0.4), _attr_case(25, 10, 7.0)]


def _centre(x):
    return x - x.mean()


def _attr_right(part, sigma, gamma, beta, u):
    return float((_centre(part) / sigma * gamma) @ u)


_ATTR_MISTAKES = [
    Mistake(lambda p, s, g, b, u: float((p / s * g) @ u), "the part is not centred: LayerNorm "
            "subtracts the mean, and the mean of a sum is the sum of the means, so each part "
            "loses its own"),
    Mistake(lambda p, s, g, b, u: float((_centre(p) * g) @ u), "the frozen scale sigma is "
            "missing: LayerNorm divides every part by the whole stream's sigma"),
    Mistake(lambda p, s, g, b, u: float((_centre(p) * s * g) @ u), "multiplied by sigma: "
            "LayerNorm divides by it"),
    Mistake(lambda p, s, g, b, u: float((_centre(p) / s) @ u), "gamma is missing: the final "
            "LayerNorm's learned scale multiplies every part"),
    Mistake(lambda p, s, g, b, u: float((_centre(p) / s * g + b) @ u), "beta is added to this "
            "part: the shift is added once to the sum, so it belongs to the bias term, not to "
            "every part"),
    Mistake(lambda p, s, g, b, u: float(_ln(p, g) @ u), "divided by the part's OWN standard "
            "deviation: the frozen sigma is the whole residual stream's, the same for every part "
            "(that is what makes the parts add up)"),
]  # fmt: skip


def check_part_attribution(fn: Callable | None) -> bool:
    """``fn(part, sigma, gamma, beta, u)``: what one part of the residual stream (``part``
    ``(d,)``) adds to a token's logit through the final LayerNorm with its scale frozen at
    ``sigma`` (weight ``gamma``, bias ``beta``) and the token's unembedding row ``u`` ``(d,)``.

    Recognised: not centred; sigma missing or multiplied; gamma missing; beta added to the part;
    the part's own standard deviation instead of the frozen one."""
    return check_function(
        _cloning(fn), ATTRIBUTION_HINTS, _ATTR_CASES, _attr_right, _ATTR_MISTAKES,
        normalise=lambda out: as_number(out, "a number (a logit's share)"),
        same=lambda a, b: math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5),
        signature="fn(part, sigma, gamma, beta, u) -> float",
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Exercises 3 and 4: head scores from an attention pattern
# ---------------------------------------------------------------------------------------------


def _pattern(seed: int, n: int) -> torch.Tensor:
    """A causal attention pattern ``(n, n)``: each row a distribution over positions <= its own."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, n, generator=g) * 1.5
    s = s.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
    return torch.softmax(s, -1)


_PREV_CASES = [Case((_pattern(31, 6),), "a (6, 6) pattern"), Case((_pattern(32, 9),), "a (9, 9) "
               "pattern")]  # fmt: skip


def _prev_right(p):
    return float(p.diagonal(-1).mean())


_PREV_MISTAKES = [
    Mistake(lambda p: float(p.diagonal().mean()), "that is the main diagonal: each position "
            "looking at ITSELF, not at the token before it"),
    Mistake(lambda p: float(p.diagonal(1).mean()), "that diagonal is above the main one: the "
            "NEXT token, which a causal pattern never sees (it is all zeros)"),
    Mistake(lambda p: float(p.diagonal(-1).sum()), "a sum: the score is the AVERAGE over the "
            "positions that have a previous token, between 0 and 1"),
    Mistake(lambda p: float(p.diagonal(-1).sum() / p.size(0)), "divided by N: only N - 1 "
            "positions have a previous token (row 0 has none)"),
    Mistake(lambda p: float(p.mean()), "the mean of the whole pattern: the score reads one "
            "entry per row, the previous position's"),
    Mistake(lambda p: float(p[1:, 0].mean()), "that is how much each position looks at the "
            "FIRST token, not at the one just before it"),
]  # fmt: skip


def check_previous_token_score(fn: Callable | None) -> bool:
    """``fn(pattern)``: the previous-token score of one head, ``pattern`` ``(N, N)`` its causal
    attention weights (row i: where position i looks): the mean over i >= 1 of ``pattern[i, i-1]``.

    Recognised: the main diagonal; the diagonal above; a sum; divided by N; the whole mean; the
    first token's column."""
    return check_function(
        _cloning(fn), PREVIOUS_HINTS, _PREV_CASES, _prev_right, _PREV_MISTAKES,
        normalise=lambda out: as_number(out, "a score (a number)"),
        same=lambda a, b: math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6),
        signature="fn(pattern) -> float",
    )  # fmt: skip


_IND_CASES = [
    Case((_pattern(41, 8), 4), "a (8, 8) pattern, T=4"),
    Case((_pattern(42, 12), 6), "a (12, 12) pattern, T=6"),
]


def _ind_right(p, t):
    return float(torch.stack([p[i, i - t + 1] for i in range(t, 2 * t)]).mean())


def _stripe(p, t, offset, start):
    return float(torch.stack([p[i, i - offset] for i in range(start, 2 * t)]).mean())


_IND_MISTAKES = [
    Mistake(lambda p, t: _stripe(p, t, t, t), "that is the earlier copy of the SAME token (a "
            "duplicate-token head): an induction head looks one position further, at what came "
            "next"),
    Mistake(lambda p, t: _stripe(p, t, 1, t), "that is the previous token: a previous-token "
            "score on the second copy, not an induction score"),
    Mistake(lambda p, t: _stripe(p, t, t - 1, t - 1), "the average starts one position early, in "
            "the first copy: only the T positions of the second copy have an earlier occurrence"),
    Mistake(lambda p, t: _stripe(p, t, t - 1, t + 1), "the average starts one position late: the "
            "first token of the second copy already has an earlier occurrence"),
    Mistake(lambda p, t: _ind_right(p, t) * t, "a sum: the score is the AVERAGE over the T "
            "positions of the second copy, between 0 and 1"),
]  # fmt: skip


def check_induction_score(fn: Callable | None) -> bool:
    """``fn(pattern, T)``: the induction score of one head on a sequence of T tokens repeated
    twice, ``pattern`` ``(2T, 2T)``: the mean over the second copy (i = T .. 2T - 1) of
    ``pattern[i, i - T + 1]``, attention to the token after the earlier occurrence.

    Recognised: the earlier occurrence itself (duplicate-token); the previous token; the range one
    early or one late; a sum."""
    return check_function(
        _cloning(fn), INDUCTION_HINTS, _IND_CASES, _ind_right, _IND_MISTAKES,
        normalise=lambda out: as_number(out, "a score (a number)"),
        same=lambda a, b: math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6),
        signature="fn(pattern, T) -> float",
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Exercise 5: where two runs part
# ---------------------------------------------------------------------------------------------


def _runs(sizes: list[float], shapes: list[tuple[int, ...]], seed: int) -> tuple[list, list]:
    """Two lists of activations; pair j differs by exactly ``sizes[j]`` at one number (dyadic, so
    the difference is exact) and by less elsewhere."""
    g = torch.Generator().manual_seed(seed)
    a, b = [], []
    for j, (size, shape) in enumerate(zip(sizes, shapes, strict=True)):
        x = torch.randint(-64, 64, shape, generator=g).double() / 4
        y = x.clone()
        if size:
            y.view(-1)[j % y.numel()] += size
            y.view(-1)[(j + 1) % y.numel()] -= size / 4
        a.append(x)
        b.append(y)
    return a, b


# case 1: an exact tie at atol (index 1), then above (2), a larger one (4): first > atol is 2
# case 2: at index 1 the max |diff| is above atol and the mean below; the largest is at 3
_DIV_CASES = [
    Case((*_runs([0.0, 0.25, 0.5, 0.125, 4.0], [(3, 4), (2, 5), (4,), (2, 2, 2), (6,)], 51), 0.25),
         "5 activations, atol=0.25"),
    Case((*_runs([0.0, 0.5, 1.0, 8.0, 1.0, 0.0], [(8,), (4, 4), (2,), (5,), (2, 3), (4,)], 52),
          0.25), "6 activations, atol=0.25"),
]  # fmt: skip


def _first(a, b, atol, size=lambda x, y: float((x - y).abs().max()), strict=True):
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        s = size(x, y)
        if s > atol or (not strict and s >= atol):
            return i
    return None


def _largest(a, b, atol):
    sizes = [float((x - y).abs().max()) for x, y in zip(a, b, strict=True)]
    return max(range(len(sizes)), key=sizes.__getitem__)


def _last(a, b, atol):
    over = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if (x - y).abs().max() > atol]
    return over[-1] if over else None


_DIV_MISTAKES = [
    Mistake(lambda a, b, t: _first(a, b, t, strict=False), "a difference EQUAL to atol counts: "
            "only one larger than atol does (>, not >=)"),
    Mistake(_largest, "that is where the difference is LARGEST, after it has grown: the question "
            "is where it starts"),
    Mistake(_last, "that is the LAST activation above atol: the question is the first"),
    Mistake(lambda a, b, t: _first(a, b, t, lambda x, y: float((x - y).abs().mean())), "the "
            "average difference hides a single number that moved: use the largest |difference|"),
    Mistake(lambda a, b, t: _first(a, b, t) + 1, "one too far: the index is 0-based"),
]  # fmt: skip


def check_first_divergence(fn: Callable | None) -> bool:
    """``fn(acts_a, acts_b, atol)``: two lists of tensors (the same activations of two runs, in the
    order they are computed) -> the 0-based index of the first pair whose largest absolute
    difference is more than ``atol``.

    Recognised: >= instead of >; the largest difference; the last one; the mean difference; a
    1-based index."""

    def call(a, b, t):  # the reader's function, on copies
        return fn([x.clone() for x in a], [y.clone() for y in b], t)

    return check_function(
        call if callable(fn) else fn, DIVERGENCE_HINTS, _DIV_CASES, _first, _DIV_MISTAKES,
        normalise=lambda out: as_count(out, "an index (a whole number)"),
        same=lambda a, b: a == b, signature="fn(acts_a, acts_b, atol) -> int",
    )  # fmt: skip
