"""Tensor parallelism: every block cut across the ``T`` ranks of a process group.

:func:`tensor_parallel` is called on every rank with the same full model and returns that rank's
:class:`ParallelGPT`: a :class:`~nexttoken.model.GPT` whose blocks are :class:`ShardBlock` s (its
heads, its quarter of the MLP, two all-reduces per block) and whose ``forward(ids)`` returns the full
logits ``(B, N, V)`` on every rank, so ``generate`` runs on it unchanged (the KV cache it makes holds
only the rank's heads).

The embedding and the output layer are **replicated**, not split. Why: they need no communication
that way (each rank looks up the same rows and projects the same final vector, so every rank ends
with the full logits, which sampling needs), and in a large model they are small next to the blocks:
0.64 B of GPT-3 175B's 174.6 B parameters (0.4 %; in the book's small model, 1.1 M of 4.3 M).
Megatron splits them by vocabulary rows instead, which saves that memory and costs an all-reduce
after the embedding and an all-gather (or a fused, split softmax) of the logits; at 8 GPUs the
replicated tables cost each GPU 1.3 GB in fp16.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn

from ..model import GPT, GPTOutput
from .shard import ShardBlock, ShardCache, _copy, check_split

__all__ = ["ParallelGPT", "tensor_parallel", "shard_for_rank", "group_rank_size"]


def group_rank_size(group=None) -> tuple[int, int]:
    """``(rank, size)`` of this process in ``group`` (the default group when None)."""
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "torch.distributed is not initialised: call torch.distributed.init_process_group "
            "first (or launch with torchrun / python -m nexttoken.parallel)"
        )
    return dist.get_rank(group), dist.get_world_size(group)


class ParallelGPT(GPT):
    """A GPT whose blocks are this rank's shards; embeddings, final LayerNorm and output replicated.

    Built by :func:`tensor_parallel` (all blocks) and by the pipeline stages (some blocks, and the
    embedding or the output layer only where the stage needs them).
    """

    def __init__(self, model: GPT, blocks: list[ShardBlock], n_head_local: int) -> None:
        nn.Module.__init__(
            self
        )  # not GPT.__init__: no full-size allocation, weights come from model
        self.config = model.config
        self.n_head_local = n_head_local
        t = model.transformer
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding.from_pretrained(t.wte.weight.detach().clone(), freeze=False),
                wpe=nn.Embedding.from_pretrained(t.wpe.weight.detach().clone(), freeze=False),
                drop=nn.Dropout(0.0),
                h=nn.ModuleList(blocks),
                ln_f=_copy(t.ln_f),
            )
        )
        self.lm_head = nn.Linear(
            model.config.n_embd, model.config.vocab_size, bias=False, device="meta"
        )
        self.lm_head.weight = self.transformer.wte.weight  # tied, as in the full model

    def new_cache(self, batch_size: int = 1, max_len: int | None = None) -> ShardCache:
        """An empty cache for this rank's heads of every block."""
        max_len = self.config.block_size if max_len is None else max_len
        if not 1 <= max_len <= self.config.block_size:
            raise ValueError(f"max_len must be in [1, {self.config.block_size}], got {max_len}")
        return ShardCache(
            len(self.transformer.h),
            batch_size,
            self.n_head_local,
            max_len,
            self.config.d_head,
            dtype=self.lm_head.weight.dtype,
            device=self.lm_head.weight.device,
        )

    def blocks(
        self,
        x: torch.Tensor,
        cache: ShardCache | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Every block of this rank in order: ``(B, N, d) -> (B, N, d)``."""
        for i, block in enumerate(self.transformer.h):
            x = block(x, cache, i, mask)
        return x

    def head(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Final LayerNorm and the (replicated) output layer: ``(B, N, d) -> (B, N, V)``."""
        x = self.transformer.ln_f(x)
        if last_only:
            x = x[:, -1:, :]
        return self.lm_head(x)

    def run(
        self,
        idx: torch.Tensor,
        *,
        cache: ShardCache | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        last_only: bool = False,
        positions: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> GPTOutput:
        """The forward pass of one rank; the logits are the full ``(B, N, V)`` on every rank.

        The arguments are :meth:`GPT.run`'s; ``cache`` is anything with the KV-cache interface
        (``length``, ``check``, ``update``, ``advance``) holding this rank's heads.
        """
        if output_hidden_states or output_attentions:
            raise ValueError(
                "a tensor-parallel shard does not collect hidden states or attention weights; "
                "run the full model for those"
            )
        past = 0 if cache is None else cache.length
        self.check_ids(idx, past)
        if cache is not None:
            cache.check(idx.size(0), idx.size(1))
        x = self.blocks(self.embed(idx, past, positions), cache, attn_mask)
        if cache is not None:
            cache.advance(idx.size(1))
        return GPTOutput(self.head(x, last_only), None, None, None)


def tensor_parallel(model: GPT, group=None) -> ParallelGPT:
    """This rank's tensor-parallel shard of ``model`` (call on every rank of ``group``).

    Every rank must pass the same full model (same weights). The result's ``forward(ids)`` returns
    the full logits on every rank; each block costs two all-reduces of ``(B, N, d)``.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a nexttoken GPT, got {type(model).__name__}")
    rank, size = group_rank_size(group)
    g = None if size == 1 else (dist.group.WORLD if group is None else group)
    return shard_for_rank(model, rank, size, g)


def shard_for_rank(model: GPT, rank: int, size: int, group=None) -> ParallelGPT:
    """Rank ``rank`` of ``size``'s shard, built without a process group when ``group`` is None.

    With no group the all-reduces are skipped, so its forward pass is *not* the model's; what it is
    for: counting a shard's parameters and cache, e.g. GPT-3 175B's on the meta device (no memory).
    """
    check_split(model.config, size)
    if not 0 <= rank < size:
        raise ValueError(f"rank must be in [0, {size - 1}], got {rank}")
    blocks = [ShardBlock(b, model.config, rank, size, group) for b in model.transformer.h]
    shard = ParallelGPT(model, blocks, model.config.n_head // size)
    return shard.train(model.training)
