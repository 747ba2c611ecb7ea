"""This CPU's roofline: memory bandwidth, peak float32 arithmetic, and the book's operations on it.

The numbers behind notebook 10, section 1 (and ``figures/roofline.png``). In one process, < 1 min:

1. **Memory bandwidth** (GB/s, 10^9 bytes): a float32 array read once (``sum``) and copied once
   (``copy_``: each byte read and written, counted twice), at several sizes far above the
   last-level cache, 1 thread and all threads; best of repeats.
2. **Peak float32 arithmetic** (GFLOP/s): a large square matrix product (``2 n^3`` FLOPs),
   1 thread and all threads; best of repeats.
3. **The operations**, 1 thread, each timed by its own seconds and counted by
   :mod:`nexttoken.roofline` (FLOPs, and the bytes it must move): one decoding step's weight
   products of GPT-2 small (random weights, every matrix distinct so nothing stays in cache) for
   ``B = 1 .. 64`` rows; a prefill of 512 tokens through one block's products; one decoding
   step's attention over a 1,024-token cache; the output projection with int8 weights at 1 row.

Wall-clock time, best of repeats: on a shared machine a timing can only be slowed down by the
others, so the best is the closest to the machine's own speed. The load average is recorded at
start and end. Run: ``python benchmarks/roofline.py``; writes ``benchmarks/results_roofline.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nexttoken.configs import get_config  # noqa: E402
from nexttoken.roofline import (  # noqa: E402
    attention_bytes,
    attention_flops,
    decode_linears,
    linear_bytes,
    linear_flops,
    step_bytes,
    step_flops,
)

MB = 10**6
BATCHES = (1, 2, 4, 5, 8, 16, 32, 64)


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """The shortest wall-clock time of ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def bandwidth(sizes_mb: list[int], repeats: int) -> dict:
    """GB/s of a read (``sum``) and a copy, per array size and thread count."""
    out = {"sizes_MB": sizes_mb, "read_GB_per_s": {}, "copy_GB_per_s": {}}
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        read, copy = [], []
        for size in sizes_mb:
            src = torch.ones(size * MB // 4)
            dst = torch.empty_like(src)
            read.append(size * MB / best_seconds(src.sum, repeats) / 1e9)
            copy.append(
                2 * size * MB / best_seconds(lambda d=dst, s=src: d.copy_(s), repeats) / 1e9
            )
            del src, dst
        out["read_GB_per_s"][str(threads)] = [round(x, 2) for x in read]
        out["copy_GB_per_s"][str(threads)] = [round(x, 2) for x in copy]
    return out


def peak(n: int, repeats: int) -> dict:
    """GFLOP/s of an ``(n, n) @ (n, n)`` float32 product, per thread count."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    out = {"n": n, "GFLOP_per_s": {}}
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        out["GFLOP_per_s"][str(threads)] = round(
            2 * n**3 / best_seconds(lambda: a @ b, repeats) / 1e9, 1
        )
    return out


def _op(kind: str, label: str, flops: float, nbytes: float, seconds: float, **extra) -> dict:
    return {
        "kind": kind,
        "label": label,
        "flops": int(flops),
        "bytes": int(nbytes),
        "seconds": round(seconds, 6),
        "GFLOP_per_s": round(flops / seconds / 1e9, 2),
        "FLOP_per_byte": round(flops / nbytes, 3),
        **extra,
    }


def _int8_linear(w: torch.Tensor):
    """The book's int8 linear layer on weight ``(out, in)`` and the kernel's name."""
    try:
        from nexttoken.quantize import RowInt8Linear

        return RowInt8Linear.from_linear(_as_linear(w)), "nexttoken.quantize.RowInt8Linear (fbgemm)"
    except ImportError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = torch.ao.quantization.quantize_dynamic(
                torch.nn.Sequential(_as_linear(w)),
                {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
                dtype=torch.qint8,
            )[0]
        return q, "torch dynamic int8 (fbgemm)"


def _as_linear(w: torch.Tensor) -> torch.nn.Linear:
    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    lin.weight.data = w
    return lin


@torch.inference_mode()
def operations(repeats: int) -> list[dict]:
    """The book's operations, timed on 1 thread, with their FLOPs and bytes."""
    torch.set_num_threads(1)
    cfg = get_config("gpt2")
    g = torch.Generator().manual_seed(0)
    weights = [torch.randn(o, i, generator=g) * 0.02 for i, o in decode_linears(cfg)]  # (out, in)
    ops = []
    for batch in BATCHES:  # one decoding step's weight products: every matrix once
        x = {i: torch.randn(batch, i, generator=g) for i in {w.shape[1] for w in weights}}
        secs = best_seconds(lambda x=x: [F.linear(x[w.shape[1]], w) for w in weights], repeats)
        ops.append(
            _op(
                "decode",
                f"decode step, B = {batch}",
                step_flops(cfg, batch),
                step_bytes(cfg, batch),
                secs,
                batch=batch,
            )
        )
    tokens = 512  # a prefill: one block's four products on a 512-token prompt
    block = weights[:4]
    x = {i: torch.randn(tokens, i, generator=g) for i in {w.shape[1] for w in block}}
    secs = best_seconds(lambda: [F.linear(x[w.shape[1]], w) for w in block], repeats)
    shapes = decode_linears(cfg)[:4]
    ops.append(
        _op(
            "prefill",
            f"prefill, {tokens} tokens (one block)",
            sum(linear_flops(tokens, i, o) for i, o in shapes),
            sum(linear_bytes(tokens, i, o) for i, o in shapes),
            secs,
            tokens=tokens,
        )
    )
    context, h = 1024, cfg.n_head  # attention of one new token over a 1,024-token cache, per block
    kv = [(torch.randn(1, h, context, cfg.d_head, generator=g),) * 2 for _ in range(cfg.n_layer)]
    kv = [(k, torch.randn_like(k)) for k, _ in kv]
    q = torch.randn(1, h, 1, cfg.d_head, generator=g)
    secs = best_seconds(
        lambda: [F.scaled_dot_product_attention(q, k, v) for k, v in kv], 3 * repeats
    )
    ops.append(
        _op(
            "attention",
            f"attention, {context}-token cache",
            attention_flops(cfg, context),
            attention_bytes(cfg, context),
            secs,
            context=context,
        )
    )
    d, V, copies = cfg.n_embd, cfg.vocab_size, 4  # output projection, int8: 4 copies > the LLC
    mats = [torch.randn(V, d, generator=g) * 0.02 for _ in range(copies)]
    int8 = [_int8_linear(w) for w in mats]
    kernel = int8[0][1]
    x1 = torch.randn(1, d, generator=g)
    for name, run, wbytes in (
        ("output projection, fp32, 1 row", [lambda w=w: F.linear(x1, w) for w in mats], 4),
        ("output projection, int8, 1 row", [lambda m=m: m(x1) for m, _ in int8], 1),
    ):
        secs = best_seconds(lambda run=run: [f() for f in run], 3 * repeats) / copies
        ops.append(
            _op(
                "int8" if wbytes == 1 else "decode",
                name,
                linear_flops(1, d, V),
                linear_bytes(1, d, V, weight_bytes=wbytes),
                secs,
                **({"kernel": kernel} if wbytes == 1 else {}),
            )
        )
    return ops


def markdown_table(res: dict) -> str:
    """The operations as the table of benchmarks/RESULTS.md (roof: the 1-thread roof there)."""
    from nexttoken.roofline import machine_roof, roof

    one = machine_roof(res, 1)
    lines = ["| operation | FLOP/byte | GFLOP/s | roof there |", "|---|---|---|---|"]
    for op in res["operations"]:
        i, g = op["flops"] / op["bytes"], op["flops"] / op["seconds"] / 1e9
        top = roof(i, one["bandwidth_GB_per_s"], one["peak_GFLOP_per_s"])
        lines.append(f"| {op['label']} | {i:.2f} | {g:.1f} | {top:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--n", type=int, default=2048, help="matrix size of the peak measurement")
    p.add_argument("--sizes-mb", default="128,256,512", help="array sizes of the bandwidth runs")
    p.add_argument("--note", default="", help="a sentence on the conditions (e.g. a busy machine)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results_roofline.json"))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    res = {
        "command": "python benchmarks/roofline.py " + " ".join(argv or sys.argv[1:]),
        "machine": {
            "cpu": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
            "load_average_at_start": load_start,
        },
        "note": args.note,
        "clock": "wall clock, best of repeats",
        "bandwidth": bandwidth([int(s) for s in args.sizes_mb.split(",")], 2 * args.repeats),
        "peak": peak(args.n, args.repeats),
        "operations": operations(args.repeats),
    }
    res["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    res["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    bw, pk = res["bandwidth"], res["peak"]["GFLOP_per_s"]
    print(f"{res['machine']['cpu']}, load {load_start} -> {res['machine']['load_average_at_end']}")
    print(f"read GB/s by size {bw['sizes_MB']} MB: {bw['read_GB_per_s']}")
    print(f"copy GB/s: {bw['copy_GB_per_s']}")
    print(f"peak GFLOP/s (n = {args.n}) by threads: {pk}")
    for op in res["operations"]:
        print(
            f"{op['label']:<36} {op['FLOP_per_byte']:8.2f} FLOP/byte {op['GFLOP_per_s']:8.1f} GFLOP/s"
        )
    print(f"wrote {args.out} in {res['seconds']} s; for benchmarks/RESULTS.md:")
    print(markdown_table(res))
    return res


if __name__ == "__main__":
    main()
