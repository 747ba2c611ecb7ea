"""A continuous-batching engine: many requests, one batch, refilled at every step.

*Static* batching (:func:`nexttoken.batching.generate_batch`) decodes a fixed batch until its
longest request ends; a request that ends early leaves its slot idle (or computing padding), and a
request that arrives waits for the whole batch. *Continuous* batching (Yu et al. 2022, "Orca",
iteration-level scheduling) decides at every step: finished requests leave, waiting requests join
as soon as a batch slot and enough KV blocks are free.

:class:`Engine` keeps every request's keys and values in a :class:`~nexttoken.paged.PagedKVCache`.
One :meth:`Engine.step`:

1. **admit** waiting requests, first come first served, while a batch slot is free and the pool has
   the blocks for the request's prompt plus its ``max_new_tokens`` (reserved at admission, so a
   running request never runs out of blocks; vLLM instead allocates on demand and pre-empts a
   request when the pool runs dry);
2. **one forward pass** (chunked prefill, as in Sarathi-Serve and vLLM) of up to
   ``max_step_tokens`` tokens packed in one row (:class:`~nexttoken.paged.PackedBatch`): first the
   last token of every request that is decoding, then the prompt tokens of newly admitted requests,
   first come first served, a long prompt split over several steps. Each token sits at its own
   position and attends only to its own request's blocks (read in place). A request whose prompt
   is complete gets a token, sampled from its last row; the weights are read once for all of them
   (one pass with ``D + P`` rows costs about what ``D`` rows cost while the products stay under the
   roofline's ridge: see notebook 10);
3. **retire** requests that reached ``max_new_tokens`` or their ``stop_token``: their blocks and slot
   are free for the next step.

Each request's tokens are sampled by :func:`nexttoken.sampling.sample` with its own settings and
generator, from logits of its own row: greedy output equals ``generate(model, prompt, ...)`` alone,
whatever else shares the batch (the tests check it with requests arriving at random steps).

A server runs for a long time: request ids count up and are never reused, :meth:`Engine.pop_results`
hands over the finished requests and forgets them, and ``history`` keeps the last ``keep_history``
steps only. A step that fails half-way (an interrupted forward pass) loses no request: the next
step retires what finished and prefills what was admitted but not yet prefilled.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .batching import check_prompt
from .generate import _check_stop_token, check_max_new_tokens
from .model import Decoder
from .paged import (
    PagedKVCache,
    _check_int,
    _check_positive_int,
    blocks_for,
    check_memory,
    pool_bytes,
)
from .sampling import check_generator, check_sampling_args, sample
from .sizes import format_bytes

__all__ = ["Engine", "Request"]


@dataclass
class Request:
    """One request and what the engine has done with it.

    ``tokens`` is the prompt followed by the tokens generated so far. Steps are counted from 1
    (``Engine.steps`` after the step); ``None`` until it happens.
    """

    id: int
    prompt: list[int]
    max_new_tokens: int
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    generator: torch.Generator | None = None
    stop_token: int | None = None
    tokens: list[int] = field(default_factory=list)
    state: str = "waiting"  # waiting -> running -> finished
    slot: int | None = None
    arrival_step: int = 0
    admit_step: int | None = None
    finish_step: int | None = None
    arrival_time: float = 0.0
    finish_time: float | None = None

    @property
    def n_new(self) -> int:
        """Tokens generated so far."""
        return len(self.tokens) - len(self.prompt)

    def done(self) -> bool:
        """Reached ``max_new_tokens``, or produced its ``stop_token``."""
        if self.n_new >= self.max_new_tokens:
            return True
        return self.stop_token is not None and self.n_new > 0 and self.tokens[-1] == self.stop_token


class Engine:
    """Continuous batching over a paged KV cache.

    - ``max_batch``: batch slots (requests decoded together);
    - ``num_blocks``, ``block_tokens``: the KV pool (see :class:`~nexttoken.paged.PagedKVCache`);
    - ``static=True`` turns the scheduler into static batching for comparison: waiting requests
      are admitted only when the batch is empty (finished requests still leave at once, so this
      baseline never computes padding: it is kinder to static batching than a padded batch is);
    - ``clock``: the function that stamps ``arrival_time`` / ``finish_time`` (default
      ``time.perf_counter``; a benchmark on a shared machine may pass ``time.process_time``);
    - ``max_step_tokens``: the most tokens one step's pass carries (decode tokens first, then
      prompt chunks); at most the context length ``block_size``. Default 128 (or ``block_size``
      when smaller): on ``benchmarks/serving_peer.py``'s workload (CPU, one thread) budgets of 64,
      128 and 256 ran within 3% of each other on the book model and the GPT-2 shape (32: 5% slower
      on the book model); a budget bounds how long one step makes the running requests wait;
    - ``reads``: ``"blocks"`` (attention reads the pool's blocks in place) or ``"gather"`` (copies
      each request's context first: the teaching version; the same tokens).

    ``history`` holds, for each of the last ``keep_history`` steps (default 10,000; 0 keeps none),
    the ``step``, the request in each slot (None when idle), the pool's block owners and
    ``"prefill"``: ``{request id: prompt tokens}`` of the chunks this step's pass carried: the
    notebook draws them.

    ``requests`` maps the id of every request not yet popped to its :class:`Request`; ids count up
    from 0 and are never reused, even when a finished request is dropped from ``requests``.
    """

    def __init__(
        self,
        model: Decoder,
        *,
        max_batch: int,
        num_blocks: int,
        block_tokens: int,
        static: bool = False,
        clock: Callable[[], float] = time.perf_counter,
        keep_history: int = 10_000,
        max_step_tokens: int | None = None,
        reads: str = "blocks",
    ) -> None:
        if not isinstance(model, Decoder):
            raise TypeError(f"model must be a nexttoken GPT or Llama, got {type(model).__name__}")
        self.model = model
        self.max_batch = _check_positive_int("max_batch", max_batch)
        _check_positive_int("num_blocks", num_blocks)
        _check_positive_int("block_tokens", block_tokens)
        if max_batch > num_blocks:
            raise ValueError(
                f"max_batch ({max_batch}) must be <= num_blocks ({num_blocks}): each running "
                f"request holds at least one block, so at most {num_blocks} can run at once"
            )
        if not isinstance(static, bool):
            raise TypeError(f"static must be True or False, got {static!r}")
        self.static = static
        if not callable(clock):
            raise TypeError(f"clock must be a function returning seconds, got {clock!r}")
        self.clock = clock
        self.keep_history = _check_int("keep_history", keep_history, 0)
        if max_step_tokens is None:
            max_step_tokens = min(128, model.config.block_size)
        _check_positive_int("max_step_tokens", max_step_tokens)
        if max_step_tokens > model.config.block_size:
            raise ValueError(
                f"max_step_tokens must be in [1, {model.config.block_size}] (the context length "
                f"block_size: one pass's row holds at most that many tokens), got {max_step_tokens}"
            )
        self.max_step_tokens = max_step_tokens
        if reads not in ("blocks", "gather"):
            raise ValueError(f"reads must be 'blocks' or 'gather', got {reads!r}")
        self.reads = reads
        self._check_memory(num_blocks, block_tokens)
        self.cache = PagedKVCache.for_model(model, num_blocks, block_tokens)
        self.requests: dict[int, Request] = {}
        self.waiting: deque[Request] = deque()
        self.slots: list[Request | None] = [None] * max_batch
        self.steps = 0
        self.history: list[dict] = []
        self._next_id = 0

    def _check_memory(self, num_blocks: int, block_tokens: int) -> None:
        """Refuse (with the numbers) an engine whose pool and largest step do not fit the device.

        An upper bound: a step at full batch with ``reads="gather"`` copies every request's keys and
        values, ``(B, H, T, d_head)`` for one layer at a time, about twice that with the attention
        kernel's copies (reading the blocks in place copies none); it projects ``B`` rows to the
        vocabulary, and a prompt chunk scores up to ``T x T`` pairs per head."""
        cfg, w = self.model.config, self.model.get_input_embeddings().weight
        item = w.element_size()
        T = min(cfg.block_size, num_blocks * block_tokens)
        B = self.max_batch
        step = 4 * B * T * cfg.n_embd * item + 4 * B * cfg.vocab_size + 4 * cfg.n_head * T * T
        pool = pool_bytes(cfg, num_blocks, block_tokens, w.dtype)
        check_memory(
            pool + step,
            w.device,
            f"an engine with max_batch={B}, num_blocks={num_blocks} and block_tokens="
            f"{block_tokens} (its KV pool {format_bytes(pool)}, then a full step's keys, values "
            f"and logits)",
            "Use a smaller pool or batch.",
        )

    # --- requests ----------------------------------------------------------------------------
    def add_request(
        self,
        prompt,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        stop_token: int | None = None,
    ) -> int:
        """Queue a request; returns its id (ids count up from 0, never reused). Settings as
        :func:`nexttoken.generate.generate`'s (``temperature=0`` is greedy). Checked now, with a
        clear error, not at its first step; a refused request changes nothing.

        A sampled request draws exactly what ``generate`` draws alone with the same ``generator``
        when the generator is its own: requests sharing one generator interleave their draws
        (reproducible, but not the draws each would make alone)."""
        cfg = self.model.config
        prompt = check_prompt(prompt, cfg.vocab_size)
        check_max_new_tokens(max_new_tokens)
        check_sampling_args(cfg.vocab_size, temperature, top_k, top_p)
        check_generator(generator)
        stop_token = _check_stop_token(stop_token, cfg.vocab_size)
        total = len(prompt) + max_new_tokens
        if total > cfg.block_size:
            raise ValueError(
                f"prompt ({len(prompt)} tokens) + max_new_tokens ({max_new_tokens}) exceeds the "
                f"context length block_size={cfg.block_size}"
            )
        need = blocks_for(total, self.cache.block_tokens)
        if need > self.cache.num_blocks:
            raise ValueError(
                f"this request needs {need} blocks of {self.cache.block_tokens} tokens, the whole "
                f"pool has {self.cache.num_blocks}: it could never run"
            )
        if generator is not None and generator.device.type != self.model.device.type:
            raise ValueError(
                f"generator must be on the model's device ({self.model.device.type}), got one "
                f"on {generator.device.type}"
            )
        now = self.clock()
        if isinstance(now, bool) or not isinstance(now, (int, float)):
            raise TypeError(f"clock must return a number of seconds, it returned {now!r}")
        rid = self._next_id
        req = Request(
            rid, prompt, max_new_tokens, temperature, top_k, top_p, generator, stop_token,
            tokens=list(prompt), arrival_step=self.steps, arrival_time=now,
        )  # fmt: skip
        self._next_id += 1
        self.requests[rid] = req
        if max_new_tokens == 0:  # nothing to compute: generate returns the prompt
            self._finish(req)
        else:
            self.waiting.append(req)
        return rid

    @property
    def running(self) -> list[Request]:
        """Requests in the batch, in slot order."""
        return [r for r in self.slots if r is not None]

    def has_work(self) -> bool:
        """True while a request is waiting or running."""
        return bool(self.waiting) or any(r is not None for r in self.slots)

    # --- one step ----------------------------------------------------------------------------
    def _admit(self) -> list[Request]:
        admitted: list[Request] = []
        if self.static and self.running:
            return admitted
        while self.waiting and None in self.slots:
            req = self.waiting[0]
            need = blocks_for(len(req.prompt) + req.max_new_tokens, self.cache.block_tokens)
            if need > self.cache.num_free:
                break  # first come, first served: later requests wait behind it
            self.waiting.popleft()
            self.cache.add(req.id)
            self.cache.reserve(req.id, len(req.prompt) + req.max_new_tokens)
            req.slot = self.slots.index(None)
            self.slots[req.slot] = req
            req.state, req.admit_step = "running", self.steps + 1
            admitted.append(req)
        return admitted

    def _rewind(self, req: Request, n_tokens: int) -> None:
        """Make ``req``'s cache hold ``n_tokens`` tokens before its next pass: a pass that failed
        after writing may have left it ahead of ``req.tokens``."""
        if self.cache.lengths[req.id] != n_tokens:
            self.cache.truncate(req.id, n_tokens)

    def _finish(self, req: Request) -> None:
        if req.slot is not None:
            self.slots[req.slot] = None
            self.cache.free(req.id)
        req.state, req.finish_step, req.finish_time = "finished", self.steps, self.clock()

    def _check_model(self) -> None:
        """Raise ValueError, before the step changes anything, if the model's weights changed
        dtype or device since the pool was made for them."""
        w, pool = self.model.get_input_embeddings().weight, self.cache.k[0]
        if (w.dtype, w.device) != (pool.dtype, pool.device):
            raise ValueError(
                f"the model's weights are {w.dtype} on {w.device}, the engine's KV pool was made "
                f"for {pool.dtype} on {pool.device}: move the model back (nothing was lost: every "
                f"request resumes at the next step) or make a new Engine"
            )

    def _plan(self) -> list[tuple[Request, int, int]]:
        """This step's work: ``(request, first token, count)``, up to ``max_step_tokens`` tokens:
        every decoding request's last token first (slot order), then prompt chunks, oldest first.
        Each request's cache is rewound to the tokens it holds for sure (a pass that failed after
        writing may have left it ahead)."""
        work, budget = [], self.max_step_tokens
        running = self.running
        for r in running:
            self._rewind(r, min(self.cache.lengths[r.id], len(r.tokens) - 1))
        decoding = [r for r in running if self.cache.lengths[r.id] == len(r.tokens) - 1]
        rest = sorted((r for r in running if self.cache.lengths[r.id] < len(r.tokens) - 1),
                      key=lambda r: r.id)  # fmt: skip
        for r in decoding + rest:
            if budget == 0:
                break
            start = self.cache.lengths[r.id]
            n = min(len(r.tokens) - start, budget)
            work.append((r, start, n))
            budget -= n
        return work

    def _forward(self, work: list[tuple[Request, int, int]]) -> list[Request]:
        """One pass of every request's tokens in ``work``, packed in one row; append a token to
        each request whose tokens are all in the cache now. Returns those requests."""
        ids, rows, done = [], [], []
        for r, start, n in work:
            ids.extend(r.tokens[start : start + n])
            if start + n == len(r.tokens):
                rows.append(len(ids) - 1)
                done.append(r)
        device = self.model.device
        view = self.cache.packed(
            [r.id for r, _, _ in work], [n for _, _, n in work], reads=self.reads
        )
        if not done:  # only prompt chunks: fill the cache, no token yet
            view.run(self.model, torch.tensor([ids], device=device), last_only=True)
            return done
        at = torch.tensor(rows, device=device)
        logits = view.run(self.model, torch.tensor([ids], device=device), logits_at=at).logits[0]
        if all(r.temperature == 0 for r in done):  # greedy: one argmax for every row
            new = logits.argmax(-1).tolist()
        else:
            new = [
                int(sample(logits[b : b + 1], r.temperature, r.top_k, r.top_p, r.generator))
                for b, r in enumerate(done)
            ]
        for r, token in zip(done, new, strict=True):
            r.tokens.append(token)
        return done

    def step(self) -> dict[int, int]:
        """One step: admit, one pass (every decoding request's next token and prompt chunks of the
        new ones), retire the finished. Returns ``{request id: token generated in this step}``."""
        self._check_model()
        for r in self.running:  # finished in a step that failed afterwards
            if r.done():
                self._finish(r)
        was_training = self.model.training
        if was_training:  # (setting every module's mode costs more than a small model's step)
            self.model.eval()
        try:
            with torch.inference_mode():
                self._admit()
                work = self._plan()
                self.steps += 1
                produced = self._forward(work) if work else []
        finally:
            if was_training:
                self.model.train()
        if self.keep_history:
            prefill = {r.id: n for r, start, n in work if start < len(r.prompt)}
            self.history.append(
                {
                    "step": self.steps,
                    "slots": [None if r is None else r.id for r in self.slots],
                    "blocks": self.cache.owner_map(),
                    "prefill": prefill,
                }
            )
            del self.history[: max(0, len(self.history) - self.keep_history)]
        for r in produced:
            if r.done():
                self._finish(r)
        return {r.id: r.tokens[-1] for r in produced}

    def run(self) -> dict[int, list[int]]:
        """Step until no request waits or runs; returns ``{id: prompt + continuation}`` for every
        request added so far and not popped (:meth:`pop_results`)."""
        while self.has_work():
            self.step()
        return self.results()

    def results(self) -> dict[int, list[int]]:
        """``{id: tokens}`` of the finished requests (those not popped yet)."""
        return {i: list(r.tokens) for i, r in self.requests.items() if r.state == "finished"}

    def pop_results(self) -> dict[int, list[int]]:
        """``{id: tokens}`` of the finished requests, which the engine then forgets: a long-running
        server calls it to keep its memory bounded (ids are never reused)."""
        done = [i for i, r in self.requests.items() if r.state == "finished"]
        return {i: self.requests.pop(i).tokens for i in done}
