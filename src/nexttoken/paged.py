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
from collections.abc import Sequence

import torch

from .model import GPT, GPTConfig, GPTOutput
from .sizes import format_bytes
from .train import available_memory

__all__ = [
    "PagedKVCache",
    "PagedBatch",
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


def pool_bytes(config: GPTConfig, num_blocks: int, block_tokens: int, dtype: torch.dtype) -> int:
    """Bytes of a pool's keys and values: ``2 * n_layer * num_blocks * block_tokens * n_embd``
    numbers of ``dtype``."""
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
    _check_positive_int("num_blocks", num_blocks)
    _check_positive_int("block_tokens", block_tokens)
    _check_dtype(dtype)
    item = torch.empty((), dtype=dtype).element_size()
    return 2 * config.n_layer * num_blocks * block_tokens * config.n_embd * item


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
        shape = (num_blocks, block_tokens, config.n_head, config.d_head)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self._free = list(range(num_blocks))  # a min-heap of free block ids
        self.tables: dict[object, list[int]] = {}  # sequence -> its blocks, in order
        self.lengths: dict[object, int] = {}  # sequence -> tokens written
        self.generations: dict[object, int] = {}  # sequence -> its generation (new at each add)
        self._generation = itertools.count()

    @classmethod
    def for_model(cls, model: GPT, num_blocks: int, block_tokens: int) -> PagedKVCache:
        """A pool matching ``model``'s shapes, dtype and device."""
        if not isinstance(model, GPT):
            raise TypeError(f"model must be a nexttoken GPT, got {type(model).__name__}")
        w = model.transformer.wte.weight
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


class PagedBatch:
    """``B`` sequences of a :class:`PagedKVCache` seen as one batch for one forward pass.

    It implements the cache interface that :meth:`nexttoken.model.GPT.run` calls (``length``,
    ``check``, ``update``, ``advance``) and gives the ``positions`` ``(B, n_new)`` and ``mask``
    (``(B, 1, n_new, T)`` or None when every sequence has the same length, where the causal rule
    alone is right) to pass to ``run``; :meth:`run` passes them itself. Slot ``s`` of the pool's
    flat ``(num_blocks * block_tokens)`` axis is block ``s // block_tokens``, offset
    ``s % block_tokens``.

    One view, one pass: :meth:`check` (called by ``GPT.run`` before anything is written) refuses
    a view that was already used, whose sequences were freed or written since it was made, or
    whose sequences have different lengths while its ``positions`` and ``mask`` were never taken
    (a ragged batch run without them would place every row at the longest row's position and let
    it attend to the others' padding).
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
        self._taken: set[str] = set()  # which of positions / mask the caller has read
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
        self._taken.add("positions")
        return self._positions

    @property
    def mask(self) -> torch.Tensor | None:
        """``(B, 1, n_new, T)`` boolean (True = may attend), or None when no row is shorter."""
        self._taken.add("mask")
        return self._mask

    def run(self, model: GPT, ids: torch.Tensor, **kwargs) -> GPTOutput:
        """``model.run(ids, cache=self, positions=self.positions, attn_mask=self.mask, **kwargs)``:
        the one pass this view serves, with its own positions and mask."""
        if not isinstance(model, GPT):
            raise TypeError(f"model must be a nexttoken GPT, got {type(model).__name__}")
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
        if self.ragged and not {"positions", "mask"} <= self._taken:
            lengths = [length for _, length in self._made]
            raise ValueError(
                f"the sequences of this view have different lengths {lengths}: pass "
                f"positions=view.positions and attn_mask=view.mask to model.run (or call "
                f"view.run(model, ids)); without them every row would sit at position "
                f"{self.length} and attend to the shorter rows' padding. Nothing was written"
            )
        self._state = "running"

    def _check_kv(self, k: torch.Tensor, v: torch.Tensor) -> None:
        pool = self.cache.k[0]
        H, dh = pool.shape[2:]
        B, N = len(self.seqs), self.n_new
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
        """Count the pass's ``n_new`` tokens as written (called by ``GPT.run`` after every layer);
        the view is used up."""
        if self._state != "running":
            raise ValueError("advance() is called by GPT.run, after check() accepted the view")
        for s in self.seqs:
            self.cache.lengths[s] += n_new
        self._state = "done"
