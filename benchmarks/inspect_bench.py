"""What looking inside costs: a full :func:`nexttoken.inspect.trace` against a plain forward pass, and
a patching sweep with and without reusing the clean run. The numbers behind notebook 13.

The book model (4 layers, d = 256, 4.3M parameters), float32, one torch thread, CPU.

1. **Trace vs forward** on one sequence of 256 tokens of the held-out play: ``model(ids)`` and
   ``trace(model, ids)`` (every one of the 48 activations kept, the attention pattern computed from
   the hooked queries and keys) timed alternately, ``--repeats`` pairs, after a warm-up. Reported:
   median times and the ratio trace / forward (median of the per-pair ratios; target <= 1.5), and
   the same for a trace without ``hook_pattern`` (what the pattern's recomputation costs). Recorded
   bytes: ``Trace.nbytes`` against :func:`nexttoken.inspect.trace_nbytes` (the formula from the
   shapes).
2. **Patch sweep** (``hook_resid_pre``, every layer x position, on two prompts of ``--sweep-tokens``
   tokens that differ in one token): with one clean trace reused by every cell, and with the clean
   pass recomputed for each cell (``reuse_clean=False``), alternately. Reported: times, the ratio,
   the number of forward passes each makes (counted with a hook), and that the two give the same
   ``(L, N)`` table.

**Clock.** CPU time of this process (``time.process_time``; with one thread it is little disturbed
by others' work on a shared machine) and wall time; ratios use CPU time. The load average is
recorded at the start and end.

Run: ``.venv/bin/python benchmarks/inspect_bench.py`` (about a minute); writes
``benchmarks/results_inspect.json`` and prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import nexttoken
from nexttoken import inspect as I
from nexttoken.data import HELD_OUT, load_plays

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from decode import cpu_name  # noqa: E402


def timed(fn) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one call."""
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def interleaved(fns: dict, repeats: int) -> dict[str, list[tuple[float, float]]]:
    """Each function once per round, in the same order, ``repeats`` rounds (after one warm-up)."""
    for fn in fns.values():
        fn()
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            out[name].append(timed(fn))
    return out


def summary(times: list[tuple[float, float]]) -> dict:
    return {
        "cpu_s_median": round(statistics.median(c for c, _ in times), 5),
        "wall_s_median": round(statistics.median(w for _, w in times), 5),
    }


def pair_ratio(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Median over rounds of a's CPU time / b's."""
    return round(statistics.median(x[0] / y[0] for x, y in zip(a, b, strict=True)), 3)


def trace_vs_forward(model, ids, repeats: int) -> dict:
    no_pattern = [n for n in I.hook_names(model.config) if not n.endswith("hook_pattern")]

    def forward():
        with torch.no_grad():
            model(ids)

    runs = interleaved(
        {
            "forward": forward,
            "trace": lambda: I.trace(model, ids),
            "trace_no_pattern": lambda: I.trace(model, ids, names=no_pattern),
        },
        repeats,
    )
    t = I.trace(model, ids)
    B, N = ids.shape
    return {
        "tokens": N,
        "repeats": repeats,
        "forward": summary(runs["forward"]),
        "trace": summary(runs["trace"]),
        "trace_no_pattern": summary(runs["trace_no_pattern"]),
        "ratio_trace_over_forward": pair_ratio(runs["trace"], runs["forward"]),
        "ratio_trace_no_pattern_over_forward": pair_ratio(
            runs["trace_no_pattern"], runs["forward"]
        ),
        "names_recorded": len(t.names()),
        "recorded_bytes": t.nbytes,
        "formula_bytes": I.trace_nbytes(model.config, B, N),
        "formula": "4 * (L * (9*B*N*d + B*N*4d + B*H*N*N) + 3*B*N*d + B*N + B*N*V)",
        "bytes_match": t.nbytes == I.trace_nbytes(model.config, B, N),
    }


def sweep(model, clean, corrupt, repeats: int) -> dict:
    calls = [0]

    def count(module, args, out):
        calls[0] += 1

    results = {}

    def run(reuse: bool):
        results[reuse] = I.patch_sweep(model, clean, corrupt, reuse_clean=reuse)

    runs = interleaved({"reuse": lambda: run(True), "recompute": lambda: run(False)}, repeats)
    passes = {}
    handle = model.transformer.wte.register_forward_hook(count)
    try:
        for reuse in (True, False):
            calls[0] = 0
            run(reuse)
            passes[reuse] = calls[0]
    finally:
        handle.remove()
    L, N = model.config.n_layer, clean.size(1)
    return {
        "hook_kind": "hook_resid_pre",
        "cells": L * N,
        "tokens": N,
        "repeats": repeats,
        "reuse_clean": summary(runs["reuse"]) | {"forward_passes": passes[True]},
        "recompute_clean": summary(runs["recompute"]) | {"forward_passes": passes[False]},
        "ratio_recompute_over_reuse": pair_ratio(runs["recompute"], runs["reuse"]),
        "same_table": bool(torch.equal(results[True], results[False])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--sweep-tokens", type=int, default=16)
    parser.add_argument("--sweep-repeats", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results_inspect.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_start = [round(x, 2) for x in os.getloadavg()]
    model = nexttoken.load_book_model()
    tokens = nexttoken.load_book_encoding().encode(load_plays()[HELD_OUT][:8000])
    ids = torch.tensor([tokens[:256]])
    tvf = trace_vs_forward(model, ids, args.repeats)
    clean = torch.tensor([tokens[256 : 256 + args.sweep_tokens]])
    corrupt = clean.clone()
    corrupt[0, args.sweep_tokens // 2] = tokens[0]
    sw = sweep(model, clean, corrupt, args.sweep_repeats)
    result = {
        "command": " ".join(["python", "benchmarks/inspect_bench.py", *sys.argv[1:]]),
        "machine": {
            "cpu": cpu_name(),
            "logical_cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "load_average_at_start": load_start,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "model": {"name": "book", "parameters": model.num_parameters(), "dtype": "float32"},
        "trace_vs_forward": tvf,
        "patch_sweep": sw,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    f, t = tvf["forward"], tvf["trace"]
    print(f"## inspect ({result['machine']['cpu']}, torch {torch.__version__}, 1 thread)\n")
    print(f"load average {load_start} -> {result['machine']['load_average_at_end']}\n")
    print("| run | CPU s (median) | wall s (median) | vs forward |")
    print("|---|---|---|---|")
    print(f"| forward, {tvf['tokens']} tokens | {f['cpu_s_median']} | {f['wall_s_median']} | 1 |")
    print(
        f"| full trace ({tvf['names_recorded']} names) | {t['cpu_s_median']} | "
        f"{t['wall_s_median']} | {tvf['ratio_trace_over_forward']}x |"
    )
    n = tvf["trace_no_pattern"]
    print(
        f"| trace without hook_pattern | {n['cpu_s_median']} | {n['wall_s_median']} | "
        f"{tvf['ratio_trace_no_pattern_over_forward']}x |"
    )
    print(
        f"\nrecorded bytes {tvf['recorded_bytes']:,} = formula {tvf['formula_bytes']:,}: "
        f"{tvf['bytes_match']}  ({tvf['formula']})\n"
    )
    r, c = sw["reuse_clean"], sw["recompute_clean"]
    print(f"patch sweep, {sw['cells']} cells ({sw['tokens']} tokens x layers):")
    print(f"- one clean trace reused: {r['cpu_s_median']} s CPU, {r['forward_passes']} passes")
    print(f"- clean pass per cell: {c['cpu_s_median']} s CPU, {c['forward_passes']} passes")
    print(f"- ratio {sw['ratio_recompute_over_reuse']}x, same table: {sw['same_table']}")


if __name__ == "__main__":
    main()
