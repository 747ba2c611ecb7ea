"""A Llama-family decoder in one readable file: what today's open models changed in GPT-2.

The same decoder-only transformer as :mod:`nexttoken.model`, with the parts that Llama (Touvron et
al. 2023), Mistral (Jiang et al. 2023), Qwen and SmolLM share:

- **RMSNorm** (Zhang & Sennrich 2019) instead of LayerNorm: no mean subtracted, no bias, only a
  rescaling by the root mean square and a learned gain;
- **rotary position embeddings, RoPE** (Su et al. 2021) instead of a position table: each pair of
  query/key features is rotated by an angle proportional to the token's position, so ``q . k``
  depends only on the distance between the two tokens. Pairs follow ``transformers``'
  ``rotate_half`` convention (feature ``i`` is paired with feature ``i + d_head / 2``, not with
  ``i + 1`` as in the paper), so Hugging Face Llama weights load as they are;
- a **SwiGLU** MLP (Shazeer 2020): ``down(silu(gate(x)) * up(x))``, three matrices instead of two;
- **grouped-query attention** (Ainslie et al. 2023): ``n_kv_head`` key/value heads shared by the
  ``n_head`` query heads (``n_kv_head == n_head``: multi-head; ``1``: multi-query, Shazeer 2019), so
  the KV cache is ``n_head / n_kv_head`` times smaller;
- optionally a **sliding window** (Mistral): each token attends to the last ``sliding_window``
  positions only, and the cache stops growing (:class:`RollingKVCache`);
- optionally **qk-norm** (Qwen3): an RMSNorm on each head's query and key before RoPE;
- no biases; the output projection tied to the embedding or not (``tie_embeddings``).

Shapes: ``B`` batch, ``N`` new tokens, ``T`` keys attended over, ``d`` = ``n_embd``, ``H`` =
``n_head``, ``H_kv`` = ``n_kv_head``, ``d_head`` (``n_embd // n_head`` unless given), ``V``.

The parameter names are those of ``transformers``' ``LlamaForCausalLM`` (``model.layers.0.self_attn
.q_proj.weight`` ...), so a Hugging Face checkpoint's state dict *is* this model's
(:func:`nexttoken.checkpoint.load_llama`).

:class:`Llama` has :class:`~nexttoken.model.GPT`'s interface (``run``, ``new_cache``, ``device``,
``config.vocab_size`` / ``block_size``), so :func:`~nexttoken.generate.generate`,
:func:`~nexttoken.batching.generate_batch`, :class:`~nexttoken.serve.Engine` and
:func:`~nexttoken.speculative.speculative_generate` run it unchanged. The KV cache stores keys
*after* the rotation: a cached key never needs its position again.

**Beyond the trained context.** RoPE has no table, so nothing stops a position past the context the
weights were trained on: ``block_size`` is only the limit this model object enforces, and a config
with a larger ``block_size`` runs. The model has never seen those angles, though: quality usually
falls apart beyond the trained length (which is why long-context models rescale RoPE's frequencies,
e.g. Llama 3.1's ``rope_scaling``; not implemented here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import plain_attention, sdpa_attention
from .model import Decoder, DecoderConfig, GPTOutput, KVCache, _check_logits_at

__all__ = [
    "LlamaConfig",
    "Llama",
    "LlamaBlock",
    "LlamaAttention",
    "SwiGLU",
    "RMSNorm",
    "RollingKVCache",
    "swiglu_hidden",
    "rope_cos_sin",
    "rotate_half",
    "apply_rope",
    "MULTIPLE_OF",
]

#: Meta's reference code rounds the SwiGLU width up to a multiple of 256 (``multiple_of`` in
#: ``llama/model.py``): with d = 4096 this gives Llama-2-7B's 11008.
MULTIPLE_OF = 256


def swiglu_hidden(n_embd: int, multiple_of: int = MULTIPLE_OF) -> int:
    """The SwiGLU width at the parameter count of a ``4 d`` GELU MLP: ``2/3 * 4d`` (three matrices
    instead of two), rounded up to a multiple of ``multiple_of``. ``swiglu_hidden(4096) == 11008``."""
    hidden = int(2 * 4 * n_embd / 3)
    return multiple_of * -(-hidden // multiple_of)


@dataclass(frozen=True)
class LlamaConfig(DecoderConfig):
    """Hyper-parameters of a Llama-family decoder.

    ``block_size`` is the context length this model enforces (RoPE itself has no limit: see the
    module's docstring). ``intermediate_size`` None is :func:`swiglu_hidden` ``(n_embd)``;
    ``head_dim`` None is ``n_embd // n_head``. ``n_kv_head`` must divide ``n_head``.

    The two defaults are resolved when the config is made (as in a Hugging Face ``config.json``,
    which always holds both numbers): ``dataclasses.replace(config, n_embd=...)`` keeps the old
    ``head_dim`` and ``intermediate_size``; pass them again (or None) when changing the width.
    """

    vocab_size: int = 32000
    block_size: int = 2048
    n_layer: int = 16
    n_head: int = 32
    n_kv_head: int = 8
    n_embd: int = 2048
    intermediate_size: int | None = None
    head_dim: int | None = None
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    sliding_window: int | None = None
    tie_embeddings: bool = False
    qk_norm: bool = False
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for attr in ("vocab_size", "block_size", "n_layer", "n_head", "n_kv_head", "n_embd"):
            _check_int(attr, getattr(self, attr))
        if self.n_head % self.n_kv_head:
            allowed = [h for h in range(1, self.n_head + 1) if self.n_head % h == 0]
            raise ValueError(
                f"LlamaConfig.n_kv_head ({self.n_kv_head}) must divide n_head ({self.n_head}): "
                f"one of {allowed}"
            )
        if self.head_dim is None:
            if self.n_embd % self.n_head:
                raise ValueError(
                    f"LlamaConfig.n_embd ({self.n_embd}) must be divisible by n_head "
                    f"({self.n_head}), or give head_dim"
                )
            object.__setattr__(self, "head_dim", self.n_embd // self.n_head)
        _check_int("head_dim", self.head_dim)
        if self.head_dim % 2:
            raise ValueError(
                f"LlamaConfig.head_dim must be even (RoPE rotates pairs of features), "
                f"got {self.head_dim}"
            )
        if self.intermediate_size is None:
            object.__setattr__(self, "intermediate_size", swiglu_hidden(self.n_embd))
        _check_int("intermediate_size", self.intermediate_size)
        for attr in ("rope_theta", "rms_norm_eps"):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"LlamaConfig.{attr} must be a number, got {type(value).__name__}")
        if not (math.isfinite(self.rope_theta) and self.rope_theta > 0):
            raise ValueError(
                f"LlamaConfig.rope_theta must be a finite number > 0 (Llama 2 uses 10000, "
                f"Llama 3 500000), got {self.rope_theta}"
            )
        if not (math.isfinite(self.rms_norm_eps) and 0 < self.rms_norm_eps < 1):
            raise ValueError(
                f"LlamaConfig.rms_norm_eps must be a small number in (0, 1) (Llama uses 1e-5 or "
                f"1e-6), got {self.rms_norm_eps}"
            )
        if self.sliding_window is not None:
            _check_int("sliding_window", self.sliding_window, "None or an int >= 1")
        for attr in ("tie_embeddings", "qk_norm"):
            if not isinstance(getattr(self, attr), bool):
                raise TypeError(
                    f"LlamaConfig.{attr} must be True or False, got {getattr(self, attr)!r}"
                )
        if not isinstance(self.name, str):
            raise TypeError(f"LlamaConfig.name must be a str, got {type(self.name).__name__}")

    @property
    def d_head(self) -> int:
        """Width of one attention head (``head_dim``)."""
        return self.head_dim

    @property
    def d_ff(self) -> int:
        """Width of the MLP's hidden layer (``intermediate_size``)."""
        return self.intermediate_size


def _check_int(attr: str, value: object, allowed: str = "an int >= 1") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"LlamaConfig.{attr} must be {allowed}, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"LlamaConfig.{attr} must be {allowed}, got {value}")


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * g`` over the last dimension (no mean, no bias), computed in
    float32 as ``transformers`` does: ``(..., d) -> (..., d)``."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rope_cos_sin(
    positions: torch.Tensor, d_head: int, theta: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines of RoPE's angles for ``positions`` ``(..., N)``: two ``(..., N, d_head)``
    float32 tensors. Pair ``i`` turns by ``position * theta^(-2i / d_head)``; its angle is written
    twice (columns ``i`` and ``i + d_head/2``), matching :func:`rotate_half`."""
    exps = torch.arange(0, d_head, 2, dtype=torch.int64, device=positions.device).float() / d_head
    inv_freq = 1.0 / (theta**exps)  # (d_head / 2,): slow frequencies for the last pairs
    angles = positions.float()[..., None] * inv_freq  # (..., N, d_head / 2)
    emb = torch.cat((angles, angles), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[x1, x2] -> [-x2, x1]`` on the last dimension's halves: the 90-degree turn of each pair
    ``(x[i], x[i + d/2])``."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair of ``x`` ``(B, H, N, d_head)`` by its angle: ``x cos + rotate_half(x) sin``;
    ``cos``, ``sin`` ``(N, d_head)`` or ``(B, 1, N, d_head)``."""
    return (x * cos + rotate_half(x) * sin).to(x.dtype)


class RollingKVCache(KVCache):
    """A KV cache for a sliding-window model that keeps only the last ``window + spare`` positions.

    ``k[layer]``, ``v[layer]`` are ``(B, H_kv, window + spare, d_head)``; ``held`` positions are
    filled, the most recent ones (those at ``length - held .. length - 1``), in order. Its memory
    stops growing at the window, however long the text. The ``spare`` positions let speculative
    decoding roll back up to ``spare + 1`` tokens (setting ``length`` lower); a roll-back that
    would need positions already dropped is refused.
    """

    def __init__(
        self,
        config: LlamaConfig,
        batch_size: int,
        *,
        spare: int = 16,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        if config.sliding_window is None:
            raise ValueError("RollingKVCache needs a config with a sliding_window")
        self.window, self.capacity = config.sliding_window, config.sliding_window + spare
        shape = (batch_size, config.n_kv_head, self.capacity, config.d_head)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.max_len = config.block_size
        self.held = 0
        self._length = 0

    @property
    def length(self) -> int:
        """Tokens seen so far (positions ``0 .. length - 1``); the cache holds the last ``held``."""
        return self._length

    @length.setter
    def length(self, value: int) -> None:  # a roll-back (speculative decoding)
        drop = self._length - value
        if drop < 0:
            raise ValueError(f"a rolling cache can only be rolled back, to <= {self._length}")
        if value > 0 and self.held - drop < min(value, self.window - 1):
            raise ValueError(
                f"cannot roll back {drop} tokens: the rolling cache keeps "
                f"{self.capacity - self.window} spare positions past its window of {self.window}"
            )
        self.held, self._length = max(0, self.held - drop), value

    def check(self, batch_size: int, n_new: int) -> None:
        """Raise ValueError unless ids have ``batch_size`` rows (any number of tokens fits)."""
        if self.k[0].size(0) != batch_size:
            raise ValueError(
                f"cache was made for batch size {self.k[0].size(0)}, ids have {batch_size}"
            )

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the held keys/values followed by this step's ``(B, H_kv, held + N, d_head)``
        (positions ``length - held .. length + N - 1``), and keep the last ``capacity`` of them."""
        keys = torch.cat([self.k[layer][:, :, : self.held], k], dim=2)
        values = torch.cat([self.v[layer][:, :, : self.held], v], dim=2)
        keep = min(self.capacity, keys.size(2))
        self.k[layer][:, :, :keep].copy_(keys[:, :, -keep:])
        self.v[layer][:, :, :keep].copy_(values[:, :, -keep:])
        return keys, values

    def advance(self, n_new: int) -> None:
        """Count ``n_new`` tokens as seen; the cache holds at most ``capacity``."""
        self.held = min(self.capacity, self.held + n_new)
        self._length += n_new


class LlamaAttention(nn.Module):
    """Grouped-query causal self-attention with RoPE: ``(B, N, d) -> (B, N, d)``."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        H, H_kv, dh, d = config.n_head, config.n_kv_head, config.d_head, config.n_embd
        self.n_head, self.n_kv_head, self.d_head = H, H_kv, dh
        self.window = config.sliding_window
        self.q_proj = nn.Linear(d, H * dh, bias=False)  # W_Q
        self.k_proj = nn.Linear(d, H_kv * dh, bias=False)  # W_K: H_kv heads only
        self.v_proj = nn.Linear(d, H_kv * dh, bias=False)  # W_V
        self.o_proj = nn.Linear(H * dh, d, bias=False)  # W_O
        if config.qk_norm:
            self.q_norm = RMSNorm(dh, config.rms_norm_eps)
            self.k_norm = RMSNorm(dh, config.rms_norm_eps)

    def heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """``(B, N, n * d_head) -> (B, n, N, d_head)``."""
        B, N, _ = x.shape
        return x.view(B, N, n, self.d_head).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        need_weights: bool = False,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``cos``, ``sin``: RoPE's for the new tokens' positions; ``mask``: None (causal, within the
        window) or a boolean ``(B, 1, N, T)`` (True = may attend) for padded or paged batches."""
        q = self.heads(self.q_proj(x), self.n_head)  # (B, H, N, d_head)
        k = self.heads(self.k_proj(x), self.n_kv_head)  # (B, H_kv, N, d_head)
        v = self.heads(self.v_proj(x), self.n_kv_head)
        if hasattr(self, "q_norm"):  # qk-norm: each head's query and key normalised
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # the cache stores rotated keys
        if cache is not None and hasattr(cache, "attend"):  # a cache that attends by itself
            if need_weights:
                raise ValueError(
                    f"{type(cache).__name__} computes attention itself and returns no weights: "
                    f"run without output_attentions"
                )
            return self.o_proj(self._merge(cache.attend(layer, q, k, v))), None
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, H_kv, T, d_head): the last T positions
        if need_weights:  # written out, to return the weights
            y, weights = plain_attention(q, k, v, mask=mask, window=self.window)
            return self.o_proj(self._merge(y)), weights
        y = sdpa_attention(q, k, v, mask=mask, window=self.window)  # k, v heads shared, not copied
        return self.o_proj(self._merge(y)), None

    @staticmethod
    def _merge(y: torch.Tensor) -> torch.Tensor:
        """``(B, H, N, d_head) -> (B, N, H * d_head)``."""
        B, H, N, dh = y.shape
        return y.transpose(1, 2).reshape(B, N, H * dh)


class SwiGLU(nn.Module):
    """The gated MLP: ``down(silu(gate(x)) * up(x))``, ``d -> d_ff -> d``."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        d, d_ff = config.n_embd, config.intermediate_size
        self.gate_proj = nn.Linear(d, d_ff, bias=False)
        self.up_proj = nn.Linear(d, d_ff, bias=False)
        self.down_proj = nn.Linear(d_ff, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaBlock(nn.Module):
    """``x + attn(norm(x))``, then ``x + mlp(norm(x))``, with RMSNorm (pre-norm, as GPT-2)."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.self_attn = LlamaAttention(config)
        self.post_attention_layernorm = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x, cos, sin, cache=None, layer=0, need_weights=False, mask=None):
        """``x`` ``(B, N, d)`` -> ``((B, N, d), weights or None)``."""
        a, weights = self.self_attn(self.input_layernorm(x), cos, sin, cache, layer,
                                    need_weights, mask)  # fmt: skip
        x = x + a
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, weights


class Llama(Decoder):
    """The decoder. ``Llama(config)(ids)`` maps ids ``(B, N)`` to logits ``(B, N, V)``.

    Initialised as the book's :class:`~nexttoken.model.GPT` (normal, std 0.02; the residual
    projections ``o_proj`` and ``down_proj`` scaled by ``1 / sqrt(2 n_layer)``; norms' gains 1), so
    the two train from comparable starts.
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        if not isinstance(config, LlamaConfig):
            raise TypeError(f"config must be a LlamaConfig, got {type(config).__name__}")
        self.config = config
        self.model = nn.ModuleDict(
            dict(
                embed_tokens=nn.Embedding(config.vocab_size, config.n_embd),  # (V, d)
                layers=nn.ModuleList([LlamaBlock(config) for _ in range(config.n_layer)]),
                norm=RMSNorm(config.n_embd, config.rms_norm_eps),
            )
        )  # no position table: RoPE turns q and k inside attention
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        if self.lm_head.weight.device.type != "meta":
            std = 0.02
            for name, p in self.named_parameters():
                if name.endswith(("o_proj.weight", "down_proj.weight")):
                    nn.init.normal_(p, mean=0.0, std=std / math.sqrt(2 * config.n_layer))
                elif p.dim() == 2:
                    nn.init.normal_(p, mean=0.0, std=std)

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding ``(V, d)`` (never quantized: its weight gives dtype and device)."""
        return self.model.embed_tokens

    def run(
        self,
        idx: torch.Tensor,
        *,
        cache: KVCache | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        last_only: bool = False,
        positions: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        logits_at: torch.Tensor | None = None,
    ) -> GPTOutput:
        """The forward pass; arguments and result as :meth:`nexttoken.model.GPT.run`.

        ``positions`` ``(B, N)`` (default ``P .. P+N-1``) only feed RoPE's angles; ``hidden_states``
        starts with the token embeddings (there is no position embedding to add).
        """
        past = 0 if cache is None else cache.length
        self.check_ids(idx, past)
        B, N = idx.shape
        rows = None if logits_at is None else _check_logits_at(logits_at, N, last_only)
        if cache is not None:
            cache.check(B, N)
            if hasattr(cache, "inputs"):  # a paged view knows its rows' positions and mask
                positions, attn_mask = cache.inputs(positions, attn_mask)
        if positions is None:
            positions = torch.arange(past, past + N, device=idx.device)
        else:
            self._check_positions(positions, idx)
        paged = cache is not None and not isinstance(cache, KVCache)
        if self.config.sliding_window is not None and (attn_mask is not None or paged):
            self._check_window(cache, positions)
        cos, sin = rope_cos_sin(positions, self.config.d_head, self.config.rope_theta)
        if cos.dim() == 3:  # one row of positions per sequence: broadcast over heads
            cos, sin = cos[:, None], sin[:, None]
        x = self.model.embed_tokens(idx.long())  # (B, N, d)
        hidden = [x] if output_hidden_states else None
        attns = [] if output_attentions else None
        for i, block in enumerate(self.model.layers):
            x, w = block(x, cos, sin, cache, i, output_attentions, attn_mask)
            if hidden is not None:
                hidden.append(x)
            if attns is not None:
                attns.append(w)
        if cache is not None:
            cache.advance(N)
        x = self.model.norm(x)
        if last_only:
            x = x[:, -1:, :]
        elif rows is not None:
            x = x.index_select(1, rows)
        return GPTOutput(self.lm_head(x), hidden, attns, x)

    def _check_positions(self, positions: object, idx: torch.Tensor) -> None:
        if not isinstance(positions, torch.Tensor) or positions.shape != idx.shape:
            raise ValueError(
                f"positions must be a tensor with the shape of ids {tuple(idx.shape)}, got "
                f"{getattr(positions, 'shape', type(positions).__name__)}"
            )
        if int(positions.min()) < 0 or int(positions.max()) >= self.config.block_size:
            raise ValueError(f"positions must be in [0, {self.config.block_size - 1}]")

    def _check_window(self, cache, positions: torch.Tensor) -> None:
        """A padded or paged batch masks by columns over whole contexts: with a sliding window it
        is right only while every sequence fits in the window."""
        if isinstance(cache, RollingKVCache) or int(positions.max()) >= self.config.sliding_window:
            raise ValueError(
                f"batched and paged decoding attend over whole contexts: a sliding-window model "
                f"runs there only while every sequence is shorter than its window "
                f"({self.config.sliding_window} tokens); use generate() for longer ones"
            )

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits ``(B, N, V)`` for ids ``(B, N)``."""
        return self.run(idx, cache=cache).logits

    def new_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache:
        """An empty cache matching this model's dtype and device, with ``n_kv_head`` heads: a
        :class:`~nexttoken.model.KVCache` of ``max_len`` positions (default ``block_size``), or,
        for a sliding-window model asked for more than its window, a :class:`RollingKVCache`."""
        w = self.model.embed_tokens.weight
        window = self.config.sliding_window
        max_len = self.config.block_size if max_len is None else max_len
        if window is not None and max_len > window:
            return RollingKVCache(self.config, batch_size, dtype=w.dtype, device=w.device)
        return KVCache(self.config, batch_size, max_len, dtype=w.dtype, device=w.device)
