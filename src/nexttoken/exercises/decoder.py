"""Exercises of notebook 04 (the decoder block).

Each checker recognises the common wrong answers of its exercise and names the misconception; its
hints are staged (:class:`nexttoken.exercises.Hints`) and never print the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..configs import get_config
from . import (
    Case,
    Hints,
    Mistake,
    as_count,
    as_tensor,
    check_function,
    check_prediction,
    failed,
    passed,
    unanswered,
)

__all__ = [
    "HINTS",
    "check_layer_norm",
    "check_split_heads",
    "check_mlp_params",
    "check_total_params",
    "check_layer_norm_prediction",
]

HINTS = {
    "ln": Hints(
        "LayerNorm by hand",
        "each token's vector is normalised on its own, over its d numbers (the last dimension)",
        "subtract the vector's mean, divide by its standard deviation; eps keeps the division safe "
        "when a vector is nearly constant",
        "the variance is the biased one (divide by d, not d - 1), and eps goes inside the square "
        "root, added to the variance; keepdim=True lets the statistics broadcast",
        solution="layer norm",
    ),
    "split": Hints(
        "split heads",
        "head h takes a contiguous slice of each token's d numbers: the first d_head for head 0, "
        "the next d_head for head 1, ...",
        "first cut the last dimension of (B, N, d) into (H, d_head), then move the head axis in "
        "front of the token axis",
        "one view that splits only the last dimension, then one transpose of two axes; a single "
        "view straight to (B, H, N, d_head) has the right shape but mixes tokens",
        solution="split heads",
    ),
    "mlp": Hints(
        "MLP parameters",
        "the MLP is two linear layers: d -> 4d, then 4d -> d",
        "a linear layer from m to n numbers holds an m x n weight and a bias of n numbers (its "
        "output width)",
        "add the weights and the biases of both layers; read d from the config",
        solution="mlp params",
    ),
    "total": Hints(
        "total parameters",
        "count every tensor: two embedding tables, the blocks, the final LayerNorm, the projection",
        "the output projection is tied to the token table: the same tensor, counted once",
        "build the model on the meta device (nexttoken.sizes) and add up its parameters",
        solution="total params",
    ),
}


def _ln_input() -> torch.Tensor:
    """(2, 3, 8): spread-out vectors, and one nearly constant vector where eps matters."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 8, generator=g) * 3 + 1
    x[1, 2] = 0.5 + 1e-3 * torch.randn(8, generator=g)
    return x


def _ln_input_2() -> torch.Tensor:
    """(3, 2, 6): another shape, its nearly constant vector elsewhere."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 2, 6, generator=g) * 2 - 1
    x[0, 1] = -2.0 + 1e-3 * torch.randn(6, generator=g)
    return x


_LN_EPS = 1e-5
_LN_CASES = [
    Case((_ln_input(),), "a (2, 3, 8) input"),
    Case((_ln_input_2(),), "a (3, 2, 6) input"),
]


def _ln_right(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.layer_norm(x, (x.size(-1),), eps=_LN_EPS)


def _norm(x, dims, *, unbiased=False, eps=_LN_EPS, std_eps=False, var_only=False):
    mu = x.mean(dims, keepdim=True)
    var = x.var(dims, keepdim=True, unbiased=unbiased)
    if var_only:
        return (x - mu) / (var + eps)
    if std_eps:
        return (x - mu) / (var.sqrt() + eps)
    return (x - mu) / torch.sqrt(var + eps)


_LN_MISTAKES = [
    Mistake(lambda x: _norm(x, -1, unbiased=True), "the variance must be the biased one (divide by "
            "d, not d - 1)"),
    Mistake(lambda x: _norm(x, -1, eps=0.0), "eps is missing: a nearly constant vector blows up"),
    Mistake(lambda x: _norm(x, -1, std_eps=True), "eps is added to the standard deviation: it goes "
            "inside the sqrt"),
    Mistake(lambda x: _norm(x, -1, var_only=True), "divided by the variance: divide by its square "
            "root, the std"),
    Mistake(lambda x: x - x.mean(-1, keepdim=True), "only centred: the vector must also be divided "
            "by its std"),
    Mistake(lambda x: x / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + _LN_EPS), "only "
            "scaled: subtract the vector's mean first"),
    Mistake(lambda x: _norm(x, 0), "normalised over the batch (dim 0): each token's vector is "
            "normalised on its own"),
    Mistake(lambda x: _norm(x, 1), "normalised over the tokens (dim 1): LayerNorm works over the "
            "last dimension, d"),
    Mistake(lambda x: _norm(x, (0, 1, 2)), "normalised over the whole tensor: each vector is "
            "normalised on its own"),
]  # fmt: skip


def _same_ln(got: torch.Tensor, want: torch.Tensor) -> bool:
    got, want = got.double(), want.double()
    return got.shape == want.shape and torch.allclose(got, want, atol=1e-4)


def _ln_differ(case: Case, got: torch.Tensor, want: torch.Tensor) -> str:
    at = f"for {case.show()}"
    if got.shape != want.shape:
        return f"{at}: expected a tensor of shape {tuple(want.shape)}, got shape {tuple(got.shape)}"
    if not torch.allclose(got.mean(-1), torch.zeros_like(got.mean(-1)), atol=1e-4):
        return f"{at}: each vector (the last dim) must end with mean 0"
    return f"{at}: values differ from torch.nn.functional.layer_norm"


def check_layer_norm(fn: Callable | None) -> bool:
    """``fn(x)`` for ``x`` ``(B, N, d)``: LayerNorm without scale/shift (eps = 1e-5) over ``d``,
    judged on every case of ``_LN_CASES``; a mistake is named only when matched on all of them."""
    return check_function(
        None if fn is None else (lambda x: fn(x.clone())) if callable(fn) else fn,
        HINTS["ln"], _LN_CASES, _ln_right, _LN_MISTAKES,
        normalise=lambda out: as_tensor(out, None, "a tensor"), same=_same_ln,
        signature="fn(x) -> normalized x", name="LayerNorm by hand", differ=_ln_differ,
    )  # fmt: skip


def _split_cases(n_head: int) -> list[Case]:
    """A (2, 5, 4 H) input and a (1, 3, 3 H) one, numbered 0, 1, 2... so every place is visible."""
    cases = []
    for b, n, dh in ((2, 5, 16 // n_head if 16 % n_head == 0 else 4), (1, 3, 3)):
        x = torch.arange(b * n * n_head * dh, dtype=torch.float32).view(b, n, n_head * dh)
        cases.append(Case((x, n_head), f"x of shape {tuple(x.shape)}, n_head={n_head}"))
    return cases


def _split_right(x: torch.Tensor, h: int) -> torch.Tensor:
    b, n, d = x.shape
    return x.view(b, n, h, d // h).transpose(1, 2)


_SPLIT_MISTAKES = [
    Mistake(lambda x, h: x.view(*x.shape[:2], h, x.size(-1) // h), "the vectors are cut into heads "
            "but the head axis is still after the tokens: (B, N, H, d_head) must become "
            "(B, H, N, d_head)"),
    Mistake(lambda x, h: x.reshape(x.size(0), h, x.size(1), x.size(-1) // h), "right shape, wrong "
            "content: a plain view mixes tokens across heads"),
    Mistake(lambda x, h: x.view(*x.shape[:2], x.size(-1) // h, h).permute(0, 3, 1, 2), "the heads "
            "are interleaved (every H-th number): head h takes a contiguous slice"),
]  # fmt: skip


def _same_split(got: torch.Tensor, want: torch.Tensor) -> bool:
    return got.shape == want.shape and torch.equal(got.double(), want.double())


def _split_differ(case: Case, got: torch.Tensor, want: torch.Tensor) -> str:
    at = f"for {case.show()}"
    if got.shape != want.shape:
        return f"{at}: expected shape {tuple(want.shape)}, got {tuple(got.shape)}"
    return f"{at}: values are not in the right place"


def check_split_heads(fn: Callable | None, n_head: int = 4) -> bool:
    """``fn(x, n_head)`` for ``x`` ``(B, N, d)`` -> ``(B, H, N, d_head)``, head ``h`` holding
    dimensions ``h*d_head .. (h+1)*d_head - 1`` of every token; judged on every case of
    ``_split_cases(n_head)``, a mistake named only when matched on all of them."""
    return check_function(
        None if fn is None else (lambda x, h: fn(x.clone(), h)) if callable(fn) else fn,
        HINTS["split"], _split_cases(n_head), _split_right, _SPLIT_MISTAKES,
        normalise=lambda out: as_tensor(out, None, "a tensor"), same=_same_split,
        signature="fn(x, n_head)", name="split heads", differ=_split_differ,
    )  # fmt: skip


def check_mlp_params(answer: Any, config: str = "gpt3-175b") -> bool:
    """Parameters of one MLP of ``config``: ``d -> 4d`` and ``4d -> d``, weights and biases."""
    name, hints = f"parameters of one MLP in {config}", HINTS["mlp"]
    if unanswered(answer, name, hints):
        return False
    answer, bad = as_count(answer, "a count (a whole number)")
    if bad:
        return failed(name, bad, hints)
    cfg = get_config(config)
    d, L = cfg.n_embd, cfg.n_layer
    right = 8 * d * d + 5 * d
    if answer == right:
        return passed(name)
    wrong = {
        8 * d * d: "the biases are missing",
        2 * d * d + 2 * d: "the hidden layer is 4d wide, not d",
        2 * d * d: "the hidden layer is 4d wide, not d (and the biases are missing)",
        4 * d * d + 4 * d: "that is one of the two linear layers: the MLP has two",
        4 * d * d + d: "that is one of the two linear layers: the MLP has two",
        8 * d * d + 8 * d: "the second bias has d numbers (its output width), not 4d",
        8 * d * d + 7 * d: "that adds ln_2's 2d: the LayerNorm belongs to the block, not the MLP",
        12 * d * d + 13 * d: "that is a whole block (attention, MLP, two LayerNorms)",
        L * right: f"that is all {L} MLPs: the question asks for one",
    }
    return failed(name, wrong.get(answer, f"{answer:,} is not the count of one MLP"), hints)


def check_total_params(answer: Any, config: str = "gpt3-175b") -> bool:
    """The exact parameter count of ``config`` in the GPT-2 architecture (tied embedding once)."""
    name, hints = f"exact parameters of {config}", HINTS["total"]
    if unanswered(answer, name, hints):
        return False
    answer, bad = as_count(answer, "a count (a whole number)")
    if bad:
        return failed(name, bad, hints)
    from ..sizes import parameter_breakdown

    total = sum(parameter_breakdown(config).values())
    if answer == total:
        return passed(name)
    cfg = get_config(config)
    d, V, L = cfg.n_embd, cfg.vocab_size, cfg.n_layer
    block = 12 * d * d + 13 * d
    wrong = {
        total + V * d: "the output projection is tied to the token table: count the table once",
        total - cfg.block_size * d: "the position table (block_size x d) is missing",
        L
        * block: "those are the blocks only: add the two embedding tables and the final LayerNorm",
        total - 2 * d: "the final LayerNorm (ln_f, 2d) is missing",
        total - V * d: "the token table is missing: tied to the projection, it still counts once",
    }
    if answer in wrong:
        return failed(name, wrong[answer], hints)
    if answer % 10**8 == 0:
        return failed(name, "that is the rounded name of the model, not its count", hints)
    return failed(name, f"{answer:,} is not the count", hints)


def check_layer_norm_prediction(answer: object, model, ids: torch.Tensor, layer: int = 1) -> bool:
    """Predict, then run: the Euclidean norm of one token's vector after LayerNorm's
    normalisation (before the learned scale and shift), in ``model`` of width ``d``."""
    with torch.no_grad():
        h = model.run(ids, output_hidden_states=True).hidden_states[layer][0, -1]  # (d,)
        z = torch.nn.functional.layer_norm(h, h.shape, eps=model.config.layer_norm_eps)
    actual = round(float(z.norm()), 2)
    d = h.numel()
    return check_prediction(
        answer,
        actual,
        f"norm of a normalised {d}-number vector",
        rel_tol=0.02,
        explain=f"mean 0 and variance 1 over d = {d} numbers means the sum of squares is d, so "
        f"the norm is sqrt(d), whatever the vector was before (eps shrinks it a hair)",
    )
