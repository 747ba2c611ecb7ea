"""Exercises of notebook 08 (training the book model).

Each checker recognises the common wrong answers of its exercise and names the misconception
(softmax over the wrong axis, a loss in bits, a perplexity of ``e ** -loss``, targets that copy the
inputs, ...); its hints are staged (:class:`~nexttoken.exercises.Hints`) and never print the answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

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

__all__ = [
    "check_cross_entropy",
    "check_uniform_loss",
    "check_perplexity",
    "check_nats_per_char",
    "check_targets",
    "check_short_context_loss",
    "HINTS",
]

HINTS = {
    "cross-entropy": Hints(
        "cross-entropy",
        "the loss at one position is -log of the probability the model gave the true next token",
        "turn each row of logits (the vocabulary axis, the last one) into log-probabilities, "
        "pick the target's entry at every position, then average",
        "torch.log_softmax(..., dim=-1) gives log-probabilities without computing log(0); "
        "Tensor.gather picks one entry per row along the last axis; the loss is a mean, not a sum",
        solution="cross-entropy",
    ),
    "loss of a uniform guess": Hints(
        "loss of a uniform guess",
        "if every token is equally likely, what probability does the true token get?",
        "what probability does each of the V tokens get? The loss is minus the natural log of "
        "the true token's probability",
        solution="uniform loss",
    ),
    "perplexity": Hints(
        "perplexity",
        "a loss of l nats means the model gave the true token e^-l on average (geometric mean)",
        "perplexity is the number of equally likely choices that would give the same loss: "
        "the inverse of that average probability, with e as the base (the loss is in nats)",
        solution="perplexity",
    ),
    "nats per character": Hints(
        "nats per character",
        "first find the total loss of the whole text, in nats",
        "the total loss of a text does not depend on how it is cut into pieces: compute it from "
        "the tokens, then share it out over the characters",
        solution="nats per char",
    ),
    "inputs and next-token targets": Hints(
        "inputs and next-token targets",
        "y[i] must be the token that comes right after x[i] in data",
        "both windows have n tokens and come from data itself; how far apart do they start?",
        solution="targets",
    ),
}


def _number(x: Any) -> float | None:
    """``x`` as a float (any numeric type, a one-element tensor or array; nan and inf kept, for the
    checkers explain where they come from), or None for a string, a bool, None, several numbers."""
    value, bad = as_number(x)
    if not bad:
        return float(value)
    if "finite number" in bad:
        return math.nan if "nan" in bad else -math.inf if "-inf" in bad else math.inf
    return None


def _close(a: float, b: float, tol: float = 1e-4) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= tol * max(1.0, abs(b))


def _ce_cases() -> list[Case]:
    """Two random batches of different shapes, and a confident model whose true token's
    probability underflows to 0 in float32 (120 on one token): every recognised mistake differs
    from the right loss, and from the others, on at least one of them."""
    g = torch.Generator().manual_seed(8)
    cases = []
    for shape in ((2, 3, 5), (1, 4, 7)):
        logits = torch.randn(*shape, generator=g) * 2
        targets = torch.randint(0, shape[-1], shape[:2], generator=g)
        cases.append(Case((logits, targets), f"random logits of shape {shape}"))
    logits = torch.zeros(1, 3, 6)
    logits[0, :, 0] = 120.0
    cases.append(Case((logits, torch.tensor([[1, 0, 2]])), "confident logits (120 on one token)"))
    return cases


_CE_CASES = _ce_cases()


def _ce_right(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def _logp(logits: torch.Tensor, targets: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return torch.log_softmax(logits, dim=dim).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


_CE_AXIS = (
    "softmax over the wrong axis: each position's probabilities must be over the vocabulary, the "
    "last axis"
)
_CE_MISTAKES = [
    Mistake(lambda s, t: _logp(s, t).mean(), "the minus sign is missing: log p is <= 0, the loss "
            "-log p is >= 0"),
    Mistake(lambda s, t: -_logp(s, t).sum(), "that is the sum over the positions: the loss is "
            "their mean"),
    Mistake(lambda s, t: -_logp(s, t).mean() / math.log(2), "that is in bits (log base 2); the "
            "loss uses the natural log (nats)"),
    Mistake(lambda s, t: -_logp(s, t, 1).mean(), _CE_AXIS),
    Mistake(lambda s, t: -_logp(s, t, 0).mean(), _CE_AXIS),
    Mistake(lambda s, t: -s.gather(-1, t.unsqueeze(-1)).mean(), "no softmax: a raw logit is not a "
            "log-probability (it is not normalised)"),
    Mistake(lambda s, t: -_logp(s, t).exp().mean(), "that is -p, not -log p: the loss is the log "
            "of the probability"),
    Mistake(lambda s, t: -_logp(s, t), "it returned one loss per position: the training loss is "
            "their mean (one number)"),
    Mistake(lambda s, t: -torch.log(torch.softmax(s, -1)).gather(-1, t.unsqueeze(-1)).mean(),
            "inf for confident logits (120 on one token): log(softmax(x)) takes the log of a "
            "probability that underflowed to 0 in float32; compute the log-probabilities directly "
            "(log_softmax)"),
]  # fmt: skip


def _ce_value(out: Any) -> tuple[torch.Tensor | None, str]:
    """A float64 tensor (inf and nan kept: they are diagnosed) from a number, a tensor, an array."""
    value = _number(out)
    if value is not None:
        return torch.tensor(value, dtype=torch.float64), ""
    t, bad = as_tensor(out, None, "one number (a 0-d tensor or a float)")
    return (None, bad) if bad else (t, "")


def _same_ce(got: torch.Tensor, want: Any) -> bool:
    want = torch.as_tensor(want).double()
    if got.shape != want.shape:
        return False
    got = got.double()
    finite = torch.isfinite(got) & torch.isfinite(want)
    close = finite & ((got - want).abs() <= 1e-4 * want.abs().clamp(min=1.0))
    both_inf = torch.isinf(got) & torch.isinf(want) & (got == want)
    return bool((both_inf | close).all())


def _ce_differ(case: Case, got: torch.Tensor, want: Any) -> str:
    at = f"for {case.show()}"
    if got.dim() != 0:
        return (
            f"{at}: expected one number (the mean loss), got a tensor of shape {tuple(got.shape)}"
        )
    if not bool(torch.isfinite(got)):
        return (
            f"{at}: got {float(got)}: log(softmax(x)) takes the log of a probability that "
            "underflowed to 0; compute the log-probabilities directly"
        )
    return f"{at}: expected {float(want):.4f}, got {float(got):.4f}"


def check_cross_entropy(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None) -> bool:
    """``fn(logits, targets)``: logits ``(B, N, V)``, targets ``(B, N)`` -> the mean of
    ``-log softmax(logits)[target]`` over all ``B x N`` positions, in nats; judged on every case of
    ``_CE_CASES``.

    Recognised (only when the answer matches it on every case): the minus sign missing, a sum
    instead of a mean, bits, softmax over the positions, no softmax, ``-p`` instead of ``-log p``,
    one loss per position, and ``log(softmax(...))``, which gives ``inf`` when a probability
    underflows to 0 (the last case)."""
    return check_function(
        None if fn is None else (lambda s, t: fn(s.clone(), t.clone())) if callable(fn) else fn,
        HINTS["cross-entropy"], _CE_CASES, _ce_right, _CE_MISTAKES,
        normalise=_ce_value, same=_same_ce, signature="fn(logits, targets)", differ=_ce_differ,
    )  # fmt: skip


def check_uniform_loss(answer: Any, vocab_size: int = 4096) -> bool:
    """The loss (nats per token) of a model that gives all ``vocab_size`` tokens equal probability.

    Recognised: bits (log2), log10, the probability 1/V itself, the perplexity V, a missing minus."""
    name = "loss of a uniform guess"
    hints = HINTS[name]
    if unanswered(answer, name, hints):
        return False
    got = _number(answer)
    if got is None:
        return failed(name, f"the answer must be a number, got {type(answer).__name__}", hints)
    want = math.log(vocab_size)
    wrong = {
        math.log2(vocab_size): "that is in bits (log base 2); the loss uses the natural log (nats)",
        math.log10(vocab_size): "that is log base 10; the loss uses the natural log (nats)",
        1 / vocab_size: "that is the probability of the true token, not the loss -log p",
        float(vocab_size): "that is the perplexity, not the loss",
        -want: "the minus sign is missing: a loss -log p is never negative",
    }
    if _close(got, want):
        return passed(name)
    for value, why in wrong.items():
        if _close(got, value, 1e-6):
            return failed(name, why, hints)
    return failed(name, f"got {got:.4f}", hints)


_PERPLEXITY_CASES = [
    Case((loss,), f"loss {loss:.3f}", "a loss of 0 (a model always sure and right) is a valid "
         "loss, and your function fails there: a perplexity is defined for every loss >= 0" if
         loss == 0 else "")
    for loss in (4.3, math.log(4096), 1.0, 0.0)
]  # fmt: skip
_PERPLEXITY_MISTAKES = [
    Mistake(lambda x: 2.0**x, "that is 2 ** loss: the loss is in nats, so the base is e"),
    Mistake(lambda x: 10.0**x, "that is 10 ** loss: the loss is in nats, so the base is e"),
    Mistake(lambda x: math.exp(-x), "that is e ** -loss, the model's average probability of the "
            "true token; the perplexity is its inverse (how many equally likely choices)"),
    Mistake(lambda x: 1 / x, "1 / loss is not a perplexity: undo the log instead"),
    Mistake(math.log, "the perplexity undoes the log: it is not the log of the loss"),
]  # fmt: skip


def check_perplexity(fn: Callable[[float], float] | None) -> bool:
    """``fn(loss)``: the perplexity of a model whose loss is ``loss`` nats per token (any numeric
    type, within 1e-6 relative).

    Recognised: ``2 ** loss`` (bits), ``10 ** loss``, ``e ** -loss`` (the mean probability),
    ``1 / loss``, ``log(loss)``; each named only when it matches on every loss tried."""
    return check_function(
        fn, HINTS["perplexity"], _PERPLEXITY_CASES, math.exp, _PERPLEXITY_MISTAKES,
        normalise=lambda out: as_number(out, "a number"),
        same=lambda a, b: _close(a, b, 1e-6), signature="fn(loss)", show=lambda v: f"{v:.4g}",
    )  # fmt: skip


_NATS_CASES = [Case(c, "nats_per_token={}, tokens={}, characters={}".format(*c)) for c in (
    (4.0, 100, 300), (2.5, 30, 45), (4.2, 34098, 96839)
)]  # fmt: skip
_NATS_MISTAKES = [
    Mistake(lambda a, t, c: a * c / t, "tokens and characters are swapped: more characters per "
            "token must give a smaller loss per character"),
    Mistake(lambda a, t, c: a / c, "the number of tokens is missing: nats_per_token / characters "
            "is not a total"),
    Mistake(lambda a, t, c: a * t / c / math.log(2), "that is bits per character; the exercise "
            "asks for nats"),
    Mistake(lambda a, t, c: a, "that is still the loss per token"),
    Mistake(lambda a, t, c: a * t, "that is the total loss of the text: share it out over the "
            "characters"),
]  # fmt: skip


def check_nats_per_char(fn: Callable[[float, int, int], float] | None) -> bool:
    """``fn(nats_per_token, tokens, characters)``: the same total loss spread over the characters.

    Recognised: tokens and characters swapped, the token count forgotten, bits instead of nats,
    the per-token loss unchanged, the total not divided."""
    return check_function(
        fn, HINTS["nats per character"], _NATS_CASES, lambda a, t, c: a * t / c, _NATS_MISTAKES,
        normalise=lambda out: as_number(out, "a number"), same=lambda a, b: _close(a, b, 1e-9),
        signature="fn(nats_per_token, tokens, characters)", show=lambda v: f"{v:.4g}",
    )  # fmt: skip


_TARGET_DATA = torch.tensor([5, 9, 2, 7, 7, 1, 3, 8, 4, 6])
_TARGET_CASES = [
    Case((_TARGET_DATA, start, n), f"start={start}, n={n}") for start, n in ((3, 5), (1, 4), (5, 4))
]


def _targets_right(d: torch.Tensor, s: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return d[s : s + n], d[s + 1 : s + n + 1]


_TARGET_MISTAKES = [
    Mistake(lambda d, s, n: (d[s + 1 : s + n + 1], d[s : s + n]), "x and y are swapped: the "
            "targets are the later tokens"),
    Mistake(lambda d, s, n: (d[s : s + n], d[s : s + n]), "y equals x: the model would learn to "
            "copy, not to predict"),
    Mistake(lambda d, s, n: (d[s : s + n], d[s - 1 : s + n - 1]), "y is one token behind x: the "
            "target is the token that comes next"),
    Mistake(lambda d, s, n: (d[s : s + n], d[s + 1 : s + n]), "y must hold n tokens like x, got "
            "one fewer (y was cut from x: its last target is outside x, take it from data)"),
]  # fmt: skip


def _target_pair(out: Any) -> tuple[tuple | None, str]:
    """``(x, y)`` as float64 tensors, both 1-D, or a message."""
    if not (isinstance(out, tuple | list) and len(out) == 2):
        return None, "return a pair (x, y)"
    (x, bad_x), (y, bad_y) = (as_tensor(t, what="a 1-D window of ids") for t in out)
    if bad_x or bad_y:
        return None, bad_x or bad_y
    if x.dim() != 1 or y.dim() != 1:
        return None, f"x and y are 1-D windows, got shapes {tuple(x.shape)} and {tuple(y.shape)}"
    return (x, y), ""


def _same_pair(got: tuple, want: tuple) -> bool:
    return all(
        g.shape == w.shape and torch.equal(g.double(), w.double())
        for g, w in zip(got, want, strict=True)
    )


def _targets_differ(case: Case, got: tuple, want: tuple) -> str:
    (x, y), (want_x, _) = got, want
    _, start, n = case.args
    if len(x) != n or len(y) != n:
        return f"for {case.show()}: x and y must both hold n={n} tokens, got {len(x)} and {len(y)}"
    if not torch.equal(x, want_x.double()):
        return f"for {case.show()}: x should be the {n} tokens of data from position start"
    return f"for {case.show()}: y is not x moved one token on"


def check_targets(fn: Callable[[torch.Tensor, int, int], tuple] | None) -> bool:
    """``fn(data, start, n)``: the input window ``x`` and its targets ``y`` (both ``(n,)``) that start
    at ``start`` in the 1-D token stream ``data``: ``y[i]`` is the token that follows ``x[i]``;
    judged on every case of ``_TARGET_CASES``.

    Recognised (only when matched on every case): ``y == x`` (copying), ``y`` one token behind
    instead of ahead, ``x`` and ``y`` swapped, ``y`` cut from ``x`` (one token short); windows of
    the wrong length are said as they are."""
    return check_function(
        None if fn is None else (lambda d, s, n: fn(d.clone(), s, n)) if callable(fn) else fn,
        HINTS["inputs and next-token targets"], _TARGET_CASES, _targets_right, _TARGET_MISTAKES,
        normalise=_target_pair, same=_same_pair, signature="fn(data, start, n)",
        differ=_targets_differ, show=lambda v: "a pair",
    )  # fmt: skip


def check_short_context_loss(answer: Any, actual: float) -> bool:
    """*Predict, then run*: the shipped model's held-out loss when it sees windows of 16 tokens
    instead of 256. Passes within 5% of ``actual`` (what the notebook computes)."""
    return check_prediction(
        answer,
        actual,
        "loss with 16 tokens of context",
        rel_tol=0.05,
        explain=(
            "the loss rises only a little: most of what a small model has learned is local (the "
            "rest of the word, the next short word, punctuation, line breaks), and 16 tokens "
            "(about 50 characters) hold it; what is lost is who speaks, the scene, the longer "
            "rhythm of the verse"
        ),
    )
