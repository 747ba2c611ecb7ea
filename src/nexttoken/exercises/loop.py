"""Exercises of notebook 07 (the autoregressive loop).

Each checker recognises the usual wrong answers and names the misconception behind them; its hints
are staged (:class:`nexttoken.exercises.Hints`) and never print the answer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..configs import get_config
from ..generate import generate
from ..model import GPT, GPTConfig
from . import Hints, check_prediction, failed, passed, unanswered
from . import call_answer as _call

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
)
KV_HINTS = Hints(
    "KV cache bytes per token",
    "For each token, every attention layer keeps what later tokens need from it.",
    "That is one key and one value per layer; each holds n_head x d_head = n_embd numbers. The "
    "query is used once and is not cached.",
    "Count numbers per token (how many layers, how many tensors per layer, how wide each is), "
    "then multiply by the bytes of one number.",
)
WINDOW_HINTS = Hints(
    "sliding window",
    "The model has block_size learned positions: it can read at most block_size tokens.",
    "Past the limit it keeps the MOST RECENT tokens, the ones the next token depends on most; the "
    "oldest are forgotten.",
    "Use a negative slice start to take exactly block_size ids from the end of the list (a short "
    "list is returned whole).",
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


def check_greedy_loop(fn: Callable[[GPT, list[int], int], list[int]] | None) -> bool:
    """``fn(model, ids, n)``: greedy loop returning the prompt followed by ``n`` new ids.

    Recognised: forgetting to append; feeding only the last token without a cache; the first
    position's logits; only the new ids returned; the prompt returned unchanged; a wrong length.
    """
    name, hints = LOOP_HINTS.name, LOOP_HINTS
    if unanswered(fn, name, hints):
        return False
    if not callable(fn):
        return failed(name, "the answer must be a function fn(model, ids, n)", hints)
    model = _tiny_model()
    for prompt, n in (([1, 2, 3], 6), ([4], 10)):
        out, err = _call(fn, model, list(prompt), n)
        if err:
            return failed(name, err, hints)
        want = generate(model, prompt, n, temperature=0, use_cache=False)[0].tolist()
        if isinstance(out, torch.Tensor):
            out = out.flatten().tolist()
        if not isinstance(out, list):
            return failed(name, f"expected a list of ids, got {type(out).__name__}", hints)
        if out == want:
            continue
        if out == want[len(prompt) :]:
            return failed(
                name, "only the new ids were returned; return the prompt followed by them", hints
            )
        if out == list(prompt):
            return failed(name, "the prompt came back unchanged: nothing was generated", hints)
        for why, bad in _wrong_loops(model, list(prompt), n).items():
            if out == bad:
                return failed(name, why, hints)
        if len(out) != len(want):
            return failed(
                name,
                f"expected {len(want)} ids (a prompt of {len(prompt)} + {n} new), got {len(out)}",
                hints,
            )
        return failed(name, "the tokens differ from greedy generation (argmax at each step)", hints)
    return passed(name)


def check_kv_bytes(fn: Callable[[GPTConfig, int], int] | None) -> bool:
    """``fn(config, bytes_per_number)``: bytes the KV cache holds per token.

    Recognised: keys only; queries cached too; one head only (d_head); n_head instead of n_embd;
    the bytes forgotten; bits instead of bytes; the layers forgotten; the whole context.
    """
    name, hints = KV_HINTS.name, KV_HINTS
    if unanswered(fn, name, hints):
        return False
    if not callable(fn):
        return failed(name, "the answer must be a function fn(config, bytes_per_number)", hints)
    # gpt2-medium first: its n_layer (24) differs from its n_head (16), so that each wrong
    # formula gives its own number (in gpt2, GPT-3 175B and the book model n_layer == n_head)
    for cname, nbytes in (("gpt2-medium", 4), ("gpt2", 4), ("gpt3-175b", 2), ("book", 4)):
        cfg = get_config(cname)
        out, err = _call(fn, cfg, nbytes)
        if err:
            return failed(name, err, hints)
        want = 2 * cfg.n_layer * cfg.n_embd * nbytes
        if out == want and not isinstance(out, bool):
            continue
        L, d = cfg.n_layer, cfg.n_embd
        wrong = {
            L * d * nbytes: "half the answer: each layer caches a key AND a value per token",
            3 * L * d * nbytes: "the query is not cached: a token's query is used once, at its "
            "own step; only keys and values are reused",
            2 * L * cfg.d_head * nbytes: "d_head is one head; the key (and the value) of a token "
            "spans all heads: n_head x d_head = n_embd numbers",
            2 * L * cfg.n_head * nbytes: "n_head counts heads, not numbers: each head holds d_head "
            "numbers, n_embd in all",
            2 * L * d: "that counts numbers, not bytes: multiply by the bytes per number",
            2 * L * d * nbytes * 8: "that is bits; the question asks for bytes",
            2 * d * nbytes: "every layer has its own keys and values: multiply by n_layer",
            want * cfg.block_size: "that is the cache for a full context; the question asks for "
            "one token",
        }
        if isinstance(out, int) and out in wrong:
            return failed(name, f"{cname}: {wrong[out]}", hints)
        return failed(name, f"{cname}, {nbytes} bytes per number: got {out!r}", hints)
    return passed(name)


def check_window(fn: Callable[[list[int], int], list[int]] | None) -> bool:
    """``fn(ids, block_size)``: the ids the model reads once ``ids`` outgrow the context.

    Recognised: the oldest tokens kept; an off-by-one (block_size - 1 or + 1 tokens); no crop.
    """
    name, hints = WINDOW_HINTS.name, WINDOW_HINTS
    if unanswered(fn, name, hints):
        return False
    if not callable(fn):
        return failed(name, "the answer must be a function fn(ids, block_size)", hints)
    ids = list(range(10, 30))
    for block in (8, 20, 25):
        out, err = _call(fn, list(ids), block)
        if err:
            return failed(name, err, hints)
        want = ids[-block:]
        if isinstance(out, torch.Tensor):
            out = out.flatten().tolist()
        if isinstance(out, tuple):
            out = list(out)
        if out == want:
            continue
        if out == ids[:block]:
            why = "these are the OLDEST tokens; the model keeps the most recent ones"
        elif out == ids and len(ids) > block:
            why = f"block_size={block}: nothing was cropped; the model reads at most {block} ids"
        elif out == ids[-(block - 1) :]:
            why = f"block_size={block}: one token short ({block - 1}): an off-by-one in the slice"
        elif out == ids[-(block + 1) :]:
            why = f"block_size={block}: one token too many ({block + 1}): an off-by-one"
        else:
            why = f"block_size={block}: expected the last {len(want)} ids, got {out!r}"
        return failed(name, why, hints)
    return passed(name)


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
