"""Exercises of notebook 03 (self-attention).

Each checker recognises the common wrong answers of its exercise and names the misconception; its
hints are staged (:class:`nexttoken.exercises.Hints`) and never print the answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

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
    "HINTS",
    "check_causal_mask",
    "check_attention_weights",
    "check_visible_words",
    "check_scale",
    "check_masked_weight_prediction",
]

HINTS = {
    "mask": Hints(
        "causal mask",
        "row i is query i, column j is key j: which keys may query i look at?",
        "query i may look at itself and at every earlier key, never at a later one: which triangle "
        "of the matrix is that, and is the diagonal in it?",
        "build an (n, n) boolean matrix of True and keep one triangle of it; torch has methods "
        "named after the lower and the upper triangle",
        solution="mask",
    ),
    "weights": Hints(
        "causal attention weights",
        "three steps: scores, mask, softmax; check each one's shape and orientation",
        "scores[i, j] = q_i . k_j, divided by the square root of the head's width; the future "
        "(j > i) must get a weight of exactly 0 after the softmax",
        "a masked score must be -inf (e^-inf = 0) before the softmax, and each row (one query) is "
        "normalised over the keys, the last dimension",
        solution="weights",
    ),
    "visible": Hints(
        "visible words",
        "in a decoder that writes left to right, what exists when a word is being read?",
        "a token attends to itself and to every token before it",
        "nothing that comes after the word is visible, whatever its meaning",
        solution="visible",
    ),
    "scale": Hints(
        "score scale",
        "the scale keeps the spread of the scores from growing with the head's width",
        "a dot product of d random numbers with mean 0 and variance 1 has variance d: what is its "
        "standard deviation?",
        "the scores are divided by the standard deviation of q . k, which depends on d_head only",
        solution="scale",
    ),
}


def _tril(n: int) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool).tril()


def check_causal_mask(answer: Any, n: int = 5) -> bool:
    """A boolean ``(n, n)`` mask, True where query ``i`` may look at key ``j`` (``j <= i``)."""
    name, hints = "causal mask", HINTS["mask"]
    if unanswered(answer, name, hints):
        return False
    if not isinstance(answer, torch.Tensor):
        t, bad = as_tensor(answer, (n, n), f"an ({n}, {n}) tensor")
        if bad:
            return failed(name, bad, hints)
        answer = t
    if tuple(answer.shape) != (n, n):
        return failed(name, f"expected an ({n}, {n}) tensor, got {tuple(answer.shape)}", hints)
    if answer.is_floating_point() and torch.isinf(answer).any():
        return failed(
            name,
            "that is the additive form (0 where allowed, -inf where masked), added to the scores; "
            "the exercise asks for the boolean mask, True where a query may look",
            hints,
        )
    m = answer.bool()
    expected = _tril(n)
    if torch.equal(m, expected):
        return passed(name)
    if torch.equal(m, expected.T):
        return failed(
            name, "the mask is transposed: every token sees the future, not the past", hints
        )
    if torch.equal(m, ~expected):
        return failed(
            name,
            "True marks the hidden (future) keys here: in this mask True means 'may attend'",
            hints,
        )
    if m.all():
        return failed(name, "no mask: every token sees every other, the future included", hints)
    if torch.equal(m, expected.tril(-1)):
        return failed(name, "the diagonal is missing: a token also attends to itself", hints)
    if (m & ~expected).any():
        return failed(name, "some query can see a later token (the future)", hints)
    return failed(name, "some query cannot see an earlier token", hints)


def _weights(
    q, k, *, scale=None, mask="tril", fill=float("-inf"), dim=-1, after=False, scores=None
):
    """Reference weights and their common wrong variants."""
    n = q.size(0)
    s = q @ k.T if scores is None else scores
    s = s / (math.sqrt(q.size(-1)) if scale is None else scale)
    allowed = {
        "tril": _tril(n),
        "triu": _tril(n).T,
        "none": torch.ones(n, n, dtype=torch.bool),
        "strict": _tril(n).tril(-1),
    }[mask]
    if after:
        return torch.softmax(s, dim) * allowed
    return torch.softmax(s.masked_fill(~allowed, fill), dim)


def _attention_cases() -> list[Case]:
    """q, k of shape (6, 16) and (4, 9): two widths, so that sqrt(d_head), d_head and 1 / sqrt are
    told apart, and two lengths."""
    g = torch.Generator().manual_seed(3)
    cases = []
    for n, dh in ((6, 16), (4, 9)):
        q, k = torch.randn(n, dh, generator=g) * 2, torch.randn(n, dh, generator=g) * 2
        cases.append(Case((q, k), f"q, k of shape ({n}, {dh})"))
    return cases


_ATTENTION_CASES = _attention_cases()
_ATTENTION_MISTAKES = [
    Mistake(lambda q, k: _weights(q, k, mask="strict"), "the mask hides each token from ITSELF "
            "(the diagonal is masked): a token attends to itself and to the earlier ones; token 0, "
            "which sees nothing, gets nan"),
    Mistake(lambda q, k: _weights(q, k, mask="triu"), "the mask is transposed: each token sees "
            "the future"),
    Mistake(lambda q, k: _weights(q, k, mask="none"), "no mask: weights on future tokens are not "
            "zero"),
    Mistake(lambda q, k: _weights(q, k, fill=0.0), "the future was masked with 0 instead of -inf: "
            "e^0 = 1, so the future still gets weight"),
    Mistake(lambda q, k: _weights(q, k, after=True), "masked after the softmax: the rows no "
            "longer sum to 1 (mask the scores, then softmax)"),
    Mistake(lambda q, k: _weights(q, k, dim=0), "softmax over the wrong dimension (the queries): "
            "columns sum to 1, each row must"),
    Mistake(lambda q, k: _weights(q, k, scale=1.0), "the scale is missing: scores must be divided "
            "by sqrt(d_head)"),
    Mistake(lambda q, k: _weights(q, k, scale=float(q.size(-1))), "the scale is squared: divided "
            "by d_head, not by its square root"),
    Mistake(lambda q, k: _weights(q, k, scale=1 / math.sqrt(q.size(-1))), "multiplied by "
            "sqrt(d_head) instead of dividing by it"),
    Mistake(lambda q, k: _weights(q, k, scores=k @ q.T), "the scores are transposed (k @ q.T): "
            "row i must hold q_i . k_j for every key j"),
]  # fmt: skip


def _same_weights(got: torch.Tensor, want: torch.Tensor) -> bool:
    got, want = got.double(), want.double()
    return got.shape == want.shape and torch.allclose(got, want, atol=1e-5, equal_nan=True)


def _attention_differ(case: Case, got: torch.Tensor, want: torch.Tensor) -> str:
    at = f"for {case.show()}"
    n = want.size(0)
    if got.shape != want.shape:
        return (
            f"{at}: expected the weights of shape {tuple(want.shape)}, got shape {tuple(got.shape)}"
        )
    if not bool(torch.isfinite(got).all()):
        return f"{at}: some weights are nan or inf: a row whose scores are all -inf has no softmax"
    if torch.triu(got, diagonal=1).abs().max() > 1e-6:
        return f"{at}: weights on future tokens are not zero: apply the mask"
    if not torch.allclose(got.sum(-1), torch.ones(n, dtype=got.dtype), atol=1e-5):
        return f"{at}: rows do not sum to 1: softmax over the keys (the last dim)"
    return f"{at}: values differ from the reference"


def check_attention_weights(fn: Callable | None) -> bool:
    """``fn(q, k)`` for ``q, k`` ``(N, d_head)``: the causal attention weights ``(N, N)``, judged on
    every case of ``_ATTENTION_CASES``; a mistake is named only when matched on all of them."""
    return check_function(
        None if fn is None else (lambda q, k: fn(q.clone(), k.clone())) if callable(fn) else fn,
        HINTS["weights"], _ATTENTION_CASES, lambda q, k: _weights(q, k), _ATTENTION_MISTAKES,
        normalise=lambda out: as_tensor(out, None, "the weights: a tensor"), same=_same_weights,
        signature="fn(q, k) -> weights", name="causal attention weights",
        differ=_attention_differ,
    )  # fmt: skip


def check_visible_words(answer: Any, words: list[str], query: str) -> bool:
    """The set of words that ``query`` can attend to in ``words`` under a causal mask."""
    name, hints = f"what {query!r} can see", HINTS["visible"]
    if unanswered(answer, name, hints):
        return False
    if not isinstance(answer, (set, list, tuple, frozenset)):
        return failed(name, "answer must be a set of words", hints)
    i = words.index(query)
    before, after = set(words[:i]), set(words[i + 1 :])
    expected = before | {query}
    if not all(isinstance(w, str) for w in answer):
        return failed(name, "answer must be a set of words (strings)", hints)
    got = set(answer)
    if got == expected:
        return passed(name)
    if got in (after, after | {query}):
        return failed(
            name,
            "those are the later words: that is the mask transposed, the future visible",
            hints,
        )
    if got & after and not expected <= got:
        return failed(
            name,
            "the meaning-based reading (subject and object): a causal decoder cannot link a word "
            "to a later one, however related it is",
            hints,
        )
    if got == set(words):
        return failed(name, "that is every word: without a mask, as in an encoder (BERT)", hints)
    if got & after:
        return failed(name, "a later word is in your set: the mask hides the future", hints)
    if query not in got and got == before:
        return failed(name, "a token also attends to itself", hints)
    if got == {query}:
        return failed(name, "only itself: it also sees every earlier word", hints)
    return failed(
        name, "some earlier word is missing: it sees all of them, not only the previous", hints
    )


def check_scale(answer: Any, d_head: int = 128, d_model: int = 12288, n_head: int = 96) -> bool:
    """The number the scores are divided by in GPT-3 175B's attention (``sqrt(d_head)``)."""
    name, hints = f"score scale for d_head = {d_head}", HINTS["scale"]
    if unanswered(answer, name, hints):
        return False
    answer, bad = as_number(answer)
    if bad:
        return failed(name, bad, hints)
    if math.isclose(answer, math.sqrt(d_head), rel_tol=1e-3):
        return passed(name)
    wrong = [
        (d_head, "dividing by d_head (the square, not its root) shrinks the scores too much"),
        (1 / math.sqrt(d_head), "that is the factor the scores are multiplied by, not divided by"),
        (math.sqrt(d_model), "that is sqrt(d_model): the scale uses one head's width, d_head"),
        (d_model, "that is d_model: the scale is the square root of one head's width"),
        (math.sqrt(n_head), "that is the square root of the number of heads: use the head's width"),
        (8.0, "that is sqrt(64), GPT-2's d_head: GPT-3 175B's heads are wider"),
    ]
    for value, why in wrong:
        if math.isclose(answer, value, rel_tol=1e-3):
            return failed(name, why, hints)
    return failed(name, f"{answer} is not the scale for d_head = {d_head}", hints)


def check_masked_weight_prediction(
    answer: object, attentions, query: int, keys: list[int], layer: int
) -> bool:
    """Predict, then run: the largest weight, over all heads of ``layer``, that query position
    ``query`` puts on the key positions ``keys`` (``attentions`` from ``GPT.run``)."""
    w = attentions[layer][0][:, query, keys]  # (H, len(keys))
    actual = round(float(w.sum(-1).max()), 6)
    return check_prediction(
        answer,
        actual,
        f"weight of position {query} on positions {keys} in layer {layer}",
        abs_tol=1e-6,
        explain="these keys come after the query: the causal mask sets their scores to -inf before "
        "the softmax, so the weight is exactly 0 in every layer and head, whatever the training",
    )
