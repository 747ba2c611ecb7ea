"""Attention kernels, in one home: written out, fused, and tile by tile with an online softmax.

Every function takes the heads already split: queries ``q`` ``(B, H, N, d_head)``, keys and values
``k``, ``v`` ``(B, H_kv, M, d_head)``. ``H_kv`` may be smaller than ``H`` as long as it divides it
(grouped-query attention; ``H_kv = 1`` is multi-query attention): query head ``h`` reads key/value
head ``h // (H // H_kv)``. The ``N`` queries are the *last* ``N`` of the ``M`` positions (a prompt
with ``N == M``, or one new token over a KV cache with ``N == 1``), so query ``i`` sits at position
``M - N + i``.

- :func:`plain_attention` -- ``softmax(q kᵀ / sqrt(d_head) + mask) v`` written out, as notebooks 03
  and 10 teach it; also returns the ``(B, H, N, M)`` weights.
- :func:`sdpa_attention` -- the same through PyTorch's fused
  ``torch.nn.functional.scaled_dot_product_attention``; what the models call.
- :func:`online_softmax_attention` -- FlashAttention's idea (Dao et al. 2022) in plain PyTorch:
  keys and values visited ``block_size`` at a time, a running maximum and a running sum per query,
  so no ``(N, M)`` matrix ever exists.
- :func:`attention_mask` -- the boolean ``(N, M)`` mask (causal, optionally a sliding window).
- :func:`attention_memory` and :func:`peak_memory` -- the largest intermediate each method needs,
  computed from shapes, and the peak of live tensors measured while a function runs;
  :func:`memory_curve` puts both side by side for a list of prompt lengths.

A sliding ``window`` of ``w`` lets query position ``p`` see keys at positions ``p - w + 1 .. p``
(itself and the ``w - 1`` before it), as in Mistral 7B (Jiang et al. 2023).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = [
    "causal_mask",
    "attention_mask",
    "repeat_kv",
    "attention_weights",
    "plain_attention",
    "sdpa_attention",
    "online_softmax_attention",
    "attention_memory",
    "peak_memory",
    "memory_curve",
]


def causal_mask(n_query: int, n_key: int, device=None) -> torch.Tensor:
    """Boolean ``(n_query, n_key)`` mask for queries that are the *last* ``n_query`` of ``n_key``.

    Query ``i`` sits at position ``n_key - n_query + i`` and may attend to keys at positions ``<=``
    its own (True = may attend). With ``n_query == n_key`` this is the lower triangle.
    """
    offset = n_key - n_query
    return torch.ones(n_query, n_key, dtype=torch.bool, device=device).tril(diagonal=offset)


def attention_mask(
    n_query: int,
    n_key: int,
    *,
    causal: bool = True,
    window: int | None = None,
    device=None,
) -> torch.Tensor | None:
    """Boolean ``(n_query, n_key)`` mask (True = may attend), or None when every key is visible.

    ``causal``: query position ``p = n_key - n_query + i`` sees keys ``<= p``. ``window``: it also
    sees only the ``window`` most recent of them, keys ``> p - window``.
    """
    if not causal and window is None:
        return None
    m = causal_mask(n_query, n_key, device) if causal else None
    if window is not None:
        offset = n_key - n_query
        recent = torch.ones(n_query, n_key, dtype=torch.bool, device=device).triu(
            diagonal=offset - window + 1
        )
        m = recent if m is None else m & recent
    return m


def _check_int(name: str, value: object, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def _check_qkv(q: object, k: object, v: object, causal: bool, window: object) -> int:
    """Validate shapes; return ``n_rep = H // H_kv`` (query heads per key/value head)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(
                f"{name} must have shape (B, heads, positions, d_head), got {tuple(t.shape)}"
            )
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if k.shape != v.shape:
        raise ValueError(
            f"k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}"
        )
    if q.dtype != k.dtype or q.dtype != v.dtype:
        raise TypeError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    (B, H, N, d), (Bk, H_kv, M, dk) = q.shape, k.shape
    if B != Bk or d != dk:
        raise ValueError(
            f"q (B, H, N, d_head) = {tuple(q.shape)} and k (B, H_kv, M, d_head) = {tuple(k.shape)} "
            f"must agree on B and d_head"
        )
    if H_kv < 1 or H % H_kv:
        raise ValueError(f"the key/value heads ({H_kv}) must divide the query heads ({H})")
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be True or False, got {causal!r}")
    if causal and M < N:
        raise ValueError(
            f"causal attention needs at least as many keys as queries (the queries are the last "
            f"N of the M positions), got N={N}, M={M}"
        )
    if window is not None:
        _check_int("window", window)
    return H // H_kv


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """``(B, H_kv, M, d_head) -> (B, H_kv * n_rep, M, d_head)``: each key/value head repeated for the
    ``n_rep`` query heads that share it (head ``h`` of the result is head ``h // n_rep`` of ``x``)."""
    if n_rep == 1:
        return x
    B, H_kv, M, d = x.shape
    return x[:, :, None].expand(B, H_kv, n_rep, M, d).reshape(B, H_kv * n_rep, M, d)


def attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    causal: bool = True,
    mask: torch.Tensor | None = None,
    window: int | None = None,
) -> torch.Tensor:
    """The ``(B, H, N, M)`` attention weights ``softmax(q kᵀ / sqrt(d_head))``, each row summing to 1.

    ``mask``: a boolean tensor broadcastable to ``(B, H, N, M)`` (True = may attend) that replaces
    the causal/window mask (padded or paged batches).
    """
    n_rep = _check_qkv(q, k, k, causal, window)
    k = repeat_kv(k, n_rep)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is None:
        mask = attention_mask(q.size(-2), k.size(-2), causal=causal, window=window, device=q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


def plain_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = True,
    mask: torch.Tensor | None = None,
    window: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention written out: scores, scale, mask, softmax, weighted sum of values.

    Returns ``(out, weights)``: ``out`` ``(B, H, N, d_head)`` and the weights ``(B, H, N, M)``. With
    ``H_kv == H`` this is, operation for operation, :func:`nexttoken.model.attention`.
    """
    n_rep = _check_qkv(q, k, v, causal, window)
    weights = attention_weights(q, k, causal=causal, mask=mask, window=window)
    return weights @ repeat_kv(v, n_rep), weights


def sdpa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = True,
    mask: torch.Tensor | None = None,
    window: int | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Attention through PyTorch's fused ``scaled_dot_product_attention``: ``(B, H, N, d_head)``.

    ``mask``: None (causal or not, with an optional sliding ``window``), or a boolean tensor
    broadcastable to ``(B, 1, N, M)`` (True = may attend) that replaces them. With ``H_kv == H``
    the calls are exactly those of :func:`nexttoken.model.fused_attention` (same results, bit for
    bit). With fewer key/value heads the ``n_rep`` query heads of a group are stacked as extra query
    rows, ``(B, H_kv, n_rep * N, d_head)``, so every key and value is read once, never copied.
    """
    n_rep = _check_qkv(q, k, v, causal, window)
    B, H, N, d = q.shape
    M = k.size(2)
    if mask is None:
        if N == 1 and window is None:  # one new token sees every cached one: no mask needed
            mask, causal = None, False
        elif N == M and window is None and causal:
            mask = None  # the fused kernel's own causal path
        else:
            mask = attention_mask(N, M, causal=causal, window=window, device=q.device)
            causal = False
    else:
        causal = False
    if n_rep == 1:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal
        )
    if causal:  # a causal prompt: the stacked rows would need their own mask; let torch group
        return F.scaled_dot_product_attention(
            q, k, v, dropout_p=dropout_p, is_causal=True, enable_gqa=True
        )
    qg = q.reshape(B, k.size(1), n_rep * N, d)  # heads h*n_rep .. h*n_rep+n_rep-1 share k[:, h]
    if mask is not None:  # (..., N, M) -> (..., n_rep * N, M): the same rows for every query head
        mask = torch.broadcast_to(mask, (B, 1, N, M)) if mask.dim() < 4 else mask
        mask = mask.repeat(1, 1, n_rep, 1) if mask.size(1) == 1 else _group_mask(mask, n_rep)
    y = F.scaled_dot_product_attention(qg, k, v, attn_mask=mask, dropout_p=dropout_p)
    return y.reshape(B, H, N, d)


def _group_mask(mask: torch.Tensor, n_rep: int) -> torch.Tensor:
    """A per-head mask ``(B, H, N, M)`` regrouped as ``(B, H_kv, n_rep * N, M)``."""
    B, H, N, M = mask.shape
    return mask.reshape(B, H // n_rep, n_rep * N, M)


def online_softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    block_size: int = 64,
    causal: bool = True,
    window: int | None = None,
) -> torch.Tensor:
    """Attention with keys and values visited ``block_size`` at a time: ``(B, H, N, d_head)``.

    For each query, keep the largest score seen so far ``m``, the sum ``total`` of ``exp(score - m)``
    and the weighted sum ``acc`` of values. A new block of scores ``s`` with maximum ``m_new =
    max(m, max s)`` rescales what came before by ``exp(m - m_new)``::

        total = exp(m - m_new) * total + sum(exp(s - m_new))
        acc   = exp(m - m_new) * acc   + exp(s - m_new) @ v_block

    and at the end ``out = acc / total`` is exactly ``softmax(scores) @ v``. The largest tensor alive is
    one block of scores, ``(B, H, N, block_size)``: the ``(N, M)`` matrix never exists. Blocks that a
    ``window`` hides from every query are skipped, not computed (the causal mask hides no whole
    block: the last query sees every key).

    The last block may be shorter (``block_size`` need not divide ``M``). Query heads share
    key/value heads as in :func:`sdpa_attention` (grouped-query attention).
    """
    n_rep = _check_qkv(q, k, v, causal, window)
    _check_int("block_size", block_size)
    B, H, N, d = q.shape
    H_kv, M = k.size(1), k.size(2)
    qg = q.reshape(B, H_kv, n_rep * N, d) * (1.0 / math.sqrt(d))  # rows: n_rep groups of N queries
    pos = torch.arange(M - N, M, device=q.device).repeat(n_rep)[:, None]  # (n_rep*N, 1) positions
    lo_key = 0 if window is None else max(0, M - N - window + 1)  # first key any query sees
    shape = (B, H_kv, n_rep * N, 1)
    m = torch.full(shape, float("-inf"), dtype=q.dtype, device=q.device)  # running maximum
    total = torch.zeros(shape, dtype=q.dtype, device=q.device)  # running sum of exp(s - m)
    acc = torch.zeros((B, H_kv, n_rep * N, d), dtype=q.dtype, device=q.device)
    for start in range(lo_key - lo_key % block_size, M, block_size):
        end = min(start + block_size, M)
        s = qg @ k[:, :, start:end].transpose(-2, -1)  # (B, H_kv, n_rep*N, end - start)
        keys = torch.arange(start, end, device=q.device)[None, :]
        hidden = None
        if causal and end - 1 > M - N:  # the block reaches past the first query's position
            hidden = keys > pos
        if window is not None and start <= M - 1 - window:  # reaches before some query's window
            old = keys <= pos - window
            hidden = old if hidden is None else hidden | old
        if hidden is not None:
            s = s.masked_fill(hidden, float("-inf"))
        m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
        m_safe = m_new.masked_fill(m_new == float("-inf"), 0.0)  # rows with nothing seen yet
        p = torch.exp(s - m_safe)
        alpha = torch.exp(m - m_safe)
        total = alpha * total + p.sum(dim=-1, keepdim=True)
        acc = alpha * acc + p @ v[:, :, start:end]
        m = m_new
    return (acc / total).reshape(B, H, N, d)


def attention_memory(
    n_query: int,
    n_key: int,
    *,
    method: str = "plain",
    block_size: int = 64,
    batch: int = 1,
    n_head: int = 1,
    bytes_per_number: int = 4,
) -> int:
    """Bytes of the largest intermediate tensor of one attention call, from the shapes alone.

    ``"plain"`` (and any method that builds the score matrix): the scores ``(B, H, N, M)``.
    ``"online"``: one block of scores ``(B, H, N, min(block_size, M))``. Inputs and the output
    ``(B, H, N, d_head)`` are not counted: every method needs them.
    """
    for name, value in (
        ("n_query", n_query),
        ("n_key", n_key),
        ("block_size", block_size),
        ("batch", batch),
        ("n_head", n_head),
        ("bytes_per_number", bytes_per_number),
    ):
        _check_int(name, value)
    if method == "plain":
        cols = n_key
    elif method == "online":
        cols = min(block_size, n_key)
    else:
        raise ValueError(f"method must be 'plain' or 'online', got {method!r}")
    return batch * n_head * n_query * cols * bytes_per_number


class _LiveTensors(TorchDispatchMode):
    """Counts the bytes of the storages that operators create and that are still alive."""

    def __init__(self, exclude: set[int]) -> None:
        super().__init__()
        self.exclude = exclude  # storages that existed before (the inputs)
        self.refs: dict[int, int] = {}  # storage address -> Python tensors alive on it
        self.live = 0
        self.peak = 0
        self.largest = 0

    def _release(self, key: int, nbytes: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.live -= nbytes

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key, nbytes = storage.data_ptr(), storage.nbytes()
        if key in self.exclude or nbytes == 0:
            return
        if key not in self.refs:
            self.refs[key] = 0
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            self.largest = max(self.largest, nbytes)
        self.refs[key] += 1
        weakref.finalize(t, self._release, key, nbytes)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self._track(t)
        return out


def peak_memory(fn: Callable[..., Any], *args: torch.Tensor, **kwargs: Any) -> dict[str, int]:
    """Run ``fn(*args, **kwargs)`` and measure the memory of the tensors it creates.

    Every tensor an operator hands back is counted (by its storage) from its creation until Python
    frees it. Returns ``{"peak": most bytes alive at once, "largest": the biggest single tensor}``,
    inputs excluded, the result included. Scratch space *inside* one fused kernel (such as the
    tiles of ``scaled_dot_product_attention``) is not a tensor handed back and is not seen.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    exclude = {
        a.untyped_storage().data_ptr()
        for a in (*args, *kwargs.values())
        if isinstance(a, torch.Tensor)
    }
    mode = _LiveTensors(exclude)
    with torch.no_grad(), mode:
        out = fn(*args, **kwargs)
    del out
    return {"peak": mode.peak, "largest": mode.largest}


def memory_curve(
    sizes: list[int],
    *,
    n_head: int = 1,
    d_head: int = 64,
    block_size: int = 64,
    seed: int = 0,
) -> list[dict[str, int]]:
    """Memory of causal self-attention over a prompt of ``N`` tokens, for each ``N`` in ``sizes``.

    One row per ``N``: ``plain_scores`` (bytes of the ``(1, H, N, N)`` score matrix) and
    ``online_block`` (one ``(1, H, N, block_size)`` block), computed by :func:`attention_memory`;
    ``plain_peak``, ``online_peak`` and ``sdpa_peak``, the most bytes of tensors alive at once
    while :func:`plain_attention`, :func:`online_softmax_attention` and :func:`sdpa_attention` run
    on random float32 inputs, measured by :func:`peak_memory` (inputs excluded, output included).
    """
    if not isinstance(sizes, (list, tuple)) or not sizes:
        raise ValueError(f"sizes must be a non-empty list of prompt lengths, got {sizes!r}")
    for n in sizes:
        _check_int("each size", n)
    _check_int("d_head", d_head)
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in sizes:
        q, k, v = (torch.randn(1, n_head, n, d_head, generator=g) for _ in range(3))
        rows.append(
            {
                "N": n,
                "plain_scores": attention_memory(n, n, n_head=n_head),
                "online_block": attention_memory(
                    n, n, method="online", block_size=block_size, n_head=n_head
                ),
                "plain_peak": peak_memory(plain_attention, q, k, v)["peak"],
                "online_peak": peak_memory(
                    online_softmax_attention, q, k, v, block_size=block_size
                )["peak"],
                "sdpa_peak": peak_memory(sdpa_attention, q, k, v)["peak"],
            }
        )
    return rows
