"""``python -m nexttoken.parallel --tp T --pp P --config NAME [--seed S]``.

Without ``RANK`` in the environment it launches ``T * P`` ranks itself (:func:`launch`) and prints
rank 0's report, whose last line is one JSON object (``tp``, ``pp``, ``max_abs_diff``,
``greedy_equal``, ``bytes_equal``, times, the pipeline timeline ...). Before it starts any process
it estimates each rank's memory and refuses a run that does not fit, or more ranks than the machine
can run.

With ``RANK`` in the environment (as ``torchrun --nproc-per-node T*P -m nexttoken.parallel ...``
sets it) it runs in worker mode: this process is one rank, and reads ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT`` (or ``NEXTTOKEN_INIT_METHOD``) and ``NEXTTOKEN_BACKEND``
(gloo: the check runs on the CPU, so nccl is refused). If you exported ``RANK`` for something
else, unset RANK to let this command start the ranks itself.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from ..train import available_memory
from .check import DTYPES, WorkerSetupError, config_by_name, rank_memory, worker_main
from .launch import LaunchError, LaunchInterrupted, launch, usable_cpus
from .shard import check_split

PROG = "python -m nexttoken.parallel"

#: Longest --timeout / --launch-timeout accepted, in seconds (one day).
MAX_SECONDS = 86400

#: Ranks per CPU the launcher starts at most: each rank runs one thread, and beyond a few per
#: core their collectives mostly wait for a core (and time out).
RANKS_PER_CPU = 4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (checked: a split that cannot work is an error before any process starts)."""
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel degree (divides n_head)")
    p.add_argument("--pp", type=int, default=1, help="pipeline stages (<= n_layer)")
    p.add_argument(
        "--config", default="book", help="book, gpt2-shaped, or a nexttoken.configs name"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of random weights and inputs")
    p.add_argument("--n-micro", type=int, default=1, help="GPipe micro-batches (divides --batch)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3, help="forward passes timed (0: no timing)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds any collective may wait")
    p.add_argument(
        "--launch-timeout", type=float, default=600.0, help="seconds the whole run may take"
    )
    p.add_argument("--dtype", default="float32", help="float32, float64, or both: float32,float64")
    p.add_argument(
        "--fail-rank", type=int, default=None, help="make this rank fail (a test of the launcher)"
    )
    p.add_argument(
        "--stall-rank", type=int, default=None, help="make this rank hang (a test of the launcher)"
    )
    p.add_argument("--dtensor", action="store_true", help="also check PyTorch's DTensor split")
    args = p.parse_args(argv)
    try:
        for name in args.config.split(","):
            cfg = config_by_name(name)
            check_split(cfg, args.tp, args.pp)
            if args.tokens + args.new_tokens > cfg.block_size:
                raise ValueError(f"--tokens + --new-tokens must be <= block_size={cfg.block_size}")
        for name in args.dtype.split(","):
            if name not in DTYPES:
                raise ValueError(f"unknown --dtype {name!r}; use {', '.join(DTYPES)}")
        if args.repeat < 0:
            raise ValueError("--repeat must be >= 0")
        for name in ("n_micro", "batch", "tokens"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if args.new_tokens < 0:
            raise ValueError("--new-tokens must be >= 0")
        if args.batch % args.n_micro:
            raise ValueError(f"--batch {args.batch} is not divisible by --n-micro {args.n_micro}")
        _check_timeouts(args)
        _check_fault_flags(args)
    except (ValueError, TypeError) as e:
        p.error(str(e))
    return args


def _check_timeouts(args: argparse.Namespace) -> None:
    for name in ("timeout", "launch_timeout"):
        v = getattr(args, name)
        if not (math.isfinite(v) and 0 < v <= MAX_SECONDS):
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} must be a number of seconds in (0, {MAX_SECONDS}], got {v:g}")
    if args.launch_timeout <= args.timeout:  # else a stalled rank is never told from its victims
        raise ValueError(
            f"--launch-timeout {args.launch_timeout:g} must be more than --timeout "
            f"{args.timeout:g} (the whole run against one collective's wait)"
        )


def _check_fault_flags(args: argparse.Namespace) -> None:
    world = args.tp * args.pp
    for name in ("fail_rank", "stall_rank"):
        v = getattr(args, name)
        if v is not None and not 0 <= v < world:
            flag = "--" + name.replace("_", "-")
            raise ValueError(
                f"{flag} must be a rank in [0, {world}) (--tp {args.tp} x --pp {args.pp}), got {v}"
            )
    if args.fail_rank is not None and args.fail_rank == args.stall_rank:
        raise ValueError(f"--fail-rank and --stall-rank name the same rank {args.fail_rank}")


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def _estimate(args: argparse.Namespace, name: str, dtype: str) -> dict[str, int]:
    return rank_memory(
        config_by_name(name),
        args.tp,
        args.pp,
        batch=args.batch,
        tokens=args.tokens,
        new_tokens=args.new_tokens,
        dtype=dtype,
    )


def check_machine(args: argparse.Namespace) -> None:
    """Refuse (ValueError) more ranks than :data:`RANKS_PER_CPU` a CPU, or a run whose estimated
    memory (:func:`~nexttoken.parallel.check.rank_memory`, the largest config x dtype) times the
    number of ranks exceeds the memory available."""
    world, cpus = args.tp * args.pp, usable_cpus()
    if world > RANKS_PER_CPU * cpus:
        raise ValueError(
            f"--tp {args.tp} x --pp {args.pp} = {world} ranks; this machine has {cpus} CPUs: at "
            f"most {RANKS_PER_CPU * cpus} ranks ({RANKS_PER_CPU} a CPU)"
        )
    estimates = [
        (_estimate(args, name, dtype), f"--config {name} in {dtype}")
        for name in args.config.split(",")
        for dtype in args.dtype.split(",")
    ]
    sizes, where = max(estimates, key=lambda pair: pair[0]["total"])
    need, have = sizes["total"], available_memory()
    if have is not None and need * world > have:
        raise ValueError(
            f"{where} with --batch {args.batch} --tokens {args.tokens} --new-tokens "
            f"{args.new_tokens} needs about {_gb(need)} per rank (weights {_gb(sizes['weights'])}"
            f", KV cache {_gb(sizes['kv_cache'])}, activations {_gb(sizes['activations'])}, "
            f"Python and torch {_gb(sizes['runtime'])}) x {world} ranks = {_gb(need * world)}; "
            f"this machine has {_gb(have)} available. Use a smaller config, --batch or --tokens"
        )


def main(argv: list[str] | None = None) -> int:
    """Launch the ranks (or, with ``RANK`` set, be one); 0 on success, 1 if a rank failed, 2 for a
    run refused before it started, 128 + the signal if the launcher was stopped."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if "RANK" in os.environ:
        try:
            return worker_main(args)
        except WorkerSetupError as e:
            rank = os.environ.get("RANK")
            print(f"{PROG}: error: worker mode (RANK={rank!r} is set): {e}", file=sys.stderr)
            return 2
    try:
        check_machine(args)
    except ValueError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    try:
        results = launch(argv, args.tp * args.pp, timeout=args.launch_timeout, grace=args.timeout)
    except LaunchInterrupted as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 128 + e.signum
    except LaunchError as e:
        print(e, file=sys.stderr)
        return 1
    sys.stdout.write(results[0].stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
