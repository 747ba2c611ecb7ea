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

import copy
import datetime
import json
import os
import time

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
    "build_model",
    "config_by_name",
    "init_from_env",
    "make_groups",
    "run_check",
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


def init_from_env(timeout_s: float) -> tuple[int, int]:
    """``init_process_group("gloo")`` from ``RANK`` / ``WORLD_SIZE`` (torchrun's, or the launcher's)."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group(
        os.environ.get("NEXTTOKEN_BACKEND", "gloo"),  # "nccl" on GPUs (then move the model there)
        init_method=os.environ.get("NEXTTOKEN_INIT_METHOD", "env://"),
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    return rank, world


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
) -> dict | None:
    """Run the checks on this rank (the process group already initialised); rank 0 returns the report."""
    rank, world = dist.get_rank(), dist.get_world_size()
    if world != tp * pp:
        raise ValueError(f"world size {world} != tp * pp = {tp} * {pp}")
    model = build_model(config, seed).to(DTYPES[dtype])
    cfg = model.config
    check_split(cfg, tp, pp)
    tp_group, pp_group = make_groups(tp, pp, timeout_s)
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
    except RuntimeError:
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
            dist.barrier()
            if name == "parallel" or rank == 0:
                fn()  # warm-up
                if name == "parallel":
                    dist.barrier()
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(repeat):
                    fn()
                cpu[name] = (time.process_time() - c0) / repeat
                if name == "parallel":
                    dist.barrier()  # the pass ends when the last rank is done
                times[name] = (time.perf_counter() - t0) / repeat
            dist.barrier()
        if repeat and rank == 0:  # one process on every core: what the split competes with
            threads = torch.get_num_threads()
            torch.set_num_threads(max(2, os.cpu_count() or 1))
            model(ids)
            t0 = time.perf_counter()
            for _ in range(repeat):
                model(ids)
            times["one_process_all_cores"] = (time.perf_counter() - t0) / repeat
            torch.set_num_threads(threads)
        dist.barrier()
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


def explain(e: Exception, timeout_s: float) -> str:
    """One line for a rank's error, saying when it is another rank's failure seen from here."""
    text = f"{type(e).__name__}: {e}".splitlines()[0]
    low = text.lower()
    if "closed by peer" in low or "connection reset" in low:
        return f"another rank died (its connection closed): {text}"
    if "timed out" in low or "timeout" in low:
        return f"no answer from another rank within the {timeout_s:g} s timeout: {text}"
    return text


def worker_main(args) -> int:
    """Entry point of one rank (``RANK`` set): init, check each config x dtype, report on rank 0.

    The last line rank 0 prints is one JSON object: the first check's report, with every check's
    report under ``"checks"``.
    """
    rank, _ = init_from_env(args.timeout)
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
                    )
                )
    except Exception as e:  # a failed rank must not hang the others: exit now, loudly
        import sys
        import traceback

        traceback.print_exc()
        print(f"rank {rank}: {explain(e, args.timeout)}", file=sys.stderr, flush=True)
        os._exit(1)  # no destroy_process_group: it would wait for the dead peer
    if rank == 0:
        print(json.dumps({**reports[0], "checks": reports}), flush=True)
    dist.destroy_process_group()
    return 0
