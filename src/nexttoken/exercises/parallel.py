"""Checkers for notebook 12 (beyond one machine): the cut, the bytes, the bubble, a prediction."""

from __future__ import annotations

from collections.abc import Callable

from . import Hints, check_prediction, failed, passed, unanswered
from . import call_answer as _call

__all__ = [
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
)

BYTES_HINTS = Hints(
    "tensor-parallel bytes",
    "Count the all-reduces in one block first, then what each one carries.",
    "Each all-reduce adds up the partial outputs of a row-parallel projection: a (B, N, d) tensor, "
    "whatever the degree T.",
    "Two per block (after attention, after the MLP), n_layer blocks, B x N x d numbers each, "
    "bytes_per_number bytes a number.",
)

BUBBLE_HINTS = Hints(
    "pipeline bubble",
    "Draw the GPipe timeline for p = 2 stages and m = 2 micro-batches: how many time slots does "
    "the whole pass take, and how many of them is each stage busy?",
    "With equal stages the pass takes m + p - 1 slots: the last stage starts p - 1 slots late, "
    "the first finishes p - 1 slots early. Each stage works m of them.",
    "The idle share of one stage is (slots idle) / (slots in all).",
)

_CUTS = {"columns", "rows"}


def check_mlp_cut(answer: dict[str, str] | None) -> bool:
    """``{"W_fc": "columns" | "rows", "W_proj": "columns" | "rows"}`` in the ``x @ W`` convention.

    Recognised: row-then-column (GELU of a partial sum); column-column (an all-gather inside the
    MLP); row-row; the keys or values misspelt.
    """
    name, hints = CUT_HINTS.name, CUT_HINTS
    if unanswered(answer, name, hints):
        return False
    if not isinstance(answer, dict) or set(answer) != {"W_fc", "W_proj"}:
        return failed(name, 'the answer is a dict with the keys "W_fc" and "W_proj"', hints)
    fc, proj = (str(answer[k]).strip().lower() for k in ("W_fc", "W_proj"))
    if not {fc, proj} <= _CUTS:
        return failed(name, 'each value is "columns" or "rows"', hints)
    if (fc, proj) == ("columns", "rows"):
        return passed(name)
    wrong = {
        ("rows", "columns"): "cutting W_fc by rows gives each device a partial SUM of the hidden "
        "layer; GELU(a + b) is not GELU(a) + GELU(b), so the sum would have to be all-reduced "
        "before GELU: a third all-reduce, of a tensor 4 times wider",
        ("columns", "columns"): "W_proj cut by columns needs the WHOLE hidden layer on every "
        "device, but each holds only its columns: an all-gather of (B, N, 4d) inside the MLP",
        ("rows", "rows"): "cutting W_fc by rows makes GELU act on partial sums (wrong without an "
        "all-reduce before it)",
    }
    return failed(name, wrong[(fc, proj)], hints)


def check_tp_bytes(fn: Callable[[int, int, int, int, int], int] | None) -> bool:
    """``fn(n_layer, B, N, d, bytes_per_number)``: bytes all-reduced in one tensor-parallel pass.

    Recognised: one all-reduce per block; the MLP's hidden width 4d; multiplied by T (there is no
    T in it); numbers, not bytes; the layers forgotten; the ring's wire bytes.
    """
    name, hints = BYTES_HINTS.name, BYTES_HINTS
    if unanswered(fn, name, hints):
        return False
    if not callable(fn):
        return failed(name, "the answer must be a function fn(n_layer, B, N, d, bytes_per_number)")
    for L, B, N, d, nb in ((5, 2, 16, 256, 4), (96, 1, 1, 12288, 2), (12, 3, 5, 768, 4)):
        out, err = _call(fn, L, B, N, d, nb)
        if err:
            return failed(name, err, hints)
        want = 2 * L * B * N * d * nb
        if out == want and not isinstance(out, bool):
            continue
        wrong = {
            want // 2: "one all-reduce per block is half of it: attention's output projection "
            "AND the MLP's second matrix each end in one",
            4 * want: "4d is the MLP's hidden width, which stays split; what is all-reduced is "
            "the block's output, d wide",
            8 * want: "4d is the MLP's hidden width, which stays split; and there are two "
            "all-reduces, of d-wide outputs",
            2 * L * B * N * d: "that counts numbers; multiply by the bytes per number",
            2 * B * N * d * nb: "every block does its two all-reduces: multiply by n_layer",
        }
        if isinstance(out, (int, float)) and out in wrong:
            return failed(name, f"n_layer={L}, B={B}, N={N}, d={d}: {wrong[out]}", hints)
        return failed(name, f"n_layer={L}, B={B}, N={N}, d={d}, {nb} bytes: got {out!r}", hints)
    return passed(name)


def check_bubble(fn: Callable[[int, int], float] | None) -> bool:
    """``fn(p, m)``: GPipe's idle fraction ``(p - 1) / (m + p - 1)``.

    Recognised: (p - 1) / m; (p - 1) / p; 1 / m; the busy share instead of the idle one.
    """
    name, hints = BUBBLE_HINTS.name, BUBBLE_HINTS
    if unanswered(fn, name, hints):
        return False
    if not callable(fn):
        return failed(name, "the answer must be a function fn(p, m)", hints)
    for p, m in ((4, 8), (2, 2), (3, 1), (1, 5)):  # (4, 8) first: every wrong formula differs
        out, err = _call(fn, p, m)
        if err:
            return failed(name, err, hints)
        want = (p - 1) / (m + p - 1)
        try:
            if abs(float(out) - want) < 1e-9:
                continue
        except (TypeError, ValueError):
            return failed(name, f"p={p}, m={m}: expected a number, got {out!r}", hints)
        wrong = {
            (p - 1) / m: "(p - 1) / m compares the idle slots with the busy ones; the share is "
            "idle / all slots",
            (p - 1) / p: "that leaves out the micro-batches: more of them shrink the bubble",
            1 / m: "the bubble grows with the number of stages p",
            1 - want: "that is the busy share; the bubble is the idle one",
        }
        for value, why in wrong.items():
            if abs(float(out) - value) < 1e-9:
                return failed(name, f"p={p}, m={m}: {why}", hints)
        return failed(name, f"p={p}, m={m}: got {out!r}", hints)
    return passed(name)


def check_allreduce_count_prediction(answer: float | None, actual: int) -> bool:
    """Predict, then run: all-reduces per generated token for GPT-3 175B with TP = 8."""
    return check_prediction(
        answer,
        actual,
        "all-reduces per token",
        explain="two per block (attention, MLP) and 96 blocks; the count does not depend on T, "
        "nor on how many tokens are in the context: each step runs every block once",
    )
