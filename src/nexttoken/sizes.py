"""How big a GPT is: parameters, memory, FLOPs per token and tensor shapes, measured, not typed.

Everything here builds the model on PyTorch's ``meta`` device: the modules and their shapes exist,
but no memory is allocated and no number is computed, so GPT-3 175B "fits" on a laptop. The
parameter counts come from the module's own tensors; the shapes from forward hooks during a real
(meta) forward pass.

- :func:`meta_model` -- a :class:`~nexttoken.model.GPT` on the meta device.
- :func:`parameter_breakdown` -- embeddings / attention / MLP / norms, counted from the tensors.
- :func:`memory_bytes` -- bytes to hold the weights at fp32 / fp16 / int8.
- :func:`flops_per_token` -- the matmul FLOPs of one forward step, split into its parts.
- :func:`shape_trace` -- every module's output shape through one forward pass.
"""

from __future__ import annotations

import torch

from .configs import get_config
from .model import GPT, GPTConfig

__all__ = [
    "BYTES_PER_PARAM",
    "meta_model",
    "parameter_breakdown",
    "memory_bytes",
    "flops_per_token",
    "shape_trace",
    "format_bytes",
]

#: Bytes needed to store one parameter in each number format.
BYTES_PER_PARAM: dict[str, int] = {"fp32": 4, "fp16": 2, "int8": 1}

#: The groups of :func:`parameter_breakdown`, in display order.
GROUPS = ("embeddings", "attention", "mlp", "norms")


def _config(config: GPTConfig | str) -> GPTConfig:
    if isinstance(config, str):
        return get_config(config)
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig or a config name, got {type(config).__name__}")
    return config


def meta_model(config: GPTConfig | str) -> GPT:
    """``GPT(config)`` built on the meta device: real shapes, no memory, no values."""
    with torch.device("meta"):
        return GPT(_config(config))


def _group(name: str) -> str:
    if name.startswith(("transformer.wte", "transformer.wpe", "lm_head")):
        return "embeddings"
    if ".attn." in name:
        return "attention"
    if ".mlp." in name:
        return "mlp"
    if ".ln_" in name:
        return "norms"
    raise ValueError(f"parameter {name!r} belongs to no group")  # pragma: no cover


def parameter_breakdown(config: GPTConfig | str) -> dict[str, int]:
    """Parameters per group, counted from the meta model's tensors (tied weight counted once).

    Groups: ``embeddings`` (token table ``V x d`` + position table ``T x d``; the output projection
    shares the token table), ``attention`` (W_Q, W_K, W_V, W_O and biases, all layers), ``mlp``
    (``d -> 4d -> d`` with biases, all layers), ``norms`` (LayerNorm scales and shifts). The values
    add up to ``GPT(config).num_parameters()``.
    """
    counts = dict.fromkeys(GROUPS, 0)
    for name, p in meta_model(config).named_parameters():  # skips the tied duplicate
        counts[_group(name)] += p.numel()
    return counts


def memory_bytes(n_params: int, dtype: str = "fp16") -> int:
    """Bytes to store ``n_params`` weights in ``dtype`` (``"fp32"``, ``"fp16"`` or ``"int8"``)."""
    if isinstance(n_params, bool) or not isinstance(n_params, int) or n_params < 0:
        raise ValueError(f"n_params must be a non-negative int, got {n_params!r}")
    if dtype not in BYTES_PER_PARAM:
        raise ValueError(f"dtype must be one of {', '.join(BYTES_PER_PARAM)}, got {dtype!r}")
    return n_params * BYTES_PER_PARAM[dtype]


def format_bytes(n: int) -> str:
    """``n`` bytes in GB (10^9) with one decimal, or MB for small sizes: ``'350.0 GB'``."""
    if n >= 10**9:
        return f"{n / 1e9:,.1f} GB"
    return f"{n / 1e6:,.1f} MB"


def flops_per_token(config: GPTConfig | str, n_ctx: int | None = None) -> dict[str, int]:
    """Floating-point operations of one forward step for one token, split into parts.

    A multiply-add counts as 2 FLOPs. ``matmul`` is ``2 x`` the weights of every linear layer the
    token's vector goes through (W_QKV, W_O, the two MLP matrices in every layer, and the output
    projection ``d x V``); ``attention`` is the part that depends on the context: the token's query
    against ``n_ctx`` keys and its weighted sum of ``n_ctx`` values, ``2 x 2 x n_layer x n_ctx x d``.
    Biases, LayerNorm, softmax and GELU (a few FLOPs per number) are left out. ``n_ctx`` defaults
    to the full context ``block_size``.
    """
    cfg = _config(config)
    n_ctx = cfg.block_size if n_ctx is None else n_ctx
    if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or not 1 <= n_ctx <= cfg.block_size:
        raise ValueError(f"n_ctx must be an int in [1, {cfg.block_size}], got {n_ctx!r}")
    d, L, V = cfg.n_embd, cfg.n_layer, cfg.vocab_size
    per_layer = 3 * d * d + d * d + d * cfg.d_ff + cfg.d_ff * d
    matmul = 2 * (L * per_layer + d * V)
    attention = 2 * 2 * L * n_ctx * d
    return {"matmul": matmul, "attention": attention, "total": matmul + attention}


def _trace_method(obj, method: str, name: str, rows: list) -> None:
    """Make ``obj.method`` (on this instance only) append its output shape to ``rows``."""
    original = getattr(obj, method)
    calls = [0]

    def traced(x):
        out = original(x)
        tag = f" ({'qkv'[calls[0] % 3]})" if method == "split_heads" else ""
        calls[0] += 1
        rows.append((name + tag, "reshape", tuple(out.shape)))
        return out

    setattr(obj, method, traced)


def shape_trace(
    config: GPTConfig | str, batch: int = 1, n_tokens: int = 10, *, layers: int | None = 1
) -> list[tuple[str, str, tuple[int, ...]]]:
    """Every module's output shape in one (meta) forward pass of ``(batch, n_tokens)`` token ids.

    Returns rows ``(module name, module type, output shape)`` in execution order, recorded by
    forward hooks, plus the ids at the start and the attention weights ``(B, H, N, N)`` of each
    traced block. ``layers`` limits the rows to the first ``layers`` blocks (they all look alike);
    None keeps every block.
    """
    cfg = _config(config)
    for arg, value in (("batch", batch), ("n_tokens", n_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive int, got {value!r}")
    if n_tokens > cfg.block_size:
        raise ValueError(f"n_tokens must be <= block_size={cfg.block_size}, got {n_tokens}")
    model = meta_model(cfg)
    rows: list[tuple[str, str, tuple[int, ...]]] = []

    def keep(name: str) -> bool:
        if layers is None or not name.startswith("transformer.h."):
            return True
        return int(name.split(".")[2]) < layers

    def hook(name: str):
        def record(module, _inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            rows.append((name, type(module).__name__, tuple(out.shape)))
            if name.endswith(".attn") and output[1] is not None:
                rows.append((f"{name} weights", "softmax", tuple(output[1].shape)))

        return record

    handles = [
        m.register_forward_hook(hook(name))
        for name, m in model.named_modules()
        if name
        and keep(name)
        and not isinstance(m, (torch.nn.ModuleList, torch.nn.ModuleDict, torch.nn.Dropout))
    ]
    for i, block in enumerate(model.transformer.h):  # the head reshapes are methods, not modules
        if keep(f"transformer.h.{i}"):
            _trace_method(block.attn, "split_heads", f"transformer.h.{i}.attn.split_heads", rows)
            _trace_method(block.attn, "merge_heads", f"transformer.h.{i}.attn.merge_heads", rows)
    ids = torch.zeros(batch, n_tokens, dtype=torch.long, device="meta")
    rows.append(("ids", "input", tuple(ids.shape)))
    rows.append(
        ("transformer.wpe[:N]", "Embedding", tuple(model.transformer.wpe.weight[:n_tokens].shape))
    )
    try:
        with torch.no_grad():
            model.run(ids, output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    return rows
