"""Checkers for notebook 12 (beyond one machine): the cut, the bytes, the bubble, a prediction."""

from __future__ import annotations

import math
from collections.abc import Callable

from . import (
    Case,
    Hints,
    Mistake,
    as_count,
    as_number,
    check_function,
    check_prediction,
    failed,
    passed,
    unanswered,
)

__all__ = [
    "HINTS",
    "check_mlp_cut",
    "check_tp_bytes",
    "check_bubble",
    "check_allreduce_count_prediction",
    "CUT_HINTS",
    "BYTES_HINTS",
    "BUBBLE_HINTS",
]

CUT_HINTS = Hints(
    "MLP cut",
    "Write the MLP as h = GELU(x @ W_fc), y = h @ W_proj. Which cut lets each device apply GELU to "
    "its own numbers, with nothing from the others?",
    "GELU is applied number by number. If each device holds some COLUMNS of h, it can apply GELU "
    "to them alone; if it held a partial SUM of h, GELU of a sum is not the sum of GELUs.",
    "A device that holds some columns of h multiplies them by the matching rows of the next "
    "matrix: its result is one term of a sum over devices, added up by one all-reduce.",
    solution="mlp cut",
)

BYTES_HINTS = Hints(
    "tensor-parallel bytes",
    "Count the all-reduces in one block first, then what each one carries.",
    "Each all-reduce adds up the partial outputs of a row-parallel projection: a (B, N, d) tensor, "
    "whatever the degree T.",
    "Check your formula on one block of one sequence by hand: which of n_layer, B, N, d and "
    "bytes_per_number does the total grow with, and how many all-reduces does a block end?",
    solution="tp bytes",
)

BUBBLE_HINTS = Hints(
    "pipeline bubble",
    "Draw the GPipe timeline for p = 2 stages and m = 2 micro-batches: how many time slots does "
    "the whole pass take, and how many of them is each stage busy?",
    "With equal stages the pass takes m + p - 1 slots: the last stage starts p - 1 slots late, "
    "the first finishes p - 1 slots early. Each stage works m of them.",
    "The idle share of one stage is (slots idle) / (slots in all), a fraction between 0 and 1.",
    solution="bubble",
)

HINTS = {h.name: h for h in (CUT_HINTS, BYTES_HINTS, BUBBLE_HINTS)}

_CUTS = {"columns": "columns", "column": "columns", "cols": "columns", "col": "columns",
         "rows": "rows", "row": "rows"}  # fmt: skip


def _cut(value: object) -> str | None:
    return _CUTS.get(value.strip().lower()) if isinstance(value, str) else None


def check_mlp_cut(answer: dict[str, str] | None) -> bool:
    """``{"W_fc": "columns" | "rows", "W_proj": "columns" | "rows"}`` in the ``x @ W`` convention
    (``"column"``, ``"Rows"`` and the like are read the same).

    Recognised: row-then-column (GELU of a partial sum, or the right cut in nn.Linear's (out, in)
    layout); column-column (an all-gather inside the MLP); row-row; the keys or values misspelt.
    """
    name, hints = CUT_HINTS.name, CUT_HINTS
    if unanswered(answer, name, hints):
        return False
    if not isinstance(answer, dict) or set(answer) != {"W_fc", "W_proj"}:
        got = sorted(map(str, answer)) if isinstance(answer, dict) else type(answer).__name__
        return failed(
            name, f'the answer is a dict with the keys "W_fc" and "W_proj", got {got}', hints
        )
    fc, proj = (_cut(answer[k]) for k in ("W_fc", "W_proj"))
    if fc is None or proj is None:
        return failed(name, 'each value is "columns" or "rows"', hints)
    if (fc, proj) == ("columns", "rows"):
        return passed(name)
    wrong = {
        ("rows", "columns"): "in the x @ W convention (W_fc is (d, 4d)), cutting W_fc by rows "
        "gives each device a partial SUM of the hidden layer, and GELU(a + b) is not GELU(a) + "
        "GELU(b). (In nn.Linear's (out, in) layout the same cut is written the other way round: "
        "here a weight is (in, out), as in y = x W)",
        ("columns", "columns"): "W_proj cut by columns needs the WHOLE hidden layer on every "
        "device, but each holds only its columns: an all-gather of (B, N, 4d) inside the MLP",
        ("rows", "rows"): "cutting W_fc by rows makes GELU act on partial sums (wrong without an "
        "all-reduce before it)",
    }
    return failed(name, wrong[(fc, proj)], hints)


def _tp_right(L: int, B: int, N: int, d: int, nb: int) -> int:
    return 2 * L * B * N * d * nb


# Each recognised mistake differs from the right count by its own factor; the cases are chosen so
# that no two factors agree on all of them (on the first case alone, "one all-reduce per block"
# and "B forgotten" both halve it).
_TP_CASES = [Case(c, "n_layer={}, B={}, N={}, d={}, bytes_per_number={}".format(*c)) for c in (
    (5, 2, 16, 256, 4), (96, 1, 1, 12288, 2), (12, 3, 5, 768, 4), (2, 4, 7, 64, 1)
)]  # fmt: skip
_TP_MISTAKES = [
    Mistake(lambda L, B, N, d, nb: L * B * N * d * nb, "one all-reduce per block is half of it: "
            "attention's output projection AND the MLP's second matrix each end in one"),
    Mistake(lambda L, B, N, d, nb: 2 * L * N * d * nb, "the batch B is missing: every sequence of "
            "the batch sends its own (N, d) output"),
    Mistake(lambda L, B, N, d, nb: 2 * L * B * d * nb, "the N positions are missing: each "
            "position's d-wide output is all-reduced"),
    Mistake(lambda L, B, N, d, nb: 4 * _tp_right(L, B, N, d, nb), "4d is the MLP's hidden width, "
            "which stays split across devices; what is all-reduced is the block's output, d wide"),
    Mistake(lambda L, B, N, d, nb: 8 * _tp_right(L, B, N, d, nb), "that is bits (8 per byte); "
            "the question asks for bytes"),
    Mistake(lambda L, B, N, d, nb: 2 * L * B * N * d, "that counts numbers; multiply by the bytes "
            "per number"),
    Mistake(lambda L, B, N, d, nb: 2 * B * N * d * nb, "every block does its two all-reduces: "
            "multiply by n_layer"),
    Mistake(lambda L, B, N, d, nb: 2 * _tp_right(L, B, N, d, nb), "twice the tensor is what a "
            "ring all-reduce puts on each device's wire (2 (T - 1) / T of it, sent and received); "
            "the question asks for the bytes of the tensors all-reduced"),
]  # fmt: skip


def check_tp_bytes(fn: Callable[[int, int, int, int, int], int] | None) -> bool:
    """``fn(n_layer, B, N, d, bytes_per_number)``: bytes all-reduced in one tensor-parallel pass
    (any whole-number type).

    Recognised: one all-reduce per block; B or N forgotten; the MLP's hidden width 4d; bits;
    numbers, not bytes; the layers forgotten; the ring's wire bytes (which is also what counting
    forward and backward gives: the line names the ring).
    """
    return check_function(
        fn, BYTES_HINTS, _TP_CASES, _tp_right, _TP_MISTAKES,
        normalise=lambda out: as_count(out, "a number of bytes (a whole number)"),
        same=lambda a, b: a == b, signature="fn(n_layer, B, N, d, bytes_per_number)",
    )  # fmt: skip


def _bubble_right(p: int, m: int) -> float:
    return (p - 1) / (m + p - 1)


_BUBBLE_CASES = [Case((p, m), f"p={p}, m={m}") for p, m in ((4, 8), (2, 2), (3, 1), (1, 5), (8, 3))]
_BUBBLE_MISTAKES = [
    Mistake(lambda p, m: (p - 1) / m, "(p - 1) / m compares the idle slots with the busy ones; the "
            "share is idle / all slots"),
    Mistake(lambda p, m: (p - 1) / p, "that leaves out the micro-batches: more of them shrink the "
            "bubble"),
    Mistake(lambda p, m: 1 / m, "the bubble grows with the number of stages p"),
    Mistake(lambda p, m: 1 - _bubble_right(p, m), "that is the busy share; the bubble is the idle "
            "one"),
    Mistake(lambda p, m: 100 * _bubble_right(p, m), "that is a percentage; the answer is a "
            "fraction between 0 and 1"),
    Mistake(lambda p, m: (p - 1) / (m + p), "an off-by-one in the slots: the pass takes m + p - 1 "
            "of them, not m + p"),
    Mistake(lambda p, m: (m - 1) / (m + p - 1), "p and m are swapped: the idle slots come from "
            "the stages"),
]  # fmt: skip


def check_bubble(fn: Callable[[int, int], float] | None) -> bool:
    """``fn(p, m)``: GPipe's idle fraction, within 1e-4 (rounding to 4 digits is fine).

    Recognised: (p - 1) / m; (p - 1) / p; 1 / m; the busy share; a percentage; one slot too many;
    p and m swapped.
    """
    return check_function(
        fn, BUBBLE_HINTS, _BUBBLE_CASES, _bubble_right, _BUBBLE_MISTAKES,
        normalise=lambda out: as_number(out, "a fraction (a number)"),
        same=lambda a, b: math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-4), signature="fn(p, m)",
    )  # fmt: skip


def check_allreduce_count_prediction(answer: float | None, actual: int) -> bool:
    """Predict, then run: all-reduces per generated token for GPT-3 175B with TP = 8."""
    return check_prediction(
        answer,
        actual,
        "all-reduces per token",
        known={
            2 * actual: "that counts the forward AND the backward pass (training); generating a "
            "token runs the forward pass only",
            actual // 2: "that is one all-reduce per block; attention and the MLP each end in one",
            actual * 8: "the count does not grow with T: each all-reduce involves all T devices "
            "at once",
        },
        explain="two per block (attention, MLP) and 96 blocks; the count does not depend on T, "
        "nor on how many tokens are in the context: each step runs every block once (and "
        "generation runs the forward pass only, no backward)",
    )
