"""Serving benchmark: batched decoding against its matrix-product bound, against transformers, and
continuous against static batching. The numbers behind notebook 10.

GPT-2 small's size (124M parameters, random weights), float32, CPU. Three measurements, each against
a reference taken in the same run (the machine may be shared; ratios drift less than raw speeds):

1. **Batching and its bound.** Decoding throughput (tokens/s) of
   :func:`nexttoken.batching.generate_batch` for ``B = 1 .. 64`` with 1 and 2 torch threads. A
   decoding step is the model's weight matrix products plus a little more (attention over a short
   cache, LayerNorm, GELU, sampling); so each of the model's linear layers is timed with ``M = 1``
   and ``M = B`` input rows in the same run, and the gain that the products alone allow is
   ``bound(B) = B * sum t(M=1) / sum t(M=B)``. Reported: ``gain(B) = tokens/s(B) / tokens/s(1)``
   and ``gain / bound`` (target >= 0.8). Throughput is the decoding steps' alone: the time of
   ``n_long`` new tokens minus that of ``n_short`` new tokens, over ``n_long - n_short`` steps (the
   prefill cancels).
2. **Against transformers** ``GPT2LMHeadModel.generate`` on the same weights (saved with
   ``save_pretrained``, read by :func:`nexttoken.checkpoint.load_gpt2`) and the same left-padded
   ragged batch (``attention_mask`` marks the padding), greedy, batch 8 and 16: tokens/s ratio
   (target >= 1.0) and whether the tokens are identical.
3. **Continuous vs static batching** with :class:`nexttoken.serve.Engine` on a workload whose output
   lengths vary widely (most requests short, a few long), all arriving at once: throughput
   (generated tokens / time) and per-request latency (arrival to last token, in CPU seconds and in
   engine steps). Static =
   ``Engine(static=True)`` (a new batch only when the previous one is empty; finished requests do
   leave at once, so it computes no padding) and, as the textbook baseline, fixed batches run with
   ``generate_batch`` until their longest request ends. Target: continuous >= 1.3x static.

**Clock.** Every time is this process's CPU time (``time.process_time``) as well as wall time; the
ratios use CPU time. On a shared machine the wall time of a one-thread run is inflated by whatever
else runs; its CPU time much less (only through shared caches and memory bandwidth). With two
threads the CPU time is the sum over both, so those tokens/s are per core-second. On a quiet
machine, compare with the wall times that are recorded too.

Run: ``.venv/bin/python benchmarks/batching.py`` (about 5 minutes on a quiet 2-core machine); writes
``benchmarks/results_batching.json`` (which notebook 10 reads) and prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from nexttoken.batching import column_major_weights, generate_batch, padded_batch
from nexttoken.serve import Engine

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from decode import build_models, cpu_name  # noqa: E402


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Clock:
    """Wall time (``perf_counter``) and this process's CPU time (``process_time``) of a block.

    On a shared machine the wall time of a one-thread run is inflated by every other process;
    its CPU time much less (only through shared caches and memory bandwidth). With one thread the
    CPU time is the time the work took on its core; with more threads it is their sum."""

    def __enter__(self) -> Clock:
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0


# --- 1. batching and the matrix-product bound ------------------------------------------------
def linear_shapes(model) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """(weight, bias) of every matrix product one decoding step makes, in the model's order."""
    out = []
    for block in model.transformer.h:
        for lin in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
            out.append((lin.weight, lin.bias))
    out.append((model.lm_head.weight, None))
    return out


@torch.inference_mode()
def matmul_time(model, M: int, repeats: int, clock: str) -> float:
    """Seconds for all of the model's weight products with ``M`` input rows (best of ``repeats``),
    on ``clock`` ("wall" or "cpu")."""
    layers = linear_shapes(model)
    xs = {w.size(1): torch.randn(M, w.size(1)) for w, _ in layers}
    for w, b in layers:  # warm-up
        F.linear(xs[w.size(1)], w, b)
    best = float("inf")
    for _ in range(repeats):
        with Clock() as c:
            for w, b in layers:
                F.linear(xs[w.size(1)], w, b)
        best = min(best, getattr(c, clock))
    return best


def decode_time(model, prompts, n_new: int, clock: str) -> float:
    with Clock() as c:
        generate_batch(model, prompts, n_new, temperature=0)
    return getattr(c, clock)


def batching_curve(model, batches, threads, n_short, n_long, repeats, prompt_len) -> list[dict]:
    """One row per batch size, timed in this process's CPU time (see :class:`Clock`): with two
    threads that is the sum of both threads' time, so tokens/s are per core-second; the gain and
    its bound are both measured on that clock."""
    torch.set_num_threads(threads)
    clock = "cpu"
    g = torch.Generator().manual_seed(1)
    V = model.config.vocab_size
    rows = []
    generate_batch(model, [[1, 2, 3]], 2, temperature=0)  # warm-up
    t1 = None
    for B in batches:
        prompts = [torch.randint(0, V, (prompt_len,), generator=g).tolist() for _ in range(B)]
        mm1 = matmul_time(model, 1, repeats + 2, clock)
        mmB = mm1 if B == 1 else matmul_time(model, B, repeats + 2, clock)
        shorts, longs = [], []
        for _ in range(repeats):
            shorts.append(decode_time(model, prompts, n_short, clock))
            longs.append(decode_time(model, prompts, n_long, clock))
        step = (min(longs) - min(shorts)) / (n_long - n_short)
        if t1 is None:
            t1 = step
        rows.append(
            {
                "threads": threads,
                "clock": clock,
                "batch": B,
                "step_s": round(step, 5),
                "tokens_per_s": round(B / step, 2),
                "gain": round(t1 * B / step, 3),
                "matmul_s_M1": round(mm1, 5),
                "matmul_s_MB": round(mmB, 5),
                "bound": round(B * mm1 / mmB, 3),
                "fraction_of_bound": round((t1 * B / step) / (B * mm1 / mmB), 3),
                "load_average": load_average(),
            }
        )
        print(
            f"threads={threads} B={B:3d}  {B / step:8.1f} tok/s  gain {t1 * B / step:6.2f}  "
            f"bound {B * mm1 / mmB:6.2f}  fraction {rows[-1]['fraction_of_bound']:.2f}  "
            f"load {rows[-1]['load_average'][0]}",
            flush=True,
        )
    return rows


# --- 2. against transformers ------------------------------------------------------------------
@torch.inference_mode()
def hf_generate_batch(hf, prompts, n_new: int) -> list[list[int]]:
    batch = padded_batch(prompts, pad_id=0)
    out = hf.generate(
        batch.ids,
        attention_mask=batch.valid.long(),
        max_new_tokens=n_new,
        min_new_tokens=n_new,
        do_sample=False,
        use_cache=True,
        pad_token_id=0,
    )
    L = batch.ids.size(1)
    return [p + out[b, L:].tolist() for b, p in enumerate(prompts)]


def against_hf(hf, ours, batches, n_new, repeats) -> list[dict]:
    """Same weights, same padded batch, interleaved runs: transformers' ``generate`` against
    ``generate_batch`` on the model as loaded (``nn.Linear``'s row-major weights) and on a copy
    with column-major weights (:func:`~nexttoken.batching.column_major_weights`: transformers'
    own layout)."""
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(2)
    V = ours.config.vocab_size
    packed = column_major_weights(copy.deepcopy(ours))
    runs = {
        "ours": lambda p, n: generate_batch(ours, p, n, temperature=0),
        "packed": lambda p, n: generate_batch(packed, p, n, temperature=0),
        "hf": lambda p, n: hf_generate_batch(hf, p, n),
    }
    rows = []
    for B in batches:
        lengths = torch.randint(4, 33, (B,), generator=g).tolist()
        prompts = [torch.randint(0, V, (n,), generator=g).tolist() for n in lengths]
        out = {who: fn(prompts, n_new) for who, fn in runs.items()}
        t = {who + sfx: [] for who in runs for sfx in ("", "_wall")}
        order = list(runs)
        for r in range(repeats):
            for who in order[r % 3 :] + order[: r % 3]:  # rotate who goes first
                with Clock() as c:
                    runs[who](prompts, n_new)
                t[who].append(c.cpu)
                t[who + "_wall"].append(c.wall)
        med = {k: statistics.median(v) for k, v in t.items()}
        rows.append(
            {
                "batch": B,
                "prompt_lengths": lengths,
                "new_tokens": n_new,
                "nexttoken_tokens_per_s": round(B * n_new / med["ours"], 2),
                "nexttoken_column_major_tokens_per_s": round(B * n_new / med["packed"], 2),
                "transformers_tokens_per_s": round(B * n_new / med["hf"], 2),
                "ratio": round(med["hf"] / med["ours"], 3),
                "ratio_column_major": round(med["hf"] / med["packed"], 3),
                "ratio_wall": round(med["hf_wall"] / med["ours_wall"], 3),
                "ratio_column_major_wall": round(med["hf_wall"] / med["packed_wall"], 3),
                "tokens_identical": out["ours"] == out["hf"],
                "tokens_identical_column_major": out["packed"] == out["hf"],
                "clock": "cpu",
                "runs_nexttoken_s": [round(x, 3) for x in t["ours"]],
                "runs_nexttoken_column_major_s": [round(x, 3) for x in t["packed"]],
                "runs_transformers_s": [round(x, 3) for x in t["hf"]],
                "load_average": load_average(),
            }
        )
        print(
            f"vs transformers B={B}: {B * n_new / med['ours']:.1f} (column-major "
            f"{B * n_new / med['packed']:.1f}) vs {B * n_new / med['hf']:.1f} tok/s, ratio "
            f"{med['hf'] / med['ours']:.3f} (column-major {med['hf'] / med['packed']:.3f}), "
            f"identical {out['ours'] == out['hf']} / {out['packed'] == out['hf']}",
            flush=True,
        )
    return rows


@torch.inference_mode()
def layout_times(model, rows=(1, 2, 4, 8, 12, 16, 32), repeats: int = 3) -> list[dict]:
    """CPU ms of one step's block products (every block matrix of ``model``, in order, streamed from
    memory as a decoding step reads them) with ``M`` input rows, in two memory layouts of the same
    weights: ``nn.Linear``'s ``(out, in)`` row-major (``F.linear(x, W)`` = ``x @ W.T``) and
    ``(in, out)`` row-major (``x @ W``: GPT-2's Conv1D, transformers, ``column_major_weights``)."""
    torch.set_num_threads(1)
    mats = []
    for block in model.transformer.h:
        for lin in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
            w = lin.weight.detach()
            mats.append((w.contiguous(), w.t().contiguous(), lin.bias.detach()))
    out = []
    for M in rows:
        xs = {n: torch.randn(M, n) for n in {w.size(1) for w, _, _ in mats}}
        row = {"rows": M}
        for name, fn in (
            ("row_major_ms", lambda xs=xs: [F.linear(xs[w.size(1)], w, b) for w, _, b in mats]),
            (
                "column_major_ms",
                lambda xs=xs: [torch.addmm(b, xs[w.size(1)], wt) for w, wt, b in mats],
            ),
        ):
            fn()  # warm-up
            best = float("inf")
            for _ in range(repeats):
                with Clock() as c:
                    fn()
                best = min(best, c.cpu)
            row[name] = round(best * 1e3, 1)
        print(f"layouts M={M}: {row}", flush=True)
        out.append(row)
    return out


# --- 3. continuous vs static ------------------------------------------------------------------
def workload(n_requests: int, vocab: int, seed: int = 3) -> list[tuple[list[int], int]]:
    """Prompts of 8-32 tokens; output lengths: 75% short (4-16 tokens), 25% long (64-128)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_requests):
        prompt = [rng.randrange(vocab) for _ in range(rng.randint(8, 32))]
        n = rng.randint(64, 128) if rng.random() < 0.25 else rng.randint(4, 16)
        out.append((prompt, n))
    return out


def run_engine(model, work, max_batch, block_tokens, static) -> dict:
    blocks = sum(-(-(len(p) + n) // block_tokens) for p, n in work)
    engine = Engine(
        model,
        max_batch=max_batch,
        num_blocks=blocks,
        block_tokens=block_tokens,
        static=static,
        clock=time.process_time,
    )
    with Clock() as c:
        for p, n in work:
            engine.add_request(p, n, temperature=0)
        results = engine.run()
    lat = [r.finish_time - c.c0 for r in engine.requests.values()]  # CPU seconds
    occupancy = [sum(s is not None for s in h["slots"]) for h in engine.history]
    return {
        "results": results,
        "wall_s": c.wall,
        "cpu_s": c.cpu,
        "steps": engine.steps,
        "mean_batch": statistics.mean(occupancy),
        "latencies": lat,
        "latency_steps": [r.finish_step for r in engine.requests.values()],
        "history": [h["slots"] for h in engine.history],
    }


def run_padded_static(model, work, max_batch) -> dict:
    results, lat, lat_steps, steps = {}, [], [], 0
    with Clock() as c:
        for start in range(0, len(work), max_batch):
            group = work[start : start + max_batch]
            out = generate_batch(
                model, [p for p, _ in group], max(n for _, n in group), temperature=0
            )
            done = time.process_time() - c.c0  # CPU seconds
            steps += max(n for _, n in group)
            for i, ((p, n), row) in enumerate(zip(group, out, strict=True)):
                results[start + i] = row[: len(p) + n]
                lat.append(done)
                lat_steps.append(steps)
    return {
        "results": results,
        "wall_s": c.wall,
        "cpu_s": c.cpu,
        "latencies": lat,
        "latency_steps": lat_steps,
        "steps": steps,
    }


def summarize(run: dict, n_tokens: int) -> dict:
    lat = sorted(run["latencies"])
    lat_steps = sorted(run["latency_steps"])
    out = {
        "wall_s": round(run["wall_s"], 3),
        "cpu_s": round(run["cpu_s"], 3),
        "tokens_per_s": round(n_tokens / run["cpu_s"], 2),
        "tokens_per_s_wall": round(n_tokens / run["wall_s"], 2),
        "latency_mean_s": round(statistics.mean(lat), 3),
        "latency_p50_s": round(lat[len(lat) // 2], 3),
        "latency_p90_s": round(lat[int(0.9 * (len(lat) - 1))], 3),
        "latency_mean_steps": round(statistics.mean(lat_steps), 1),
        "latency_p90_steps": lat_steps[int(0.9 * (len(lat_steps) - 1))],
    }
    for key in ("steps", "mean_batch"):
        if key in run:
            out[key] = round(run[key], 2)
    return out


def continuous_vs_static(model, n_requests, max_batch, block_tokens) -> dict:
    torch.set_num_threads(1)
    work = workload(n_requests, model.config.vocab_size)
    n_tokens = sum(n for _, n in work)
    cont = run_engine(model, work, max_batch, block_tokens, static=False)
    stat = run_engine(model, work, max_batch, block_tokens, static=True)
    padded = run_padded_static(model, work, max_batch)
    same = cont["results"] == stat["results"] == padded["results"]
    res = {
        "requests": n_requests,
        "max_batch": max_batch,
        "block_tokens": block_tokens,
        "generated_tokens": n_tokens,
        "output_lengths": [n for _, n in work],
        "prompt_lengths": [len(p) for p, _ in work],
        "continuous": summarize(cont, n_tokens),
        "static_engine": summarize(stat, n_tokens),
        "static_padded": summarize(padded, n_tokens),
        "tokens_identical": same,
        "load_average": load_average(),
    }
    res["ratio_vs_static_engine"] = round(stat["cpu_s"] / cont["cpu_s"], 3)
    res["ratio_vs_static_padded"] = round(padded["cpu_s"] / cont["cpu_s"], 3)
    res["ratio_vs_static_engine_wall"] = round(stat["wall_s"] / cont["wall_s"], 3)
    res["ratio_vs_static_padded_wall"] = round(padded["wall_s"] / cont["wall_s"], 3)
    print(
        f"continuous {res['continuous']['tokens_per_s']} tok/s, static (engine) "
        f"{res['static_engine']['tokens_per_s']}, static (padded) "
        f"{res['static_padded']['tokens_per_s']}: ratios {res['ratio_vs_static_engine']}, "
        f"{res['ratio_vs_static_padded']}; identical {same}",
        flush=True,
    )
    return res


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="1,2,4,8,16,32,64")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--n-short", type=int, default=4)
    p.add_argument("--n-long", type=int, default=16)
    p.add_argument("--prompt-tokens", type=int, default=8)
    p.add_argument("--hf-batches", default="8,16")
    p.add_argument("--hf-new-tokens", type=int, default=24)
    p.add_argument("--hf-repeats", type=int, default=3)
    p.add_argument("--requests", type=int, default=48)
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--block-tokens", type=int, default=16)
    p.add_argument("--json", default=str(HERE / "results_batching.json"), help="'' to skip")
    p.add_argument(
        "--sections",
        default="batching,hf,layouts,continuous",
        help="what to measure; with fewer than all, the other sections of an existing --json "
        "file are kept (and batching rows of other thread counts)",
    )
    args = p.parse_args(argv)
    sections = set(args.sections.split(","))
    old = {}
    if (
        args.json
        and Path(args.json).exists()
        and sections != {"batching", "hf", "layouts", "continuous"}
    ):
        old = json.loads(Path(args.json).read_text())
    t_start = time.perf_counter()
    res: dict = {
        "command": "python benchmarks/batching.py " + " ".join(argv or sys.argv[1:]),
        "env": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")},
        "machine": {
            "cpu": cpu_name(),
            "logical_cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "load_average_at_start": load_average(),
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        hf, ours = build_models(Path(tmp))
    ours.eval()
    res["model"] = {"parameters": ours.num_parameters(), "dtype": "float32"}
    batches = [int(b) for b in args.batches.split(",")]
    threads_list = [int(t) for t in args.threads.split(",")]
    if "batching" in sections:
        res["batching"] = [r for r in old.get("batching", []) if r["threads"] not in threads_list]
        for threads in threads_list:
            res["batching"] += batching_curve(
                ours, batches, threads, args.n_short, args.n_long, args.repeats, args.prompt_tokens
            )
        res["batching"].sort(key=lambda r: (r["threads"], r["batch"]))
    if "hf" in sections:
        hf_batches = [int(b) for b in args.hf_batches.split(",")]
        res["vs_transformers"] = against_hf(
            hf, ours, hf_batches, args.hf_new_tokens, args.hf_repeats
        )
    if "layouts" in sections:
        res["layouts"] = layout_times(ours)
    if "continuous" in sections:
        res["continuous"] = continuous_vs_static(
            ours, args.requests, args.max_batch, args.block_tokens
        )
    res["machine"]["load_average_at_end"] = load_average()
    if old:  # keep what was not re-measured, and say which run measured what
        runs = old.get("runs", [{k: old[k] for k in ("command", "machine", "env") if k in old}])
        runs.append({"command": res["command"], "machine": res["machine"], "env": res["env"]})
        res = {**old, **res, "runs": runs}
    res["seconds"] = round(time.perf_counter() - t_start, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {args.json}")
    return res


if __name__ == "__main__":
    main()
