"""Exercises of notebook 04 (the decoder block).

Each checker recognises the common wrong answers of its exercise and names the misconception; its
hints are staged (:class:`nexttoken.exercises.Hints`) and never print the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..configs import get_config
from . import Hints, as_count, as_tensor, check_prediction, failed, passed, unanswered
from . import call_answer as _call

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


def check_layer_norm(fn: Callable | None) -> bool:
    """``fn(x)`` for ``x`` ``(B, N, d)``: LayerNorm without scale/shift (eps = 1e-5) over ``d``."""
    name, hints = "LayerNorm by hand", HINTS["ln"]
    if unanswered(fn, name, hints):
        return False
    if not callable(fn):
        return failed(name, "answer must be a function fn(x) -> normalized x", hints)
    x = _ln_input()
    out, err = _call(fn, x.clone())
    if err:
        return failed(name, err, hints)
    out, bad = as_tensor(out, tuple(x.shape), "a tensor")
    if bad:
        return failed(name, bad, hints)
    out = out.float()
    eps = 1e-5
    if torch.allclose(out, torch.nn.functional.layer_norm(x, (8,), eps=eps), atol=1e-4):
        return passed(name)

    def norm(dims, *, unbiased=False, eps_=eps, std_eps=False, var_only=False):
        mu = x.mean(dims, keepdim=True)
        var = x.var(dims, keepdim=True, unbiased=unbiased)
        if var_only:
            return (x - mu) / (var + eps_)
        if std_eps:
            return (x - mu) / (var.sqrt() + eps_)
        return (x - mu) / torch.sqrt(var + eps_)

    variants = [
        (norm(-1, unbiased=True), "the variance must be the biased one (divide by d, not d - 1)"),
        (norm(-1, eps_=0.0), "eps is missing: a nearly constant vector blows up"),
        (norm(-1, std_eps=True), "eps is added to the standard deviation: it goes inside the sqrt"),
        (norm(-1, var_only=True), "divided by the variance: divide by its square root, the std"),
        (x - x.mean(-1, keepdim=True), "only centred: the vector must also be divided by its std"),
        (
            x / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + eps),
            "only scaled: subtract the vector's mean first",
        ),
        (
            norm(0),
            "normalised over the batch (dim 0): each token's vector is normalised on its own",
        ),
        (norm(1), "normalised over the tokens (dim 1): LayerNorm works over the last dimension, d"),
        (norm((0, 1, 2)), "normalised over the whole tensor: each vector is normalised on its own"),
    ]
    for wrong, why in variants:
        if torch.allclose(out, wrong, atol=1e-4):
            return failed(name, why, hints)
    if not torch.allclose(out.mean(-1), torch.zeros(2, 3), atol=1e-4):
        return failed(name, "each vector (the last dim) must end with mean 0", hints)
    return failed(name, "values differ from torch.nn.functional.layer_norm", hints)


def check_split_heads(fn: Callable | None, n_head: int = 4) -> bool:
    """``fn(x, n_head)`` for ``x`` ``(B, N, d)`` -> ``(B, H, N, d_head)``, head ``h`` holding
    dimensions ``h*d_head .. (h+1)*d_head - 1`` of every token."""
    name, hints = "split heads", HINTS["split"]
    if unanswered(fn, name, hints):
        return False
    if not callable(fn):
        return failed(name, "answer must be a function fn(x, n_head)", hints)
    B, N, d = 2, 5, 16
    dh = d // n_head
    x = torch.arange(B * N * d, dtype=torch.float32).view(B, N, d)
    out, err = _call(fn, x.clone(), n_head)
    if err:
        return failed(name, err, hints)
    expected = x.view(B, N, n_head, dh).transpose(1, 2)
    out, bad = as_tensor(out, what="a tensor")
    if bad:
        return failed(name, bad, hints)
    expected, x = expected.double(), x.double()
    if out.shape == expected.shape and torch.equal(out, expected):
        return passed(name)
    if out.shape == (B, N, n_head, dh):
        return failed(
            name,
            "the vectors are cut into heads but the head axis is still after the tokens: "
            "(B, N, H, d_head) must become (B, H, N, d_head)",
            hints,
        )
    if out.shape != expected.shape:
        return failed(
            name, f"expected shape {tuple(expected.shape)}, got {tuple(out.shape)}", hints
        )
    if torch.equal(out, x.view(expected.shape)):
        return failed(
            name, "right shape, wrong content: a plain view mixes tokens across heads", hints
        )
    if torch.equal(out, x.view(B, N, dh, n_head).permute(0, 3, 1, 2)):
        return failed(
            name,
            "the heads are interleaved (every H-th number): head h takes a contiguous slice",
            hints,
        )
    return failed(name, "values are not in the right place", hints)


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
