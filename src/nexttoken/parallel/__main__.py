"""``python -m nexttoken.parallel --tp T --pp P --config NAME [--seed S]``.

Without ``RANK`` in the environment it launches ``T * P`` ranks itself (:func:`launch`) and prints
rank 0's report, whose last line is one JSON object (``tp``, ``pp``, ``max_abs_diff``,
``greedy_equal``, ``bytes_equal``, times, the pipeline timeline ...). Under ``torchrun
--nproc-per-node T*P -m nexttoken.parallel ...`` (``RANK`` set) each process is one rank.
"""

from __future__ import annotations

import argparse
import os
import sys

from .check import DTYPES, config_by_name, worker_main
from .launch import LaunchError, launch
from .shard import check_split


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (checked: a split that cannot work is an error before any process starts)."""
    p = argparse.ArgumentParser(prog="python -m nexttoken.parallel", description=__doc__)
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
    p.add_argument("--fail-rank", type=int, default=None, help="make this rank fail (a test)")
    p.add_argument("--stall-rank", type=int, default=None, help="make this rank hang (a test)")
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
    except (ValueError, TypeError) as e:
        p.error(str(e))
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if "RANK" in os.environ:
        return worker_main(args)
    try:
        results = launch(argv, args.tp * args.pp, timeout=args.launch_timeout, grace=args.timeout)
    except LaunchError as e:
        print(e, file=sys.stderr)
        return 1
    sys.stdout.write(results[0].stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
