"""Exercises of notebook 02 (tokens to vectors)."""

from __future__ import annotations

from typing import Any

import torch

from ..configs import get_config
from . import report, unanswered

__all__ = ["check_one_hot", "check_input_vectors", "check_embedding_bytes"]


def check_one_hot(answer: Any, ids: list[int], vocab_size: int) -> bool:
    """The one-hot matrix of ``ids``: shape ``(N, V)``, row ``i`` is 1 at column ``ids[i]``."""
    name = "one-hot matrix"
    hint = "torch.zeros(N, V), then put a 1 at (i, ids[i]); or F.one_hot(torch.tensor(ids), V)"
    if unanswered(answer, name, hint):
        return False
    if not isinstance(answer, torch.Tensor):
        return report(False, name, hint, f"answer must be a tensor, got {type(answer).__name__}")
    n = len(ids)
    if tuple(answer.shape) == (vocab_size, n) and n != vocab_size:
        return report(
            False, name, hint, f"shape {tuple(answer.shape)} is transposed: one row per token"
        )
    if tuple(answer.shape) != (n, vocab_size):
        return report(
            False, name, hint, f"shape must be ({n}, {vocab_size}), got {tuple(answer.shape)}"
        )
    expected = torch.nn.functional.one_hot(torch.tensor(ids), vocab_size)
    ok = torch.equal(answer.to(torch.float64), expected.to(torch.float64))
    return report(ok, name, hint, "row i must be all zeros except a single 1 at column ids[i]")


def check_input_vectors(answer: Any, model, ids: torch.Tensor) -> bool:
    """What block 0 reads for ``ids`` ``(B, N)``: token embeddings + position embeddings ``(B, N, d)``."""
    name = "input vectors (B, N, d)"
    hint = "model.transformer.wte(ids) + model.transformer.wpe.weight[:N]: positions 0..N-1"
    if unanswered(answer, name, hint):
        return False
    if not isinstance(answer, torch.Tensor):
        return report(False, name, hint, f"answer must be a tensor, got {type(answer).__name__}")
    B, N = ids.shape
    with torch.no_grad():
        tok = model.transformer.wte(ids)
        expected = tok + model.transformer.wpe.weight[:N]
    if tuple(answer.shape) != tuple(expected.shape):
        return report(
            False, name, hint, f"shape must be {tuple(expected.shape)}, got {tuple(answer.shape)}"
        )
    if torch.allclose(answer, tok):
        return report(False, name, hint, "these are the token embeddings only: add the positions")
    ok = torch.allclose(answer, expected, atol=1e-6)
    return report(ok, name, hint, "values differ from token + position embeddings")


def check_embedding_bytes(answer: Any, config: str = "gpt3-175b", dtype: str = "fp16") -> bool:
    """Bytes of ``config``'s token-embedding table ``(V, d)`` stored in ``dtype`` (fp32/fp16/int8)."""
    name = f"bytes of the {config} token table in {dtype}"
    sizes = {"fp32": 4, "fp16": 2, "int8": 1}
    hint = f"vocab_size x n_embd x bytes per number ({sizes[dtype]} for {dtype})"
    if unanswered(answer, name, hint):
        return False
    if isinstance(answer, bool) or not isinstance(answer, int):
        return report(False, name, hint, f"answer must be an int, got {type(answer).__name__}")
    cfg = get_config(config)
    params = cfg.vocab_size * cfg.n_embd
    if answer == params:
        return report(False, name, hint, "that is the number of parameters, not of bytes")
    wrong = {params * b: d for d, b in sizes.items() if d != dtype}
    if answer in wrong:
        return report(False, name, hint, f"that is the size in {wrong[answer]}")
    return report(answer == params * sizes[dtype], name, hint, f"{answer:,} is not right")
