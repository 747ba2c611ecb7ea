"""Pipeline parallelism: the blocks cut into stages, micro-batches passed along (GPipe).

Huang et al. 2019 (GPipe): stage ``s`` of ``p`` holds a contiguous run of blocks; the batch is cut
into ``m`` micro-batches; stage ``s`` receives micro-batch ``j``'s activation ``(B/m, N, d)`` from stage
``s - 1`` (``torch.distributed.recv``), runs its blocks, and sends the result to stage ``s + 1``
(``isend``, so it can start on micro-batch ``j + 1`` at once). Stage 0 embeds the ids; the last stage
applies the final LayerNorm and the output layer. Each stage records when it computed what (the
timeline), which shows the *bubble*: with equal stages, a fraction ``(p - 1) / (m + p - 1)`` of each
stage's time is spent waiting.

Every stage may itself be tensor-parallel (``tp_group``): its blocks are then :class:`ShardBlock` s
and each tensor-parallel rank passes its (replicated) activation to the same tensor-parallel rank of
the next stage.

This is the hand-written schedule; ``torch.distributed.pipelining`` exists, but has hung on gloo
(see the issue), and every line of this one is tested.
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist
import torch.nn as nn

from ..model import GPT
from ..sampling import sample
from .shard import ShardBlock, ShardCache, check_split
from .tensor import ParallelGPT, group_rank_size

__all__ = ["PipelineStage", "pipeline_parallel", "stage_bounds", "pipeline_generate", "bubble"]


def stage_bounds(n_layer: int, pp: int) -> list[tuple[int, int]]:
    """``[start, stop)`` block indices of each of ``pp`` stages, as even as possible (first ones larger)."""
    if pp > n_layer:
        raise ValueError(f"pp={pp} stages > n_layer={n_layer} blocks")
    q, r = divmod(n_layer, pp)
    bounds, start = [], 0
    for s in range(pp):
        stop = start + q + (1 if s < r else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def bubble(p: int, m: int) -> float:
    """GPipe's idle fraction with ``p`` equal stages and ``m`` micro-batches: ``(p - 1) / (m + p - 1)``."""
    for name, v in (("p", p), ("m", m)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    return (p - 1) / (m + p - 1)


class PipelineStage(nn.Module):
    """One rank's stage: its blocks, plus the embedding (first stage) and output layer (last stage).

    ``forward(ids)`` runs the GPipe schedule for the whole batch; it returns the logits
    ``(B, N, V)`` on the last stage and None on the others. ``timeline`` holds
    ``(stage, micro_batch, t_start, t_stop)`` of the last forward (``time.perf_counter`` seconds).
    """

    def __init__(
        self,
        model: GPT,
        stage: int,
        n_stages: int,
        prev_rank: int | None,
        next_rank: int | None,
        group,
        n_micro: int = 1,
        tp_group=None,
    ) -> None:
        super().__init__()
        if isinstance(n_micro, bool) or not isinstance(n_micro, int) or n_micro < 1:
            raise ValueError(f"n_micro must be an int >= 1, got {n_micro!r}")
        tp_rank, tp = group_rank_size(tp_group) if tp_group is not None else (0, 1)
        check_split(model.config, tp, n_stages)
        start, stop = stage_bounds(model.config.n_layer, n_stages)[stage]
        g = tp_group if tp > 1 else None
        blocks = [
            ShardBlock(model.transformer.h[i], model.config, tp_rank, tp, g)
            for i in range(start, stop)
        ]
        self.inner = ParallelGPT(model, blocks, model.config.n_head // tp)
        self.config = model.config
        self.stage, self.n_stages, self.n_micro = stage, n_stages, n_micro
        self.block_range = (start, stop)
        self.prev_rank, self.next_rank, self.group = prev_rank, next_rank, group
        self.timeline: list[tuple[int, int, float, float]] = []

    @property
    def is_first(self) -> bool:
        return self.stage == 0

    @property
    def is_last(self) -> bool:
        return self.stage == self.n_stages - 1

    def _recv(self, B: int, N: int) -> torch.Tensor:
        w = self.inner.lm_head.weight
        x = torch.empty(B, N, self.config.n_embd, dtype=w.dtype, device=w.device)
        dist.recv(x, self.prev_rank)
        return x

    def forward(self, ids: torch.Tensor, cache: ShardCache | None = None) -> torch.Tensor | None:
        """Logits ``(B, N, V)`` on the last stage, None elsewhere (every stage gets the same ids)."""
        past = 0 if cache is None else cache.length
        self.inner.check_ids(ids, past)
        B, N = ids.shape
        if cache is not None:
            cache.check(B, N)
        m = self.n_micro if cache is None else 1  # decoding with a cache: one micro-batch
        if B % m:
            raise ValueError(f"batch size {B} is not divisible by n_micro={m} micro-batches")
        self.timeline = []
        outs, pending = [], []
        for j, mb in enumerate(ids.chunk(m, dim=0)):
            x = self.inner.embed(mb, past) if self.is_first else self._recv(mb.size(0), N)
            t0 = time.perf_counter()
            x = self.inner.blocks(x, cache)
            self.timeline.append((self.stage, j, t0, time.perf_counter()))
            if self.is_last:
                outs.append(self.inner.head(x))
            else:
                pending.append(dist.isend(x.contiguous(), self.next_rank))
        for work in pending:
            work.wait()
        if cache is not None:
            cache.advance(N)
        return torch.cat(outs, dim=0) if self.is_last else None

    def new_cache(self, batch_size: int = 1, max_len: int | None = None) -> ShardCache:
        """A cache for this stage's blocks (and this rank's heads)."""
        return self.inner.new_cache(batch_size, max_len)


def pipeline_parallel(model: GPT, group=None, n_micro: int = 1, tp_group=None) -> PipelineStage:
    """This rank's stage of ``model``: ranks of ``group`` in order are stages ``0 .. p - 1``.

    Call on every rank with the same full model. ``tp_group``: the ranks that split this stage by
    tensor parallelism (None: no tensor parallelism).
    """
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a nexttoken GPT, got {type(model).__name__}")
    stage, p = group_rank_size(group)
    check_split(model.config, 1, p)
    g = dist.group.WORLD if group is None else group

    def global_rank(s: int) -> int:
        return s if group is None else dist.get_global_rank(g, s)

    prev_rank = global_rank(stage - 1) if stage > 0 else None
    next_rank = global_rank(stage + 1) if stage < p - 1 else None
    return PipelineStage(model, stage, p, prev_rank, next_rank, g, n_micro, tp_group).train(
        model.training
    )


@torch.no_grad()
def pipeline_generate(stage: PipelineStage, ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding through the pipeline, with a KV cache per stage; ids ``(B, N + new)`` on every rank.

    The last stage picks each token (``sampling.sample`` at temperature 0, as ``generate`` does) and
    broadcasts it to every stage, which feeds it to stage 0 at the next step.
    """
    B, N = ids.shape
    if N + max_new_tokens > stage.config.block_size:
        raise ValueError(
            f"pipeline_generate keeps the whole context in the cache: N + max_new_tokens = "
            f"{N + max_new_tokens} > block_size={stage.config.block_size}"
        )
    cache = stage.new_cache(B, N + max_new_tokens)
    out, new = ids.clone(), ids
    last = dist.get_global_rank(stage.group, stage.n_stages - 1) if stage.n_stages > 1 else None
    for _ in range(max_new_tokens):
        logits = stage(new, cache)
        nxt = torch.empty(B, dtype=torch.long, device=ids.device)
        if stage.is_last:
            nxt = sample(logits[:, -1, :], 0.0, None, None, None)
        if last is not None:
            dist.broadcast(nxt, src=last, group=stage.group)
        out = torch.cat([out, nxt[:, None]], dim=1)
        new = nxt[:, None]
    return out
