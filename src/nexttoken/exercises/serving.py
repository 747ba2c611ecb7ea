"""Exercises of notebook 10 (many requests at once).

Each checker recognises the usual wrong answers and names the misconception behind them; its hints
are staged (:class:`nexttoken.exercises.Hints`) and never print the answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..batching import padded_batch
from ..configs import get_config
from ..loop import kv_cache_bytes_per_token
from . import Hints, check_prediction, failed, passed, unanswered
from . import call_answer as _call

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
    "Row b has pad_b = L_max - L_b padding columns on its left; its first real token sits in "
    "column pad_b.",
    "So the position of column j is j - pad_b for the real tokens; give padding columns 0 (they "
    "are masked anyway, but a position must be a valid index into the position table).",
)
BLOCKS_HINTS = Hints(
    "blocks needed",
    "A block holds block_tokens positions; a sequence needs enough whole blocks for all of its "
    "tokens.",
    "That is a division rounded UP: 17 tokens in blocks of 16 need 2 blocks, 16 tokens need 1.",
    "Integer division rounds down; -(-a // b) or (a + b - 1) // b rounds up (0 tokens need 0).",
)
OUTWEIGHS_HINTS = Hints(
    "cache outweighs the model",
    "Compare two numbers of bytes: the weights (parameters x 2 bytes in fp16) and the KV cache of "
    "a batch of full-context sequences.",
    "One token's cache is 2 x n_layer x n_embd numbers (a key and a value per layer); a full "
    "sequence holds block_size tokens; a batch of B holds B of them.",
    "The answer is the smallest whole B for which B x (one sequence's cache) is larger than the "
    "weights: divide, then round up.",
)
HINTS = {h.name: h for h in (POSITIONS_HINTS, BLOCKS_HINTS, OUTWEIGHS_HINTS)}


def _as_lists(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.tolist()
    if isinstance(out, (list, tuple)):
        return [list(r.tolist() if isinstance(r, torch.Tensor) else r) for r in out]
    return out


def check_positions(fn: Callable[[list[int]], Any] | None) -> bool:
    """``fn(lengths)``: the ``(B, L_max)`` position ids of left-padded prompts of ``lengths``.

    Recognised: column indices (no shift: the padding counted as tokens); right padding; padding
    columns given negative positions; a row per column (transposed).
    """
    name, hints = POSITIONS_HINTS.name, POSITIONS_HINTS
    if unanswered(fn, name, hints):
        return False
    if not callable(fn):
        return failed(name, "the answer must be a function fn(lengths)", hints)
    for lengths in ([3, 1, 5], [4, 4], [2, 6, 1, 3]):
        out, err = _call(fn, list(lengths))
        if err:
            return failed(name, err, hints)
        out = _as_lists(out)
        want = padded_batch([[0] * n for n in lengths]).positions.tolist()
        if out == want:
            continue
        L = max(lengths)
        wrong = {
            "the positions are the column indices: the padding is counted as if it were text, "
            "so a short prompt's first token gets position pad_b instead of 0": [
                list(range(L)) for _ in lengths
            ],
            "that is right padding (positions 0, 1, ... from the left, then 0s); the batch is "
            "padded on the LEFT so that every row's last token is in the same column": [
                list(range(n)) + [0] * (L - n) for n in lengths
            ],
            "the padding columns got negative positions (j - pad_b); a position must index the "
            "position table: give padding 0": [[j - (L - n) for j in range(L)] for n in lengths],
        }
        for why, bad in wrong.items():
            if out == bad:
                return failed(name, why, hints)
        if isinstance(out, list) and len(out) == L and len(lengths) != L:
            return failed(name, f"expected {len(lengths)} rows (one per prompt), got {L}", hints)
        return failed(name, f"lengths {lengths}: expected {want}, got {out!r}", hints)
    return passed(name)


def check_blocks_needed(fn: Callable[[int, int], int] | None) -> bool:
    """``fn(n_tokens, block_tokens)``: blocks a sequence of ``n_tokens`` needs.

    Recognised: rounded down; always one more (wrong when it divides exactly, or for 0 tokens);
    the tokens themselves; a float.
    """
    name, hints = BLOCKS_HINTS.name, BLOCKS_HINTS
    if unanswered(fn, name, hints):
        return False
    if not callable(fn):
        return failed(name, "the answer must be a function fn(n_tokens, block_tokens)", hints)
    for n, bt in ((17, 16), (16, 16), (1, 16), (0, 16), (100, 7), (5, 1)):
        out, err = _call(fn, n, bt)
        if err:
            return failed(name, err, hints)
        want = -(-n // bt)
        if isinstance(out, float) and out == want:
            return failed(name, f"got the float {out}: a number of blocks is an int", hints)
        if out == want and isinstance(out, int) and not isinstance(out, bool):
            continue
        if out == n // bt:
            why = f"{n} tokens / {bt}: rounded down, so the last partial block is missing"
        elif out == n // bt + 1:
            why = f"{n} tokens / {bt}: one block too many when the tokens fill whole blocks"
        elif out == n:
            why = "that is the number of tokens; count blocks of block_tokens tokens"
        elif isinstance(out, float) and math.isclose(out, n / bt):
            why = f"{n} / {bt} = {out}: a fraction of a block cannot be allocated: round up"
        else:
            why = f"{n} tokens in blocks of {bt}: got {out!r}"
        return failed(name, why, hints)
    return passed(name)


def gpt3_175b_parameters() -> int:
    """GPT-3 175B's parameters in the GPT-2 architecture (174,604,259,328), counted exactly."""
    from ..sizes import meta_model

    return meta_model("gpt3-175b").num_parameters()


def check_cache_outweighs(answer: int | None) -> bool:
    """The smallest batch of full-context (2048-token) sequences whose fp16 KV cache is larger than
    GPT-3 175B's fp16 weights.

    Recognised: rounded down; keys only (twice the batch); fp32 cache with fp16 weights; the cache
    for one token per sequence.
    """
    name, hints = OUTWEIGHS_HINTS.name, OUTWEIGHS_HINTS
    if unanswered(answer, name, hints):
        return False
    cfg = get_config("gpt3-175b")
    weights = 2 * gpt3_175b_parameters()
    per_seq = cfg.block_size * kv_cache_bytes_per_token(cfg, "fp16")
    want = weights // per_seq + 1
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return failed(name, f"the answer is a batch size (a number), got {answer!r}", hints)
    if answer == want:
        return passed(name)
    wrong = {
        weights // per_seq: "rounded down: at that batch the cache is still a little smaller than "
        "the weights",
        weights // (per_seq // 2) + 1: "that counts keys only: each layer caches a key AND a "
        "value per token",
        weights // (2 * per_seq) + 1: "that is an fp32 cache (4 bytes a number) against fp16 "
        "weights: both are fp16 here",
        weights // (per_seq // cfg.block_size) + 1: "that is one token per sequence; a full "
        "context holds 2048 tokens per sequence",
    }
    if answer in wrong:
        return failed(name, wrong[answer], hints)
    return failed(name, f"got {answer!r}", hints)


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
