"""The worker behind ``python -m nexttoken.parallel``: one split, checked against one process.

Every rank builds the same full model (the book's trained one, or a named configuration with random
weights from ``--seed``), takes its part, and checks, against the full model in the same process:

- the logits of one forward pass (``max_abs_diff``, over every rank that holds logits);
- greedy generations (``greedy_equal``): ``generate`` on the tensor-parallel shard, or
  :func:`pipeline_generate` through the stages, against ``generate`` on the full model;
- the bytes each rank hands to ``torch.distributed`` in one forward pass, counted by
  :func:`count_comm`, against the formulas, for several shapes (``bytes_equal``);
- wall time of the forward pass in one process and split, and the pipeline's timeline.

Rank 0 prints one JSON object as its last line.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist

from ..configs import CONFIGS
from ..generate import generate
from ..model import GPT, GPTConfig
from .comm import count_comm, pp_send_bytes, tp_allreduce_bytes
from .pipeline import PipelineStage, pipeline_generate, pipeline_parallel, stage_bounds
from .shard import check_split
from .tensor import tensor_parallel

__all__ = [
    "EXTRA_CONFIGS",
    "RUNTIME_BYTES",
    "WorkerSetupError",
    "build_model",
    "config_by_name",
    "init_from_env",
    "make_groups",
    "rank_memory",
    "run_check",
    "worker_env",
]

#: The number formats the check runs in (float64 shows that the only difference is rounding).
DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: A GPT-2-shaped model (GPT-2 small's vocabulary, width and 12 heads of 64) with 2 blocks, so that
#: random weights build in a second; any name of ``nexttoken.configs`` works too.
EXTRA_CONFIGS: dict[str, GPTConfig] = {
    "gpt2-shaped": GPTConfig(
        vocab_size=50257, block_size=64, n_layer=2, n_head=12, n_embd=768, name="gpt2-shaped"
    ),
}


def config_by_name(name: str) -> GPTConfig:
    """``book``, ``gpt2-shaped`` or any configuration name of :mod:`nexttoken.configs`."""
    if name in EXTRA_CONFIGS:
        return EXTRA_CONFIGS[name]
    if name in CONFIGS:
        return CONFIGS[name]
    known = ", ".join([*CONFIGS, *EXTRA_CONFIGS])
    raise ValueError(f"unknown config {name!r}; known: {known}")


def build_model(name: str, seed: int = 0) -> GPT:
    """The full model every rank starts from: the trained book model, or random weights from ``seed``."""
    if name == "book":
        from ..book import load_book_model

        return load_book_model().eval()
    config = config_by_name(name)
    torch.manual_seed(seed)
    return GPT(config).eval()


#: Memory one rank uses before it holds any model: Python, torch, gloo (peak RSS measured at
#: 0.33 GB on Linux x86-64, torch 2.13, rounded up).
RUNTIME_BYTES = 400 * 10**6

#: The process-group backends a worker accepts (``NEXTTOKEN_BACKEND``).
BACKENDS = ("gloo", "nccl")


def _param_counts(c: GPTConfig, tp: int, pp: int) -> tuple[int, int]:
    """Parameters of the full model, and of one rank's part (the largest stage's blocks, cut ``tp``
    ways, plus the replicated embeddings and final LayerNorm)."""
    embeddings = c.vocab_size * c.n_embd + c.block_size * c.n_embd + 2 * c.n_embd
    block = 12 * c.n_embd * c.n_embd + 13 * c.n_embd
    blocks_per_stage = -(-c.n_layer // pp)
    return embeddings + c.n_layer * block, embeddings + blocks_per_stage * block // tp


def rank_memory(
    config: GPTConfig,
    tp: int,
    pp: int,
    *,
    batch: int,
    tokens: int,
    new_tokens: int,
    dtype: str = "float32",
) -> dict[str, int]:
    """About how many bytes one rank of :func:`run_check` needs (an estimate, before any process).

    Every rank builds the full model (``P`` parameters) and copies its part out of it; in float32
    it also runs a float64 copy of the full model as the yardstick of "exact" (8 bytes a
    parameter). Caches: the full model's and the part's, ``2 L' B (tokens + new_tokens) d / T``
    numbers for ``L'`` blocks. Activations: the logits ``(B, tokens, V)`` kept twice in ``dtype``
    and, in float32, three times in float64 (the yardstick and the differences); plus one block's
    temporaries in a forward pass, ``13 d + 2 H N`` numbers a position (q, k, v, the attention
    scores and weights, the MLP's ``4 d`` before and after GELU, ...). ``runtime``:
    :data:`RUNTIME_BYTES`. Returns those four and their ``total``.

    Measured against one rank's peak resident memory (``--tp 1``, Linux, torch 2.13): 1.01 to 1.26
    times it, book and GPT-2-shaped models, batch 2 to 8, 16 to 128 tokens, float32 and float64.
    """
    check_split(config, tp, pp)
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use {', '.join(DTYPES)}")
    for name, v, low in (("batch", batch, 1), ("tokens", tokens, 1), ("new_tokens", new_tokens, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
    c, nb = config, DTYPES[dtype].itemsize
    full, part = _param_counts(c, tp, pp)
    exact = dtype == "float32"  # the float64 yardstick
    weights = nb * (full + part) + (8 * full if exact else 0)
    positions = batch * (tokens + new_tokens)
    kv = nb * 2 * positions * c.n_embd * c.n_layer
    kv += nb * 2 * positions * c.n_embd * -(-c.n_layer // pp) // tp
    logits = batch * tokens * c.vocab_size * (2 * nb + (24 if exact else 0))
    per_block = batch * tokens * (13 * c.n_embd + 2 * c.n_head * tokens) * (8 if exact else nb)
    activations = logits + per_block
    sizes = {"weights": weights, "kv_cache": kv, "activations": activations}
    sizes["runtime"] = RUNTIME_BYTES
    sizes["total"] = sum(sizes.values())
    return sizes


class WorkerSetupError(ValueError):
    """Worker mode cannot start: a missing or malformed variable, a rendezvous that fails."""


def _int_var(environ, name: str) -> int:
    value = environ.get(name)
    if value is None:
        raise WorkerSetupError(f"{name} is not set")
    try:
        return int(value)
    except ValueError:
        raise WorkerSetupError(f"{name} must be an integer, got {value!r}") from None


def worker_env(environ, tp: int | None = None, pp: int = 1) -> tuple[int, int]:
    """``(rank, world_size)`` read from ``RANK`` / ``WORLD_SIZE`` and checked, with the rest of the
    rendezvous (``NEXTTOKEN_BACKEND``; ``MASTER_ADDR`` / ``MASTER_PORT`` unless
    ``NEXTTOKEN_INIT_METHOD`` names another method), and ``WORLD_SIZE == tp * pp`` when ``tp`` is
    given: :class:`WorkerSetupError` on the first problem."""
    try:
        rank, world = _int_var(environ, "RANK"), _int_var(environ, "WORLD_SIZE")
    except WorkerSetupError as e:  # most likely a RANK exported for something else
        raise WorkerSetupError(
            f"{e} (if RANK was exported for something else, unset RANK and this command starts "
            f"the ranks itself)"
        ) from None
    if world < 1:
        raise WorkerSetupError(f"WORLD_SIZE must be >= 1, got {world}")
    if not 0 <= rank < world:
        raise WorkerSetupError(f"RANK={rank} must be in [0, WORLD_SIZE={world})")
    if tp is not None and world != tp * pp:
        raise WorkerSetupError(f"WORLD_SIZE={world} but --tp {tp} x --pp {pp} = {tp * pp} ranks")
    backend = environ.get("NEXTTOKEN_BACKEND", "gloo")
    if backend not in BACKENDS:
        raise WorkerSetupError(
            f"NEXTTOKEN_BACKEND must be {' or '.join(BACKENDS)}, got {backend!r}"
        )
    if backend == "nccl" and not dist.is_nccl_available():
        raise WorkerSetupError(
            "NEXTTOKEN_BACKEND=nccl but this torch build has no NCCL (a CPU build): use gloo"
        )
    if backend == "nccl":  # NCCL carries CUDA tensors only, and the check runs on the CPU
        raise WorkerSetupError(
            "NEXTTOKEN_BACKEND=nccl: this check runs the model on the CPU, whose tensors NCCL "
            "cannot carry: use gloo"
        )
    if environ.get("NEXTTOKEN_INIT_METHOD", "env://") == "env://":
        if not environ.get("MASTER_ADDR"):
            raise WorkerSetupError("MASTER_ADDR is not set (env:// rendezvous; torchrun sets it)")
        port = environ.get("MASTER_PORT", "")
        if not (port.isdigit() and 1 <= int(port) <= 65535):
            raise WorkerSetupError(f"MASTER_PORT must be a port in [1, 65535], got {port!r}")
    return rank, world


def init_from_env(
    timeout_s: float, tp: int | None = None, pp: int = 1, start_timeout_s: float | None = None
) -> tuple[int, int]:
    """``init_process_group("gloo")`` from ``RANK`` / ``WORLD_SIZE`` (torchrun's, or the launcher's).

    Raises :class:`WorkerSetupError` (one line) for a bad environment, a port already in use, or
    peers that do not all join within ``timeout_s`` seconds. Under the launcher
    (``NEXTTOKEN_READY_DIR`` set) the ranks first wait, up to ``start_timeout_s``, until every one
    has started (:func:`_wait_for_peers`).
    """
    rank, world = worker_env(os.environ, tp, pp)
    method = os.environ.get("NEXTTOKEN_INIT_METHOD", "env://")
    ready = os.environ.get("NEXTTOKEN_READY_DIR")
    if ready:
        _wait_for_peers(
            ready, rank, world, timeout_s if start_timeout_s is None else start_timeout_s
        )
    try:
        with _stderr_kept_unless_failed():  # torch's C++ prints each failed try, with a backtrace
            dist.init_process_group(
                os.environ.get("NEXTTOKEN_BACKEND", "gloo"),  # checked: gloo (see worker_env)
                init_method=method,
                rank=rank,
                world_size=world,
                timeout=datetime.timedelta(seconds=timeout_s),
            )
    except (RuntimeError, ValueError, OSError) as e:
        raise WorkerSetupError(_rendezvous_error(e, rank, world, method, timeout_s)) from None
    return rank, world


@contextlib.contextmanager
def _stderr_kept_unless_failed() -> Iterator[None]:
    """Hold what is written to file descriptor 2 inside the block (C++ logs too); pass it on if the
    block succeeds, drop it if it raises (the caller then says what went wrong, in one line)."""
    sys.stderr.flush()
    saved = os.dup(2)
    ok = False
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
            ok = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if ok:
                held.seek(0)
                os.write(2, held.read())


def _wait_for_peers(folder: str, rank: int, world: int, limit_s: float) -> None:
    """Mark this rank started (a file in the launcher's folder) and wait until every rank has.

    Starting Python and importing torch takes seconds, and unequal ones on a busy machine: that
    wait is not spent inside the rendezvous, whose ``--timeout`` is meant for a rank that stopped
    answering. A rank that dies meanwhile is the launcher's to see (it ends the run).
    """
    try:
        Path(folder, f"started.{rank}").touch()
    except OSError as e:
        raise WorkerSetupError(
            f"NEXTTOKEN_READY_DIR={folder!r} is not a folder I can write: {e}"
        ) from None
    deadline = time.monotonic() + limit_s
    while not all(Path(folder, f"started.{r}").exists() for r in range(world)):
        if time.monotonic() > deadline:
            raise WorkerSetupError(
                f"rank {rank}: the {world} ranks did not all join the rendezvous within "
                f"{limit_s:g} s (--launch-timeout): some never started"
            )
        time.sleep(0.01)


def _rendezvous_error(e: Exception, rank: int, world: int, method: str, timeout_s: float) -> str:
    """One line for a failed ``init_process_group``."""
    text = str(e)
    low = text.lower()
    where = method
    if method == "env://":
        where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
    if "eaddrinuse" in low or "address already in use" in low:
        return (
            f"MASTER_PORT={os.environ.get('MASTER_PORT')} on {os.environ.get('MASTER_ADDR')} is "
            f"already in use (another job?): choose another MASTER_PORT"
        )
    if "trying to connect" in low or "connection refused" in low:
        return (
            f"rank {rank}: could not reach the rendezvous at {where} within --timeout "
            f"{timeout_s:g} s: is rank 0 running there?"
        )
    if "timeout" in low or "timed out" in low or "clients joined" in low:
        return (
            f"rank {rank}: the {world} ranks did not all join the rendezvous within --timeout "
            f"{timeout_s:g} s ({where}): a peer never started, or died before joining"
        )
    return f"rank {rank}: the rendezvous at {where} failed: {type(e).__name__}: {_first_line(text)}"


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


def make_groups(tp: int, pp: int, timeout_s: float):
    """This rank's ``(tp_group, pp_group)``; rank ``r`` is stage ``r // tp``, tensor rank ``r % tp``.

    Every rank creates every group, in the same order (``new_group``'s rule).
    """
    timeout = datetime.timedelta(seconds=timeout_s)
    rank = dist.get_rank()
    tp_groups = [
        dist.new_group(list(range(s * tp, (s + 1) * tp)), timeout=timeout) for s in range(pp)
    ]
    pp_groups = [
        dist.new_group([s * tp + t for s in range(pp)], timeout=timeout) for t in range(tp)
    ]
    return (tp_groups[rank // tp] if tp > 1 else None), (pp_groups[rank % tp] if pp > 1 else None)


def _forward(part, ids: torch.Tensor) -> torch.Tensor | None:
    with torch.no_grad():
        return part(ids)


def _formula(part, tp: int, B: int, N: int, d: int, nb: int) -> dict[str, int]:
    """What this rank must hand over in one forward pass of ``(B, N)`` ids (``nb`` bytes a number)."""
    if isinstance(part, PipelineStage):
        start, stop = part.block_range
        sends = 0 if part.is_last else pp_send_bytes(2, B, N, d, nb)  # the boundary after it
    else:
        start, stop, sends = 0, part.config.n_layer, 0
    reduce = tp_allreduce_bytes(stop - start, B, N, d, nb) if tp > 1 else 0
    return {"all_reduce": reduce, "send": sends}


def run_check(
    config: str,
    tp: int,
    pp: int,
    *,
    seed: int = 0,
    n_micro: int = 1,
    batch: int = 2,
    tokens: int = 16,
    new_tokens: int = 8,
    repeat: int = 3,
    timeout_s: float = 60.0,
    fail_rank: int | None = None,
    stall_rank: int | None = None,
    dtensor: bool = False,
    dtype: str = "float32",
    wait_timeout_s: float | None = None,
) -> dict | None:
    """Run the checks on this rank (the process group already initialised); rank 0 returns the report.

    ``timeout_s`` bounds every collective of the check; ``wait_timeout_s`` (default ``timeout_s``)
    bounds the waits of the ranks that idle while rank 0 times one process alone, which may last
    longer than any collective should.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    if world != tp * pp:
        raise ValueError(f"world size {world} != tp * pp = {tp} * {pp}")
    model = build_model(config, seed).to(DTYPES[dtype])
    cfg = model.config
    check_split(cfg, tp, pp)
    tp_group, pp_group = make_groups(tp, pp, timeout_s)
    wait = datetime.timedelta(seconds=timeout_s if wait_timeout_s is None else wait_timeout_s)
    idle_group = dist.new_group(list(range(world)), timeout=wait)  # for the timing's barriers
    if pp > 1:
        part = pipeline_parallel(model, pp_group, n_micro=n_micro, tp_group=tp_group)
    else:
        part = tensor_parallel(model, tp_group)
    gen = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, cfg.vocab_size, (batch, tokens), generator=gen)
    with torch.no_grad():
        ref = model(ids)
    if fail_rank == rank:  # the others are about to wait for this rank in an all-reduce / recv
        raise RuntimeError(f"injected failure on rank {rank} (--fail-rank {fail_rank})")
    if stall_rank == rank:  # alive but silent: the others' collectives must time out
        time.sleep(10 * timeout_s)
    # pinned, not hoped: gloo collectives on tensors made under inference_mode (generate's mode)
    try:
        with torch.inference_mode():
            probe = [torch.zeros(1) for _ in range(world)]
            dist.all_gather(probe, torch.full((1,), float(rank)))
        all_gather_inference_ok = [float(t) for t in probe] == [float(r) for r in range(world)]
    except RuntimeError as e:
        if _peer_error(e):  # another rank's failure, not the trap this probes for
            raise
        all_gather_inference_ok = False

    logits = _forward(part, ids)
    diff = None if logits is None else float((logits - ref).abs().max())
    # how far each float32 result is from the exact logits (the same weights in float64): the
    # yardstick for "equal within rounding", since one process is itself a rounding of them
    err_one = err_split = None
    if logits is not None and DTYPES[dtype] == torch.float32:
        with torch.no_grad():
            exact = copy.deepcopy(model).double()(ids)
        err_one = float((ref.double() - exact).abs().max())
        err_split = float((logits.double() - exact).abs().max())
        del exact

    prompt = ids[:, : max(1, tokens // 2)]
    want = generate(model, prompt, new_tokens, temperature=0.0)
    if pp > 1:
        got = pipeline_generate(part, prompt, new_tokens)
    else:
        got = generate(part, prompt, new_tokens, temperature=0.0)
    greedy_equal = bool(torch.equal(got, want))

    shapes = [(n_micro, 7), (2 * n_micro, 4), (n_micro, 1)]
    bytes_rows = []
    for B, N in shapes:
        x = torch.randint(0, cfg.vocab_size, (B, N), generator=gen)
        with count_comm() as log:
            _forward(part, x)
        row = {"B": B, "N": N, "counted": {op: log.bytes(op) for op in ("all_reduce", "send")}}
        row["calls"] = {op: log.count(op) for op in ("all_reduce", "send")}
        nb = DTYPES[dtype].itemsize
        row["formula"] = _formula(part, tp, B, N, cfg.n_embd, nb)
        bytes_rows.append(row)

    # wall time, and CPU time (which other processes on a busy machine do not inflate)
    times = {"one_process": None, "parallel": None}
    cpu = {"one_process": None, "parallel": None}
    with torch.no_grad():  # one process alone (the others wait), then every rank its part
        for name, fn in (("one_process", lambda: model(ids)), ("parallel", lambda: part(ids))):
            if not repeat:
                break
            dist.barrier(group=idle_group)
            if name == "parallel" or rank == 0:
                fn()  # warm-up
                if name == "parallel":
                    dist.barrier(group=idle_group)
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(repeat):
                    fn()
                cpu[name] = (time.process_time() - c0) / repeat
                if name == "parallel":
                    dist.barrier(group=idle_group)  # the pass ends when the last rank is done
                times[name] = (time.perf_counter() - t0) / repeat
            dist.barrier(group=idle_group)  # the others idle while rank 0 runs alone
        if repeat and rank == 0:  # one process on every core: what the split competes with
            threads = torch.get_num_threads()
            torch.set_num_threads(max(2, os.cpu_count() or 1))
            model(ids)
            t0 = time.perf_counter()
            for _ in range(repeat):
                model(ids)
            times["one_process_all_cores"] = (time.perf_counter() - t0) / repeat
            torch.set_num_threads(threads)
        dist.barrier(group=idle_group)
    timeline = part.timeline if isinstance(part, PipelineStage) else []

    mine = {
        "rank": rank,
        "diff": diff,
        "err_one": err_one,
        "err_split": err_split,
        "greedy_equal": greedy_equal,
        "bytes": bytes_rows,
        "timeline": timeline,
        "cache_bytes": part.new_cache(batch, tokens).nbytes(),
        "cpu_parallel_s": cpu["parallel"],
        "all_gather_inference_ok": all_gather_inference_ok,
    }
    if dtensor and pp == 1 and dtype == "float32":
        from .dtensor import dtensor_logits

        dt = dtensor_logits(model, ids)  # against the single process, as ``diff`` is
        mine["dtensor_diff"] = float((dt - ref).abs().max())
    everyone: list = [None] * world
    dist.all_gather_object(everyone, mine)
    if rank != 0:
        return None
    diffs = [r["diff"] for r in everyone if r["diff"] is not None]
    t_min = min(t0 for r in everyone for (_, _, t0, _) in r["timeline"]) if pp > 1 else 0.0
    report = {
        "tp": tp,
        "pp": pp,
        "n_micro": n_micro,
        "config": config,
        "world_size": world,
        "batch": batch,
        "tokens": tokens,
        "new_tokens": new_tokens,
        "dtype": dtype,
        "max_abs_diff": max(diffs),
        "max_abs_logit": float(ref.abs().max()),
        # float32 only (None in float64): distance of one process's logits, and of the split's,
        # from the exact ones (the same weights run in float64)
        "one_process_error": _max_or_none(r["err_one"] for r in everyone),
        "parallel_error": _max_or_none(r["err_split"] for r in everyone),
        "greedy_equal": all(r["greedy_equal"] for r in everyone),
        "all_gather_under_inference_mode": all(r["all_gather_inference_ok"] for r in everyone),
        "bytes_equal": all(
            row["counted"] == row["formula"] for r in everyone for row in r["bytes"]
        ),
        "bytes": [{"rank": r["rank"], "rows": r["bytes"]} for r in everyone],
        "stages": stage_bounds(cfg.n_layer, pp),
        "cache_bytes_per_rank": [r["cache_bytes"] for r in everyone],
        "cache_bytes_full": model.new_cache(batch, tokens).nbytes(),
        "time_one_process_s": times["one_process"],
        "time_parallel_s": times["parallel"],
        "time_one_process_all_cores_s": times.get("one_process_all_cores"),
        "threads_all_cores": max(2, os.cpu_count() or 1),
        "cpu_one_process_s": cpu["one_process"],
        "cpu_parallel_s_per_rank": [r["cpu_parallel_s"] for r in everyone],
        "timeline": sorted(
            [s, j, t0 - t_min, t1 - t_min] for r in everyone for (s, j, t0, t1) in r["timeline"]
        ),
    }
    if dtensor and pp == 1 and dtype == "float32":
        report["dtensor_max_abs_diff"] = max(r["dtensor_diff"] for r in everyone)
    return report


def _max_or_none(values) -> float | None:
    values = [v for v in values if v is not None]
    return max(values) if values else None


_CLOSED = ("closed by peer", "connection reset", "broken pipe", "connection closed")


def _peer_error(e: Exception) -> bool:
    """Whether ``e`` is gloo's report of another rank's failure (closed connection, timeout)."""
    low = str(e).lower()
    return any(w in low for w in (*_CLOSED, "timed out", "timeout"))


def explain(e: Exception, timeout_s: float) -> str:
    """One line for a rank's error, saying when it is another rank's failure seen from here."""
    text = f"{type(e).__name__}: {e}".splitlines()[0]
    low = f"{e}".lower()
    if any(w in low for w in _CLOSED):
        return f"another rank died (its connection closed): {text}"
    if "timed out" in low or "timeout" in low:
        return f"no answer from another rank within the {timeout_s:g} s timeout: {text}"
    return text


def worker_main(args) -> int:
    """Entry point of one rank (``RANK`` set): init, check each config x dtype, report on rank 0.

    The last line rank 0 prints is one JSON object: the first check's report, with every check's
    report under ``"checks"``.
    """
    # WorkerSetupError: one line, exit 2 (main)
    rank, _ = init_from_env(args.timeout, args.tp, args.pp, start_timeout_s=args.launch_timeout)
    reports = []
    try:
        for config in args.config.split(","):
            for dtype in args.dtype.split(","):
                reports.append(
                    run_check(
                        config,
                        args.tp,
                        args.pp,
                        seed=args.seed,
                        n_micro=args.n_micro,
                        batch=args.batch,
                        tokens=args.tokens,
                        new_tokens=args.new_tokens,
                        repeat=args.repeat,
                        timeout_s=args.timeout,
                        fail_rank=args.fail_rank,
                        stall_rank=args.stall_rank,
                        dtensor=args.dtensor,
                        dtype=dtype,
                        wait_timeout_s=args.launch_timeout,
                    )
                )
    except Exception as e:  # a failed rank must not hang the others: exit now, loudly
        import sys
        import traceback

        if not _peer_error(e):  # its own error: where it came from (a peer's is one line)
            traceback.print_exc()
        print(f"rank {rank}: {explain(e, args.timeout)}", file=sys.stderr, flush=True)
        os._exit(1)  # no destroy_process_group: it would wait for the dead peer
    if rank == 0:
        print(json.dumps({**reports[0], "checks": reports}), flush=True)
    dist.destroy_process_group()
    return 0
