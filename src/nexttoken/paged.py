"""A paged KV cache: keys and values in fixed-size blocks from one shared pool.

A contiguous cache (:class:`nexttoken.model.KVCache`) reserves ``max_len`` positions per sequence up
front, whatever the sequence will use. With many requests of unknown lengths, most of that memory is
reserved and never written. Paging (Kwon et al. 2023, "Efficient Memory Management for Large
Language Model Serving with PagedAttention", vLLM) borrows the idea of virtual memory:

- the pool holds ``num_blocks`` blocks of ``block_tokens`` token positions (every layer, keys and
  values): ``k[layer]`` is ``(num_blocks, block_tokens, H, d_head)``;
- each sequence owns a **block table**, the list of its blocks in order: token ``t`` of the sequence
  lives in block ``table[t // block_tokens]`` at offset ``t % block_tokens``;
- a sequence takes a block only when it needs one, and gives all of them back when it ends, for the
  next sequence to reuse. At most ``block_tokens - 1`` positions per sequence are reserved and unused.

Attention reads *through* the block table: :class:`PagedBatch` gathers each sequence's keys and
values from its blocks into a ``(B, H, T, d_head)`` tensor (``T`` = the longest sequence; shorter
ones masked), so the model's attention code is the same as for the contiguous cache. (A GPU kernel
such as vLLM's reads the blocks in place instead of gathering; on a CPU the gather is cheap next to
the weights' matrix products, and it keeps one attention code path.)

When the pool has too few free blocks, :meth:`PagedKVCache.reserve` and :meth:`PagedKVCache.batch`
raise :class:`PoolExhausted` *before* touching anything: the sequences already running keep their
blocks and their contents.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import torch

from .model import GPT, GPTConfig

__all__ = ["PagedKVCache", "PagedBatch", "PoolExhausted", "blocks_for"]


class PoolExhausted(RuntimeError):
    """The pool has fewer free blocks than a request needs (nothing was allocated or changed)."""


def blocks_for(n_tokens: int, block_tokens: int) -> int:
    """Blocks needed to hold ``n_tokens`` positions: ``ceil(n_tokens / block_tokens)``."""
    return -(-n_tokens // block_tokens)


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


class PagedKVCache:
    """A pool of ``num_blocks`` KV blocks of ``block_tokens`` tokens, shared by many sequences.

    Sequences are named by any hashable id. :meth:`add` registers one (no blocks yet),
    :meth:`reserve` grows its block table to hold a number of tokens, :meth:`free` ends it and
    returns its blocks to the pool (lowest-numbered free blocks are handed out first, so a freed
    block is the next one reused). :meth:`batch` makes the view that :meth:`GPT.run` reads and
    writes for one forward pass over several sequences.
    """

    def __init__(
        self,
        config: GPTConfig,
        num_blocks: int,
        block_tokens: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.num_blocks = _check_positive_int("num_blocks", num_blocks)
        self.block_tokens = _check_positive_int("block_tokens", block_tokens)
        self.config = config
        shape = (num_blocks, block_tokens, config.n_head, config.d_head)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self._free = list(range(num_blocks))  # a min-heap of free block ids
        self.tables: dict[object, list[int]] = {}  # sequence -> its blocks, in order
        self.lengths: dict[object, int] = {}  # sequence -> tokens written

    @classmethod
    def for_model(cls, model: GPT, num_blocks: int, block_tokens: int) -> PagedKVCache:
        """A pool matching ``model``'s shapes, dtype and device."""
        w = model.transformer.wte.weight
        return cls(model.config, num_blocks, block_tokens, dtype=w.dtype, device=w.device)

    # --- bookkeeping -------------------------------------------------------------------------
    @property
    def num_free(self) -> int:
        """Blocks not owned by any sequence."""
        return len(self._free)

    def capacity(self, seq) -> int:
        """Tokens ``seq``'s blocks can hold."""
        return len(self.tables[seq]) * self.block_tokens

    def _known(self, seq) -> None:
        if seq not in self.tables:
            raise KeyError(f"unknown sequence {seq!r}: add() it first")

    def add(self, seq) -> None:
        """Register a new sequence ``seq`` with an empty block table."""
        if seq in self.tables:
            raise ValueError(f"sequence {seq!r} is already in the cache")
        self.tables[seq] = []
        self.lengths[seq] = 0

    def _plan(self, needs: dict) -> dict:
        """Blocks each sequence must take to hold ``needs[seq]`` tokens; raise if too few are free."""
        take = {}
        for seq, n_tokens in needs.items():
            self._known(seq)
            if n_tokens > self.config.block_size:
                raise ValueError(
                    f"sequence {seq!r} would hold {n_tokens} tokens, more than the context "
                    f"length block_size={self.config.block_size}"
                )
            take[seq] = max(0, blocks_for(n_tokens, self.block_tokens) - len(self.tables[seq]))
        total = sum(take.values())
        if total > self.num_free:
            raise PoolExhausted(
                f"the KV cache pool is exhausted: {total} more block(s) of {self.block_tokens} "
                f"tokens needed, {self.num_free} of {self.num_blocks} free. Nothing was allocated; "
                f"running sequences keep their blocks. Free a finished sequence or use a larger pool."
            )
        return take

    def _take(self, take: dict) -> None:
        for seq, n in take.items():
            self.tables[seq].extend(heapq.heappop(self._free) for _ in range(n))

    def reserve(self, seq, n_tokens: int) -> None:
        """Grow ``seq``'s block table so that it holds ``n_tokens`` tokens in all (or raise
        :class:`PoolExhausted`, changing nothing)."""
        self._take(self._plan({seq: n_tokens}))

    def free(self, seq) -> None:
        """End ``seq``: its blocks go back to the pool (their contents are simply overwritten by
        the next owner; nothing needs clearing, a sequence only ever reads what it wrote)."""
        self._known(seq)
        for block in self.tables.pop(seq):
            heapq.heappush(self._free, block)
        del self.lengths[seq]

    def owner_map(self) -> list[object | None]:
        """For each block, the sequence that owns it (None when free): for the notebook's figures."""
        owners: list[object | None] = [None] * self.num_blocks
        for seq, table in self.tables.items():
            for block in table:
                owners[block] = seq
        return owners

    def nbytes(self) -> int:
        """Bytes of the whole pool (all layers, keys and values)."""
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    # --- the view the model reads and writes -------------------------------------------------
    def batch(self, seqs: Sequence, n_new: int) -> PagedBatch:
        """The cache view for one forward pass that appends ``n_new`` tokens to each of ``seqs``.

        Blocks are reserved first, for all of ``seqs`` at once (or :class:`PoolExhausted`, with
        nothing changed)."""
        seqs = list(seqs)
        if not seqs:
            raise ValueError("batch() needs at least one sequence")
        if len(set(seqs)) != len(seqs):
            raise ValueError("a sequence appears twice in one batch")
        _check_positive_int("n_new", n_new)
        self._take(self._plan({s: self.lengths.get(s, 0) + n_new for s in seqs}))
        return PagedBatch(self, seqs, n_new)


class PagedBatch:
    """``B`` sequences of a :class:`PagedKVCache` seen as one batch for one forward pass.

    It implements the cache interface that :meth:`nexttoken.model.GPT.run` calls (``length``,
    ``check``, ``update``, ``advance``) and gives the ``positions`` ``(B, n_new)`` and ``mask``
    (``(B, 1, n_new, T)`` or None when every sequence has the same length, where the causal rule
    alone is right) to pass to ``run``. Slot ``s`` of the pool's flat ``(num_blocks * block_tokens)``
    axis is block ``s // block_tokens``, offset ``s % block_tokens``.
    """

    def __init__(self, cache: PagedKVCache, seqs: list, n_new: int) -> None:
        self.cache, self.seqs, self.n_new = cache, seqs, n_new
        device = cache.k[0].device
        bt = cache.block_tokens
        past = torch.tensor([cache.lengths[s] for s in seqs], device=device)  # (B,)
        T = int(past.max()) + n_new
        self.length = int(past.max())  # for GPT.run's context check
        cols = torch.arange(T, device=device)
        # block table as a (B, max_blocks) tensor; padding entries point at block 0 (masked)
        n_blocks = blocks_for(T, bt)
        table = torch.zeros(len(seqs), n_blocks, dtype=torch.long, device=device)
        for b, s in enumerate(seqs):
            blocks = cache.tables[s][:n_blocks]
            table[b, : len(blocks)] = torch.tensor(blocks, dtype=torch.long, device=device)
        slots = table.gather(1, (cols // bt).expand(len(seqs), T)) * bt + cols % bt  # (B, T)
        self.read_slots = slots
        new_cols = past[:, None] + torch.arange(n_new, device=device)  # (B, n_new)
        self.write_slots = slots.gather(1, new_cols).reshape(-1)
        self.positions = new_cols
        if bool((past == past[0]).all()):
            self.mask = None  # equal lengths: plain causal attention over T = past + n_new
        else:
            keys = cols[None, None, :]  # key j may be seen by new token i if j <= its position
            self.mask = (keys <= new_cols[:, :, None])[:, None]  # (B, 1, n_new, T)

    def check(self, batch_size: int, n_new: int) -> None:
        if (batch_size, n_new) != (len(self.seqs), self.n_new):
            raise ValueError(
                f"this paged batch was made for {len(self.seqs)} sequences x {self.n_new} new "
                f"tokens, ids have shape {(batch_size, n_new)}"
            )

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k``, ``v`` ``(B, H, n_new, d_head)`` into the sequences' blocks; return every
        sequence's keys and values gathered through its block table, ``(B, H, T, d_head)``."""
        kp = self.cache.k[layer].view(-1, *self.cache.k[layer].shape[2:])  # (slots, H, d_head)
        vp = self.cache.v[layer].view(-1, *self.cache.v[layer].shape[2:])
        B, H, N, dh = k.shape
        kp.index_copy_(0, self.write_slots, k.transpose(1, 2).reshape(B * N, H, dh))
        vp.index_copy_(0, self.write_slots, v.transpose(1, 2).reshape(B * N, H, dh))
        flat, (B, T) = self.read_slots.reshape(-1), self.read_slots.shape
        k_all = kp.index_select(0, flat).view(B, T, H, dh)  # (B, T, H, d_head), through the table
        v_all = vp.index_select(0, flat).view(B, T, H, dh)
        return k_all.transpose(1, 2), v_all.transpose(1, 2)

    def advance(self, n_new: int) -> None:
        for s in self.seqs:
            self.cache.lengths[s] += n_new
