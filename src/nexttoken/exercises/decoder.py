"""Exercises of notebook 04 (the decoder block)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..configs import get_config
from . import report, unanswered

__all__ = ["check_layer_norm", "check_split_heads", "check_mlp_params", "check_total_params"]


def _call(fn: Callable, *args: Any) -> tuple[Any, str]:
    try:
        return fn(*args), ""
    except Exception as err:  # the reader's code may raise anything
        return None, f"it raised {type(err).__name__}: {err}"


def check_layer_norm(fn: Callable | None) -> bool:
    """``fn(x)`` for ``x`` ``(B, N, d)``: LayerNorm without scale/shift (eps = 1e-5) over ``d``."""
    name = "LayerNorm by hand"
    hint = "(x - x.mean(-1, keepdim=True)) / sqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-5)"
    if unanswered(fn, name, hint):
        return False
    if not callable(fn):
        return report(False, name, hint, "answer must be a function fn(x) -> normalized x")
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 8, generator=g) * 3 + 1
    out, err = _call(fn, x.clone())
    if err:
        return report(False, name, hint, err)
    expected = torch.nn.functional.layer_norm(x, (8,), eps=1e-5)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        return report(False, name, hint, f"expected a tensor of shape {tuple(x.shape)}")
    if torch.allclose(out, expected, atol=1e-4):
        return report(True, name)
    mu, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=True)
    if torch.allclose(out, (x - mu) / torch.sqrt(var + 1e-5), atol=1e-4):
        return report(False, name, hint, "the variance must be the biased one (unbiased=False)")
    if not torch.allclose(out.mean(-1), torch.zeros(2, 3), atol=1e-4):
        return report(False, name, hint, "each vector (the last dim) must end with mean 0")
    return report(False, name, hint, "values differ from torch.nn.functional.layer_norm")


def check_split_heads(fn: Callable | None, n_head: int = 4) -> bool:
    """``fn(x, n_head)`` for ``x`` ``(B, N, d)`` -> ``(B, H, N, d_head)``, head ``h`` holding
    dimensions ``h*d_head .. (h+1)*d_head - 1`` of every token."""
    name = "split heads"
    hint = "x.view(B, N, H, d_head).transpose(1, 2) (a plain .view(B, H, N, d_head) mixes tokens)"
    if unanswered(fn, name, hint):
        return False
    if not callable(fn):
        return report(False, name, hint, "answer must be a function fn(x, n_head)")
    x = torch.arange(2 * 5 * 16, dtype=torch.float32).view(2, 5, 16)
    out, err = _call(fn, x.clone(), n_head)
    if err:
        return report(False, name, hint, err)
    expected = x.view(2, 5, n_head, 16 // n_head).transpose(1, 2)
    if not isinstance(out, torch.Tensor) or out.shape != expected.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return report(False, name, hint, f"expected shape {tuple(expected.shape)}, got {got}")
    if torch.equal(out, x.view(expected.shape)):
        return report(
            False, name, hint, "right shape, wrong content: tokens got mixed across heads"
        )
    return report(torch.equal(out, expected), name, hint, "values are not in the right place")


def check_mlp_params(answer: Any, config: str = "gpt3-175b") -> bool:
    """Parameters of one MLP of ``config``: ``d -> 4d`` and ``4d -> d``, weights and biases."""
    name = f"parameters of one MLP in {config}"
    cfg = get_config(config)
    d = cfg.n_embd
    hint = "two nn.Linear: (d x 4d + 4d) + (4d x d + d)"
    if unanswered(answer, name, hint):
        return False
    if isinstance(answer, bool) or not isinstance(answer, int):
        return report(False, name, hint, f"answer must be an int, got {type(answer).__name__}")
    if answer == 8 * d * d:
        return report(False, name, hint, "you forgot the biases")
    if answer == 2 * d * d:
        return report(False, name, hint, "the hidden layer is 4d wide, not d")
    return report(answer == 8 * d * d + 5 * d, name, hint, f"{answer:,} is not right")


def check_total_params(answer: Any, config: str = "gpt3-175b") -> bool:
    """The exact parameter count of ``config`` in the GPT-2 architecture (tied embedding once)."""
    name = f"exact parameters of {config}"
    hint = "nexttoken.sizes.parameter_breakdown(config) adds up the meta model's tensors"
    if unanswered(answer, name, hint):
        return False
    if isinstance(answer, bool) or not isinstance(answer, int):
        return report(False, name, hint, f"answer must be an int, got {type(answer).__name__}")
    from ..sizes import parameter_breakdown

    parts = parameter_breakdown(config)
    total = sum(parts.values())
    cfg = get_config(config)
    if answer == total + cfg.vocab_size * cfg.n_embd:
        return report(False, name, hint, "the output projection is tied: count the table once")
    if answer != total and answer % 10**9 == 0:
        return report(False, name, hint, "that is the rounded name of the model, not its count")
    return report(answer == total, name, hint, f"{answer:,} is not the count")
