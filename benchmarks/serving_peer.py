"""Serving benchmark against a peer: :class:`nexttoken.serve.Engine` and transformers' own
continuous batching, on the same weights, the same requests, one CPU thread.

Workload (as in issue 22): 48 requests, prompts of 4-64 random tokens, 4-128 new tokens each, all
arriving at once, at most 16 running at a time, greedy. Three systems, run interleaved (A, B, C,
then B, C, A, ...; ``--repeats`` rounds, the median reported):

- ``engine``: ``Engine(model, max_batch=16, block_tokens=16)``: chunked prefill (one pass per step
  carries every decode token and prompt chunks up to ``max_step_tokens``), attention reading the
  paged blocks in place;
- ``hf_continuous``: ``transformers`` (5.x) ``model.continuous_batching_context_manager(...)`` with
  ``attn_implementation="sdpa"``, a paged cache of 16-token pages, at most 16 requests per batch,
  each request added with its own ``max_new_tokens`` (``manager.add_request``);
- ``static``: :func:`nexttoken.batching.generate_batch` over fixed batches of 16 requests in
  arrival order, each batch run until its longest request ends (static batching).

Two models: the book model (4.27 M parameters, exported to transformers with
:func:`nexttoken.checkpoint.export_hf_gpt2`) and a GPT-2-small-shaped model (124 M, random weights,
made in transformers and read with :func:`nexttoken.checkpoint.load_gpt2`). Everything is offline.

Reported per system: throughput (generated tokens / wall seconds of the whole workload; also per
CPU second of this process, all its threads: less disturbed by other processes), time to
first token and latency (arrival to last token) averaged over the requests (the engine's first
token is stamped after the step that made it; transformers' from its per-token timestamps; static
batching has no first token before its batch ends, so only its latency is given), and whether its
tokens equal the engine's on every request (and, for the book model, ``generate``'s alone). The
machine's load average is recorded before and after: on a shared machine compare the ratios, which
are measured interleaved.

Run: ``.venv/bin/python benchmarks/serving_peer.py`` (3 repeats, about 5 minutes on a quiet 2-core
machine) or ``--quick`` (1 repeat); writes ``benchmarks/results_serving_peer.json``.
"""

from __future__ import annotations

import os

# One thread for every thread of the process: transformers decodes in a thread of its own, which
# would otherwise get OpenMP's default team (every core) instead of torch.set_num_threads(1)'s.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import logging
import platform
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from nexttoken import load_book_model
from nexttoken.batching import generate_batch
from nexttoken.checkpoint import export_hf_gpt2
from nexttoken.generate import generate
from nexttoken.serve import Engine

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from decode import build_models, cpu_name  # noqa: E402

MAX_BATCH, BLOCK = 16, 16


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def workload(seed: int, vocab: int, n: int = 48) -> list[tuple[list[int], int]]:
    """``n`` requests: (prompt of 4-64 random tokens, 4-128 new tokens)."""
    rng = random.Random(seed)
    return [
        ([rng.randrange(vocab) for _ in range(rng.randint(4, 64))], rng.randint(4, 128))
        for _ in range(n)
    ]


def run_engine(model, reqs, **kw) -> dict:
    """Every request added at t0, the engine stepped until done; first token stamped per step."""
    engine = Engine(
        model, max_batch=MAX_BATCH, num_blocks=MAX_BATCH * 12, block_tokens=BLOCK,
        keep_history=0, **kw,
    )  # fmt: skip
    t0 = time.perf_counter()
    ids = [engine.add_request(p, n, temperature=0) for p, n in reqs]
    first = {}
    while engine.has_work():
        produced = engine.step()
        now = time.perf_counter()
        for rid in produced:
            first.setdefault(rid, now)
    wall = time.perf_counter() - t0
    out = engine.results()
    return {
        "wall": wall,
        "tokens": [out[i][len(p) :] for i, (p, _) in zip(ids, reqs, strict=True)],
        "ttft": [first[i] - t0 for i in ids],
        "latency": [engine.requests[i].finish_time - t0 for i in ids],
    }


def run_hf_continuous(hf, reqs, page_tokens: int = BLOCK, max_batch_tokens: int = 256) -> dict:
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    gen = GenerationConfig(
        do_sample=False, max_new_tokens=max(n for _, n in reqs), eos_token_id=None, pad_token_id=0
    )
    cfg = ContinuousBatchingConfig(
        max_requests_per_batch=MAX_BATCH,
        page_size=page_tokens,
        num_blocks=MAX_BATCH * 12 + 8,
        max_batch_tokens=max_batch_tokens,
    )
    with hf.continuous_batching_context_manager(
        generation_config=gen, continuous_batching_config=cfg, block=True, timeout=60
    ) as manager:
        t0 = time.perf_counter()
        for i, (p, n) in enumerate(reqs):
            manager.add_request(p, request_id=f"r{i}", max_new_tokens=n, record_timestamps=True)
        done = {}
        while len(done) < len(reqs):
            r = manager.get_result(timeout=1)
            if r is None:  # nothing yet (or the generation thread died: then say so)
                thread = manager._generation_thread
                if thread is None or not thread.is_alive():
                    raise RuntimeError("transformers' continuous batching stopped before finishing")
                continue
            if r.is_finished():
                done[r.request_id] = r
        wall = time.perf_counter() - t0
    outs = [done[f"r{i}"] for i in range(len(reqs))]
    return {
        "wall": wall,
        "tokens": [list(o.generated_tokens) for o in outs],
        "ttft": [o.timestamps[0] - t0 for o in outs],
        "latency": [o.timestamps[-1] - t0 for o in outs],
    }


def run_static(model, reqs) -> dict:
    """Fixed batches of ``MAX_BATCH`` in arrival order, each until its longest request ends."""
    t0 = time.perf_counter()
    tokens, latency = [], []
    for a in range(0, len(reqs), MAX_BATCH):
        batch = reqs[a : a + MAX_BATCH]
        rows = generate_batch(model, [p for p, _ in batch], max(n for _, n in batch), temperature=0)
        end = time.perf_counter() - t0
        for (p, n), row in zip(batch, rows, strict=True):
            tokens.append(row[len(p) : len(p) + n])
            latency.append(end)
    return {"wall": time.perf_counter() - t0, "tokens": tokens, "latency": latency}


def timed(fn, *args) -> dict:
    """``fn(*args)``'s result with ``cpu``: this process's CPU seconds (all its threads)."""
    c0 = time.process_time()
    out = fn(*args)
    out["cpu"] = time.process_time() - c0
    return out


def summarize(runs: list[dict], n_tokens: int, reference: list[list[int]]) -> dict:
    walls, cpus = [r["wall"] for r in runs], [r["cpu"] for r in runs]
    mid = runs[walls.index(sorted(walls)[len(walls) // 2])]
    out = {
        "tokens_per_s": round(n_tokens / statistics.median(walls), 1),
        "tokens_per_cpu_s": round(n_tokens / statistics.median(cpus), 1),
        "wall_s": [round(w, 3) for w in walls],
        "cpu_s": [round(c, 3) for c in cpus],
        "mean_latency_s": round(statistics.mean(mid["latency"]), 3),
        "requests_equal_to_engine": sum(
            a == b for a, b in zip(mid["tokens"], reference, strict=True)
        ),
    }
    if "ttft" in mid:
        out["mean_ttft_s"] = round(statistics.mean(mid["ttft"]), 3)
    return out


def compare(name: str, ours, hf, reqs, repeats: int, alone: bool) -> dict:
    """Run the three systems interleaved ``repeats`` times on ``reqs``; a row of the table."""
    systems = {
        "engine": lambda: timed(run_engine, ours, reqs),
        "hf_continuous": lambda: timed(run_hf_continuous, hf, reqs),
        "static": lambda: timed(run_static, ours, reqs),
    }
    names = list(systems)
    runs = {k: [] for k in names}
    load = [load_average()]
    for rep in range(repeats):
        order = names[rep % 3 :] + names[: rep % 3]
        for k in order:
            runs[k].append(systems[k]())
            r = runs[k][-1]
            print(f"  {name} {k}: {r['wall']:.2f} s wall, {r['cpu']:.2f} s CPU", flush=True)
    load.append(load_average())
    n_tokens = sum(n for _, n in reqs)
    reference = runs["engine"][0]["tokens"]
    row = {k: summarize(runs[k], n_tokens, reference) for k in names}
    row["generated_tokens"] = n_tokens
    row["prompt_tokens"] = sum(len(p) for p, _ in reqs)
    row["engine_vs_hf_continuous"] = round(
        row["engine"]["tokens_per_s"] / row["hf_continuous"]["tokens_per_s"], 3
    )
    row["engine_vs_static"] = round(
        row["engine"]["tokens_per_s"] / row["static"]["tokens_per_s"], 3
    )
    for other in ("hf_continuous", "static"):  # the same, by CPU time (less disturbed by load)
        row[f"engine_vs_{other}_cpu"] = round(
            row["engine"]["tokens_per_cpu_s"] / row[other]["tokens_per_cpu_s"], 3
        )
    row["load_average"] = load
    if alone:
        row["engine_equal_to_generate_alone"] = sum(
            generate(ours, p, n, temperature=0)[0].tolist()[len(p) :] == t
            for (p, n), t in zip(reqs, reference, strict=True)
        )
    return row


def book_models(tmp: Path):
    from transformers import GPT2LMHeadModel

    ours = load_book_model().eval()
    export_hf_gpt2(ours, tmp)
    hf = GPT2LMHeadModel.from_pretrained(tmp, attn_implementation="sdpa").eval()
    return hf, ours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one repeat")
    ap.add_argument("--models", default="book,gpt2", help="comma-separated: book, gpt2")
    ap.add_argument("--seed", type=int, default=22)
    ap.add_argument("--out", default=str(HERE / "results_serving_peer.json"))
    args = ap.parse_args()
    repeats = 1 if args.quick else args.repeats
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("ContinuousBatchingLogger").setLevel(logging.ERROR)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    results = {
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": 1,
        "repeats": repeats,
        "workload": "48 requests, prompts 4-64 tokens, 4-128 new tokens, all at t=0, "
        f"at most {MAX_BATCH} at once, greedy, blocks/pages of {BLOCK} tokens",
        "models": {},
    }
    import transformers

    results["transformers"] = transformers.__version__
    with torch.inference_mode():
        for name in args.models.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                if name == "book":
                    hf, ours = book_models(Path(tmp))
                else:
                    hf, ours = build_models(Path(tmp))
                    hf = type(hf).from_pretrained(tmp, attn_implementation="sdpa").eval()
                    ours.eval()
            reqs = workload(args.seed, ours.config.vocab_size)
            run_engine(ours, reqs[:4])  # warm-up (allocator, kernels) for every system
            run_hf_continuous(hf, reqs[:4])
            run_static(ours, reqs[:4])
            row = compare(name, ours, hf, reqs, repeats, alone=name == "book")
            row["parameters"] = ours.num_parameters()
            results["models"][name] = row
            print(json.dumps({name: row}, indent=1), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))


def table(results: dict) -> str:
    lines = [
        "| model | Engine tok/s | transformers continuous | ratio | static generate_batch | ratio "
        "| TTFT Engine / transformers (s) | mean latency Engine / transformers (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["models"].items():
        e, h, s = r["engine"], r["hf_continuous"], r["static"]
        lines.append(
            f"| {name} ({r['parameters'] / 1e6:.2f} M) | {e['tokens_per_s']} | {h['tokens_per_s']} "
            f"| {r['engine_vs_hf_continuous']:.2f}x | {s['tokens_per_s']} | "
            f"{r['engine_vs_static']:.2f}x | {e['mean_ttft_s']} / {h['mean_ttft_s']} | "
            f"{e['mean_latency_s']} / {h['mean_latency_s']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
