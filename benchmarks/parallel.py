"""Tensor and pipeline parallelism on this CPU: one forward pass, split or not (notebook 12).

Runs ``python -m nexttoken.parallel`` for each split of the book model (gloo processes, one torch
thread each), batch ``--batch`` x ``--tokens`` tokens, ``--repeat`` timed passes after a warm-up,
and records each run's report: the one-process time (measured on rank 0 while the others wait), the
split's time, the bytes it handed to ``torch.distributed``, and the pipeline timeline. Notebook 12
reads the committed JSON (its live runs are too noisy to compare across machines).

    python benchmarks/parallel.py            # writes benchmarks/parallel_results.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent

#: (tp, pp, n_micro) of each run.
SPLITS = [(1, 1, 1), (2, 1, 1), (4, 1, 1), (1, 2, 1), (1, 2, 4), (1, 4, 4), (2, 2, 4)]


def run(tp: int, pp: int, n_micro: int, args) -> dict:
    cmd = [
        sys.executable, "-m", "nexttoken.parallel", "--config", "book", "--tp", str(tp),
        "--pp", str(pp), "--n-micro", str(n_micro), "--batch", str(args.batch), "--tokens",
        str(args.tokens), "--repeat", str(args.repeat), "--new-tokens", "4",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rep = json.loads(proc.stdout.strip().splitlines()[-1])
    rep.pop("checks")
    return rep


def markdown(res: dict) -> str:
    """The RESULTS.md table of a results file."""
    base = res["runs"][0]
    one_cpu = base["cpu_one_process_s"]
    lines = [
        "| run | wall ms | CPU ms, all ranks | CPU vs one process | max abs diff (fp32) | "
        "greedy equal | bytes = formula |",
        "|---|---|---|---|---|---|---|",
        f"| one process, 1 thread | {base['time_one_process_s'] * 1e3:.1f} | {one_cpu * 1e3:.1f} "
        "| 1.00 | | | |",
        f"| one process, {base['threads_all_cores']} threads | "
        f"{base['time_one_process_all_cores_s'] * 1e3:.1f} | | | | | |",
    ]
    for r in res["runs"][1:]:
        cpu = sum(r["cpu_parallel_s_per_rank"])
        lines.append(
            f"| TP={r['tp']} PP={r['pp']} m={r['n_micro']} | {r['time_parallel_s'] * 1e3:.1f} | "
            f"{cpu * 1e3:.1f} | {cpu / one_cpu:.2f} | {r['max_abs_diff']:.1e} | "
            f"{r['greedy_equal']} | {r['bytes_equal']} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", default=str(HERE / "parallel_results.json"))
    p.add_argument("--markdown", action="store_true", help="print the table of --json and stop")
    args = p.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.json).read_text())))
        return
    load = os.getloadavg()[0]
    runs = []
    for tp, pp, m in SPLITS:
        rep = run(tp, pp, m, args)
        runs.append(rep)
        print(
            f"tp={tp} pp={pp} m={m}: one process {rep['time_one_process_s'] * 1e3:.1f} ms, "
            f"split {rep['time_parallel_s'] * 1e3:.1f} ms, max |diff| {rep['max_abs_diff']:.2e}, "
            f"greedy equal {rep['greedy_equal']}, bytes equal {rep['bytes_equal']}"
        )
    out = {
        "command": "python benchmarks/parallel.py "
        f"--batch {args.batch} --tokens {args.tokens} --repeat {args.repeat}",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": platform.processor() or platform.machine(),
        "logical_cpus": os.cpu_count(),
        "load_average_at_start": round(load, 2),
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "batch": args.batch,
        "tokens": args.tokens,
        "runs": runs,
    }
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", args.json)


if __name__ == "__main__":
    main()
