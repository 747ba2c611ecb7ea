"""Exercises of notebook 10 (many requests at once).

Each checker recognises the usual wrong answers and names the misconception behind them; its hints
are staged (:class:`nexttoken.exercises.Hints`) and never print the answer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from ..batching import padded_batch
from ..configs import get_config
from ..loop import kv_cache_bytes_per_token
from . import (
    Case,
    Hints,
    Mistake,
    as_count,
    as_number,
    as_tensor,
    check_function,
    check_prediction,
    failed,
    fmt,
    passed,
    unanswered,
)

__all__ = [
    "HINTS",
    "check_positions",
    "check_blocks_needed",
    "check_cache_outweighs",
    "check_static_steps_prediction",
    "gpt3_175b_parameters",
]

POSITIONS_HINTS = Hints(
    "left-padded positions",
    "A prompt run alone gives its first token position 0. In the batch it must get the same.",
    "Row b has some padding columns on its LEFT (how many, from its length and the longest "
    "length?); its first real token sits just after them.",
    "Work one row by hand: lengths [1, 3] make a (2, 3) batch; which column holds row 0's only "
    "token, and which position must it get? Padding columns are masked, but their position must "
    "still be a valid index into the position table.",
    solution="positions",
)
BLOCKS_HINTS = Hints(
    "blocks needed",
    "A block holds block_tokens positions; a sequence needs enough whole blocks for all of its "
    "tokens.",
    "That is a division rounded UP: 17 tokens in blocks of 16 need 2 blocks, 16 tokens need 1.",
    "Integer division // rounds down; find a way to round up that stays exact for integers (and "
    "gives 0 blocks for 0 tokens).",
    solution="blocks",
)
OUTWEIGHS_HINTS = Hints(
    "cache outweighs the model",
    "Compare two numbers of bytes: the weights (parameters x 2 bytes in fp16) and the KV cache of "
    "a batch of full-context sequences.",
    "One token's cache is 2 x n_layer x n_embd numbers (a key and a value per layer); a full "
    "sequence holds block_size tokens; a batch of B holds B of them.",
    "The answer is the smallest whole B whose cache is strictly LARGER than the weights: check "
    "your B, and B - 1, against that.",
    solution="outweighs",
)
HINTS = {h.name: h for h in (POSITIONS_HINTS, BLOCKS_HINTS, OUTWEIGHS_HINTS)}

# Lengths chosen so that every recognised wrong layout differs from the right one and from the
# others on at least one case ([4, 4] has no padding: there "column indices", "right padding" and
# the right answer coincide; the other two cases tell them apart).
_POSITION_CASES = [
    Case((lengths,), f"lengths {lengths}") for lengths in ([3, 1, 5], [4, 4], [2, 6, 1, 3])
]


def _right_positions(lengths: list[int]) -> Any:
    return padded_batch([[0] * n for n in lengths]).positions.to(torch.float64)


def _layout(rows: list[list[int]]) -> Any:
    return torch.tensor(rows, dtype=torch.float64)


_POSITION_MISTAKES = [
    Mistake(
        lambda ls: _layout([list(range(max(ls))) for _ in ls]),
        "the positions are the column indices: the padding is counted as if it were text, so a "
        "short prompt's first token gets a position above 0",
    ),
    Mistake(
        lambda ls: _layout([list(range(n)) + [0] * (max(ls) - n) for n in ls]),
        "that is right padding (positions 0, 1, ... from the left, then 0s); the batch is padded "
        "on the LEFT so that every row's last token is in the same column",
    ),
    Mistake(
        lambda ls: _layout([[j - (max(ls) - n) for j in range(max(ls))] for n in ls]),
        "the padding columns got negative positions; a position must index the position table: "
        "give padding 0",
    ),
    Mistake(
        lambda ls: _right_positions(ls).T,
        "the matrix is transposed: one row per PROMPT (B rows), one column per batch column",
    ),
    Mistake(
        lambda ls: _layout(
            [[j - (max(ls) - n) + 1 if j >= max(ls) - n else 0 for j in range(max(ls))] for n in ls]
        ),
        "the positions start at 1; a prompt's first token has position 0",
    ),
]


def _same_layout(got: Any, want: Any) -> bool:
    return tuple(got.shape) == tuple(want.shape) and torch.equal(got, want)


def _positions_differ(case: Case, got: Any, want: Any) -> str:
    (lengths,) = case.args
    if tuple(got.shape) != tuple(want.shape):
        return (
            f"for {case.show()}: expected shape {tuple(want.shape)} (one row per prompt, "
            f"max(lengths) columns), got {tuple(got.shape)}"
        )
    bad = next(b for b in range(len(lengths)) if not torch.equal(got[b], want[b]))
    row = [fmt(int(v)) if float(v).is_integer() else fmt(float(v)) for v in got[bad]]
    return (
        f"for {case.show()}: row {bad} (a prompt of {lengths[bad]} tokens) is wrong: you give "
        f"[{', '.join(row)}]"
    )


def check_positions(fn: Callable[[list[int]], Any] | None) -> bool:
    """``fn(lengths)``: the ``(B, L_max)`` position ids of left-padded prompts of ``lengths`` (a
    tensor of any numeric dtype, a numpy array or a list of lists).

    Recognised: column indices (no shift: the padding counted as tokens); right padding; padding
    columns given negative positions; the matrix transposed; positions from 1. A wrong row is
    shown as the reader wrote it; the expected matrix is never printed.
    """
    return check_function(
        fn,
        POSITIONS_HINTS,
        _POSITION_CASES,
        _right_positions,
        _POSITION_MISTAKES,
        normalise=lambda out: as_tensor(out, what="a (B, L_max) matrix of positions"),
        same=_same_layout,
        differ=_positions_differ,
        signature="fn(lengths)",
    )


def _blocks_right(n: int, bt: int) -> int:
    return -(-n // bt)


_BLOCK_CASES = [Case((n, bt), f"n_tokens={n}, block_tokens={bt}") for n, bt in (
    (17, 16), (16, 16), (1, 16), (0, 16), (100, 7), (5, 1), (40, 16), (30, 16)
)]  # fmt: skip
_BLOCK_MISTAKES = [
    Mistake(lambda n, bt: n // bt, "rounded down: the last, partly filled block is missing"),
    Mistake(
        lambda n, bt: n // bt + 1,
        "one block too many when the tokens fill whole blocks (16 tokens in blocks of 16 need 1; "
        "0 tokens need 0)",
    ),
    Mistake(lambda n, bt: n, "that is the number of tokens; count blocks of block_tokens tokens"),
    Mistake(
        lambda n, bt: n / bt,
        "that is a fraction of a block, which cannot be allocated: round the division up",
    ),
    Mistake(
        lambda n, bt: round(n / bt),
        "round() goes to the NEAREST whole number (17 / 16 -> 1): a partly filled block still "
        "needs a whole block: round UP",
    ),
]


def check_blocks_needed(fn: Callable[[int, int], int] | None) -> bool:
    """``fn(n_tokens, block_tokens)``: blocks a sequence of ``n_tokens`` needs (any whole-number
    type: ``int``, ``np.int64``, ``torch.tensor(2)``, ``2.0``).

    Recognised: rounded down; always one more; the tokens themselves; the plain fraction; round()
    to the nearest.
    """
    return check_function(
        fn,
        BLOCKS_HINTS,
        _BLOCK_CASES,
        _blocks_right,
        _BLOCK_MISTAKES,
        normalise=lambda out: as_number(out, "a number of blocks"),
        same=lambda a, b: a == b,
        signature="fn(n_tokens, block_tokens)",
    )


@functools.cache
def gpt3_175b_parameters() -> int:
    """GPT-3 175B's parameters in the GPT-2 architecture (174,604,259,328), counted exactly."""
    from ..sizes import meta_model

    return meta_model("gpt3-175b").num_parameters()


def check_cache_outweighs(answer: int | None) -> bool:
    """The smallest batch of full-context (2048-token) sequences whose fp16 KV cache is larger than
    GPT-3 175B's fp16 weights.

    Any whole-number type is accepted (``np.int64(37)``, ``37.0``). Recognised: rounded down;
    keys only (twice the batch; fp32 weights give the same number); an fp32 cache; one token per sequence; one layer.
    """
    name, hints = OUTWEIGHS_HINTS.name, OUTWEIGHS_HINTS
    if unanswered(answer, name, hints):
        return False
    value, err = as_count(answer, "a batch size (a whole number)")
    if err:
        return failed(name, err, hints)
    want, wrong = _outweighs_values()
    if value == want:
        return passed(name)
    if value in wrong:
        return failed(name, wrong[value], hints)
    return failed(name, f"got {fmt(value)}", hints)


@functools.cache
def _outweighs_values() -> tuple[int, dict[int, str]]:
    """The answer, and the answers of the recognised mistakes (all different)."""
    cfg = get_config("gpt3-175b")
    weights = 2 * gpt3_175b_parameters()
    per_seq = cfg.block_size * kv_cache_bytes_per_token(cfg, "fp16")
    want = weights // per_seq + 1
    wrong = {
        weights // per_seq: "rounded down: at that batch the cache is still a little smaller than "
        "the weights",
        weights // (per_seq // 2) + 1: "that counts keys only: each layer caches a key AND a "
        "value per token",
        weights // (2 * per_seq) + 1: "that is an fp32 cache (4 bytes a number) against fp16 "
        "weights: both are fp16 here",
        weights // (per_seq // cfg.block_size) + 1: "that is one token per sequence; a full "
        "context holds 2048 tokens per sequence",
        weights // (per_seq // cfg.n_layer) + 1: "that is one layer's cache; every one of the 96 "
        "layers keeps its own keys and values",
    }
    assert want not in wrong and len(wrong) == 5, "two recognised mistakes give the same batch"
    return want, wrong


def check_static_steps_prediction(answer: float | None, actual: int) -> bool:
    """Predict-then-run: steps static batching takes for the notebook's small workload."""
    return check_prediction(
        answer,
        actual,
        "prediction: static batching steps",
        abs_tol=0,
        explain="a static batch runs until its LONGEST request ends (each step makes one token "
        "for every request still running, the prompt's step included), and only then does the "
        "next batch start: add up the longest output of each batch",
    )
