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
- :data:`KV_CONFIGS` and :func:`kv_cache_table` -- the KV cache of real models (GPT-3 175B,
  Llama 3 8B and 70B, Mistral 7B) per token and per full context, from their published configs.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    "KVConfig",
    "KV_CONFIGS",
    "KV_BYTES",
    "llama_parameters",
    "kv_cache_table",
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


#: Bytes of one cached number in each format (bf16 and fp16 both take 2).
KV_BYTES: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}


@dataclass(frozen=True)
class KVConfig:
    """What a model's KV cache depends on, as its authors published it.

    ``n_kv_head`` key/value heads of width ``d_head`` in each of ``n_layer`` layers (``n_kv_head ==
    n_head`` is plain multi-head attention); ``context`` is the trained context length;
    ``sliding_window`` (None: none) caps how many tokens the cache ever holds. ``d_model``,
    ``d_ff``, ``vocab_size`` and ``tied`` give the parameter count of a Llama-style model (RMSNorm,
    SwiGLU MLP, no biases); ``n_params`` overrides it for another architecture. ``source`` says
    where every number comes from.
    """

    name: str
    n_layer: int
    n_head: int
    n_kv_head: int
    d_head: int
    context: int
    source: str
    sliding_window: int | None = None
    d_model: int = 0
    d_ff: int = 0
    vocab_size: int = 0
    tied: bool = False
    n_params: int | None = None

    def __post_init__(self) -> None:
        for attr in ("n_layer", "n_head", "n_kv_head", "d_head", "context"):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"KVConfig.{attr} must be an int >= 1, got {value!r}")
        if self.n_head % self.n_kv_head:
            raise ValueError(
                f"KVConfig.n_kv_head ({self.n_kv_head}) must divide n_head ({self.n_head})"
            )
        w = self.sliding_window
        if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
            raise ValueError(f"KVConfig.sliding_window must be None or an int >= 1, got {w!r}")

    @property
    def cached_tokens(self) -> int:
        """Most tokens one sequence keeps in the cache: the context, or the window if smaller."""
        if self.sliding_window is None:
            return self.context
        return min(self.context, self.sliding_window)

    @property
    def parameters(self) -> int:
        """``n_params`` if given, else :func:`llama_parameters` of this config."""
        return self.n_params if self.n_params is not None else llama_parameters(self)


def llama_parameters(cfg: KVConfig) -> int:
    """Parameters of a Llama-style decoder, counted from its shapes.

    Per layer: W_Q ``d x H d_head``, W_K and W_V ``d x H_kv d_head``, W_O ``H d_head x d``, the
    SwiGLU MLP's three ``d x d_ff`` matrices, two RMSNorm scales ``d``; then the token table
    ``V x d``, the final RMSNorm ``d`` and, unless tied, the output projection ``d x V``. Llama 3
    8B: 8,030,261,248.
    """
    d, L = cfg.d_model, cfg.n_layer
    attn = d * cfg.n_head * cfg.d_head * 2 + d * cfg.n_kv_head * cfg.d_head * 2
    per_layer = attn + 3 * d * cfg.d_ff + 2 * d
    embeddings = cfg.vocab_size * d * (1 if cfg.tied else 2)
    return L * per_layer + embeddings + d


#: Published configurations (each ``source`` names the paper or the config file on the Hugging Face
#: Hub that gives the numbers).
KV_CONFIGS: dict[str, KVConfig] = {
    c.name: c
    for c in (
        KVConfig(
            "GPT-3 175B",
            n_layer=96,
            n_head=96,
            n_kv_head=96,
            d_head=128,
            context=2048,
            n_params=174_604_259_328,  # GPT-3 175B in the GPT-2 architecture (nexttoken.sizes)
            source="Brown et al. 2020, Language Models are Few-Shot Learners, Table 2.1 "
            "(n_layers 96, d_model 12288, n_heads 96, d_head 128, n_ctx 2048)",
        ),
        KVConfig(
            "Llama 3 8B",
            n_layer=32,
            n_head=32,
            n_kv_head=8,
            d_head=128,
            context=8192,
            d_model=4096,
            d_ff=14336,
            vocab_size=128256,
            source="huggingface.co/meta-llama/Meta-Llama-3-8B, config.json (num_hidden_layers 32, "
            "num_attention_heads 32, num_key_value_heads 8, hidden_size 4096, intermediate_size "
            "14336, vocab_size 128256, max_position_embeddings 8192, tie_word_embeddings false)",
        ),
        KVConfig(
            "Llama 3 70B",
            n_layer=80,
            n_head=64,
            n_kv_head=8,
            d_head=128,
            context=8192,
            d_model=8192,
            d_ff=28672,
            vocab_size=128256,
            source="huggingface.co/meta-llama/Meta-Llama-3-70B, config.json (num_hidden_layers 80, "
            "num_attention_heads 64, num_key_value_heads 8, hidden_size 8192, intermediate_size "
            "28672, vocab_size 128256, max_position_embeddings 8192, tie_word_embeddings false)",
        ),
        KVConfig(
            "Mistral 7B",
            n_layer=32,
            n_head=32,
            n_kv_head=8,
            d_head=128,
            context=8192,
            sliding_window=4096,
            d_model=4096,
            d_ff=14336,
            vocab_size=32000,
            source="Jiang et al. 2023, Mistral 7B (arXiv:2310.06825), Table 1 (dim 4096, n_layers "
            "32, head_dim 128, hidden_dim 14336, n_heads 32, n_kv_heads 8, window_size 4096, "
            "context_len 8192, vocab_size 32000); huggingface.co/mistralai/Mistral-7B-v0.1, "
            "config.json (sliding_window 4096, tie_word_embeddings false)",
        ),
    )
}


def kv_cache_table(dtype: str = "bf16", configs: list[KVConfig] | None = None) -> list[dict]:
    """One row per model: what its KV cache costs in ``dtype`` (``fp16``/``bf16``: 2 bytes).

    - ``bytes_per_token``: ``2 (K and V) x n_layer x n_kv_head x d_head x bytes``;
    - ``mha_bytes_per_token``: the same with as many key/value heads as query heads (what
      grouped-query attention saves is the ratio, ``n_head / n_kv_head``);
    - ``cached_tokens``: most tokens a sequence keeps (the context, or the sliding window);
    - ``bytes_per_context``: ``bytes_per_token x cached_tokens``, one full sequence;
    - ``weights_bytes``: the parameters in the same format;
    - ``batch_cache_outweighs_weights``: the smallest number of full sequences whose caches
      together take more memory than the weights.
    """
    if dtype not in KV_BYTES:
        raise ValueError(f"dtype must be one of {', '.join(KV_BYTES)}, got {dtype!r}")
    configs = list(KV_CONFIGS.values()) if configs is None else configs
    nbytes = KV_BYTES[dtype]
    rows = []
    for c in configs:
        if not isinstance(c, KVConfig):
            raise TypeError(f"configs must hold KVConfig entries, got {type(c).__name__}")
        per_token = 2 * c.n_layer * c.n_kv_head * c.d_head * nbytes
        per_context = per_token * c.cached_tokens
        weights = c.parameters * nbytes
        rows.append(
            {
                "model": c.name,
                "n_layer": c.n_layer,
                "n_head": c.n_head,
                "n_kv_head": c.n_kv_head,
                "d_head": c.d_head,
                "context": c.context,
                "sliding_window": c.sliding_window,
                "cached_tokens": c.cached_tokens,
                "bytes_per_token": per_token,
                "mha_bytes_per_token": 2 * c.n_layer * c.n_head * c.d_head * nbytes,
                "bytes_per_context": per_context,
                "parameters": c.parameters,
                "weights_bytes": weights,
                "batch_cache_outweighs_weights": weights // per_context + 1,
                "source": c.source,
            }
        )
    return rows
