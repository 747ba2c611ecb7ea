"""Checkers for notebook 00 (the whole pipeline).

Each checker recognises the common wrong answers of its exercise and names the misconception; its
hints are staged (:class:`nexttoken.exercises.Hints`) and never print the answer.
"""

from __future__ import annotations

from typing import Any

import torch

from ..configs import get_config
from ..model import GPT, GPTConfig
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
    "check_output_shape",
    "check_probabilities",
    "check_one_step",
    "check_earlier_logits_prediction",
]

HINTS = {
    "output": Hints(
        "decoder output size",
        "the decoder's output comes before the projection to the vocabulary: what is one token's "
        "output made of?",
        "count the vectors (how many tokens?) and the numbers in each one (the model's width)",
        "the model's width is a field of the configuration; how many vectors does a prompt of "
        "that length give?",
        solution="output",
    ),
    "probs": Hints(
        "logits to probabilities",
        "each row of logits must become a distribution: non-negative, summing to 1",
        "softmax: exponentiate, then divide by the sum of the row; adding the same constant to every "
        "logit of a row does not change the result, and that is how to keep exp() finite",
        "test your function on logits near 800: if exp() overflows, choose the constant of hint 2 "
        "per row (a reduction with keepdim=True broadcasts); normalise over the last dimension",
        solution="probs",
    ),
    "step": Hints(
        "one step of the loop",
        "the model returns logits for every position: which position predicts the token that "
        "comes next?",
        "take the logits of the last position, choose the most likely id, and put it after the "
        "prompt: the result is one token longer",
        "mind the shapes: the ids are (1, N) and the result must be (1, N + 1), so the new id "
        "must keep two dimensions before it is joined along the token dimension",
        solution="step",
    ),
}


def check_output_shape(answer: object, n_tokens: int = 10) -> bool:
    """How many numbers GPT-3 175B's decoder outputs for ``n_tokens`` tokens (batch 1)."""
    name, hints = "decoder output size", HINTS["output"]
    if unanswered(answer, name, hints):
        return False
    answer, bad = as_count(answer, "a count (a whole number)")
    if bad:
        return failed(name, bad, hints)
    cfg = get_config("gpt3-175b")
    N, d, V = n_tokens, cfg.n_embd, cfg.vocab_size
    if answer == N * d:
        return passed(name)
    wrong = {
        N * V: "that is the size of the logits (one score per vocabulary entry per token): the "
        "decoder's output comes before the projection to the vocabulary",
        V: "that is the logits of one position, and the logits come after the decoder",
        d: "that is one contextual vector: the decoder outputs one per token",
        N * d * cfg.n_layer: "that counts every block's output: the decoder hands on only the "
        "last block's vectors",
        N * d * (cfg.n_layer + 1): "that counts every hidden state: the decoder hands on only the "
        "last one",
        N * 4 * d: "4 x d_model is the MLP's hidden width inside a block, not the block's output",
        N * 3 * d: "3 x d_model is q, k and v together, computed inside attention",
        N * cfg.d_head: "d_head is one head's width: every token's output has all d_model numbers",
    }
    return failed(name, wrong.get(answer, f"{answer:,} is not the number of output numbers"), hints)


# small logits (B != V, so a wrong dimension shows), then large ones (an unshifted exp overflows)
_PROB_CASES = [
    Case(
        (torch.tensor([[2.0, 1.0, 0.5, -3.0], [0.3, -1.0, 2.0, 0.1], [1.0, 1.0, 1.0, 1.0]]),),
        "small logits",
    ),
    Case(
        (
            torch.tensor(
                [[800.0, 799.0, 0.0, 1.0], [2.0, 1.0, 0.5, -3.0], [-800.0, -801.0, 0.0, 0.0]]
            ),
        ),
        "logits near +-800",
    ),
]
_PROB_MISTAKES = [
    Mistake(lambda s: torch.softmax(s, 0), "softmax over the wrong dimension (dim=0, the batch): "
            "each column sums to 1, but each row (one position) must sum to 1 over the vocabulary, "
            "the last dimension"),
    Mistake(lambda s: s.exp(), "exp() alone is not a distribution: the rows do not sum to 1"),
    Mistake(lambda s: s / s.sum(-1, keepdim=True), "dividing logits by their sum without exp(): "
            "logits can be negative, so these 'probabilities' can be negative or above 1"),
    Mistake(lambda s: s.exp() / s.exp().sum(), "normalised over the whole tensor: each row must "
            "sum to 1 on its own"),
    Mistake(lambda s: torch.log_softmax(s, -1), "those are log-probabilities (log_softmax), not "
            "probabilities"),
    Mistake(torch.sigmoid, "sigmoid squashes each logit on its own: the rows do not sum to 1"),
    Mistake(lambda s: s.exp() / s.exp().sum(-1, keepdim=True), "overflow: exp(800) is inf in "
            "float32 and inf / inf is nan; the max shift is missing"),
]  # fmt: skip


def _same_probs(got: torch.Tensor, want: torch.Tensor) -> bool:
    got, want = got.double(), want.double()
    return got.shape == want.shape and torch.allclose(got, want, atol=1e-6, equal_nan=True)


def _probs_differ(case: Case, got: torch.Tensor, want: torch.Tensor) -> str:
    at = f"for {case.show()}"
    if got.shape != want.shape:
        return f"{at}: expected a tensor of shape {tuple(want.shape)}, got shape {tuple(got.shape)}"
    if not bool(torch.isfinite(got).all()):
        return f"{at}: some values are nan or inf (exp(800) is inf in float32, inf / inf is nan)"
    return f"{at}: values differ from the softmax of each row"


def check_probabilities(fn: object) -> bool:
    """``fn(logits (B, V)) -> probabilities (B, V)``: each row non-negative and summing to 1;
    judged on every case of ``_PROB_CASES``, a mistake named only when matched on all of them."""
    name, hints = "logits to probabilities", HINTS["probs"]
    if fn is not None and fn is not Ellipsis and not callable(fn):
        return failed(name, "give a function fn(logits) -> probabilities", hints)
    return check_function(
        None if fn is None else (lambda s: fn(s.clone())) if callable(fn) else fn,
        hints, _PROB_CASES, lambda s: torch.softmax(s, -1), _PROB_MISTAKES,
        normalise=lambda out: as_tensor(out, None, "a tensor of the logits' shape"),
        same=_same_probs, signature="fn(logits) -> probabilities", name=name,
        differ=_probs_differ,
    )  # fmt: skip


def _tiny_model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16))


def _discriminating_prompt(model: GPT, seed: int = 0) -> tuple[torch.Tensor, int, int, int]:
    """A prompt ``(1, 8)`` on which the greedy next token, the argmax of the first position and
    the argmax with the last token alone all differ (so each mistake shows), and those three ids."""
    g = torch.Generator().manual_seed(seed)
    V = model.config.vocab_size
    with torch.no_grad():
        for _ in range(50):
            ids = torch.randint(0, min(V, 1000), (1, 8), generator=g)
            logits = model(ids)[0]
            new, first = int(logits[-1].argmax()), int(logits[0].argmax())
            no_context = int(model(ids[:, -1:])[0, -1].argmax())
            if len({new, first, no_context}) == 3:
                break
    return ids, new, first, no_context


def _next_of(model: GPT, ids: torch.Tensor, position: int = -1) -> torch.Tensor:
    with torch.no_grad():
        return model(ids)[:, position].argmax(-1, keepdim=True)


def _step_right(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    return torch.cat([ids, _next_of(model, ids)], dim=1)


_STEP_MISTAKES = [
    Mistake(lambda m, ids: _next_of(m, ids), "forgot to append: that is only the new token, the "
            "loop needs the prompt followed by it"),
    Mistake(lambda m, ids: ids, "forgot to append: the ids come back unchanged"),
    Mistake(lambda m, ids: torch.cat([_next_of(m, ids), ids], dim=1), "the new token was put "
            "first: it goes at the end"),
    Mistake(lambda m, ids: torch.cat([ids, _next_of(m, ids, 0)], dim=1), "predicted from the "
            "first position: the next token comes from the last position's logits"),
    Mistake(lambda m, ids: torch.cat([ids, _next_of(m, ids[:, -1:])], dim=1), "fed only the last "
            "token: without a KV cache the model must see the whole sequence, or it predicts with "
            "no context"),
]  # fmt: skip


def _same_ids(got: torch.Tensor, want: torch.Tensor) -> bool:
    return got.shape == want.shape and torch.equal(got.double(), want.double())


def _step_differ(case: Case, got: torch.Tensor, want: torch.Tensor) -> str:
    at = f"for {case.show()}"
    ids = case.args[1]
    if got.numel() == 1:
        return f"{at}: forgot to append: that is only one token, the loop needs the prompt followed by it"
    if got.shape != want.shape:
        return f"{at}: expected shape {tuple(want.shape)}, got {tuple(got.shape)}"
    if not torch.equal(got[:, :-1], ids.double()):
        return f"{at}: the prompt itself was changed: only append"
    return f"{at}: the appended token is not the most likely one (greedy)"


def check_one_step(fn: object, model: GPT | None = None) -> bool:
    """``fn(model, ids (1, N)) -> ids (1, N + 1)``: one greedy step of the loop, judged on two
    prompts on each of which the greedy token, the first position's argmax and the last token's
    argmax alone all differ; a mistake is named only when matched on both."""
    name, hints = "one step of the loop", HINTS["step"]
    if fn is not None and fn is not Ellipsis and not callable(fn):
        return failed(name, "give a function fn(model, ids) -> ids", hints)
    if not callable(fn):
        return check_function(fn, hints, [], _step_right, name=name)  # the TODO line
    model = _tiny_model() if model is None else model
    model.eval()
    cases = [
        Case((model, _discriminating_prompt(model, seed)[0]), f"prompt {i} (8 tokens)")
        for i, seed in enumerate((0, 1), start=1)
    ]

    def answer(m: GPT, ids: torch.Tensor) -> Any:
        with torch.no_grad():
            return fn(m, ids.clone())

    return check_function(
        answer, hints, cases, _step_right, _STEP_MISTAKES,
        normalise=lambda out: as_tensor(out, None, "a tensor of ids"), same=_same_ids,
        signature="fn(model, ids) -> ids", name=name, differ=_step_differ,
    )  # fmt: skip


def check_earlier_logits_prediction(answer: object, model: GPT, ids: torch.Tensor) -> bool:
    """Predict, then run: append one greedy token to ``ids`` ``(1, N)``; by how much do the logits
    of the ``N`` earlier positions change (the largest absolute difference)?"""
    with torch.no_grad():
        before = model(ids)
        longer = torch.cat([ids, before[:, -1].argmax(-1, keepdim=True)], dim=1)
        after = model(longer)[:, : ids.size(1)]
    actual = round(float((after - before).abs().max()), 4)  # rounding noise (~1e-6) is not a change
    return check_prediction(
        answer,
        actual,
        "largest change of the earlier logits",
        abs_tol=1e-3,
        explain="a causal decoder lets position i read positions 0..i only, so a token appended at "
        "the end cannot change anything computed for the earlier positions (the last digits may "
        "move by rounding, around 1e-6): this is why a KV cache is exact",
    )
