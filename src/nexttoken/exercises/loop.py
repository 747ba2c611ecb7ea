"""Exercises of notebook 07 (the autoregressive loop).

Each checker recognises the usual wrong answers and names the misconception behind them; its hints
are staged (:class:`nexttoken.exercises.Hints`) and never print the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..configs import get_config
from ..generate import generate
from ..model import GPT, GPTConfig
from . import (
    Case,
    Hints,
    Mistake,
    as_count,
    as_tensor,
    check_function,
    check_prediction,
)

__all__ = [
    "HINTS",
    "check_greedy_loop",
    "check_kv_bytes",
    "check_unchanged_prediction",
    "check_window",
]

LOOP_HINTS = Hints(
    "greedy loop",
    "One step of the loop: run the model on ALL the ids so far, choose the most likely next "
    "token, append it; repeat n times.",
    "The model returns logits of shape (B, N, V): one row per position. The prediction for the "
    "NEXT token is the last position's row; greedy takes its argmax.",
    "Without a cache the model must read the whole text at every step (feeding it only the last "
    "token makes it forget the context); return a list: the prompt followed by the n new ids.",
    solution="greedy loop",
)
KV_HINTS = Hints(
    "KV cache bytes per token",
    "For each token, every attention layer keeps what later tokens need from it.",
    "That is one key and one value per layer; each holds n_head x d_head = n_embd numbers. The "
    "query is used once and is not cached.",
    "Count numbers per token (how many layers, how many tensors per layer, how wide each is), "
    "then multiply by the bytes of one number.",
    solution="kv bytes",
)
WINDOW_HINTS = Hints(
    "sliding window",
    "The model has block_size learned positions: it can read at most block_size tokens.",
    "Past the limit it keeps the MOST RECENT tokens, the ones the next token depends on most; the "
    "oldest are forgotten.",
    "Python slices count from the end with negative indices; check your slice on a list of 5 "
    "ids with block_size 3, and on one of 2 ids (a short list is returned whole).",
    solution="window",
)
HINTS = {h.name: h for h in (LOOP_HINTS, KV_HINTS, WINDOW_HINTS)}


def _tiny_model() -> GPT:
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16, name="tiny")
    with torch.random.fork_rng(devices=[]):  # leave the reader's random state alone
        torch.manual_seed(7)
        return GPT(cfg).eval()


@torch.inference_mode()
def _wrong_loops(model: GPT, prompt: list[int], n: int) -> dict[str, list[int]]:
    """What the common wrong loops return, to recognise them."""

    def argmax(ids: list[int], pos: int = -1) -> int:
        return int(model(torch.tensor([ids]))[0, pos].argmax())

    last_only, first_pos = list(prompt), list(prompt)
    for _ in range(n):
        last_only.append(argmax(last_only[-1:]))
        first_pos.append(argmax(first_pos, 0))
    return {
        "the chosen token is never appended: each step must read the text INCLUDING the tokens "
        "chosen so far": list(prompt) + [argmax(prompt)] * n,
        "only the last token is fed to the model, without a cache: it forgets the context. "
        "Without a KV cache each step must read all the ids so far": last_only,
        "the prediction comes from the FIRST position's logits; the next token is predicted by "
        "the LAST position": first_pos,
    }


def _loop_cases(model: GPT) -> list[Case]:
    """Two prompts and lengths, on the book-shaped tiny model."""
    return [Case((model, p, n), f"prompt {p}, n={n}") for p, n in (([1, 2, 3], 6), ([4], 10))]


def _loop_right(model: GPT, prompt: list[int], n: int) -> list[int]:
    return generate(model, prompt, n, temperature=0, use_cache=False)[0].tolist()


def _wrong_loop(key: int) -> Callable[[GPT, list[int], int], list[int]]:
    def formula(model: GPT, prompt: list[int], n: int) -> list[int]:
        with torch.no_grad():
            return list(_wrong_loops(model, list(prompt), n).values())[key]

    return formula


_LOOP_MISTAKES = [
    Mistake(lambda m, p, n: _loop_right(m, p, n)[len(p) :], "only the new ids were returned; "
            "return the prompt followed by them"),
    Mistake(lambda m, p, n: list(p), "the prompt came back unchanged: nothing was generated"),
    *(Mistake(_wrong_loop(i), why) for i, why in enumerate((
        "the chosen token is never appended: each step must read the text INCLUDING the tokens "
        "chosen so far",
        "only the last token is fed to the model, without a cache: it forgets the context. "
        "Without a KV cache each step must read all the ids so far",
        "the prediction comes from the FIRST position's logits; the next token is predicted by "
        "the LAST position",
    ))),
]  # fmt: skip


def _ids_list(out: Any) -> tuple[list | None, str]:
    if isinstance(out, torch.Tensor):
        out = out.flatten().tolist()
    if not isinstance(out, list):
        return None, f"expected a list of ids, got {type(out).__name__}"
    return out, ""


def _loop_differ(case: Case, got: list, want: list) -> str:
    _, prompt, n = case.args
    if len(got) != len(want):
        return (
            f"for {case.show()}: expected {len(want)} ids (a prompt of {len(prompt)} + {n} new), "
            f"got {len(got)}"
        )
    return f"for {case.show()}: the tokens differ from greedy generation (argmax at each step)"


def check_greedy_loop(fn: Callable[[GPT, list[int], int], list[int]] | None) -> bool:
    """``fn(model, ids, n)``: greedy loop returning the prompt followed by ``n`` new ids, judged on
    every case of ``_loop_cases`` (a mistake named only when matched on all of them).

    Recognised: forgetting to append; feeding only the last token without a cache; the first
    position's logits; only the new ids returned; the prompt returned unchanged. A wrong length is
    said as it is.
    """
    if not callable(fn):
        return check_function(fn, LOOP_HINTS, [], _loop_right, signature="fn(model, ids, n)")

    def answer(model: GPT, prompt: list[int], n: int) -> Any:
        with torch.no_grad():
            return fn(model, list(prompt), n)

    return check_function(
        answer, LOOP_HINTS, _loop_cases(_tiny_model()), _loop_right, _LOOP_MISTAKES,
        normalise=_ids_list, same=lambda a, b: a == b, signature="fn(model, ids, n)",
        differ=_loop_differ,
    )  # fmt: skip


def _kv_right(cfg: GPTConfig, nb: int) -> int:
    return 2 * cfg.n_layer * cfg.n_embd * nb


# gpt2-medium first: its n_layer (24) differs from its n_head (16); the cases together make every
# recognised mistake give its own numbers (in gpt2, GPT-3 175B and the book model n_layer == n_head)
_KV_CASES = [Case((get_config(c), nb), f"{c}, {nb} bytes per number") for c, nb in (
    ("gpt2-medium", 4), ("gpt2", 4), ("gpt3-175b", 2), ("book", 4), ("gpt2-medium", 1)
)]  # fmt: skip
_KV_MISTAKES = [
    Mistake(lambda c, nb: c.n_layer * c.n_embd * nb, "half the answer: each layer caches a key "
            "AND a value per token"),
    Mistake(lambda c, nb: 3 * c.n_layer * c.n_embd * nb, "the query is not cached: a token's "
            "query is used once, at its own step; only keys and values are reused"),
    Mistake(lambda c, nb: 2 * c.n_layer * c.d_head * nb, "d_head is one head; the key (and the "
            "value) of a token spans all heads: n_head x d_head = n_embd numbers"),
    Mistake(lambda c, nb: 2 * c.n_layer * c.n_head * nb, "n_head counts heads, not numbers: each "
            "head holds d_head numbers, n_embd in all"),
    Mistake(lambda c, nb: 2 * c.n_layer * c.n_embd, "that counts numbers, not bytes: multiply by "
            "the bytes per number"),
    Mistake(lambda c, nb: 8 * _kv_right(c, nb), "that is bits (8 per byte); the question asks for "
            "bytes"),
    Mistake(lambda c, nb: 2 * c.n_embd * nb, "every layer has its own keys and values: multiply "
            "by n_layer"),
    Mistake(lambda c, nb: _kv_right(c, nb) * c.block_size, "that is the cache for a full "
            "context; the question asks for one token"),
    Mistake(lambda c, nb: 2 * c.n_layer * 4 * c.n_embd * nb, "4 n_embd is the MLP's hidden "
            "width; the cached key and value are n_embd wide"),
]  # fmt: skip


def check_kv_bytes(fn: Callable[[GPTConfig, int], int] | None) -> bool:
    """``fn(config, bytes_per_number)``: bytes the KV cache holds per token (any whole-number type).

    Recognised: keys only; queries cached too; one head only (d_head); n_head instead of n_embd;
    the bytes forgotten; bits instead of bytes; the layers forgotten; the whole context; the MLP
    width.
    """
    return check_function(
        fn, KV_HINTS, _KV_CASES, _kv_right, _KV_MISTAKES,
        normalise=lambda out: as_count(out, "a number of bytes (a whole number)"),
        same=lambda a, b: a == b, signature="fn(config, bytes_per_number)",
    )  # fmt: skip


_IDS = list(range(10, 30))
_WINDOW_CASES = [Case((list(_IDS), b), f"20 ids, block_size={b}") for b in (8, 20, 25, 1, 13)]


def _ids(out: Any) -> tuple[list[int] | None, str]:
    """A list of ids from a list, tuple, numpy array or tensor (any numeric dtype, flattened)."""
    t, err = as_tensor(out, what="a list of ids")
    if err:
        return None, err
    if t.dim() > 2 or (t.dim() == 2 and t.size(0) != 1):
        return None, f"expected a list of ids, got shape {tuple(t.shape)}"
    values = t.flatten().tolist()
    if not all(float(v).is_integer() for v in values):
        return None, "expected whole-number ids, got fractions"
    return [int(v) for v in values], ""


_WINDOW_MISTAKES = [
    Mistake(lambda ids, b: ids[:b], "these are the OLDEST tokens; the model keeps the most recent "
            "ones"),
    Mistake(lambda ids, b: list(ids), "nothing was cropped; the model reads at most block_size ids"),
    Mistake(lambda ids, b: ids[-(b - 1):], "one token short: an off-by-one in the "
            "slice (block_size - 1 ids kept)"),
    Mistake(lambda ids, b: ids[-(b + 1):], "one token too many: an off-by-one in the slice "
            "(block_size + 1 ids kept)"),
    Mistake(lambda ids, b: ids[b:], "ids[block_size:] drops the FIRST block_size ids; the window "
            "keeps the LAST block_size"),
]  # fmt: skip


def check_window(fn: Callable[[list[int], int], list[int]] | None) -> bool:
    """``fn(ids, block_size)``: the ids the model reads once ``ids`` outgrow the context (a list,
    tuple, numpy array or tensor).

    Recognised: the oldest tokens kept; an off-by-one (block_size - 1 or + 1 tokens); no crop;
    the first block_size ids dropped instead of kept.
    """
    return check_function(
        fn, WINDOW_HINTS, _WINDOW_CASES, lambda ids, b: ids[-b:], _WINDOW_MISTAKES,
        normalise=_ids, same=lambda a, b: a == b, signature="fn(ids, block_size)",
    )  # fmt: skip


def check_unchanged_prediction(answer: float | None, actual: float) -> bool:
    """Predict-then-run: max |difference| of the prompt's vectors when another token is appended."""
    return check_prediction(
        answer,
        actual,
        "prediction: earlier vectors",
        abs_tol=1e-6,
        explain="in a causal decoder token i attends only to tokens <= i, in every layer, so "
        "nothing appended after the prompt can reach the prompt's vectors: they are the same "
        "numbers, bit for bit, whatever the new token is. That is why a KV cache is exact",
    )
