"""A paged KV cache: keys and values in fixed-size blocks from one shared pool.

A contiguous cache (:class:`nexttoken.model.KVCache`) reserves ``max_len`` positions per sequence up
front, whatever the sequence will use. With many requests of unknown lengths, most of that memory is
reserved and never written. Paging (Kwon et al. 2023, "Efficient Memory Management for Large
Language Model Serving with PagedAttention", vLLM) borrows the idea of virtual memory:

- the pool holds ``num_blocks`` blocks of ``block_tokens`` token positions (every layer, keys and
  values): ``k[layer]`` is ``(num_blocks, H_kv, block_tokens, d_head)`` (each head's keys of a block
  side by side, so a block is a ``(block_tokens, d_head)`` matrix per head, as in vLLM; ``H_kv``
  is the model's key/value heads, ``n_head`` for GPT-2, fewer with grouped-query attention);
- each sequence owns a **block table**, the list of its blocks in order: token ``t`` of the sequence
  lives in block ``table[t // block_tokens]`` at offset ``t % block_tokens``;
- a sequence takes a block only when it needs one, and gives all of them back when it ends, for the
  next sequence to reuse. At most ``block_tokens - 1`` positions per sequence are reserved and unused.

Attention reads *through* the block table, two ways:

- :class:`PagedBatch` (the teaching version) **gathers** each sequence's keys and values from its
  blocks into a ``(B, H, T, d_head)`` tensor (``T`` = the longest sequence; shorter ones masked), so
  the model's attention code is the same as for the contiguous cache; every pass copies every
  sequence's whole context, in every layer.
- :class:`PackedBatch` (what :class:`nexttoken.serve.Engine` runs) reads the blocks **in place**:
  for each block, the scores of its owner's queries against the block's keys (one batched matrix
  product over the pool's blocks, no copy), then softmax's identity ``softmax(s)_j = e^(s_j - m) /
  sum_i e^(s_i - m)`` with ``m`` the sequence's largest score joins the blocks' partial sums (as
  FlashAttention and vLLM's PagedAttention do). It also packs sequences with different numbers of
  new tokens into one row ``(1, S)``: decode tokens of running requests and chunks of prompts in
  one pass (chunked prefill). ``reads="gather"`` gives the same pass through the gather, and the
  tests check the two equal.

When the pool has too few free blocks, :meth:`PagedKVCache.reserve` and :meth:`PagedKVCache.batch`
raise :class:`PoolExhausted` *before* touching anything: the sequences already running keep their
blocks and their contents.

A view serves exactly one forward pass, and only while its sequences are as it saw them: each
sequence gets a new *generation* number when it is added, and the view checks, before the pass
writes anything, that every sequence still has the generation and the length it was made with. A
view kept past :meth:`PagedKVCache.free` (whose blocks another sequence may own now), used twice, or
made before another pass wrote one of its sequences is refused with a ValueError, and writes
nothing.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .attention import repeat_kv
from .model import Decoder, DecoderConfig, GPTOutput, fused_attention
from .sizes import format_bytes
from .train import available_memory

__all__ = [
    "PagedKVCache",
    "PagedBatch",
    "PackedBatch",
    "PoolExhausted",
    "UnknownSequence",
    "blocks_for",
    "pool_bytes",
    "device_memory",
    "check_memory",
]


class PoolExhausted(RuntimeError):
    """The pool has fewer free blocks than a request needs (nothing was allocated or changed)."""


class UnknownSequence(KeyError, ValueError):
    """A sequence id the pool does not hold (never added, or already freed)."""

    def __str__(self) -> str:  # a KeyError would print its message in quotes
        return str(self.args[0])


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def _check_positive_int(name: str, value: object) -> int:
    return _check_int(name, value, 1)


def blocks_for(n_tokens: int, block_tokens: int) -> int:
    """Blocks needed to hold ``n_tokens`` positions: ``ceil(n_tokens / block_tokens)``."""
    _check_int("n_tokens", n_tokens, 0)
    _check_positive_int("block_tokens", block_tokens)
    return -(-n_tokens // block_tokens)


def pool_bytes(
    config: DecoderConfig, num_blocks: int, block_tokens: int, dtype: torch.dtype
) -> int:
    """Bytes of a pool's keys and values: ``2 * n_layer * num_blocks * block_tokens * n_kv_head *
    d_head`` numbers of ``dtype`` (``n_kv_head * d_head`` is ``n_embd`` for GPT-2)."""
    if not isinstance(config, DecoderConfig):
        raise TypeError(f"config must be a GPTConfig or LlamaConfig, got {type(config).__name__}")
    _check_positive_int("num_blocks", num_blocks)
    _check_positive_int("block_tokens", block_tokens)
    _check_dtype(dtype)
    item = torch.empty((), dtype=dtype).element_size()
    return 2 * config.n_layer * num_blocks * block_tokens * config.n_kv_head * config.d_head * item


def device_memory(device: torch.device) -> int | None:
    """Bytes this process can still allocate on ``device``: the CPU's available memory
    (:func:`nexttoken.train.available_memory`), a CUDA device's free memory, None when unknown."""
    if not isinstance(device, torch.device):
        raise TypeError(f"device must be a torch.device, got {type(device).__name__}")
    if device.type == "cpu":
        return available_memory()
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return None


def check_memory(need: int, device: torch.device, what: str, advice: str) -> None:
    """Raise ValueError, with the numbers, when ``need`` bytes exceed what ``device`` has free.

    ``what`` says what needs them (``"a pool of ..."``), ``advice`` what to change."""
    _check_int("need", need, 0)
    if not isinstance(what, str) or not isinstance(advice, str):
        raise TypeError("what and advice must be str (they go into the error message)")
    have = device_memory(device)
    if have is not None and need > have:
        raise ValueError(
            f"{what} needs about {format_bytes(need)} of memory; the {device.type} device has "
            f"{format_bytes(have)} available. {advice}"
        )


def _check_dtype(dtype: object) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(
            f"dtype must be a floating-point torch.dtype (the model's: torch.float32, "
            f"torch.bfloat16, ...), got {dtype!r}"
        )
    return dtype


def _check_device(device: object) -> torch.device:
    if device is None:
        return torch.device("cpu")
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise TypeError(f"device must be a torch.device, a str or None, got {device!r}")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"device must name a torch device ('cpu', 'cuda', 'cuda:0', ...), got {device!r}"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine")
    return dev


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
        config: DecoderConfig,
        num_blocks: int,
        block_tokens: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(config, DecoderConfig):
            raise TypeError(
                f"config must be a GPTConfig or LlamaConfig, got {type(config).__name__}"
            )
        self.num_blocks = _check_positive_int("num_blocks", num_blocks)
        self.block_tokens = _check_positive_int("block_tokens", block_tokens)
        if block_tokens > config.block_size:
            raise ValueError(
                f"block_tokens must be in [1, {config.block_size}] (the context length "
                f"block_size: no sequence holds more), got {block_tokens}"
            )
        _check_dtype(dtype)
        device = _check_device(device)
        check_memory(
            pool_bytes(config, num_blocks, block_tokens, dtype),
            device,
            f"a pool of num_blocks={num_blocks} blocks of block_tokens={block_tokens} tokens "
            f"({config.n_layer} layers, n_embd {config.n_embd}, {dtype})",
            "Use fewer or smaller blocks.",
        )
        self.config = config
        shape = (num_blocks, config.n_kv_head, block_tokens, config.d_head)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self._free = list(range(num_blocks))  # a min-heap of free block ids
        self.tables: dict[object, list[int]] = {}  # sequence -> its blocks, in order
        self.lengths: dict[object, int] = {}  # sequence -> tokens written
        self.generations: dict[object, int] = {}  # sequence -> its generation (new at each add)
        self._generation = itertools.count()

    @classmethod
    def for_model(cls, model: Decoder, num_blocks: int, block_tokens: int) -> PagedKVCache:
        """A pool matching ``model``'s shapes, dtype and device."""
        if not isinstance(model, Decoder):
            raise TypeError(f"model must be a nexttoken GPT or Llama, got {type(model).__name__}")
        w = model.get_input_embeddings().weight
        return cls(model.config, num_blocks, block_tokens, dtype=w.dtype, device=w.device)

    # --- bookkeeping -------------------------------------------------------------------------
    @property
    def num_free(self) -> int:
        """Blocks not owned by any sequence."""
        return len(self._free)

    def capacity(self, seq) -> int:
        """Tokens ``seq``'s blocks can hold."""
        self._known(seq)
        return len(self.tables[seq]) * self.block_tokens

    def _known(self, seq) -> None:
        try:
            known = seq in self.tables
        except TypeError:  # unhashable
            known = False
        if not known:
            raise UnknownSequence(f"unknown sequence {seq!r}: add() it first (or it was freed)")

    def add(self, seq) -> None:
        """Register a new sequence ``seq`` (any hashable id but None) with an empty block table."""
        if seq is None:
            raise ValueError("sequence id must not be None (None marks a free block)")
        try:
            hash(seq)
        except TypeError:
            raise TypeError(
                f"sequence id must be hashable (an int, a str, a tuple...), got "
                f"{type(seq).__name__}"
            ) from None
        if seq in self.tables:
            raise ValueError(f"sequence {seq!r} is already in the cache")
        self.tables[seq] = []
        self.lengths[seq] = 0
        self.generations[seq] = next(self._generation)

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
        _check_int("n_tokens", n_tokens, 0)
        self._take(self._plan({seq: n_tokens}))

    def truncate(self, seq, n_tokens: int) -> None:
        """Forget ``seq``'s positions from ``n_tokens`` on (they are overwritten by the next pass;
        its blocks stay reserved). Views made before are refused from now on."""
        self._known(seq)
        _check_int("n_tokens", n_tokens, 0)
        if n_tokens > self.lengths[seq]:
            raise ValueError(
                f"n_tokens must be in [0, {self.lengths[seq]}] (the tokens {seq!r} holds), "
                f"got {n_tokens}"
            )
        self.lengths[seq] = n_tokens

    def free(self, seq) -> None:
        """End ``seq``: its blocks go back to the pool (their contents are simply overwritten by
        the next owner; nothing needs clearing, a sequence only ever reads what it wrote). A view
        made before is refused from now on, even if ``seq`` is added again."""
        self._known(seq)
        for block in self.tables.pop(seq):
            heapq.heappush(self._free, block)
        del self.lengths[seq]
        del self.generations[seq]

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
    def _check_seqs(self, seqs: object) -> list:
        """``seqs`` as a list of distinct sequences of this pool (at least one), or an error."""
        if not isinstance(seqs, (list, tuple)):
            raise TypeError(f"seqs must be a list of sequence ids, got {type(seqs).__name__}")
        if not seqs:
            raise ValueError("a batch needs at least one sequence")
        for s in seqs:
            self._known(s)
        if len(set(seqs)) != len(seqs):
            raise ValueError("a sequence appears twice in one batch")
        return list(seqs)

    def batch(self, seqs: Sequence, n_new: int) -> PagedBatch:
        """The cache view for one forward pass that appends ``n_new`` tokens to each of ``seqs``.

        Blocks are reserved first, for all of ``seqs`` at once (or :class:`PoolExhausted`, with
        nothing changed). The view serves one forward pass (see :class:`PagedBatch`)."""
        seqs = self._check_seqs(seqs)
        _check_positive_int("n_new", n_new)
        self._take(self._plan({s: self.lengths[s] + n_new for s in seqs}))
        return PagedBatch(self, seqs, n_new)

    def packed(
        self, seqs: Sequence, counts: Sequence[int], *, reads: str = "blocks"
    ) -> PackedBatch:
        """The view for one forward pass of ids ``(1, sum(counts))`` that appends ``counts[i]``
        tokens to ``seqs[i]`` (packed one sequence after the other; see :class:`PackedBatch`).
        Blocks are reserved first, as :meth:`batch` does."""
        seqs = self._check_seqs(seqs)
        counts = _check_counts(counts, len(seqs))
        _check_reads(reads)
        self._take(self._plan({s: self.lengths[s] + n for s, n in zip(seqs, counts, strict=True)}))
        return PackedBatch(self, seqs, counts, reads=reads)


class PagedBatch:
    """``B`` sequences of a :class:`PagedKVCache` seen as one batch for one forward pass.

    It implements the cache interface that :meth:`nexttoken.model.GPT.run` calls (``length``,
    ``check``, ``update``, ``advance``) and gives the ``positions`` ``(B, n_new)`` and ``mask``
    (``(B, 1, n_new, T)`` or None when every sequence has the same length, where the causal rule
    alone is right) to pass to ``run``; :meth:`run` passes them itself. Slot ``s`` of the pool's
    flat ``(num_blocks * block_tokens)`` axis is block ``s // block_tokens``, offset
    ``s % block_tokens``.

    One view, one pass: :meth:`check` (called by ``GPT.run`` before anything is written) refuses
    a view that was already used, or whose sequences were freed or written since it was made.
    ``GPT.run`` then asks :meth:`inputs` for the positions and mask: a view run without them gets
    its own, and a view run with other ones is refused (a ragged batch at the wrong positions would
    place every row at the longest row's position and attend to the shorter rows' padding).
    """

    def __init__(self, cache: PagedKVCache, seqs: list, n_new: int) -> None:
        """Made by :meth:`PagedKVCache.batch`, which reserves the blocks first."""
        if not isinstance(cache, PagedKVCache):
            raise TypeError(f"cache must be a PagedKVCache, got {type(cache).__name__}")
        seqs = cache._check_seqs(seqs)
        _check_positive_int("n_new", n_new)
        for s in seqs:
            if cache.capacity(s) < cache.lengths[s] + n_new:
                raise ValueError(
                    f"sequence {s!r} has room for {cache.capacity(s)} tokens, "
                    f"{cache.lengths[s] + n_new} needed: make views with cache.batch(...), "
                    f"which reserves the blocks"
                )
        self.cache, self.seqs, self.n_new = cache, seqs, n_new
        self._made = [(cache.generations[s], cache.lengths[s]) for s in seqs]
        self._state = "ready"  # ready -> running (check) -> done (advance)
        device = cache.k[0].device
        past = torch.tensor([cache.lengths[s] for s in seqs], device=device)  # (B,)
        T = int(past.max()) + n_new
        self.length = int(past.max())  # for GPT.run's context check
        cols = torch.arange(T, device=device)
        slots = self._slots(T)  # (B, T)
        self.read_slots = slots
        new_cols = past[:, None] + torch.arange(n_new, device=device)  # (B, n_new)
        self.write_slots = slots.gather(1, new_cols).reshape(-1)
        self._positions = new_cols
        self.ragged = not bool((past == past[0]).all())
        if not self.ragged:
            self._mask = None  # equal lengths: plain causal attention over T = past + n_new
        else:
            keys = cols[None, None, :]  # key j may be seen by new token i if j <= its position
            self._mask = (keys <= new_cols[:, :, None])[:, None]  # (B, 1, n_new, T)

    def _slots(self, T: int) -> torch.Tensor:
        """``(B, T)``: the pool slot of each sequence's positions ``0 .. T-1``, through its block
        table (positions past a sequence's blocks point into block 0: masked, never written)."""
        cache, bt, device = self.cache, self.cache.block_tokens, self.cache.k[0].device
        n_blocks = blocks_for(T, bt)
        table = torch.zeros(len(self.seqs), n_blocks, dtype=torch.long, device=device)
        for b, s in enumerate(self.seqs):
            blocks = cache.tables[s][:n_blocks]
            table[b, : len(blocks)] = torch.tensor(blocks, dtype=torch.long, device=device)
        cols = torch.arange(T, device=device)
        return table.gather(1, (cols // bt).expand(len(self.seqs), T)) * bt + cols % bt

    @property
    def positions(self) -> torch.Tensor:
        """``(B, n_new)``: each new token's position in its own sequence."""
        return self._positions

    @property
    def mask(self) -> torch.Tensor | None:
        """``(B, 1, n_new, T)`` boolean (True = may attend), or None when no row is shorter."""
        return self._mask

    def inputs(
        self, positions: torch.Tensor | None, attn_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Called by ``GPT.run`` after :meth:`check`: the positions and mask of this pass, the
        view's own (given None), or a ValueError if the caller passed different ones."""
        return _own_inputs(self, positions, attn_mask, self._positions, self._mask)

    def run(self, model: Decoder, ids: torch.Tensor, **kwargs) -> GPTOutput:
        """``model.run(ids, cache=self, positions=self.positions, attn_mask=self.mask, **kwargs)``:
        the one pass this view serves, with its own positions and mask."""
        if not isinstance(model, Decoder):
            raise TypeError(f"model must be a nexttoken GPT or Llama, got {type(model).__name__}")
        for key in ("cache", "positions", "attn_mask"):
            if key in kwargs:
                raise TypeError(f"view.run() passes {key} itself; call model.run to pass your own")
        n_layer = len(self.cache.k)
        if model.config.n_layer != n_layer:
            raise ValueError(
                f"this pool was made for {n_layer} layer(s), the model has "
                f"{model.config.n_layer}: make the pool with PagedKVCache.for_model(model, ...)"
            )
        return model.run(ids, cache=self, positions=self.positions, attn_mask=self.mask, **kwargs)

    def _check_live(self) -> None:
        """Raise unless every sequence has the generation and length this view was made with."""
        for s, (generation, length) in zip(self.seqs, self._made, strict=True):
            if self.cache.generations.get(s) != generation:
                raise ValueError(
                    f"this paged view is stale: sequence {s!r} was freed after the view was made "
                    f"(its blocks may belong to another sequence now); nothing was written. Make "
                    f"a new view with cache.batch(...) for each forward pass"
                )
            if self.cache.lengths[s] != length:
                raise ValueError(
                    f"this paged view is stale: sequence {s!r} holds {self.cache.lengths[s]} "
                    f"tokens now, the view was made when it held {length} (another pass wrote it "
                    f"since); nothing was written. Make a new view with cache.batch(...)"
                )

    def check(self, batch_size: int, n_new: int) -> None:
        """Called by ``GPT.run`` before the pass: raise ValueError (writing nothing) unless the ids'
        shape is this view's and the view can serve this pass (see the class docstring)."""
        if self._state != "ready":
            raise ValueError(
                "this paged view was already used: a view serves exactly one forward pass "
                "(its sequences' lengths have moved on); make a new one with cache.batch(...)"
            )
        if (batch_size, n_new) != (len(self.seqs), self.n_new):
            raise ValueError(
                f"this paged batch was made for {len(self.seqs)} sequences x {self.n_new} new "
                f"tokens, ids have shape {(batch_size, n_new)}"
            )
        self._check_live()
        self._state = "running"

    def _check_kv(self, k: torch.Tensor, v: torch.Tensor) -> None:
        _check_kv(self.cache.k[0], k, v, len(self.seqs), self.n_new)

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k``, ``v`` ``(B, H, n_new, d_head)`` into the sequences' blocks; return every
        sequence's keys and values gathered through its block table, ``(B, H, T, d_head)``."""
        if self._state != "running":
            raise ValueError("update() is called by GPT.run, after check() accepted the view")
        if not 0 <= layer < len(self.cache.k):
            raise ValueError(
                f"this pool was made for {len(self.cache.k)} layer(s), the model has more: "
                f"make the pool with PagedKVCache.for_model(model, ...)"
            )
        if layer == 0:  # every layer's keys have layer 0's dtype and shape
            self._check_kv(k, v)
        B, H, N, dh = k.shape
        bt = self.cache.block_tokens
        w_blk, w_off = self.write_slots // bt, self.write_slots % bt
        r_blk, r_off = self.read_slots // bt, self.read_slots % bt  # (B, T)
        kp, vp = self.cache.k[layer], self.cache.v[layer]  # (num_blocks, H, block_tokens, d_head)
        kp[w_blk, :, w_off] = k.transpose(1, 2).reshape(B * N, H, dh)
        vp[w_blk, :, w_off] = v.transpose(1, 2).reshape(B * N, H, dh)
        k_all = kp[r_blk, :, r_off]  # (B, T, H, d_head): a copy, through the block table
        v_all = vp[r_blk, :, r_off]
        return k_all.transpose(1, 2), v_all.transpose(1, 2)

    def advance(self, n_new: int) -> None:
        """Count the pass's ``n_new`` tokens as written (called by ``GPT.run`` after every layer);
        the view is used up."""
        if self._state != "running":
            raise ValueError("advance() is called by GPT.run, after check() accepted the view")
        for s in self.seqs:
            self.cache.lengths[s] += n_new
        self._state = "done"


def _exact_in(dtype: torch.dtype, k: object, v: object) -> tuple[object, object]:
    """``k``, ``v`` in the pool's ``dtype`` when that loses nothing (float64 keys that came from
    float32, as an int8 model's float64 attention hands over), else as they are (to be refused)."""
    for t in (k, v):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dtype == dtype:
            return k, v
        if not torch.equal(t.to(dtype).to(t.dtype), t):
            return k, v
    return k.to(dtype), v.to(dtype)


def _check_kv(pool: torch.Tensor, k: object, v: object, B: int, N: int) -> None:
    """Raise ValueError (before anything is written) unless ``k`` and ``v`` are ``(B, H, N,
    d_head)`` tensors of the pool's heads, dtype and device."""
    H, dh = pool.size(1), pool.size(3)
    for name, t in (("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4 or t.shape[::2] != (B, N):
            raise ValueError(
                f"{name} must be a (B={B}, H, n_new={N}, d_head) tensor, got "
                f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}"
            )
    if v.shape != k.shape or v.dtype != k.dtype:
        raise ValueError(f"k and v must match, got {tuple(k.shape)} and {tuple(v.shape)}")
    if k.dtype != pool.dtype or k.device != pool.device:
        raise ValueError(
            f"this pool's dtype is {pool.dtype} on {pool.device}, the model's keys are "
            f"{k.dtype} on {k.device}: make the pool with PagedKVCache.for_model(model, ...). "
            f"Nothing was written"
        )
    if tuple(k.shape[1:2]) + tuple(k.shape[3:]) != (H, dh):
        raise ValueError(
            f"this pool was made for {H} heads of {dh}, the model's keys are "
            f"{k.size(1)} heads of {k.size(3)}: make the pool with "
            f"PagedKVCache.for_model(model, ...). Nothing was written"
        )


def _check_counts(counts: object, n_seqs: int) -> list[int]:
    """``counts`` as a list of ``n_seqs`` positive ints (new tokens per sequence), or an error."""
    if not isinstance(counts, (list, tuple)):
        raise TypeError(f"counts must be a list of ints (new tokens per sequence), got {counts!r}")
    if len(counts) != n_seqs:
        raise ValueError(f"counts must give one number per sequence ({n_seqs}), got {len(counts)}")
    for c in counts:
        _check_positive_int("each count", c)
    return list(counts)


def _check_reads(reads: object) -> str:
    if reads not in ("blocks", "gather"):
        raise ValueError(f"reads must be 'blocks' or 'gather', got {reads!r}")
    return reads


def _own_inputs(view, positions, attn_mask, own_positions, own_mask):
    """The view's ``(positions, mask)``; ValueError if the caller passed different ones (the
    view, accepted by ``check`` a moment before, stays unused)."""
    name = type(view).__name__
    view._state = "ready"  # until the inputs are accepted
    if positions is not None and not (
        isinstance(positions, torch.Tensor)
        and positions.shape == own_positions.shape
        and torch.equal(positions.to(own_positions.device), own_positions)
    ):
        raise ValueError(
            f"positions differ from this {name}'s own (each new token's position in its own "
            f"sequence): pass positions=None (GPT.run then takes the view's). Nothing was written"
        )
    if attn_mask is not None and not (
        own_mask is not None
        and isinstance(attn_mask, torch.Tensor)
        and attn_mask.shape == own_mask.shape
        and torch.equal(attn_mask.to(own_mask.device), own_mask)
    ):
        raise ValueError(
            f"attn_mask differs from this {name}'s own (each row sees only its own sequence): "
            f"pass attn_mask=None (GPT.run then takes the view's). Nothing was written"
        )
    view._state = "running"
    return own_positions, own_mask


class PackedBatch:
    """Sequences with their own numbers of new tokens, packed in one forward pass of ids ``(1, S)``.

    Sequence ``i`` contributes ``counts[i]`` consecutive tokens (``S = sum(counts)``): one for a
    request that is decoding, a chunk of its prompt for one being prefilled, so one pass over the
    weights serves both (chunked prefill). Each token attends only to its own sequence's earlier
    tokens. The view implements ``check``, ``inputs`` (each token's position; no mask), ``attend``
    (write the new keys and values into the blocks, then attention) and ``advance``.

    ``reads="blocks"`` reads keys and values in place, block by block: the decode tokens (one per
    sequence) are scored against every block of a range of the pool at once, ``(blocks, H,
    block_tokens, d_head) @ (blocks, H, d_head, 1)``, each block with its owner's query, and the
    blocks' partial sums are joined per sequence (subtract the sequence's largest score, exponentiate,
    add up numerators and denominators). ``reads="gather"`` copies each sequence's context into a
    contiguous tensor first, as :class:`PagedBatch` does: the teaching version, equal to rounding.
    """

    def __init__(self, cache: PagedKVCache, seqs: list, counts: list[int], *, reads="blocks"):
        """Made by :meth:`PagedKVCache.packed`, which reserves the blocks first."""
        if not isinstance(cache, PagedKVCache):
            raise TypeError(f"cache must be a PagedKVCache, got {type(cache).__name__}")
        seqs = cache._check_seqs(seqs)
        counts = _check_counts(counts, len(seqs))
        _check_reads(reads)
        for s, n in zip(seqs, counts, strict=True):
            if cache.capacity(s) < cache.lengths[s] + n:
                raise ValueError(
                    f"sequence {s!r} has room for {cache.capacity(s)} tokens, "
                    f"{cache.lengths[s] + n} needed: make views with cache.packed(...), "
                    f"which reserves the blocks"
                )
        self.cache, self.seqs, self.counts, self.reads = cache, seqs, counts, reads
        self._made = [(cache.generations[s], cache.lengths[s]) for s in seqs]
        self._state = "ready"
        self.length = 0  # GPT.run's context check: each token's own position comes from inputs()
        self.past = [cache.lengths[s] for s in seqs]
        bt, dev = cache.block_tokens, cache.k[0].device
        pos, blk, starts = [], [], []
        for s, p, n in zip(seqs, self.past, counts, strict=True):
            table = cache.tables[s]
            starts.append(len(pos))
            pos.extend(range(p, p + n))
            blk.extend(table[t // bt] for t in range(p, p + n))
        self.S = len(pos)
        positions = torch.tensor(pos, device=dev)
        self._positions = positions.view(1, -1)
        self._w_blk, self._w_off = torch.tensor(blk, device=dev), positions % bt
        self._starts = starts
        one = [i for i, n in enumerate(counts) if n == 1]  # decoding: one query each
        self._one_rows = torch.tensor([starts[i] for i in one], dtype=torch.long, device=dev)
        self._many = [i for i, n in enumerate(counts) if n > 1]  # prompt chunks
        self._plan_one(one)
        self._plan_many()

    # --- plans: the indices every layer uses, made once per pass ---------------------------------
    def _plan_one(self, one: list[int]) -> None:
        """For the one-token sequences: the pool blocks to read (a slice when they are close
        together, else an index), each block's owner (its row, or ``len(one)`` for none) and which
        of its offsets hold keys the query may see; for ``gather``, their slots and mask."""
        cache, bt, dev = self.cache, self.cache.block_tokens, self.cache.k[0].device
        self._n_one = len(one)
        if not one:
            return
        used = []  # (block, row, valid offsets)
        for row, i in enumerate(one):
            last = self.past[i]  # the new token's position: it sees 0 .. last
            table = cache.tables[self.seqs[i]]
            for j in range(last // bt + 1):
                used.append((table[j], row, min(bt, last + 1 - j * bt)))
        if self.reads == "gather":
            T = max(self.past[i] for i in one) + 1
            self._one_slots = self._gather_slots(one, T)
            cols = torch.arange(T, device=dev)
            last = torch.tensor([self.past[i] for i in one], device=dev)
            self._one_mask = (cols[None, :] <= last[:, None])[:, None, None, :]  # (B1, 1, 1, T)
            return
        lo, hi = min(u[0] for u in used), max(u[0] for u in used)
        if hi - lo + 1 <= 2 * len(used) + 8:  # close together: read the pool's blocks lo..hi
            self._one_blocks = slice(lo, hi + 1)
            owner, limit = [len(one)] * (hi - lo + 1), [0] * (hi - lo + 1)
            for block, row, valid in used:
                owner[block - lo], limit[block - lo] = row, valid
        else:  # scattered over a large pool: index the used blocks (copies only those)
            self._one_blocks = torch.tensor([u[0] for u in used], device=dev)
            owner, limit = [u[1] for u in used], [u[2] for u in used]
        self._owner = torch.tensor(owner, device=dev)
        limit = torch.tensor(limit, device=dev)
        self._valid = (torch.arange(bt, device=dev)[None, :] < limit[:, None])[:, None, :]

    def _gather_slots(self, idx: list[int], T: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(block, offset)`` ``(len(idx), T)`` of positions ``0 .. T-1`` of the sequences ``idx``
        (positions past a sequence's blocks point into its first block: masked, never read)."""
        cache, bt, dev = self.cache, self.cache.block_tokens, self.cache.k[0].device
        n_blocks = blocks_for(T, bt)
        table = torch.zeros(len(idx), n_blocks, dtype=torch.long, device=dev)
        for r, i in enumerate(idx):
            blocks = cache.tables[self.seqs[i]][:n_blocks]
            table[r, : len(blocks)] = torch.tensor(blocks, dtype=torch.long, device=dev)
            table[r, len(blocks) :] = blocks[0]
        cols = torch.arange(T, device=dev)
        return table[:, cols // bt], (cols % bt).expand(len(idx), T)

    def _plan_many(self) -> None:
        """For each prompt chunk: its blocks (a slice when consecutive), and the causal mask of its
        queries over the blocks' offsets ``(m, 1, n, block_tokens)``."""
        cache, bt, dev = self.cache, self.cache.block_tokens, self.cache.k[0].device
        self._many_plan = []
        for i in self._many:
            p, n = self.past[i], self.counts[i]
            m = blocks_for(p + n, bt)
            blocks = cache.tables[self.seqs[i]][:m]
            if self.reads == "gather":
                self._many_plan.append(self._gather_slots([i], p + n))
                continue
            if blocks == list(range(blocks[0], blocks[0] + m)):
                where = slice(blocks[0], blocks[0] + m)
            else:
                where = torch.tensor(blocks, device=dev)
            keys = torch.arange(m * bt, device=dev).view(m, 1, 1, bt)
            queries = torch.arange(p, p + n, device=dev).view(1, 1, n, 1)
            self._many_plan.append((where, keys <= queries))

    # --- the cache interface GPT.run calls ----------------------------------------------------
    def check(self, batch_size: int, n_new: int) -> None:
        """Before the pass: raise ValueError (writing nothing) unless ids are ``(1, S)`` and the view
        is unused and its sequences are as it saw them."""
        if self._state != "ready":
            raise ValueError(
                "this packed view was already used: a view serves exactly one forward pass; "
                "make a new one with cache.packed(...)"
            )
        if (batch_size, n_new) != (1, self.S):
            raise ValueError(
                f"this packed view was made for ids of shape (1, {self.S}) (counts "
                f"{self.counts}), ids have shape {(batch_size, n_new)}"
            )
        PagedBatch._check_live(self)
        self._state = "running"

    def inputs(self, positions, attn_mask):
        """The view's positions ``(1, S)`` and no mask (each token's sequence is in the view)."""
        return _own_inputs(self, positions, attn_mask, self._positions, None)

    def run(self, model: Decoder, ids: torch.Tensor, **kwargs) -> GPTOutput:
        """``model.run(ids, cache=self, **kwargs)``: the one pass this view serves."""
        if not isinstance(model, Decoder):
            raise TypeError(f"model must be a nexttoken GPT or Llama, got {type(model).__name__}")
        if model.config.n_layer != len(self.cache.k):
            raise ValueError(
                f"this pool was made for {len(self.cache.k)} layer(s), the model has "
                f"{model.config.n_layer}: make the pool with PagedKVCache.for_model(model, ...)"
            )
        return model.run(ids, cache=self, **kwargs)

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Write this pass's keys and values ``(1, H, S, d_head)`` into the blocks, then return the
        attention output ``(1, H, S, d_head)`` of the queries ``q`` over their own sequences."""
        if self._state != "running":
            raise ValueError("attend() is called by GPT.run, after check() accepted the view")
        if not 0 <= layer < len(self.cache.k):
            raise ValueError(
                f"this pool was made for {len(self.cache.k)} layer(s), the model has more: "
                f"make the pool with PagedKVCache.for_model(model, ...)"
            )
        kp, vp = self.cache.k[layer], self.cache.v[layer]  # (num_blocks, H, block_tokens, d_head)
        if layer == 0:
            _check_kv(kp, *_exact_in(kp.dtype, k, v), 1, self.S)
        kp[self._w_blk, :, self._w_off] = k[0].transpose(0, 1).to(kp.dtype)  # (S, H, d_head)
        vp[self._w_blk, :, self._w_off] = v[0].transpose(0, 1).to(vp.dtype)
        q = q[0]  # (H, S, d_head)
        y = torch.empty_like(q)
        if self._n_one:
            q1 = q.index_select(1, self._one_rows).transpose(0, 1)  # (B1, H, d_head)
            read = self._one_gather if self.reads == "gather" else self._one_blocks_attend
            y[:, self._one_rows] = read(kp, vp, q1).transpose(0, 1)
        for i, plan in zip(self._many, self._many_plan, strict=True):
            a, n = self._starts[i], self.counts[i]
            read = self._many_gather if self.reads == "gather" else self._many_blocks_attend
            y[:, a : a + n] = read(kp, vp, q[:, a : a + n], plan)
        return y.unsqueeze(0)

    def advance(self, n_new: int) -> None:
        """Count every sequence's new tokens as written (called by ``GPT.run`` after every layer)."""
        if self._state != "running":
            raise ValueError("advance() is called by GPT.run, after check() accepted the view")
        for s, n in zip(self.seqs, self.counts, strict=True):
            self.cache.lengths[s] += n
        self._state = "done"

    # --- attention, two ways ------------------------------------------------------------------
    def _one_blocks_attend(self, kp, vp, q1: torch.Tensor) -> torch.Tensor:
        """``q1`` ``(B1, H, d_head)``, one query per sequence, over its blocks read in place (the
        ``H / H_kv`` query heads of a group read their key/value head together)."""
        B1, H, dh = q1.shape
        K, V = kp[self._one_blocks], vp[self._one_blocks]  # (nb, H_kv, bt, d_head): pool views
        K, V = K.to(q1.dtype), V.to(q1.dtype)  # no-op but for float64 attention (int8 models)
        nb, H_kv, bt, _ = K.shape
        owner = self._owner  # (nb,): the row whose blocks these are (B1 = nobody's)
        qb = torch.cat([q1, q1.new_zeros(1, H, dh)])[owner]  # (nb, H, d_head): each block's query
        qb = qb.view(nb, H_kv, H // H_kv, dh)  # a group's query heads as rows
        s = (qb @ K.transpose(-1, -2)).view(nb, H, bt)  # (nb, H, bt): q . each key
        s = s * (1.0 / math.sqrt(dh))
        s = s.masked_fill(~self._valid, float("-inf"))
        m = s.new_full((B1 + 1, H), float("-inf"))
        m = m.scatter_reduce(0, owner[:, None].expand(-1, H), s.amax(-1), "amax")
        m[B1] = 0.0  # nobody's blocks: every score -inf, every weight 0
        e = torch.exp(s - m[owner].unsqueeze(-1))  # (nb, H, bt): e^(score - its sequence's max)
        den = s.new_zeros(B1 + 1, H).index_add_(0, owner, e.sum(-1))
        ev = (e.view(nb, H_kv, H // H_kv, bt) @ V).view(nb, H, dh)  # (nb, H, d_head)
        num = s.new_zeros(B1 + 1, H, dh).index_add_(0, owner, ev)
        return num[:B1] / den[:B1].unsqueeze(-1)

    def _one_gather(self, kp, vp, q1: torch.Tensor) -> torch.Tensor:
        """The same through a copy of each sequence's context, ``(B1, H, T, d_head)``."""
        blk, off = self._one_slots
        K, V = kp[blk, :, off].transpose(1, 2), vp[blk, :, off].transpose(1, 2)
        K, V = K.to(q1.dtype), V.to(q1.dtype)
        gqa = K.size(1) != q1.size(1)
        y = F.scaled_dot_product_attention(
            q1.unsqueeze(2), K, V, attn_mask=self._one_mask, **({"enable_gqa": True} if gqa else {})
        )
        return y.squeeze(2)

    def _many_blocks_attend(self, kp, vp, q: torch.Tensor, plan) -> torch.Tensor:
        """One sequence's chunk ``q`` ``(H, n, d_head)`` over its blocks read in place (causal)."""
        where, allowed = plan
        K, V = kp[where].to(q.dtype), vp[where].to(q.dtype)  # (m, H_kv, bt, d_head)
        H, n, dh = q.shape
        n_rep = H // K.size(1)
        if n_rep > 1:  # a group's query heads as extra rows: (H_kv, n_rep * n, d_head)
            q, allowed = q.reshape(K.size(1), n_rep * n, dh), allowed.repeat(1, 1, n_rep, 1)
        s = (q.unsqueeze(0) @ K.transpose(-1, -2)) * (1.0 / math.sqrt(dh))  # (m, H, n, bt)
        s = s.masked_fill(~allowed, float("-inf"))
        m = s.amax(dim=(0, 3), keepdim=True)  # (1, H, n, 1): every query sees its own key
        e = torch.exp(s - m)
        return ((e @ V).sum(0) / e.sum(dim=(0, 3)).unsqueeze(-1)).reshape(H, n, dh)

    def _many_gather(self, kp, vp, q: torch.Tensor, plan) -> torch.Tensor:
        blk, off = plan
        K, V = kp[blk, :, off].transpose(1, 2), vp[blk, :, off].transpose(1, 2)  # (1, H_kv, T, dh)
        n_rep = q.size(0) // K.size(1)
        K, V = repeat_kv(K.to(q.dtype), n_rep), repeat_kv(V.to(q.dtype), n_rep)
        return fused_attention(q.unsqueeze(0), K, V).squeeze(0)
