"""The GPT-2 architecture in one readable file.

A decoder-only transformer as in Radford et al. 2019 (GPT-2) and Brown et al. 2020 (GPT-3, minus the
sparse attention layers): token embedding + learned position embedding, ``n_layer`` pre-LayerNorm
blocks (causal multi-head self-attention, then a GELU MLP, each wrapped in a residual connection), a
final LayerNorm, and an output projection that shares its weight with the token embedding (tied).

Shapes use the paper's names: ``B`` batch, ``N`` tokens, ``d`` = ``n_embd`` (d_model), ``H`` =
``n_head``, ``d_head = d / H``, ``V`` = ``vocab_size``.

One forward pass serves everything: :meth:`GPT.forward` returns logits ``(B, N, V)``;
:meth:`GPT.run` is the same pass, and can also hand back every layer's hidden states and attention
weights (the book's figures use them) and read/write a :class:`KVCache`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "DecoderConfig",
    "Decoder",
    "GPTConfig",
    "GPT",
    "GPTOutput",
    "KVCache",
    "Block",
    "CausalSelfAttention",
    "MLP",
    "attention",
    "fused_attention",
    "causal_mask",
    "count_parameters",
]


class DecoderConfig:
    """What every decoder's config has (:class:`GPTConfig`, :class:`nexttoken.llama.LlamaConfig`):
    ``vocab_size``, ``block_size``, ``n_layer``, ``n_head``, ``n_embd``, ``d_head`` and ``n_kv_head``
    (the key/value heads the KV cache stores: ``n_head`` for GPT-2)."""


@dataclass(frozen=True)
class GPTConfig(DecoderConfig):
    """Hyper-parameters of a GPT-2-style decoder.

    ``block_size`` is the context length (the most tokens the model sees at once).
    """

    vocab_size: int = 50257
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for attr in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"GPTConfig.{attr} must be an int, got {type(value).__name__}")
            if value < 1:
                raise ValueError(f"GPTConfig.{attr} must be >= 1, got {value}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        for attr in ("dropout", "layer_norm_eps"):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"GPTConfig.{attr} must be a number, got {type(value).__name__}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")
        if not (math.isfinite(self.layer_norm_eps) and 0 < self.layer_norm_eps < 1):
            raise ValueError(
                f"GPTConfig.layer_norm_eps must be a small number > 0 (GPT-2 uses 1e-5), "
                f"in (0, 1); got {self.layer_norm_eps}"
            )
        if not isinstance(self.name, str):
            raise TypeError(f"GPTConfig.name must be a str, got {type(self.name).__name__}")

    @property
    def d_head(self) -> int:
        """Width of one attention head: ``n_embd // n_head``."""
        return self.n_embd // self.n_head

    @property
    def d_ff(self) -> int:
        """Width of the MLP's hidden layer: ``4 * n_embd`` (GPT-2 and GPT-3)."""
        return 4 * self.n_embd

    @property
    def n_kv_head(self) -> int:
        """Key/value heads: every query head has its own in GPT-2 (``n_head``)."""
        return self.n_head


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention, written out.

    ``q`` is ``(..., N, d_head)``, ``k`` and ``v`` are ``(..., T, d_head)``; ``mask`` is a boolean
    ``(N, T)`` (True = may attend) or None. Returns ``(out, weights)`` with ``out`` ``(..., N, d_head)``
    and ``weights`` ``(..., N, T)``, each row a probability distribution.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


def causal_mask(n_query: int, n_key: int, device=None) -> torch.Tensor:
    """Boolean ``(n_query, n_key)`` mask for queries that are the *last* ``n_query`` of ``n_key``.

    Query ``i`` sits at position ``n_key - n_query + i`` and may attend to keys at positions ``<=``
    its own. With ``n_query == n_key`` this is the lower triangle.
    """
    offset = n_key - n_query
    return torch.ones(n_query, n_key, dtype=torch.bool, device=device).tril(diagonal=offset)


def fused_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """:func:`attention` through PyTorch's fused kernel, causal unless ``mask`` is given.

    ``q`` ``(B, H, N, d_head)`` holds the *last* ``N`` of the ``T`` positions in ``k``, ``v``
    ``(B, H, T, d_head)``; ``mask``: None (causal) or a boolean ``(B, 1, N, T)``, True = may attend
    (padded or paged batches). Returns ``(B, H, N, d_head)``.
    """
    N, T = q.size(-2), k.size(-2)
    if mask is not None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    if N == 1:  # one new token sees every cached one: no mask needed
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    if N == T:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)
    m = causal_mask(N, T, q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=m, dropout_p=dropout_p)


class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated to ``max_len``.

    ``k[layer]`` and ``v[layer]`` are ``(B, H_kv, max_len, d_head)`` (``H_kv`` = ``n_kv_head``, which
    is ``n_head`` for GPT-2); the first ``length`` positions are filled. Appending writes in place
    (no concatenation, so a step's cost does not grow with copies).
    """

    def __init__(
        self,
        config: DecoderConfig,
        batch_size: int,
        max_len: int | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        max_len = config.block_size if max_len is None else max_len
        if not 1 <= max_len <= config.block_size:
            raise ValueError(f"max_len must be in [1, {config.block_size}], got {max_len}")
        shape = (batch_size, config.n_kv_head, max_len, config.d_head)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.max_len = max_len
        self.length = 0

    # The cache interface that attention calls (a paged cache implements the same three methods):
    # ``check(B, N)`` before a pass, ``update(layer, k, v)`` in every layer, ``advance(N)`` after.
    def check(self, batch_size: int, n_new: int) -> None:
        """Raise ValueError unless ``n_new`` more tokens for ``batch_size`` rows fit this cache."""
        if self.k[0].size(0) != batch_size:
            raise ValueError(
                f"cache was made for batch size {self.k[0].size(0)}, ids have {batch_size}"
            )
        if self.length + n_new > self.max_len:
            raise ValueError(f"the cache holds at most {self.max_len} tokens")

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's keys/values ``(B, H, N, d_head)`` at ``length`` (in place); return the
        keys and values to attend over, ``(B, H, length + N, d_head)``."""
        start, N = self.length, k.size(2)
        self.k[layer].narrow(2, start, N).copy_(k)
        self.v[layer].narrow(2, start, N).copy_(v)
        return self.k[layer].narrow(2, 0, start + N), self.v[layer].narrow(2, 0, start + N)

    def advance(self, n_new: int) -> None:
        """Count ``n_new`` tokens as held (called once per forward pass, after every layer)."""
        self.length += n_new

    def nbytes(self) -> int:
        """Memory the cache holds, in bytes (all layers, keys and values, full ``max_len``)."""
        return sum(t.numel() * t.element_size() for t in self.k + self.v)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: ``(B, N, d) -> (B, N, d)``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # W_Q, W_K, W_V side by side
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)  # W_O
        self.dropout = config.dropout

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, d) -> (B, H, N, d_head)``."""
        B, N, d = x.shape
        return x.view(B, N, self.n_head, d // self.n_head).transpose(1, 2)

    @staticmethod
    def merge_heads(x: torch.Tensor) -> torch.Tensor:
        """``(B, H, N, d_head) -> (B, N, d)``."""
        B, H, N, dh = x.shape
        return x.transpose(1, 2).reshape(B, N, H * dh)

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        need_weights: bool = False,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``mask``: None (causal), or a boolean ``(B, 1, N, T)`` (True = may attend) that replaces
        the causal mask, for batches of sequences with their own lengths (padding, paging)."""
        N = x.size(1)
        q, k, v = self.c_attn(x).split(x.size(-1), dim=2)
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)
        if cache is not None and hasattr(cache, "attend"):  # a cache that attends by itself
            if need_weights:
                raise ValueError(
                    f"{type(cache).__name__} computes attention itself and returns no weights: "
                    f"run without output_attentions"
                )
            return self.c_proj(self.merge_heads(cache.attend(layer, q, k, v))), None
        if cache is not None:  # write this step's keys/values in place, then attend over all
            k, v = cache.update(layer, k, v)
        T = k.size(2)
        weights = None
        drop = self.dropout if self.training else 0.0
        if need_weights:  # written out, to return the weights
            m = causal_mask(N, T, device=x.device) if mask is None else mask
            y, weights = attention(q, k, v, m)
        else:
            y = fused_attention(q, k, v, mask, drop)
        y = self.c_proj(self.merge_heads(y))
        if drop:  # skipped at inference: a no-op call still costs time at every step
            y = F.dropout(y, drop, True)
        return y, weights


class MLP(nn.Module):
    """Position-wise feed-forward: ``d -> 4d -> GELU -> d``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.d_ff)
        self.c_proj = nn.Linear(config.d_ff, config.n_embd)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # GPT-2 uses the tanh approximation of GELU
        h = F.gelu(self.c_fc(x), approximate="tanh")
        y = self.c_proj(h)
        if self.training and self.dropout:
            y = F.dropout(y, self.dropout, True)
        return y


class Block(nn.Module):
    """One decoder block (pre-LayerNorm): ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        need_weights: bool = False,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, weights = self.attn(self.ln_1(x), cache, layer, need_weights, mask)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, weights


@dataclass
class GPTOutput:
    """What :meth:`GPT.run` hands back.

    - ``logits``: ``(B, N, V)`` (or ``(B, 1, V)`` with ``last_only=True``);
    - ``hidden_states``: ``n_layer + 1`` tensors ``(B, N, d)`` — the input to block 0 (token +
      position embeddings), then the output of each block (before the final LayerNorm); or None;
    - ``attentions``: ``n_layer`` tensors ``(B, H, N, T)`` of attention weights; or None;
    - ``final_hidden``: ``(B, N, d)``, the output of the final LayerNorm (what the projection reads).
    """

    logits: torch.Tensor
    hidden_states: list[torch.Tensor] | None = None
    attentions: list[torch.Tensor] | None = None
    final_hidden: torch.Tensor | None = None


class Decoder(nn.Module):
    """What :func:`~nexttoken.generate.generate`, batching, the serving engine and speculative
    decoding call, whatever the architecture (:class:`GPT`, :class:`nexttoken.llama.Llama`):

    - ``config``: a :class:`DecoderConfig`;
    - ``run(ids, cache=..., last_only=..., positions=..., attn_mask=..., logits_at=...)``, one
      forward pass returning a :class:`GPTOutput` (see :meth:`GPT.run`);
    - ``new_cache(batch_size, max_len)``: an empty KV cache for ``run``;
    - ``get_input_embeddings()``: the token embedding, whose weight gives ``device`` and ``dtype``;
    - ``check_ids``, ``device``, ``dtype`` and ``num_parameters``, shared here.
    """

    config: DecoderConfig

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding ``(V, d)``."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """Where the weights live: read from the token embedding, which quantization never replaces
        (a quantized ``lm_head`` has no ``weight`` tensor)."""
        return self.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype (the token embedding's), which KV caches take."""
        return self.get_input_embeddings().weight.dtype

    def num_parameters(self) -> int:
        """Number of parameters, a tied embedding counted once."""
        return count_parameters(self)

    def check_ids(self, idx: torch.Tensor, past: int = 0) -> None:
        """Raise a clear error unless ``idx`` is an integer ``(B, N)`` tensor of valid token ids."""
        if not isinstance(idx, torch.Tensor):
            raise TypeError(f"ids must be a torch.Tensor of shape (B, N), got {type(idx).__name__}")
        if idx.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
            raise TypeError(f"ids must be an integer tensor (torch.long), got dtype {idx.dtype}")
        if idx.dim() != 2:
            raise ValueError(f"ids must have shape (B, N), got {tuple(idx.shape)}")
        B, N = idx.shape
        if B == 0 or N == 0:
            raise ValueError(f"ids must hold at least one token per row, got shape {(B, N)}")
        if past + N > self.config.block_size:
            raise ValueError(
                f"{past + N} tokens exceed the context length block_size="
                f"{self.config.block_size}; crop the input to its last {self.config.block_size}"
            )
        if idx.device.type != "meta":
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0 or hi >= self.config.vocab_size:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"token id {bad} is out of range: ids must be in [0, {self.config.vocab_size - 1}]"
                )


class GPT(Decoder):
    """The decoder. ``GPT(config)(ids)`` maps ids ``(B, N)`` to logits ``(B, N, V)``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embedding (V, d)
                wpe=nn.Embedding(config.block_size, config.n_embd),  # position embedding (T, d)
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied: the projection is wte transposed
        if self.lm_head.weight.device.type != "meta":
            self.apply(self._init_weights)
            for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
                if name.endswith("c_proj.weight"):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding ``wte`` ``(V, d)``."""
        return self.transformer.wte

    def embed(
        self, idx: torch.Tensor, past: int = 0, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Token + position embeddings: ids ``(B, N)`` -> ``(B, N, d)``.

        Positions are ``past .. past + N - 1`` for every row, or ``positions`` ``(B, N)`` when given.
        """
        tok = self.transformer.wte(idx.long())  # (B, N, d)
        if positions is None:
            N = idx.size(1)
            return tok + self.transformer.wpe.weight[past : past + N]  # (N, d), broadcast over B
        if positions.shape != idx.shape:
            raise ValueError(
                f"positions must have the shape of ids {tuple(idx.shape)}, "
                f"got {tuple(positions.shape)}"
            )
        if int(positions.min()) < 0 or int(positions.max()) >= self.config.block_size:
            raise ValueError(f"positions must be in [0, {self.config.block_size - 1}]")
        return tok + self.transformer.wpe(positions)  # (B, N, d): each row its own positions

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
        """The forward pass, with everything the book looks at.

        ``idx`` ``(B, N)``: token ids. With a ``cache`` holding ``P`` earlier tokens, ``idx`` holds
        the *new* tokens (positions ``P .. P+N-1``) and the cache is extended by ``N``.
        ``last_only`` projects only the last position to the vocabulary (what generation needs).

        For a batch whose rows have their own lengths (left padding in
        :mod:`nexttoken.batching`, a paged cache in :mod:`nexttoken.serve`): ``positions`` ``(B, N)``
        gives each token's position (default ``P .. P+N-1`` for every row), and ``attn_mask`` a
        boolean ``(B, 1, N, T)`` (True = may attend; ``T`` = keys attended over) that replaces the
        causal mask. A cache is anything with ``length``, ``check(B, N)``, ``update(layer, k, v)``
        and ``advance(N)`` (:class:`KVCache`, :class:`nexttoken.paged.PagedBatch`). A cache with
        ``inputs(positions, attn_mask)`` supplies its own (a paged view); one with
        ``attend(layer, q, k, v)`` computes attention itself (:class:`nexttoken.paged.PackedBatch`).

        ``logits_at`` ``(K,)``: project only these positions of every row to the vocabulary, logits
        ``(B, K, V)`` (a serving step needs one row per request, not one per prompt token).
        """
        past = 0 if cache is None else cache.length
        self.check_ids(idx, past)
        N = idx.size(1)
        rows = None if logits_at is None else _check_logits_at(logits_at, N, last_only)
        if cache is not None:
            cache.check(idx.size(0), N)
            if hasattr(cache, "inputs"):  # a paged view knows its rows' positions and mask
                positions, attn_mask = cache.inputs(positions, attn_mask)
        x = self.transformer.drop(self.embed(idx, past, positions))
        hidden = [x] if output_hidden_states else None
        attns = [] if output_attentions else None
        for i, block in enumerate(self.transformer.h):
            x, w = block(x, cache, i, output_attentions, attn_mask)
            if hidden is not None:
                hidden.append(x)
            if attns is not None:
                attns.append(w)
        if cache is not None:
            cache.advance(N)
        x = self.transformer.ln_f(x)
        if last_only:
            x = x[:, -1:, :]
        elif rows is not None:
            x = x.index_select(1, rows)
        logits = self.lm_head(x)  # (B, N, V): scores, not probabilities
        return GPTOutput(logits, hidden, attns, x)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits ``(B, N, V)`` for ids ``(B, N)``."""
        return self.run(idx, cache=cache).logits

    def new_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache:
        """An empty :class:`KVCache` matching this model's dtype and device."""
        w = self.transformer.wte.weight
        return KVCache(self.config, batch_size, max_len, dtype=w.dtype, device=w.device)


def _check_logits_at(logits_at: object, n_tokens: int, last_only: bool) -> torch.Tensor:
    """``logits_at`` as a long ``(K,)`` tensor of positions in ``[0, n_tokens)``, or an error."""
    if last_only:
        raise ValueError("pass last_only=True or logits_at, not both")
    if (
        not isinstance(logits_at, torch.Tensor)
        or logits_at.dim() != 1
        or logits_at.is_floating_point()
    ):
        raise TypeError("logits_at must be a 1-D integer tensor of positions (K,)")
    if logits_at.numel() == 0 or int(logits_at.min()) < 0 or int(logits_at.max()) >= n_tokens:
        raise ValueError(f"logits_at must hold at least one position, each in [0, {n_tokens - 1}]")
    return logits_at.long()


def count_parameters(module: nn.Module) -> int:
    """Parameters of ``module``, each shared tensor counted once (works on the meta device)."""
    seen: set[int] = set()
    total = 0
    for p in module.parameters():  # .parameters() already skips duplicates of tied weights
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total
