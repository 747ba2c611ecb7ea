"""Decode benchmark: nexttoken's KV-cache generation against Hugging Face transformers.

GPT-2 small size (124M parameters), the *same* random weights in both (a ``GPT2LMHeadModel`` is
built, saved with ``save_pretrained`` and read back with ``nexttoken.checkpoint.load_gpt2``), greedy
decoding of 128 new tokens after a 32-token prompt, batch 1, float32, CPU. The two implementations
run interleaved (alternating which goes first) and the medians of ``--repeats`` runs are reported,
with their ratio. Also measured:

- the memory-bandwidth roofline: decoding one token reads every weight once, so
  ``bytes of weights / copy bandwidth`` bounds tokens/s from above; the fraction of it reached;
- cached vs recompute at 1024 tokens of context: one decoding step with a KV cache holding 1023
  tokens, against recomputing the full 1024-token window;
- reduced precision (``--bf16``, on by default): bfloat16 weights, speed-up, how far the logits
  move, and, when the book model is present, how far its held-out loss moves.

Nothing is downloaded. Run ``make bench`` or ``python benchmarks/decode.py --help``; results go to
stdout (a Markdown table) and ``--json`` (default ``benchmarks/results.json``).
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

from nexttoken.checkpoint import load_gpt2
from nexttoken.generate import generate

HERE = Path(__file__).resolve().parent


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def build_models(tmp: Path, n_layer: int = 12, n_embd: int = 768, n_head: int = 12):
    """A random GPT-2 (small by default) in transformers, saved, and loaded into nexttoken."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=n_layer, n_embd=n_embd, n_head=n_head, bos_token_id=None, eos_token_id=None
    )
    hf = GPT2LMHeadModel(cfg).eval()
    hf.generation_config.eos_token_id = None
    hf.generation_config.bos_token_id = None
    hf.generation_config.pad_token_id = 0
    hf.save_pretrained(tmp)
    ours = load_gpt2(tmp)
    return hf, ours


def time_it(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def decode_ours(model, prompt, new_tokens):
    return generate(model, prompt, new_tokens, temperature=0)


def decode_hf(model, prompt, new_tokens):
    with torch.inference_mode():
        return model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=new_tokens,
            do_sample=False,
            use_cache=True,
        )


def copy_bandwidth(nbytes: int = 1 << 28, repeats: int = 5) -> float:
    """Bytes/s of a large tensor copy (each byte read once and written once)."""
    src = torch.ones(nbytes // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = [time_it(lambda: dst.copy_(src))[0] for _ in range(repeats)]
    return 2 * nbytes / min(times)


def weight_bytes_per_token(model) -> int:
    """Bytes of weights one decoding step reads: every parameter once, except the position table
    (one row) and the token embedding's lookup (one row; the tied output projection reads it all)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    wpe = model.transformer.wpe.weight
    return total - wpe.numel() * wpe.element_size() + wpe[0].numel() * wpe.element_size()


@torch.inference_mode()
def step_times(model, context: int, repeats: int) -> tuple[float, float]:
    """Seconds for one decoding step at ``context`` tokens: (with a KV cache, recomputing)."""
    ids = torch.randint(0, model.config.vocab_size, (1, context))
    cache = model.new_cache(1, context)
    model.run(ids[:, :-1], cache=cache, last_only=True)
    cached = []
    for _ in range(max(repeats, 5)):
        cache.length = context - 1
        cached.append(time_it(lambda: model.run(ids[:, -1:], cache=cache, last_only=True))[0])
    full = [time_it(lambda: model.run(ids, last_only=True))[0] for _ in range(repeats)]
    return statistics.median(cached), statistics.median(full)


def gemv_bandwidth(
    dtype: torch.dtype, rows: int = 50257, cols: int = 768, copies: int = 4
) -> float:
    """Bytes/s that one matrix-vector product ``(1, cols) x (rows, cols)^T`` reads in ``dtype``
    (the output layer's shape). It cycles through ``copies`` matrices so they do not stay in cache."""
    g = torch.Generator().manual_seed(0)
    mats = [torch.randn(rows, cols, generator=g).to(dtype) for _ in range(copies)]
    x = torch.randn(1, cols, generator=g).to(dtype)
    with torch.inference_mode():
        for w in mats:
            torch.nn.functional.linear(x, w)
        t0 = time.perf_counter()
        for _ in range(3):
            for w in mats:
                torch.nn.functional.linear(x, w)
        dt = (time.perf_counter() - t0) / (3 * copies)
    return mats[0].numel() * mats[0].element_size() / dt


@torch.inference_mode()
def profile_decode(model, prompt, steps: int = 8) -> dict:
    """Share of one decoding step's CPU time in matrix products, attention and everything else."""
    from torch.profiler import ProfilerActivity, profile

    cache = model.new_cache(1, prompt.size(1) + steps)
    model.run(prompt, cache=cache, last_only=True)
    nxt = prompt[:, -1:]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            model.run(nxt, cache=cache, last_only=True)
    shares = {"matmul": 0.0, "attention": 0.0, "other": 0.0}
    total = 0.0
    for ev in prof.key_averages():
        t = ev.self_cpu_time_total
        total += t
        if ev.key in ("aten::addmm", "aten::mm", "aten::matmul", "aten::linear"):
            shares["matmul"] += t
        elif "scaled_dot_product" in ev.key or "attention" in ev.key:
            shares["attention"] += t
        else:
            shares["other"] += t
    return {k: round(v / total, 3) for k, v in shares.items()}


def book_held_out_loss(dtype: torch.dtype) -> float | None:
    """The book model's held-out loss (nats/token on The Tempest) with weights in ``dtype``, or
    None when the book model is not available."""
    try:
        from nexttoken.book import held_out_metrics, load_book_model

        model = load_book_model(dtype=dtype)
    except Exception:  # the book model is trained by another part of the project
        return None
    with torch.inference_mode():
        return held_out_metrics(model)["nats_per_token"]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5, help="interleaved runs per implementation")
    p.add_argument("--threads", type=int, default=1, help="torch threads (same for both)")
    p.add_argument("--context", type=int, default=1024, help="context for cached vs recompute")
    p.add_argument("--no-context", action="store_true", help="skip cached vs recompute")
    p.add_argument("--no-bf16", action="store_true", help="skip the bfloat16 measurements")
    p.add_argument("--no-book", action="store_true", help="skip the book model's held-out loss")
    p.add_argument(
        "--small", action="store_true", help="a 2-layer 128-wide model, small buffers (smoke test)"
    )
    p.add_argument("--json", default=str(HERE / "results.json"), help="'' to skip writing")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.new_tokens < 1 or args.prompt_tokens < 1:
        p.error("--repeats, --new-tokens and --prompt-tokens must be >= 1")

    torch.set_num_threads(args.threads)
    import transformers

    res: dict = {
        "machine": {
            "cpu": cpu_name(),
            "logical_cpus": os.cpu_count(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "load_average_1min_at_start": round(os.getloadavg()[0], 2),
        },
        "setup": {
            "new_tokens": args.new_tokens,
            "prompt_tokens": args.prompt_tokens,
            "repeats": args.repeats,
            "batch": 1,
            "dtype": "float32",
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        dims = dict(n_layer=2, n_embd=128, n_head=2) if args.small else {}
        hf, ours = build_models(Path(tmp), **dims)
    res["setup"]["parameters"] = ours.num_parameters()
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, ours.config.vocab_size, (1, args.prompt_tokens), generator=g)

    # warm-up (first calls allocate and pick kernels), then interleaved timed runs
    decode_ours(ours, prompt, 4), decode_hf(hf, prompt, 4)
    t_ours, t_hf, same = [], [], True
    for r in range(args.repeats):
        pair = [("ours", decode_ours, ours), ("hf", decode_hf, hf)]
        outs = {}
        for name, fn, model in pair if r % 2 == 0 else pair[::-1]:
            dt, outs[name] = time_it(lambda fn=fn, model=model: fn(model, prompt, args.new_tokens))
            (t_ours if name == "ours" else t_hf).append(dt)
        same &= torch.equal(outs["ours"], outs["hf"])
        print(f"run {r}: nexttoken {t_ours[-1]:.3f} s, transformers {t_hf[-1]:.3f} s", flush=True)
    tps_ours = args.new_tokens / statistics.median(t_ours)
    tps_hf = args.new_tokens / statistics.median(t_hf)
    res["decode"] = {
        "nexttoken_tokens_per_s": round(tps_ours, 2),
        "transformers_tokens_per_s": round(tps_hf, 2),
        "ratio": round(tps_ours / tps_hf, 3),
        "identical_tokens": bool(same),
        "nexttoken_seconds": [round(t, 3) for t in t_ours],
        "transformers_seconds": [round(t, 3) for t in t_hf],
    }

    bw = copy_bandwidth(1 << 22 if args.small else 1 << 28)
    wbytes = weight_bytes_per_token(ours)
    roof = bw / wbytes
    res["roofline"] = {
        "copy_bandwidth_GB_per_s": round(bw / 1e9, 2),
        "weight_bytes_per_token_MB": round(wbytes / 1e6, 1),
        "roofline_tokens_per_s": round(roof, 2),
        "nexttoken_fraction": round(tps_ours / roof, 3),
        "transformers_fraction": round(tps_hf / roof, 3),
    }

    res["profile_step_shares"] = profile_decode(ours, prompt)
    rows = 1024 if args.small else 50257  # the smoke test keeps it small
    res["roofline"]["gemv_GB_per_s_fp32"] = round(gemv_bandwidth(torch.float32, rows) / 1e9, 2)
    res["roofline"]["gemv_GB_per_s_bf16"] = round(gemv_bandwidth(torch.bfloat16, rows) / 1e9, 2)
    roof_gemv = res["roofline"]["gemv_GB_per_s_fp32"] * 1e9 / wbytes  # a tighter bound
    res["roofline"]["gemv_roofline_tokens_per_s"] = round(roof_gemv, 2)
    res["roofline"]["nexttoken_fraction_of_gemv_roofline"] = round(tps_ours / roof_gemv, 3)
    res["roofline"]["transformers_fraction_of_gemv_roofline"] = round(tps_hf / roof_gemv, 3)

    if not args.no_context:
        ctx = min(args.context, ours.config.block_size)
        cached, full = step_times(ours, ctx, repeats=3)
        res["context"] = {
            "context_tokens": ctx,
            "cached_step_ms": round(cached * 1e3, 2),
            "recompute_step_ms": round(full * 1e3, 1),
            "speedup": round(full / cached, 1),
        }

    if not args.no_bf16:
        with tempfile.TemporaryDirectory() as tmp:
            hf.save_pretrained(tmp)
            bf = load_gpt2(tmp, dtype=torch.bfloat16)
        decode_ours(bf, prompt, 4)
        t32, t16 = [], []
        for r in range(args.repeats):
            pair = [(t32, ours), (t16, bf)]
            for lst, model in pair if r % 2 == 0 else pair[::-1]:
                lst.append(
                    time_it(lambda model=model: decode_ours(model, prompt, args.new_tokens))[0]
                )
        with torch.inference_mode():
            l32 = ours(prompt)
            l16 = bf(prompt).float()
        g32 = decode_ours(ours, prompt, args.new_tokens)
        g16 = decode_ours(bf, prompt, args.new_tokens)
        agree = (g32[0, args.prompt_tokens :] == g16[0, args.prompt_tokens :]).float().mean()
        res["bf16"] = {
            "fp32_tokens_per_s": round(args.new_tokens / statistics.median(t32), 2),
            "bf16_tokens_per_s": round(args.new_tokens / statistics.median(t16), 2),
            "speedup": round(statistics.median(t32) / statistics.median(t16), 2),
            "logits_max_abs_diff": round((l32 - l16).abs().max().item(), 4),
            "logits_std": round(l32.std().item(), 4),
            "greedy_tokens_agree": round(agree.item(), 3),
            "fp32_seconds": [round(t, 3) for t in t32],
            "bf16_seconds": [round(t, 3) for t in t16],
        }
        loss32 = None if args.no_book else book_held_out_loss(torch.float32)
        if loss32 is not None:
            loss16 = book_held_out_loss(torch.bfloat16)
            res["bf16"]["book_held_out_loss_fp32"] = round(loss32, 4)
            res["bf16"]["book_held_out_loss_bf16"] = round(loss16, 4)
            from nexttoken.book import load_model_card

            res["bf16"]["book_model_sha256"] = load_model_card()["sha256"]

    print(markdown(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {args.json}")
    return res


def markdown(res: dict) -> str:
    """The results as Markdown tables."""
    d, r = res["decode"], res["roofline"]
    lines = [
        "| implementation | tokens/s | fraction of roofline |",
        "|---|---|---|",
        f"| nexttoken (KV cache) | {d['nexttoken_tokens_per_s']} | {r['nexttoken_fraction']} |",
        f"| transformers generate(use_cache=True) | {d['transformers_tokens_per_s']} | "
        f"{r['transformers_fraction']} |",
        f"| roofline ({r['weight_bytes_per_token_MB']} MB / {r['copy_bandwidth_GB_per_s']} GB/s)"
        f" | {r['roofline_tokens_per_s']} | 1.0 |",
        "",
        f"ratio nexttoken / transformers: **{d['ratio']}**; identical tokens: {d['identical_tokens']}",
        "",
        f"one matrix-vector product of the output layer's shape reads {r['gemv_GB_per_s_fp32']}"
        f" GB/s in fp32 and {r['gemv_GB_per_s_bf16']} GB/s in bf16",
        f"share of a decoding step (profiler): {res['profile_step_shares']}",
    ]
    if "context" in res:
        c = res["context"]
        lines += [
            "",
            f"one step at {c['context_tokens']} tokens of context: KV cache {c['cached_step_ms']} ms,"
            f" recompute {c['recompute_step_ms']} ms (x{c['speedup']})",
        ]
    if "bf16" in res:
        b = res["bf16"]
        lines += [
            "",
            f"bf16 weights: {b['bf16_tokens_per_s']} tokens/s vs fp32 {b['fp32_tokens_per_s']}"
            f" (x{b['speedup']}); logits max |diff| {b['logits_max_abs_diff']} (logits std"
            f" {b['logits_std']}); greedy tokens agreeing: {b['greedy_tokens_agree']}",
        ]
        if "book_held_out_loss_fp32" in b:
            lines.append(
                f"book model held-out loss: fp32 {b['book_held_out_loss_fp32']}, bf16"
                f" {b['book_held_out_loss_bf16']}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
