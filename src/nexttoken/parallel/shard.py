"""One decoder block cut across ``T`` processes, Megatron style (Shoeybi et al. 2019, section 3).

The cut, for a block of width ``d`` with ``H`` heads, on rank ``t`` of ``T``:

- attention: the fused QKV projection ``c_attn`` (``d -> 3d``) is **column-parallel**: rank ``t``
  keeps the columns of its ``H/T`` heads for Q, K and V (``d -> 3d/T``), so it computes its heads
  entirely on its own; the output projection ``c_proj`` (``d -> d``) is **row-parallel**: rank ``t``
  keeps the rows that read its heads (``d/T -> d``) and produces a *partial sum* of the full
  output. One all-reduce adds the ``T`` partial sums; rank 0's partial sum carries the bias.
- MLP: ``c_fc`` (``d -> 4d``) column-parallel (``d -> 4d/T``), GELU on the local columns (GELU is
  element-wise, so cutting columns commutes with it: no communication inside the MLP), ``c_proj``
  (``4d -> d``) row-parallel (``4d/T -> d``), one all-reduce.
- LayerNorms and residuals are replicated: every rank holds the full ``(B, N, d)`` activation
  between the two all-reduces.

Every bias is added *inside* its matrix product (``F.linear(x, W, b)``, a fused addmm, as
``nn.Linear`` in :class:`~nexttoken.model.Block` does): the column-parallel layers with their slice
of the bias, the row-parallel ones with the whole bias on rank 0 only. So the block with ``T = 1``
and no group runs exactly the single-process block's operations and gives its output bit for bit;
the pipeline stages use it, so a pipeline without tensor parallelism equals one process exactly, and
the book has one forward pass for every split. With ``T > 1`` float32 results still differ in the
last bits (about 1e-5 on the book model's logits, which reach 17): each row-parallel output is a sum
of ``T`` partial sums, rounded in another order than the single product, and no placement of the
bias changes that. The KV cache of a shard holds only its own heads.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from ..model import Block, GPTConfig, KVCache, fused_attention

__all__ = ["ShardBlock", "ShardCache", "check_split", "head_slice"]


def check_split(config: GPTConfig, tp: int, pp: int = 1) -> None:
    """Raise a ValueError unless ``config`` can be cut into ``tp`` tensor and ``pp`` pipeline parts."""
    for name, value in (("tp", tp), ("pp", pp)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if config.n_head % tp:
        raise ValueError(
            f"tensor parallelism cuts attention by heads: n_head={config.n_head} is not divisible "
            f"by tp={tp}; use a tp that divides {config.n_head}"
        )
    if pp > config.n_layer:
        raise ValueError(
            f"a pipeline stage needs at least one block: pp={pp} stages > n_layer="
            f"{config.n_layer} blocks; use pp <= {config.n_layer}"
        )


def head_slice(n: int, rank: int, size: int) -> slice:
    """The ``rank``-th of ``size`` equal contiguous slices of ``range(n)``."""
    step = n // size
    return slice(rank * step, (rank + 1) * step)


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An ``nn.Linear`` holding copies of ``weight`` ``(out, in)`` and ``bias`` ``(out,)``."""
    out_f, in_f = weight.shape
    lin = nn.Linear(in_f, out_f, bias=bias is not None, device="meta")
    lin.weight = nn.Parameter(weight.detach().clone())
    if bias is not None:
        lin.bias = nn.Parameter(bias.detach().clone())
    return lin


class ShardCache(KVCache):
    """The KV cache of one rank: keys and values of *its* heads for its blocks.

    ``k[i]`` and ``v[i]`` are ``(B, H_local, max_len, d_head)``. Only the shapes differ from
    :class:`nexttoken.model.KVCache`; the cache interface that attention calls (``check``,
    ``update``, ``advance``) and ``length`` / ``max_len`` / ``nbytes`` are KVCache's own, so
    ``generate`` runs unchanged on a shard.
    """

    def __init__(
        self,
        n_blocks: int,
        batch_size: int,
        n_head_local: int,
        max_len: int,
        d_head: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        shape = (batch_size, n_head_local, max_len, d_head)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_blocks)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_blocks)]
        self.max_len = max_len
        self.length = 0


def all_reduce(x: torch.Tensor, group) -> torch.Tensor:
    """Sum ``x`` over ``group`` (in place; looked up on ``torch.distributed`` at call time, so a
    counting wrapper installed there sees every call)."""
    if group is not None:
        dist.all_reduce(x, op=dist.ReduceOp.SUM, group=group)
    return x


class ShardBlock(nn.Module):
    """Rank ``rank``'s part of a :class:`~nexttoken.model.Block`: ``(B, N, d) -> (B, N, d)``.

    ``block``: the full block (its weights are copied, not shared); ``size``: the tensor-parallel
    degree ``T``; ``group``: the process group of the ``T`` ranks (None when ``T = 1``). The number of
    local heads is read from the width of ``c_attn``'s output, so the same code also runs when
    PyTorch's DTensor has sharded the linear layers (``nexttoken.parallel.dtensor``).
    """

    def __init__(
        self, block: Block, config: GPTConfig, rank: int = 0, size: int = 1, group=None
    ) -> None:
        super().__init__()
        d, dh = config.n_embd, config.d_head
        heads = head_slice(config.n_head, rank, size)
        cols = slice(heads.start * dh, heads.stop * dh)  # this rank's columns of Q (or K, or V)
        W, b = block.attn.c_attn.weight, block.attn.c_attn.bias  # (3d, d), (3d,)
        rows = [torch.arange(cols.start, cols.stop) + part * d for part in range(3)]
        rows = torch.cat(rows).to(W.device)  # [Q cols | K cols | V cols] of the local heads
        self.d_head = dh
        self.group = group
        self.c_attn = _linear(W[rows], b[rows])  # column-parallel: d -> 3d/T
        Wo = block.attn.c_proj.weight  # (d, d): output rows, input columns
        # the row-parallel biases: inside rank 0's product only, so the all-reduce adds them once.
        # Why rank 0 and inside: with T = 1 that is nn.Linear's own fused addmm, bit for bit (adding
        # the bias after the product differed by 1e-5 on the book model's logits, 0 here). For T > 1,
        # measured against the single process over 5 inputs (float32, book model): bias in rank 0's
        # product 1.1e-5 to 1.9e-5, in the last rank's, split T ways, or added after the all-reduce
        # all 1.1e-5 to 1.9e-5 as well; the sum of partial sums, not the bias, sets that difference.
        bias_here = rank == 0
        self.attn_proj = _linear(Wo[:, cols], block.attn.c_proj.bias if bias_here else None)
        ff = head_slice(config.d_ff, rank, size)
        self.c_fc = _linear(block.mlp.c_fc.weight[ff], block.mlp.c_fc.bias[ff])  # d -> 4d/T
        self.mlp_proj = _linear(
            block.mlp.c_proj.weight[:, ff], block.mlp.c_proj.bias if bias_here else None
        )  # 4d/T -> d
        self.ln_1, self.ln_2 = _copy(block.ln_1), _copy(block.ln_2)

    def attention(
        self,
        x: torch.Tensor,
        cache: ShardCache | None = None,
        layer: int = 0,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """This rank's heads, then its partial output projection: ``(B, N, d) -> (B, N, d)`` partial."""
        B, N, _ = x.shape
        qkv = self.c_attn(x)  # (B, N, 3 * H_local * d_head)
        h = qkv.size(-1) // 3 // self.d_head  # local heads
        q, k, v = (
            t.view(B, N, h, self.d_head).transpose(1, 2) for t in qkv.split(h * self.d_head, -1)
        )
        if cache is not None:  # any cache with the KVCache interface (a paged one too)
            k, v = cache.update(layer, k, v)
        y = fused_attention(q, k, v, mask)  # the single-process model's own attention call
        y = y.transpose(1, 2).reshape(B, N, h * self.d_head)
        return self.attn_proj(y)

    def forward(
        self,
        x: torch.Tensor,
        cache: ShardCache | None = None,
        layer: int = 0,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + all_reduce(self.attention(self.ln_1(x), cache, layer, mask), self.group)  # 1st
        h = F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")  # local columns: no communication
        return x + all_reduce(self.mlp_proj(h), self.group)  # 2nd all-reduce


def _copy(ln: nn.LayerNorm) -> nn.LayerNorm:
    """A copy of ``ln`` (same dtype)."""
    new = nn.LayerNorm(ln.normalized_shape, eps=ln.eps, device="meta")
    new.weight = nn.Parameter(ln.weight.detach().clone())
    new.bias = nn.Parameter(ln.bias.detach().clone())
    return new
