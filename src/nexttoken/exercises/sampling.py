"""Exercises of notebook 06 (choosing the next token).

Each checker recognises the usual wrong answers and names the misconception behind them; its hints
are staged (:class:`nexttoken.exercises.Hints`) and never print the answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..sampling import top_k_filter, top_p_filter
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
    "check_chi_square",
    "check_count_prediction",
    "check_temperature",
    "check_top_k",
    "check_top_p",
]

TOP_K_HINTS = Hints(
    "top-k filter",
    "Keep the k largest logits exactly as they are; every other logit must become -inf, so that "
    "its probability after the softmax is exactly 0.",
    "Find the k-th largest logit of each row (torch.topk works along a dimension and returns the "
    "values sorted, largest first); a logit is kept when it is not below that threshold.",
    "Keep the threshold's dimension (index with a slice, not an integer) so that it broadcasts "
    "against a (B, V) batch, and fill the masked positions with float('-inf'), not 0.",
    solution="top-k",
)
TOP_P_HINTS = Hints(
    "top-p filter",
    "Rank the tokens from most to least likely and add up their probabilities (not their logits) "
    "in that order.",
    "The kept set is the SHORTEST head of that ranking whose mass reaches p: the token whose "
    "probability makes the running total cross p is still kept.",
    "A token is dropped only when the tokens ranked ABOVE it already reach p (its own "
    "probability does not count); build that mask in sorted order, then scatter it back to "
    "vocabulary order.",
    solution="top-p",
)
TEMPERATURE_HINTS = Hints(
    "temperature",
    "The temperature reshapes the distribution BEFORE the softmax: it acts on the logits.",
    "Divide (not multiply) the logits by T: T < 1 widens the gaps between them (sharper), T > 1 "
    "narrows them (flatter); then take the softmax over the last dimension.",
    "Dividing the probabilities by T after the softmax only rescales them: once renormalised, the "
    "distribution is the same as at T = 1.",
    solution="temperature",
)
CHI_SQUARE_HINTS = Hints(
    "chi-square statistic",
    "Pearson's statistic compares each observed count O_i with its expected count E_i.",
    "The expected count of category i is the number of draws times its probability: "
    "E_i = n p_i, with n the total of the observed counts.",
    "Each category's gap is squared and compared with its EXPECTED count (not the observed "
    "one); the statistic adds up one such term per category. It is one number, not a p-value.",
    solution="chi-square",
)
HINTS = {h.name: h for h in (TOP_K_HINTS, TOP_P_HINTS, TEMPERATURE_HINTS, CHI_SQUARE_HINTS)}


def _same_mask(out: Any, want: torch.Tensor) -> bool:
    """Same kept positions, kept values unchanged, the rest -inf."""
    if not isinstance(out, torch.Tensor) or out.shape != want.shape:
        return False
    keep_out, keep_want = torch.isfinite(out), torch.isfinite(want)
    if not bool((keep_out == keep_want).all()):
        return False
    removed = out[~keep_out]
    return torch.equal(out[keep_out], want[keep_want]) and bool((removed == -math.inf).all())


_LOGITS = torch.tensor([0.5, 3.0, -1.0, 2.0, 1.0, 2.5, -2.0, 0.0])


def _filter_diagnosis(out: Any, x: torch.Tensor, want: torch.Tensor) -> str | None:
    """The misconceptions common to both filters, or None."""
    if not isinstance(out, torch.Tensor):
        return f"expected a tensor of logits, got {type(out).__name__}"
    if out.shape != x.shape:
        return (
            f"expected the full {tuple(x.shape)} vector of logits in vocabulary order, got shape "
            f"{tuple(out.shape)} (torch.topk or torch.sort alone returns the kept values only)"
        )
    keep = torch.isfinite(want)
    if bool(torch.isfinite(out).all()) and torch.equal(out, x.masked_fill(~keep, 0.0)):
        return (
            "the removed logits were set to 0, not -inf: a logit of 0 still has probability "
            "e^0 / Z > 0 after the softmax, so nothing is removed"
        )
    if torch.allclose(out, torch.softmax(want, dim=-1)) or torch.allclose(
        out, torch.softmax(x, dim=-1).masked_fill(~keep, 0.0)
    ):
        return "these are probabilities; the filter returns logits (removed ones at -inf)"
    if bool(torch.isfinite(out).all()):
        return "nothing was set to -inf: the removed tokens keep a probability above 0"
    if bool((torch.isfinite(out) == keep).all()):
        return "the right tokens are kept, but their logits must stay unchanged"
    return None


_BATCH = torch.stack([_LOGITS, -_LOGITS])
# k in the middle, k = 1 and k = V (nothing removed), and a (2, V) batch whose rows need their own
# threshold: every recognised mistake differs from the right filter and from the others somewhere
_TOP_K_CASES = [
    Case((_LOGITS, 3), "k=3"),
    Case((_LOGITS, 1), "k=1"),
    Case((_LOGITS, 8), "k=8"),
    Case((_BATCH, 2), "a (2, V) batch, k=2 (the threshold must broadcast per row)"),
]


def _kth(x: torch.Tensor, k: int) -> torch.Tensor:
    return torch.topk(x, k, dim=-1).values[..., -1:]


_TOP_K_MISTAKES = [
    Mistake(lambda x, k: _smallest_k(x, k), "it keeps the k SMALLEST logits; top-k keeps the "
            "largest"),
    Mistake(lambda x, k: x.masked_fill(x <= _kth(x, k), -math.inf), "k - 1 kept: the k-th largest "
            "logit itself was dropped (a strict comparison the wrong way round: keep the logits "
            "NOT BELOW it)"),
    Mistake(lambda x, k: top_k_filter(x, min(k + 1, x.size(-1))), "k + 1 kept, one too many (an "
            "off-by-one in the threshold)"),
    Mistake(lambda x, k: x.masked_fill(x < torch.topk(x.flatten(), k).values[-1], -math.inf),
            "one threshold for the whole batch: each row must be filtered on its own (the k-th "
            "largest is taken along dim=-1, per row)"),
    Mistake(lambda x, k: x.masked_fill(~torch.isfinite(top_k_filter(x, k)), 0.0), "the removed "
            "logits were set to 0, not -inf: a logit of 0 still has probability e^0 / Z > 0 after "
            "the softmax, so nothing is removed"),
    Mistake(lambda x, k: torch.softmax(top_k_filter(x, k), -1), "these are probabilities; the "
            "filter returns logits (removed ones at -inf)"),
    Mistake(lambda x, k: x, "nothing was set to -inf: the removed tokens keep a probability above "
            "0"),
]  # fmt: skip


def _same_filter(got: torch.Tensor, want: torch.Tensor) -> bool:
    """Same shape, same kept positions, kept values unchanged (up to float rounding), rest -inf."""
    got, want = got.double(), want.double()
    if got.shape != want.shape:
        return False
    keep_got, keep_want = torch.isfinite(got), torch.isfinite(want)
    if not bool((keep_got == keep_want).all()):
        return False
    removed = got[~keep_got]
    return bool((removed == -math.inf).all()) and torch.allclose(
        got[keep_got], want[keep_want], rtol=1e-6, atol=1e-9
    )


def _top_k_differ(case: Case, got: torch.Tensor, want: torch.Tensor) -> str:
    """What is wrong with this output at this case, as a fact (no misconception guessed)."""
    x, k = case.args
    at = f"for {case.show()}"
    if got.shape != want.shape:
        return (
            f"{at}: expected the full {tuple(x.shape)} tensor of logits in vocabulary order, got "
            f"shape {tuple(got.shape)} (torch.topk or torch.sort alone returns the kept values "
            "only)"
        )
    keep = torch.isfinite(want)
    if bool(torch.isfinite(got).all()) and not bool(keep.all()):
        return f"{at}: nothing was set to -inf: the removed tokens keep a probability above 0"
    if bool((torch.isfinite(got) == keep).all()):
        return f"{at}: the right tokens are kept, but their logits must stay unchanged"
    kept, n_want = int(torch.isfinite(got).sum()), int(keep.sum())
    return f"{at}: expected the {k} largest logits of each row kept ({n_want} in all) and the rest -inf; {kept} kept"


def check_top_k(fn: Callable[[torch.Tensor, int], torch.Tensor] | None) -> bool:
    """``fn(logits, k)``: keep the ``k`` largest logits unchanged, the others ``-inf`` (a tensor of
    any float dtype, an array or a list); judged on every case of ``_TOP_K_CASES``.

    Recognised: keeping k - 1 (``<=`` instead of ``<``) or k + 1; the k smallest; one threshold for
    the whole batch; removed logits set to 0 instead of -inf; probabilities returned; nothing
    removed. Only the top values returned, or kept logits changed, is said as it is.
    """
    return check_function(
        None if fn is None else (lambda x, k: fn(x.clone(), k)) if callable(fn) else fn,
        TOP_K_HINTS, _TOP_K_CASES, top_k_filter, _TOP_K_MISTAKES,
        normalise=lambda out: as_tensor(out, None, "a tensor of logits"),
        same=_same_filter, signature="fn(logits, k)", differ=_top_k_differ,
    )  # fmt: skip


def _smallest_k(x: torch.Tensor, k: int) -> torch.Tensor:
    return x.masked_fill(x > torch.topk(x, k, largest=False).values[..., -1:], -math.inf)


def _sorted_drop(x: torch.Tensor, p: float, rule: str) -> torch.Tensor:
    """Top-p filters built with a wrong rule, to recognise them (``x`` is ``(V,)``)."""
    descending = rule != "ascending"
    s, order = torch.sort(x, descending=descending)
    sp = torch.softmax(s, -1)
    if rule == "logits":  # accumulates logits instead of probabilities
        drop = s.cumsum(-1) - s >= p
    elif rule in ("crossing", "crossing, top kept"):  # keeps only a running total <= p
        drop = sp.cumsum(-1) > p
        if rule == "crossing, top kept":
            drop[0] = False
    else:  # "ascending": the right rule on the wrong end of the ranking
        drop = sp.cumsum(-1) - sp >= p
    return x.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), -math.inf)


def _unsorted_drop(x: torch.Tensor, p: float) -> torch.Tensor:
    probs = torch.softmax(x, -1)
    return x.masked_fill(probs.cumsum(-1) - probs >= p, -math.inf)


_TOP_P_WRONG = {
    "the token whose probability makes the running total cross p was dropped (and, when the top "
    "token alone exceeds p, even the most likely token): it belongs to the nucleus, whose mass "
    "must REACH p. Drop a token only when the tokens ranked above it already reach p": (
        lambda x, p: _sorted_drop(x, p, "crossing")
    ),
    "the token whose probability makes the running total cross p was dropped: it belongs to the "
    "nucleus, whose mass must REACH p": lambda x, p: _sorted_drop(x, p, "crossing, top kept"),
    "it accumulated the logits, not the probabilities: the mass that must reach p is a sum of "
    "softmax probabilities": lambda x, p: _sorted_drop(x, p, "logits"),
    "the cumulative sum runs in vocabulary order: sort the tokens by probability first, then "
    "accumulate": _unsorted_drop,
    "it keeps the LEAST likely tokens: sort in descending order, so that the running total starts "
    "from the most likely token": lambda x, p: _sorted_drop(x, p, "ascending"),
}


def check_top_p(fn: Callable[[torch.Tensor, float], torch.Tensor] | None) -> bool:
    """``fn(logits, p)``: keep the smallest set of top tokens whose probability reaches ``p``.

    Recognised: dropping the token that crosses p (and with it, sometimes the top token); the
    cumulative sum in vocabulary order (no sort); the cumulative sum of logits; an ascending sort;
    removed logits set to 0; probabilities returned; the top token dropped.
    """
    name, hints = TOP_P_HINTS.name, TOP_P_HINTS
    if unanswered(fn, name, hints):
        return False
    if not callable(fn):
        return failed(name, "the answer must be a function fn(logits, p)", hints)
    peaked = torch.tensor([5.0, 1.0, 0.5, 0.0, -1.0])
    cases = ((_LOGITS, 0.5), (_LOGITS, 0.9), (peaked, 0.3), (_LOGITS, 1.0), (peaked, 0.99))
    outs = []
    for logits, p in cases:
        out, err = _call(fn, logits.clone(), p)
        if err:
            return failed(name, err.prefixed(f"p={p}: "), hints)
        outs.append(out)
    if all(_same_mask(o, top_p_filter(x, p)) for o, (x, p) in zip(outs, cases, strict=True)):
        return passed(name)
    # a whole answer that behaves like a known wrong rule on every case: name that rule
    for why, wrong in _TOP_P_WRONG.items():
        if all(_same_mask(o, wrong(x, p)) for o, (x, p) in zip(outs, cases, strict=True)):
            return failed(name, why, hints)
    for out, (logits, p) in zip(outs, cases, strict=True):
        want = top_p_filter(logits, p)
        if _same_mask(out, want):
            continue
        why = _filter_diagnosis(out, logits, want)
        if why is None:
            kept, n_want = int(torch.isfinite(out).sum()), int(torch.isfinite(want).sum())
            if not bool(torch.isfinite(out[logits.argmax()])):
                top = float(torch.softmax(logits, -1).max())
                why = (
                    f"p={p}: the most likely token was dropped (its probability is {top:.2f}). "
                    "A token is dropped only when the tokens ABOVE it reach p, so the top token "
                    "always stays"
                )
            else:
                why = (
                    f"p={p}: expected the {n_want} most likely tokens kept, unchanged; {kept} kept"
                )
        return failed(name, why, hints)
    return passed(name)  # pragma: no cover (unreachable: some case failed above)


def _t_softmax(t: float) -> torch.Tensor:
    return torch.softmax(_LOGITS.double() / t, dim=-1)


_P1 = torch.softmax(_LOGITS.double(), dim=-1)
_TEMPERATURE_CASES = [Case((t,), f"T={t}") for t in (0.5, 2.0, 1.0, 0.25)]
_TEMPERATURE_MISTAKES = [
    Mistake(lambda t: _P1 / t, "the temperature was applied AFTER the softmax: p / T does not sum "
            "to 1 and does not change the shape of the distribution"),
    Mistake(lambda t: _P1, "this is the T = 1 distribution: dividing probabilities by T and "
            "renormalising (or shifting the logits by T) changes nothing; the temperature divides "
            "the logits"),
    Mistake(lambda t: torch.softmax(_LOGITS.double() * t, -1), "the logits were MULTIPLIED by T: "
            "then T < 1 flattens and T > 1 sharpens, the opposite of temperature"),
    Mistake(lambda t: _LOGITS.double() / t, "these are the scaled logits; the answer is their "
            "softmax (probabilities)"),
    Mistake(lambda t: torch.log_softmax(_LOGITS.double() / t, -1), "these are log-probabilities "
            "(log_softmax): the answer is the probabilities"),
    Mistake(lambda t: _P1 ** (1 / t), "p^(1/T) has the right shape but is not normalised: divide "
            "by its sum (or divide the logits by T, then softmax)"),
]  # fmt: skip


def _temperature_differ(case: Case, got: torch.Tensor, want: torch.Tensor) -> str:
    if not torch.isclose(got.sum(), torch.tensor(1.0, dtype=got.dtype), atol=1e-5):
        return f"for {case.show()}: the probabilities sum to {float(got.sum()):.4g}, not 1"
    return (
        f"for {case.show()}: the values differ from the softmax of the logits at that temperature"
    )


def check_temperature(fn: Callable[[torch.Tensor, float], torch.Tensor] | None) -> bool:
    """``fn(logits, T)``: the distribution sampled from at temperature ``T > 0`` (probabilities, a
    tensor of any float dtype, a numpy array or a list; float32 rounding is not a mistake).

    Recognised: the temperature applied after the softmax (not normalised, or renormalised to the
    T = 1 distribution); multiplying by T instead of dividing; logits or log-probabilities
    returned; p^(1/T) not normalised.
    """
    if not callable(fn):  # the TODO line, or "must be a function"
        return check_function(fn, TEMPERATURE_HINTS, [], _t_softmax, signature="fn(logits, T)")
    shape = tuple(_LOGITS.shape)
    return check_function(
        lambda t: fn(_LOGITS.clone(), t),
        TEMPERATURE_HINTS,
        _TEMPERATURE_CASES,
        _t_softmax,
        _TEMPERATURE_MISTAKES,
        normalise=lambda out: as_tensor(out, shape, "a tensor of probabilities"),
        same=lambda a, b: torch.allclose(a, b.double(), rtol=1e-4, atol=1e-6),
        signature="fn(logits, T)",
        differ=_temperature_differ,
    )


def _chi2(obs: torch.Tensor, p: torch.Tensor) -> float:
    e = obs.sum() * p
    return float(((obs - e) ** 2 / e).sum())


def _chi2_pvalue(obs: torch.Tensor, p: torch.Tensor) -> float:
    import scipy.stats

    return float(scipy.stats.chi2.sf(_chi2(obs, p), len(obs) - 1))


_CHI_CASES = [
    Case((torch.tensor(o), torch.tensor(p)), f"observed {o}, probs {p}")
    for o, p in (
        ([48.0, 30.0, 22.0], [0.5, 0.3, 0.2]),
        ([10.0, 70.0, 20.0, 100.0], [0.1, 0.3, 0.1, 0.5]),
    )
]


def _e(obs: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return obs.sum() * p


_CHI_MISTAKES = [
    Mistake(lambda o, p: float(((o - _e(o, p)) ** 2 / o).sum()), "divided by the OBSERVED counts "
            "(Neyman's statistic); Pearson's divides by the expected ones"),
    Mistake(lambda o, p: float(((o - p) ** 2 / p).sum()), "the expected counts are n * p, not the "
            "probabilities p themselves"),
    Mistake(lambda o, p: float(((o - _e(o, p)) ** 2).sum()), "each squared gap must be divided by "
            "its expected count"),
    Mistake(lambda o, p: float(((o - _e(o, p)) / _e(o, p)).sum()), "the gaps must be squared "
            "(plain gaps cancel out: they sum to 0)"),
    Mistake(lambda o, p: float(((o - _e(o, p)).abs() / _e(o, p)).sum()), "the gaps must be "
            "squared, not taken in absolute value"),
    Mistake(_chi2_pvalue, "that is a p-value; the exercise asks for the statistic itself"),
]  # fmt: skip


def check_chi_square(fn: Callable[[torch.Tensor, torch.Tensor], float] | None) -> bool:
    """``fn(observed_counts, probs)``: Pearson's statistic ``sum (O - E)^2 / E`` with ``E = n p``
    (a float, a 0-d tensor of any dtype, a numpy scalar), within 1e-4 relative.

    Recognised: dividing by O (Neyman's statistic); E = p (forgot n); no division; gaps not squared
    (plain or absolute); the p-value instead of the statistic.
    """
    return check_function(
        None if fn is None else (lambda o, p: fn(o.clone(), p.clone())) if callable(fn) else fn,
        CHI_SQUARE_HINTS, _CHI_CASES, _chi2, _CHI_MISTAKES,
        normalise=lambda out: as_number(out, "one number"),
        same=lambda a, b: math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-9),
        signature="fn(observed, probs)", show=lambda v: f"{v:.4f}",
    )  # fmt: skip


def check_count_prediction(answer: float | None, actual: int, expected: float) -> bool:
    """Predict-then-run: how many of 10,000 fresh draws give the top token (within 10%)."""
    sd = math.sqrt(expected * (1 - expected / 10_000))
    return check_prediction(
        answer,
        actual,
        "prediction: count in 10,000 draws",
        rel_tol=0.1,
        explain=f"a token of probability p is drawn about n p = {expected:.0f} times in n draws; "
        f"the count varies from run to run by about sqrt(n p (1 - p)) = {sd:.0f}, so predictions "
        "near n p are right to within a few tens",
    )
