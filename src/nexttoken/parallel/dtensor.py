"""The same tensor-parallel cut through PyTorch's own API: DTensor's ``parallelize_module``.

``ColwiseParallel`` shards a linear layer's weight by output rows (``Shard(0)``) and leaves its output
sharded along the last dimension; ``RowwiseParallel`` shards by input columns (``Shard(1)``) and
all-reduces its output back to ``Replicate``. That is exactly the hand-written plan of
:mod:`nexttoken.parallel.shard`, with one detail DTensor cannot know: ``c_attn`` holds Q, K and V side
by side, so its rows are first reordered to ``[Q_0 K_0 V_0 | Q_1 K_1 V_1 | ...]``, so that rank ``t``'s
contiguous chunk holds the Q, K and V columns of the same heads. The row-parallel bias is where the
two differ in the last bits: the hand-written shard adds it inside rank 0's product, DTensor turns the
replicated bias into a partial one (a 1/T share on each rank); both are float32 roundings of the same
sum, about as far from the single process as each other.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..model import GPT
from .shard import ShardBlock, check_split
from .tensor import ParallelGPT

__all__ = ["dtensor_parallel", "qkv_interleave"]


def qkv_interleave(d: int, T: int) -> torch.Tensor:
    """Row order of ``c_attn`` ``(3d, d)`` that puts each of ``T`` ranks' Q, K, V rows together."""
    w = d // T
    return torch.cat(
        [torch.arange(p * d + t * w, p * d + (t + 1) * w) for t in range(T) for p in range(3)]
    )


def dtensor_parallel(model: GPT) -> ParallelGPT:
    """``model`` split over every rank of the default group by ``parallelize_module`` (CPU mesh)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    T = dist.get_world_size()
    cfg = model.config
    check_split(cfg, T)
    mesh = init_device_mesh("cpu", (T,))
    order = qkv_interleave(cfg.n_embd, T)
    blocks = []
    for b in model.transformer.h:
        blk = ShardBlock(b, cfg)  # the full block, no hand-written all-reduce (group None)
        with torch.no_grad():
            blk.c_attn.weight.copy_(blk.c_attn.weight[order])
            blk.c_attn.bias.copy_(blk.c_attn.bias[order])
        plan = {
            "c_attn": ColwiseParallel(),
            "attn_proj": RowwiseParallel(),
            "c_fc": ColwiseParallel(),
            "mlp_proj": RowwiseParallel(),
        }
        blocks.append(parallelize_module(blk, mesh, plan))
    return ParallelGPT(model, blocks, cfg.n_head // T).eval()


def dtensor_logits(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    """Logits ``(B, N, V)`` of ``ids`` through :func:`dtensor_parallel` (on every rank)."""
    with torch.no_grad():
        return dtensor_parallel(model)(ids)
