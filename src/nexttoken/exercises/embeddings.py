"""Exercises of notebook 02 (tokens to vectors).

Each checker recognises the common wrong answers of its exercise and names the misconception; its
hints are staged (:class:`nexttoken.exercises.Hints`) and never print the answer.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..configs import get_config
from . import Hints, as_number, as_tensor, check_prediction, failed, passed, unanswered

__all__ = [
    "HINTS",
    "check_one_hot",
    "check_input_vectors",
    "check_embedding_bytes",
    "check_table_share_prediction",
]

HINTS = {
    "one_hot": Hints(
        "one-hot matrix",
        "one row per token, one column per vocabulary entry",
        "row i is all zeros except a single 1, in the column given by the i-th id",
        "start from a matrix of zeros of the right shape and set one entry per row; torch.nn."
        "functional has a function named after this encoding, too",
        solution="one-hot",
    ),
    "inputs": Hints(
        "input vectors (B, N, d)",
        "block 0 reads two learned vectors per token, added: what the token is, and where it is",
        "the token table is indexed by the ids; the position table by the positions 0, 1, ..., N-1",
        "both tables live in model.transformer (wte and wpe); the position vectors are the same "
        "for every row of the batch, so broadcasting adds them",
        solution="input vectors",
    ),
    "bytes": Hints(
        "embedding table bytes",
        "count the numbers in the table first, then the bytes each number takes",
        "the token table has one row per vocabulary entry and one column per model dimension",
        "read both sizes from the config (do not type them); one number takes 4 bytes in fp32, 2 "
        "in fp16, 1 in int8",
        solution="embedding bytes",
    ),
}


def check_one_hot(answer: Any, ids: list[int], vocab_size: int) -> bool:
    """The one-hot matrix of ``ids``: shape ``(N, V)``, row ``i`` is 1 at column ``ids[i]``."""
    name, hints = "one-hot matrix", HINTS["one_hot"]
    if unanswered(answer, name, hints):
        return False
    got, bad = as_tensor(answer, what="a tensor")
    if bad:
        return failed(name, bad, hints)
    n = len(ids)
    t = torch.tensor(ids)
    expected = torch.nn.functional.one_hot(t, vocab_size).to(torch.float64)
    if got.shape == expected.shape and torch.equal(got, expected):
        return passed(name)
    if got.shape == (vocab_size, n) and n != vocab_size:
        return failed(name, f"shape {tuple(got.shape)} is transposed: one row per token", hints)
    if got.dim() == 1 and got.numel() == n:
        return failed(
            name, "those are the ids themselves: each id must become a row of V numbers", hints
        )
    if got.dim() == 1 and got.numel() == vocab_size:
        return failed(
            name,
            "one vector for the whole sentence (a bag of words) loses the order: one row per token",
            hints,
        )
    if got.shape != expected.shape:
        return failed(name, f"shape must be ({n}, {vocab_size}), got {tuple(got.shape)}", hints)
    if ((got != 0).sum(-1) == 1).all() and torch.equal(got != 0, expected != 0):
        return failed(name, "the ones are in the right place but they must be 1", hints)
    shifted = (t + 1) < vocab_size
    if shifted.all() and torch.equal(
        got, torch.nn.functional.one_hot(t + 1, vocab_size).to(torch.float64)
    ):
        return failed(name, "off by one: columns are numbered from 0, like the ids", hints)
    if torch.equal(got, expected[t.argsort()]) or torch.equal(
        got, torch.nn.functional.one_hot(t.sort().values, vocab_size).to(torch.float64)
    ):
        return failed(
            name, "the rows are sorted: row i belongs to the i-th token of the text", hints
        )
    return failed(name, "row i must be all zeros except a single 1 at column ids[i]", hints)


def check_input_vectors(answer: Any, model, ids: torch.Tensor) -> bool:
    """What block 0 reads for ``ids`` ``(B, N)``: token embeddings + position embeddings ``(B, N, d)``."""
    name, hints = "input vectors (B, N, d)", HINTS["inputs"]
    if unanswered(answer, name, hints):
        return False
    got, bad = as_tensor(answer, what="a tensor")
    if bad:
        return failed(name, bad, hints)
    B, N = ids.shape
    with torch.no_grad():
        tok = model.transformer.wte(ids).double()
        wpe = model.transformer.wpe.weight.double()
        pos = wpe[:N]
        expected = tok + pos
        if got.shape == expected.shape and torch.allclose(got, expected, atol=1e-6):
            return passed(name)
        if got.shape == expected.shape[1:] and torch.allclose(got, expected[0], atol=1e-6):
            return failed(
                name, "right numbers, but the batch dimension B is lost: keep (B, N, d)", hints
            )
        if got.shape == (B, N, 2 * tok.size(-1)):
            return failed(name, "concatenated: the two vectors are added, the width stays d", hints)
        if got.shape != expected.shape:
            return failed(
                name, f"shape must be {tuple(expected.shape)}, got {tuple(got.shape)}", hints
            )
        variants = [
            (tok, "these are the token vectors only: the positions are missing"),
            (pos.expand_as(tok), "these are the position vectors only: add the token vectors"),
            (
                tok * pos,
                "multiplied: the token and position vectors are added",
            ),
            (tok + pos.flip(0), "positions in reverse: the first token gets position 0"),
        ]
        if N + 1 <= wpe.size(0):
            variants.append((tok + wpe[1 : N + 1], "positions off by one: they start at 0"))
        for wrong, why in variants:
            if torch.allclose(got, wrong, atol=1e-6):
                return failed(name, why, hints)
    return failed(name, "values differ from token + position embeddings", hints)


def check_embedding_bytes(answer: Any, config: str = "gpt3-175b", dtype: str = "fp16") -> bool:
    """Bytes of ``config``'s token-embedding table ``(V, d)`` stored in ``dtype`` (fp32/fp16/int8)."""
    sizes = {"fp32": 4, "fp16": 2, "int8": 1}
    if dtype not in sizes:
        raise ValueError(f"dtype must be one of {sorted(sizes)}, got {dtype!r}")
    name, hints = f"bytes of the {config} token table in {dtype}", HINTS["bytes"]
    if unanswered(answer, name, hints):
        return False
    value, bad = as_number(answer, "a number of bytes")
    if bad:
        return failed(name, bad, hints)
    cfg = get_config(config)
    params = cfg.vocab_size * cfg.n_embd
    expected = params * sizes[dtype]
    for unit, size in (("GiB (2^30 bytes)", 2**30), ("GB (10^9 bytes)", 10**9), ("MB", 10**6)):
        if math.isclose(value, expected / size, rel_tol=5e-3):
            return failed(
                name, f"that is in {unit}; the question asks for the exact number of bytes", hints
            )
    if isinstance(value, float) and not value.is_integer():
        return failed(name, f"a number of bytes is a whole number, got {value:g}", hints)
    answer = int(value)
    if answer == expected:
        return passed(name)
    if answer == params:
        return failed(name, "that is the number of parameters, not of bytes", hints)
    if answer == expected * 8:
        return failed(name, "that is in bits: a byte is 8 bits", hints)

    wrong = {params * b: d for d, b in sizes.items() if d != dtype}
    if answer in wrong:
        return failed(name, f"that is the size in {wrong[answer]}, not in {dtype}", hints)
    if answer == 50_000 * cfg.n_embd * sizes[dtype]:
        return failed(name, "the vocabulary is not 50,000: read vocab_size from the config", hints)
    if answer == (cfg.vocab_size + cfg.block_size) * cfg.n_embd * sizes[dtype]:
        return failed(name, "that adds the position table: only the token table is asked", hints)
    if abs(answer - expected) <= 0.05 * expected:
        return failed(
            name, f"{answer:,} is close but rounded: give the exact number of bytes", hints
        )
    return failed(name, f"{answer:,} is not the size of the table", hints)


def check_table_share_prediction(answer: object, config: str = "gpt2") -> bool:
    """Predict, then run: what percentage of ``config``'s parameters is its token table?"""
    from ..sizes import parameter_breakdown

    cfg = get_config(config)
    total = sum(parameter_breakdown(config).values())
    actual = round(100 * cfg.vocab_size * cfg.n_embd / total, 1)
    return check_prediction(
        answer,
        actual,
        f"share of {config}'s parameters in its token table (%)",
        abs_tol=3.0,
        explain=f"the table has vocab_size x d = {cfg.vocab_size:,} x {cfg.n_embd} numbers, while "
        f"each of the {cfg.n_layer} blocks has about 12 d^2; at a small d the table is a big share "
        f"(GPT-3 175B: 0.35 %, notebook 02 section 4)",
    )
