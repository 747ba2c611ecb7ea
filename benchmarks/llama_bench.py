"""Today's decoders, measured: the book's Llama against transformers, GQA at long context, and
online-softmax attention against PyTorch's fused kernel.

1. **Decode** -- batch-1 greedy decoding with a KV cache, ``nexttoken.llama.Llama`` run by
   ``nexttoken.generate.generate`` against ``transformers``' ``LlamaForCausalLM.generate``, on the
   *same* random weights (one ``LlamaForCausalLM`` is built, saved with ``save_pretrained`` and read
   back with ``nexttoken.checkpoint.load_llama``). A GPT-2-small-sized config: 12 layers, 12 query
   heads, 4 key/value heads, d = 768, SwiGLU width 2048 (``swiglu_hidden(768)``: the parameters of
   GPT-2's 4d GELU MLP), GPT-2's vocabulary of 50,257, float32, 1 thread. Interleaved runs
   (alternating which goes first), medians, their ratio, and whether the tokens are identical.
   The same on the architecture shrunk to d = 64 (``decode_overhead``): there the per-step
   overhead of each loop, not the weights' matrix products, sets the pace.
2. **GQA at long context** -- one decoding step (one token, ``last_only``) over a KV cache holding
   ``C`` tokens, for the same model with 12, 4 and 1 key/value heads (12 query heads each); the
   cache is filled with random keys and values (a step's time does not depend on them). Also the
   attention call alone (``sdpa_attention``, one query over ``C`` keys, 12 layers' worth).
3. **Online softmax** -- ``online_softmax_attention`` (block 64) against ``sdpa_attention`` and the
   written-out ``plain_attention`` on a causal prompt of ``N`` tokens (12 heads of 64): time, the
   largest intermediate computed from shapes, and the peak of live tensors measured
   (``nexttoken.attention.peak_memory``).

Every time is taken two ways: wall-clock, and the CPU time of this process
(``time.process_time``). On a machine shared with other jobs, wall-clock time also counts the time
spent waiting for a core; with one torch thread, CPU time is what the work itself costs, so the
speed-ups are computed from CPU time (medians) and the wall-clock ones given next to them.

Nothing is downloaded. ``python benchmarks/llama_bench.py`` writes ``benchmarks/results_llama.json``;
``--quick`` runs every part on tiny sizes in seconds (the smoke test; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from nexttoken.attention import (
    attention_memory,
    online_softmax_attention,
    peak_memory,
    plain_attention,
    sdpa_attention,
)
from nexttoken.generate import generate
from nexttoken.llama import Llama, LlamaConfig, swiglu_hidden

HERE = Path(__file__).resolve().parent

FULL = dict(
    n_layer=12, n_head=12, n_kv_head=4, n_embd=768, vocab_size=50257, block_size=8192,
    new_tokens=64, prompt_tokens=32, repeats=11, contexts=(1024, 2048, 4096), kv_heads=(12, 4, 1),
    attn_sizes=(256, 512, 1024, 2048), attn_heads=12, attn_d_head=64, block=64,
)  # fmt: skip
QUICK = dict(
    n_layer=2, n_head=4, n_kv_head=2, n_embd=64, vocab_size=256, block_size=128,
    new_tokens=8, prompt_tokens=4, repeats=2, contexts=(64,), kv_heads=(4, 1),
    attn_sizes=(32, 64), attn_heads=2, attn_d_head=16, block=16,
)  # fmt: skip


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def load() -> float:
    return round(os.getloadavg()[0], 2)


def llama_config(s: dict, n_kv_head: int | None = None) -> LlamaConfig:
    """The benchmark's Llama config from the size dict ``s``."""
    return LlamaConfig(
        vocab_size=s["vocab_size"],
        block_size=s["block_size"],
        n_layer=s["n_layer"],
        n_head=s["n_head"],
        n_kv_head=s["n_kv_head"] if n_kv_head is None else n_kv_head,
        n_embd=s["n_embd"],
        intermediate_size=swiglu_hidden(s["n_embd"]),
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        tie_embeddings=False,
    )


def build_pair(cfg: LlamaConfig, seed: int = 0):
    """A random ``transformers`` ``LlamaForCausalLM``, and the book's :class:`Llama` on the same
    weights (through ``save_pretrained`` + ``load_llama`` when it exists)."""
    import transformers

    torch.manual_seed(seed)
    hf_cfg = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.n_embd,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.n_kv_head,
        head_dim=cfg.d_head,
        max_position_embeddings=cfg.block_size,
        rope_theta=cfg.rope_theta,
        rms_norm_eps=cfg.rms_norm_eps,
        tie_word_embeddings=cfg.tie_embeddings,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,
    )
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    hf.generation_config.eos_token_id = None
    hf.generation_config.bos_token_id = None
    hf.generation_config.pad_token_id = 0
    try:
        from nexttoken.checkpoint import load_llama
    except ImportError:  # load_llama not there yet: the parameter names are transformers' own
        ours = Llama(cfg).eval()
        ours.load_state_dict(hf.state_dict())
        return hf, ours, "load_state_dict"
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp)
        ours = load_llama(tmp).eval()
    return hf, ours, "save_pretrained + load_llama"


def time_it(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def time_both(fn) -> tuple[float, float, object]:
    """Wall-clock and CPU seconds of ``fn()`` (CPU time: this process's, all threads; on a shared
    machine it leaves out the time spent waiting for a core), and its result."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def decode_ours(model, prompt, new_tokens):
    return generate(model, prompt, new_tokens, temperature=0)


def decode_hf(model, prompt, new_tokens):
    with torch.inference_mode():
        return model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            use_cache=True,
        )


def bench_decode(s: dict) -> dict:
    """Part 1: tokens/s of both implementations, interleaved, same weights, same prompt."""
    return _decode(s, llama_config(s))


def bench_overhead(s: dict) -> dict:
    """Part 1b: the same comparison on the same architecture shrunk to d = 64, 4 heads (2 K/V
    heads), vocabulary 256: the matrix products become tiny and what is left is each loop's
    per-step overhead (masks, logits processors, cache bookkeeping)."""
    small = dict(s, n_embd=64, n_head=4, n_kv_head=2, vocab_size=256)
    return _decode(small, llama_config(small))


def _decode(s: dict, cfg: LlamaConfig) -> dict:
    hf, ours, how = build_pair(cfg)
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, cfg.vocab_size, (1, s["prompt_tokens"]), generator=g)
    with torch.inference_mode():
        logits_diff = (ours(prompt) - hf(prompt).logits).abs().max().item()
    decode_ours(ours, prompt, 4), decode_hf(hf, prompt, 4)  # warm-up
    wall = {"ours": [], "hf": []}
    cpu = {"ours": [], "hf": []}
    same, loads = True, []
    for r in range(s["repeats"]):
        pair = [("ours", decode_ours, ours), ("hf", decode_hf, hf)]
        outs = {}
        for name, fn, model in pair if r % 2 == 0 else pair[::-1]:
            dt, ct, outs[name] = time_both(lambda fn=fn, m=model: fn(m, prompt, s["new_tokens"]))
            wall[name].append(dt)
            cpu[name].append(ct)
        same &= torch.equal(outs["ours"], outs["hf"])
        loads.append(load())
        print(
            f"decode run {r}: nexttoken {wall['ours'][-1]:.3f} s ({cpu['ours'][-1]:.3f} s CPU), "
            f"transformers {wall['hf'][-1]:.3f} s ({cpu['hf'][-1]:.3f} s CPU), load {loads[-1]}"
        )
    t_ours, t_hf = wall["ours"], wall["hf"]
    tps_ours = s["new_tokens"] / statistics.median(t_ours)
    tps_hf = s["new_tokens"] / statistics.median(t_hf)
    cps_ours = s["new_tokens"] / statistics.median(cpu["ours"])
    cps_hf = s["new_tokens"] / statistics.median(cpu["hf"])
    return {
        "config": {
            "n_layer": cfg.n_layer,
            "n_head": cfg.n_head,
            "n_kv_head": cfg.n_kv_head,
            "n_embd": cfg.n_embd,
            "intermediate_size": cfg.intermediate_size,
            "vocab_size": cfg.vocab_size,
            "parameters": ours.num_parameters(),
            "weights": how,
            "transformers_attn_implementation": hf.config._attn_implementation,
        },
        "prompt_tokens": s["prompt_tokens"],
        "new_tokens": s["new_tokens"],
        "logits_max_abs_diff": float(f"{logits_diff:.2e}"),
        "nexttoken_tokens_per_s": round(tps_ours, 2),
        "transformers_tokens_per_s": round(tps_hf, 2),
        "ratio": round(tps_ours / tps_hf, 3),
        "nexttoken_tokens_per_cpu_s": round(cps_ours, 2),
        "transformers_tokens_per_cpu_s": round(cps_hf, 2),
        "ratio_cpu_time": round(cps_ours / cps_hf, 3),
        "per_run_ratio": [round(h / o, 3) for o, h in zip(t_ours, t_hf, strict=True)],
        "identical_tokens": bool(same),
        "nexttoken_seconds": [round(t, 3) for t in t_ours],
        "transformers_seconds": [round(t, 3) for t in t_hf],
        "nexttoken_cpu_seconds": [round(t, 3) for t in cpu["ours"]],
        "transformers_cpu_seconds": [round(t, 3) for t in cpu["hf"]],
        "load_average_1min": loads,
    }


@torch.inference_mode()
def step_time(model: Llama, context: int, repeats: int) -> tuple[float, float]:
    """One decoding step over a cache holding ``context`` random keys/values: (fastest wall-clock
    seconds, median CPU seconds) of ``repeats`` steps after one warm-up step."""
    cache = model.new_cache(1, context + 1)
    g = torch.Generator().manual_seed(2)
    for t in cache.k + cache.v:
        t.copy_(torch.randn(t.shape, generator=g))
    nxt = torch.zeros(1, 1, dtype=torch.long)
    wall, cpu = [], []
    for _ in range(repeats + 1):
        cache.length = context
        dt, ct, _ = time_both(lambda: model.run(nxt, cache=cache, last_only=True))
        wall.append(dt)
        cpu.append(ct)
    return min(wall[1:]), statistics.median(cpu[1:])  # the first call warms up


def attention_step_time(s: dict, n_kv_head: int, context: int, repeats: int) -> tuple[float, float]:
    """``n_layer`` decode-step attention calls (1 query, ``context`` keys): (fastest wall-clock
    seconds, median CPU seconds)."""
    g = torch.Generator().manual_seed(3)
    d = s["n_embd"] // s["n_head"]
    q = torch.randn(1, s["n_head"], 1, d, generator=g)
    k = torch.randn(1, n_kv_head, context, d, generator=g)
    v = torch.randn(1, n_kv_head, context, d, generator=g)

    def run():
        for _ in range(s["n_layer"]):
            sdpa_attention(q, k, v)

    run()
    times = [time_both(run)[:2] for _ in range(repeats)]
    return min(t[0] for t in times), statistics.median(t[1] for t in times)


def bench_gqa(s: dict) -> dict:
    """Part 2: one decoding step at long context, 12 query heads, fewer and fewer K/V heads."""
    models = {}
    for h in s["kv_heads"]:
        torch.manual_seed(0)
        models[h] = Llama(llama_config(s, n_kv_head=h)).eval()
    reps = max(3, 2 * s["repeats"])
    rows = []
    for ctx in s["contexts"]:
        step = {h: [] for h in models}
        attn = {h: [] for h in models}
        for r in range(3):  # interleave the configs, three rounds
            order = list(models) if r % 2 == 0 else list(models)[::-1]
            for h in order:
                step[h].append(step_time(models[h], ctx, reps))
                attn[h].append(attention_step_time(s, h, ctx, reps))
        mha = s["n_head"]

        def cpu(times: list) -> float:  # median over the rounds of each round's median CPU time
            return statistics.median(t[1] for t in times)

        def wall(times: list) -> float:  # fastest wall-clock time over all rounds
            return min(t[0] for t in times)

        for h in models:
            cache_bytes = 2 * s["n_layer"] * h * (s["n_embd"] // s["n_head"]) * 4 * ctx
            row = {
                "context": ctx,
                "n_kv_head": h,
                "kv_cache_MB": round(cache_bytes / 1e6, 1),
                "step_cpu_ms": round(1e3 * cpu(step[h]), 2),
                "step_wall_ms_fastest": round(1e3 * wall(step[h]), 2),
                "attention_cpu_ms": round(1e3 * cpu(attn[h]), 3),
                "attention_wall_ms_fastest": round(1e3 * wall(attn[h]), 3),
                "load_average_1min": load(),
            }
            if mha in models:
                row["step_speedup_vs_mha"] = round(cpu(step[mha]) / cpu(step[h]), 3)
                row["step_speedup_vs_mha_wall"] = round(wall(step[mha]) / wall(step[h]), 3)
                row["attention_speedup_vs_mha"] = round(cpu(attn[mha]) / cpu(attn[h]), 2)
            rows.append(row)
            print(f"gqa context {ctx} kv heads {h}: {row}")
    return {"n_head": s["n_head"], "parameters": {h: m.num_parameters() for h, m in models.items()},
            "rows": rows}  # fmt: skip


def bench_online(s: dict) -> list[dict]:
    """Part 3: online softmax vs fused vs written-out attention on causal prompts of N tokens."""
    rows = []
    H, d, bs = s["attn_heads"], s["attn_d_head"], s["block"]
    fns = {
        "online": lambda q, k, v: online_softmax_attention(q, k, v, block_size=bs),
        "sdpa": sdpa_attention,
        "plain": lambda q, k, v: plain_attention(q, k, v)[0],
    }
    for N in s["attn_sizes"]:
        g = torch.Generator().manual_seed(4)
        q, k, v = (torch.randn(1, H, N, d, generator=g) for _ in range(3))
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        row = {"N": N, "heads": H, "d_head": d, "block_size": bs}
        times = {name: [] for name in fns}
        with torch.inference_mode():
            for fn in fns.values():
                fn(q, k, v)
            for r in range(s["repeats"]):
                for name, fn in fns.items() if r % 2 == 0 else list(fns.items())[::-1]:
                    times[name].append(time_both(lambda fn=fn, a=(q, k, v): fn(*a))[:2])
        for name, fn in fns.items():
            row[f"{name}_cpu_ms"] = round(1e3 * statistics.median(t[1] for t in times[name]), 2)
            row[f"{name}_wall_ms_fastest"] = round(1e3 * min(t[0] for t in times[name]), 2)
            row[f"{name}_max_abs_diff_vs_sdpa"] = float(f"{(fn(q, k, v) - ref).abs().max():.1e}")
            mem = peak_memory(fn, q, k, v)
            row[f"{name}_peak_bytes"] = mem["peak"]
            row[f"{name}_largest_bytes"] = mem["largest"]
        row["score_matrix_bytes"] = attention_memory(N, N, n_head=H)
        row["online_block_bytes"] = attention_memory(N, N, method="online", block_size=bs, n_head=H)
        row["load_average_1min"] = load()
        rows.append(row)
        print(f"online N={N}: {row}")
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, seconds (a smoke test)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved runs per measurement")
    p.add_argument("--threads", type=int, default=1, help="torch threads (same for both)")
    p.add_argument(
        "--parts",
        default="decode,overhead,gqa,online",
        help="comma-separated: decode, overhead, gqa, online",
    )
    p.add_argument("--json", default=None, help="output file ('' to skip; default "
                   "benchmarks/results_llama.json, none with --quick)")  # fmt: skip
    args = p.parse_args(argv)
    s = dict(QUICK if args.quick else FULL)
    if args.repeats is not None:
        if args.repeats < 1:
            p.error("--repeats must be >= 1")
        s["repeats"] = args.repeats
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = set(parts) - {"decode", "overhead", "gqa", "online"}
    if unknown or not parts:
        p.error(f"--parts takes decode, overhead, gqa, online; got {args.parts!r}")
    json_path = args.json
    if json_path is None:
        json_path = "" if args.quick else str(HERE / "results_llama.json")

    torch.set_num_threads(args.threads)
    import transformers

    res: dict = {
        "command": "python benchmarks/llama_bench.py " + " ".join(argv if argv is not None
                                                                  else sys.argv[1:]),
        "machine": {
            "cpu": cpu_name(),
            "logical_cpus": os.cpu_count(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "load_average_1min_at_start": load(),
            "note": "a shared machine: other jobs ran during the measurement (see the load "
            "averages); ratios are measured interleaved in one process",
        },
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "quick": args.quick,
    }  # fmt: skip
    if "decode" in parts:
        res["decode"] = bench_decode(s)
    if "overhead" in parts:
        res["decode_overhead"] = bench_overhead(s)
    if "gqa" in parts:
        res["gqa"] = bench_gqa(s)
    if "online" in parts:
        res["online_softmax"] = bench_online(s)
    res["machine"]["load_average_1min_at_end"] = load()
    res["finished_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    if json_path:
        Path(json_path).write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {json_path}")
    return res


if __name__ == "__main__":
    main()
