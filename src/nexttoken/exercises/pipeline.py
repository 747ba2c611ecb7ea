"""Checkers for notebook 00 (the whole pipeline)."""

from __future__ import annotations

import torch

from ..configs import get_config
from ..model import GPT
from . import report, unanswered

__all__ = ["check_output_shape", "check_probabilities", "check_one_step"]


def check_output_shape(answer: object, n_tokens: int = 10) -> bool:
    """How many numbers GPT-3 175B's decoder outputs for ``n_tokens`` tokens (batch 1)."""
    name = "decoder output size"
    hint = "one contextual vector of d_model numbers per token: N x d_model"
    if unanswered(answer, name, hint):
        return False
    cfg = get_config("gpt3-175b")
    expected = n_tokens * cfg.n_embd
    if answer == n_tokens * cfg.vocab_size:
        return report(False, name, hint, "that is the size of the logits, not of the vectors")
    return report(answer == expected, name, hint, f"got {answer!r}")


def check_probabilities(fn: object) -> bool:
    """``fn(logits (B, V)) -> probabilities (B, V)``: each row non-negative and summing to 1."""
    name = "logits to probabilities"
    hint = "exponentiate (after subtracting the row's max) and divide by the row's sum, over dim=-1"
    if unanswered(fn, name, hint):
        return False
    if not callable(fn):
        return report(False, name, hint, "give a function")
    logits = torch.tensor([[2.0, 1.0, 0.5, -3.0], [800.0, 799.0, 0.0, 1.0]])
    try:
        p = fn(logits.clone())
    except Exception as err:  # the reader's code: report, don't crash
        return report(False, name, hint, f"it raised {type(err).__name__}: {err}")
    if not isinstance(p, torch.Tensor) or p.shape != logits.shape:
        return report(False, name, hint, "return a tensor of the same shape as the logits")
    if not torch.isfinite(p).all():
        return report(False, name, hint, "some values are inf/nan: large logits overflow exp()")
    ok = torch.allclose(p, torch.softmax(logits, dim=-1), atol=1e-6)
    detail = "rows must sum to 1 (softmax over the vocabulary, the last dimension)"
    return report(ok, name, hint, "" if ok else detail)


def check_one_step(fn: object, model: GPT | None = None) -> bool:
    """``fn(model, ids (1, N)) -> ids (1, N + 1)``: one greedy step of the loop."""
    name = "one step of the loop"
    hint = "logits of the LAST position, argmax, then torch.cat the new id onto ids (dim=1)"
    if unanswered(fn, name, hint):
        return False
    if not callable(fn):
        return report(False, name, hint, "give a function")
    if model is None:
        from ..model import GPTConfig

        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16))
    model.eval()
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    with torch.no_grad():
        expected = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
        try:
            got = fn(model, ids.clone())
        except Exception as err:
            return report(False, name, hint, f"it raised {type(err).__name__}: {err}")
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        return report(False, name, hint, f"expected shape {tuple(expected.shape)}, got {shape}")
    ok = torch.equal(got, expected)
    return report(ok, name, hint, "" if ok else "the appended token is not the greedy choice")
