"""Exercises of notebook 07 (the autoregressive loop)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..configs import get_config
from ..generate import generate
from ..model import GPT, GPTConfig
from . import report, unanswered

__all__ = ["check_greedy_loop", "check_kv_bytes", "check_window"]


def _call(fn: Callable, *args: Any) -> tuple[Any, str]:
    try:
        return fn(*args), ""
    except Exception as err:  # the reader's code may raise anything
        return None, f"it raised {type(err).__name__}: {err}"


def _tiny_model() -> GPT:
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16, name="tiny")
    with torch.random.fork_rng(devices=[]):  # leave the reader's random state alone
        torch.manual_seed(7)
        return GPT(cfg).eval()


def check_greedy_loop(fn: Callable[[GPT, list[int], int], list[int]] | None) -> bool:
    """``fn(model, ids, n)``: greedy loop returning the prompt followed by ``n`` new ids."""
    name = "greedy loop"
    hint = (
        "repeat n times: logits = model(torch.tensor([ids]))[0, -1]; "
        "append int(logits.argmax()) to ids; return ids"
    )
    if unanswered(fn, name, hint):
        return False
    if not callable(fn):
        return report(False, name, hint, "answer must be a function fn(model, ids, n)")
    model = _tiny_model()
    for prompt, n in (([1, 2, 3], 6), ([4], 10)):
        out, err = _call(fn, model, list(prompt), n)
        if err:
            return report(False, name, hint, err)
        want = generate(model, prompt, n, temperature=0, use_cache=False)[0].tolist()
        if isinstance(out, torch.Tensor):
            out = out.flatten().tolist()
        if not isinstance(out, list):
            return report(False, name, hint, f"expected a list of ids, got {type(out).__name__}")
        if out == want[len(prompt) :]:
            return report(False, name, hint, "return the prompt followed by the new tokens")
        if len(out) != len(want):
            return report(False, name, hint, f"expected {len(want)} ids, got {len(out)}")
        if out != want:
            return report(
                False,
                name,
                hint,
                "the tokens differ from greedy generation: take the LAST position's logits and "
                "append each chosen token before the next step",
            )
    return report(True, name)


def check_kv_bytes(fn: Callable[[GPTConfig, int], int] | None) -> bool:
    """``fn(config, bytes_per_number)``: bytes the KV cache holds per token."""
    name = "KV cache bytes per token"
    hint = "each layer keeps a key AND a value of n_embd numbers per token: 2 * n_layer * n_embd * bytes"
    if unanswered(fn, name, hint):
        return False
    if not callable(fn):
        return report(False, name, hint, "answer must be a function fn(config, bytes_per_number)")
    for cname, nbytes in (("gpt2", 4), ("gpt3-175b", 2), ("book", 4)):
        cfg = get_config(cname)
        out, err = _call(fn, cfg, nbytes)
        if err:
            return report(False, name, hint, err)
        want = 2 * cfg.n_layer * cfg.n_embd * nbytes
        if out == want // 2:
            return report(False, name, hint, f"{cname}: half the answer; keys AND values")
        if out != want:
            return report(
                False, name, hint, f"{cname}, {nbytes} bytes: expected {want:,}, got {out}"
            )
    return report(True, name)


def check_window(fn: Callable[[list[int], int], list[int]] | None) -> bool:
    """``fn(ids, block_size)``: the ids the model reads once ``ids`` outgrow the context."""
    name = "sliding window"
    hint = "the model keeps the most recent block_size tokens: ids[-block_size:]"
    if unanswered(fn, name, hint):
        return False
    if not callable(fn):
        return report(False, name, hint, "answer must be a function fn(ids, block_size)")
    ids = list(range(10, 30))
    for block in (8, 20, 25):
        out, err = _call(fn, list(ids), block)
        if err:
            return report(False, name, hint, err)
        want = ids[-block:]
        if isinstance(out, torch.Tensor):
            out = out.flatten().tolist()
        if out == ids[:block] and out != want:
            return report(False, name, hint, "that is the oldest tokens; keep the most recent")
        if out != want:
            return report(False, name, hint, f"block_size={block}: expected {want}, got {out}")
    return report(True, name)
