"""Faster tokens: int8 weights and speculative decoding, measured. The numbers behind notebook 11.

One torch thread, CPU. Every time is this process's CPU time (``time.process_time``; the machine
may be shared, and a one-thread run's CPU time is inflated much less than its wall time); the
best of ``--repeats`` runs. Decoding speed is the decoding steps' alone: the time of ``n_long``
new tokens minus that of ``n_short``, over ``n_long - n_short`` (the prompt's pass cancels).

1. **Kernels**: the ``50257 x 768`` output projection of GPT-2 small for 1, 2 and 5 input rows, in
   fp32 (``F.linear``), in torch's dynamic int8 (fbgemm/x86, one activation scale per tensor), in
   :class:`~nexttoken.quantize.RowInt8Linear` (fbgemm, one scale per row: ``quantize``'s int8 since
   issue 24) and with ``torch._weight_int8pack_mm`` (int8 weights, fp32 activations).
2. **Weights**: fp32, bf16 and int8 (:func:`nexttoken.quantize.quantize`) for a GPT-2-small-shaped
   model (random weights) and the book model: bytes read per token, tokens/s of greedy
   ``generate``, and for the book model the held-out loss (The Tempest) and text side by side.
3. **Speculative decoding**, for each (target, draft) pair: the cost model (draft step, target pass
   over ``k + 1`` tokens, acceptance) against measured tokens/s, and against plain greedy
   ``generate`` in the same run, output checked identical. Pairs: the book model with the book's
   draft model, the book model with its own int8 copy, GPT-2-shaped fp32 with its own int8 copy,
   and the same with the target's weights column-major (``gpt2cm+int8``:
   :func:`nexttoken.batching.column_major_weights`, which makes a pass over a few tokens cheaper
   on MKL; notebook 10).

Run: ``.venv/bin/python benchmarks/faster.py`` (``--sections kernels,weights,speculative``); writes
``benchmarks/results_faster.json`` and prints a Markdown summary. ``--sections int8_rows`` (not in
the default) measures issue 24's batch-invariant int8 against fp32 and the per-tensor int8 it
replaced, into the key ``int8_rows`` only (with its own load averages).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from nexttoken import load_book_encoding, load_book_model
from nexttoken.batching import column_major_weights
from nexttoken.book import held_out_metrics
from nexttoken.configs import get_config
from nexttoken.generate import generate
from nexttoken.model import GPT
from nexttoken.quantize import RowInt8Linear, quantize, weight_bytes
from nexttoken.speculative import (
    expected_tokens_per_round,
    predicted_tokens_per_s,
    rollback,
    speculative_generate,
)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from decode import cpu_name  # noqa: E402

PROMPTS = [  # openings from The Tempest (held out: the models never trained on it)
    "Boatswain!\nBOATSWAIN.\nHere, master: what cheer?",
    "PROSPERO.\nBe collected:\nNo more amazement: tell your piteous heart",
    "MIRANDA.\nIf by your art, my dearest father, you have",
]


def cpu(fn, repeats: int) -> float:
    """Best CPU time of ``repeats`` calls of ``fn``, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def per_token(fn, n_short: int, n_long: int, repeats: int) -> float:
    """Seconds a token of ``fn(n)`` (which makes ``n`` tokens), the prompt's pass cancelled."""
    return (cpu(lambda: fn(n_long), repeats) - cpu(lambda: fn(n_short), repeats)) / (
        n_long - n_short
    )


def per_token_interleaved(fns: dict, n_short: int, n_long: int, repeats: int) -> dict:
    """:func:`per_token` for several ``fn(n)`` whose runs take turns (repeat 1 of each, then repeat
    2 of each...), so that a change in the machine's load hits them all alike."""
    best = {(name, n): float("inf") for name in fns for n in (n_short, n_long)}
    for _ in range(repeats):
        for name, fn in fns.items():
            for n in (n_short, n_long):
                t0 = time.process_time()
                fn(n)
                best[name, n] = min(best[name, n], time.process_time() - t0)
    return {name: (best[name, n_long] - best[name, n_short]) / (n_long - n_short) for name in fns}


def kernels(repeats: int) -> dict:
    torch.manual_seed(0)
    lin = nn.Linear(768, 50257, bias=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(
            nn.Sequential(lin),
            {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
            dtype=torch.qint8,
        )[0]
    q_rows = RowInt8Linear.from_linear(lin)  # what quantize(model, "int8") uses since issue 24
    w = lin.weight.detach()
    scale = w.abs().amax(dim=1) / 127
    w_int8 = torch.round(w / scale[:, None]).to(torch.int8)
    out = {}
    with torch.inference_mode():
        for m in (1, 2, 5):
            x = torch.randn(m, 768)
            row = {
                "fp32_ms": 1e3 * cpu(lambda x=x: F.linear(x, w), 5 * repeats),
                "int8_dynamic_ms": 1e3 * cpu(lambda x=x: q(x), 5 * repeats),
                "int8_rows_ms": 1e3 * cpu(lambda x=x: q_rows(x), 5 * repeats),  # issue 24
            }
            try:
                row["int8pack_mm_ms"] = 1e3 * cpu(
                    lambda x=x: torch._weight_int8pack_mm(x, w_int8, scale), 2 * repeats
                )
            except (RuntimeError, AttributeError) as e:  # not on every build
                row["int8pack_mm_ms"] = None
                row["int8pack_mm_error"] = str(e)[:200]
            for name, m_ao in _torchao_linears(lin).items():  # if torchao is installed
                row[f"torchao_{name}_ms"] = 1e3 * cpu(lambda x=x, q=m_ao: q(x), repeats)
            out[f"rows_{m}"] = {
                k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()
            }
    return out


def _torchao_linears(lin: nn.Linear) -> dict:
    """torchao's int8 configurations applied to copies of ``lin`` ({} if torchao is absent: it is
    not a dependency of the book; measured once in a side environment, see RESULTS.md)."""
    try:
        import copy

        import torchao.quantization as tq
    except ImportError:
        return {}
    out = {}
    for name in ("Int8WeightOnlyConfig", "Int8DynamicActivationInt8WeightConfig"):
        m = copy.deepcopy(lin)
        tq.quantize_(m, getattr(tq, name)())
        out[name] = m
    return out


def _per_tensor_dynamic(model: GPT) -> GPT:
    """The int8 of ``quantize`` before issue 24: torch's ``quantize_dynamic`` (one activation scale
    per tensor, so a row's tokens depended on its batch), kept here to measure against."""
    import copy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model).eval(),
            {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
            dtype=torch.qint8,
        )


def _rows_bit_identical(lin: nn.Module, k: int, rows: int = 64) -> bool:
    """Whether every row of ``lin`` over ``M`` rows equals the same row over ``rows`` rows, for
    every ``M`` in 1..rows (and for the last ``M`` rows as well as the first)."""
    torch.manual_seed(1)
    x = torch.randn(rows, k) * torch.logspace(-2, 2, rows)[:, None]  # rows of unlike sizes
    with torch.inference_mode():
        full = lin(x)
        return all(
            torch.equal(lin(x[:m]), full[:m]) and torch.equal(lin(x[rows - m :]), full[rows - m :])
            for m in range(1, rows + 1)
        )


def int8_rows(repeats: int, n_short: int, n_long: int) -> dict:
    """Issue 24's int8 (per-row activation scales, :class:`~nexttoken.quantize.RowInt8Linear`)
    against fp32 and the per-tensor dynamic int8 it replaced: greedy decode at batch 1 of the
    GPT-2-shaped and the book model (the three interleaved), the held-out loss of the book model, and rows bit-identical across
    ``M`` = 1..64 in each layer shape."""
    from nexttoken.quantize import RowInt8Linear

    out = {"load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    book = load_book_model()
    for name, base in (("gpt2_shaped", gpt2_shaped()), ("book", book)):
        models = {"fp32": base, "int8_per_tensor": _per_tensor_dynamic(base),
                  "int8": quantize(base, "int8")}  # fmt: skip
        fns = {
            label: (lambda n, m=m: generate(m, list(range(8)), n, temperature=0))
            for label, m in models.items()
        }
        secs = per_token_interleaved(fns, n_short, n_long, repeats)
        decode = {label: round(1.0 / s, 2) for label, s in secs.items()}
        for label in ("int8_per_tensor", "int8"):
            decode[f"{label}_speedup"] = round(secs["fp32"] / secs[label], 3)
        out[f"{name}_tokens_per_s"] = decode
        out[f"load_average_after_{name}"] = [round(x, 2) for x in os.getloadavg()]
    torch.manual_seed(0)
    out["rows_bit_identical_m_1_to_64"] = {
        f"{k}x{n}": _rows_bit_identical(RowInt8Linear.from_linear(nn.Linear(k, n)), k)
        for k, n in ((768, 2304), (768, 768), (768, 3072), (3072, 768), (768, 50257))
    }
    loss = {name: held_out_metrics(m)["nats_per_token"]
            for name, m in (("fp32", book), ("int8_per_tensor", _per_tensor_dynamic(book)),
                            ("int8", quantize(book, "int8")))}  # fmt: skip
    out["book_held_out_nats_per_token"] = loss
    out["book_loss_delta_pct"] = {
        name: round(100 * (loss[name] / loss["fp32"] - 1), 3) for name in loss if name != "fp32"
    }
    out["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


def gpt2_shaped() -> GPT:
    torch.manual_seed(0)
    return GPT(get_config("gpt2")).eval()


def decode_speed(model, prompt, n_short, n_long, repeats) -> float:
    """Tokens/s of greedy ``generate`` (CPU time, prompt cancelled)."""

    def run(n):
        generate(model, prompt, n, temperature=0)

    return 1.0 / per_token(run, n_short, n_long, repeats)


def weights(repeats: int, n_short: int, n_long: int) -> dict:
    enc = load_book_encoding()
    book = load_book_model()
    res = {}
    for name, base, prompt in (
        ("gpt2_shaped", gpt2_shaped(), list(range(8))),
        ("book", book, enc.encode(PROMPTS[0])),
    ):
        rows = {}
        fp32_out = None
        models = {m: base if m == "fp32" else quantize(base, m) for m in ("fp32", "bf16", "int8")}
        fns = {
            method: (lambda n, m=m, p=prompt: generate(m, p, n, temperature=0))
            for method, m in models.items()
        }
        secs = per_token_interleaved(fns, n_short, n_long, repeats)  # the three take turns
        for method, m in models.items():
            row = {
                "weight_bytes_per_token": weight_bytes(m),
                "tokens_per_s": round(1.0 / secs[method], 2),
            }
            out = generate(m, prompt, 40, temperature=0)[0, len(prompt) :].tolist()
            if fp32_out is None:
                fp32_out = out
            row["greedy_tokens_equal_fp32"] = sum(
                a == b for a, b in zip(out, fp32_out, strict=True)
            )
            if name == "book":
                row["held_out_nats_per_token"] = held_out_metrics(m)["nats_per_token"]
                row["text"] = enc.decode(out)
            rows[method] = row
        for method in ("bf16", "int8"):
            rows[method]["speedup"] = round(
                rows[method]["tokens_per_s"] / rows["fp32"]["tokens_per_s"], 3
            )
        if name == "book":
            f = rows["fp32"]["held_out_nats_per_token"]
            for method in ("bf16", "int8"):
                rows[method]["loss_delta_pct"] = round(
                    100 * (rows[method]["held_out_nats_per_token"] - f) / f, 3
                )
        res[name] = rows
    return res


def pass_costs(model, context: int, ms: list[int], repeats: int) -> dict[int, float]:
    """CPU seconds of one cached pass of ``model`` over ``m`` new tokens after ``context`` tokens."""
    cache = model.new_cache(1, context + max(ms))
    out = {}
    with torch.inference_mode():
        model.run(torch.zeros(1, context, dtype=torch.long), cache=cache)
        for m in ms:
            x = torch.ones(1, m, dtype=torch.long)

            def step(x=x, m=m):
                model.run(x, cache=cache, last_only=(m == 1))
                rollback(cache, context)

            out[m] = cpu(step, 5 * repeats)
    return out


def round_costs(target, draft, context: int, k: int, repeats: int) -> tuple[float, float]:
    """CPU seconds of one draft step and of one target pass over ``k + 1`` tokens, timed as a round
    runs them (``k`` draft steps, then the target's pass, again and again): the two models take
    turns in the CPU's caches, as they do in :func:`speculative_generate`. Medians of 10 x
    ``repeats`` rounds."""
    t_cache = target.new_cache(1, context + k + 1)
    d_cache = draft.new_cache(1, context + k + 1)
    one, many = torch.ones(1, 1, dtype=torch.long), torch.ones(1, k + 1, dtype=torch.long)
    d_times, t_times = [], []
    with torch.inference_mode():
        target.run(torch.zeros(1, context, dtype=torch.long), cache=t_cache)
        draft.run(torch.zeros(1, context, dtype=torch.long), cache=d_cache)
        for _ in range(10 * repeats):
            for _ in range(k):
                t0 = time.process_time()
                draft.run(one, cache=d_cache, last_only=True)
                d_times.append(time.process_time() - t0)
            rollback(d_cache, context)
            t0 = time.process_time()
            target.run(many, cache=t_cache)
            t_times.append(time.process_time() - t0)
            rollback(t_cache, context)
    return statistics.median(d_times), statistics.median(t_times)


def speculative_pair(target, draft, prompts, ks, n_short, n_long, repeats) -> dict:
    """Cost model vs measured tokens/s for one pair, for each ``k``; outputs checked identical."""
    context = len(prompts[0]) + (n_short + n_long) // 2
    t_costs = pass_costs(target, context, list(range(1, max(ks) + 2)), repeats)
    d_cost = pass_costs(draft, context, [1], repeats)[1]
    rows = {"target_step_ms": round(1e3 * t_costs[1], 3), "draft_step_ms": round(1e3 * d_cost, 3)}
    rows["target_pass_ms"] = {m: round(1e3 * c, 3) for m, c in t_costs.items()}
    plain = []
    for p in prompts:
        plain.append(decode_speed(target, p, n_short, n_long, repeats))
    plain_tps = sum(plain) / len(plain)
    rows["plain_tokens_per_s"] = round(plain_tps, 2)
    # what the loop adds to each model call (argmax and its checks, writing the token): measured
    # on plain generate, charged once per draft step and once per target pass
    overhead = max(0.0, 1.0 / plain_tps - t_costs[1])
    rows["loop_overhead_ms_per_call"] = round(1e3 * overhead, 3)
    for k in ks:
        measured, plain_same, identical, alphas, tpr = [], [], True, [], []
        for p in prompts:
            want = generate(target, p, n_long, temperature=0)
            got, stats = speculative_generate(target, draft, p, n_long, k=k, temperature=0)
            identical &= torch.equal(got, want)
            alphas.append(stats.alpha)
            tpr.append(stats.tokens_per_pass)

            def run(n, p=p, k=k):
                speculative_generate(target, draft, p, n, k=k, temperature=0)

            def run_plain(n, p=p):
                generate(target, p, n, temperature=0)

            t = per_token_interleaved({"spec": run, "plain": run_plain}, n_short, n_long, repeats)
            measured.append(1.0 / t["spec"])
            plain_same.append(1.0 / t["plain"])
        alpha = sum(alphas) / len(alphas)
        tokens_per_round = sum(tpr) / len(tpr)
        tps = sum(measured) / len(measured)
        plain_k = sum(plain_same) / len(plain_same)
        c_d, c_v = round_costs(target, draft, context, k, repeats)
        c_d, c_v = c_d + overhead, c_v + overhead
        pred_alpha = predicted_tokens_per_s(c_d, c_v, k, expected_tokens_per_round(alpha, k))
        pred = predicted_tokens_per_s(c_d, c_v, k, tokens_per_round)
        rows[f"k={k}"] = {
            "draft_step_in_round_ms": round(1e3 * c_d, 3),
            "target_pass_in_round_ms": round(1e3 * c_v, 3),
            "alpha": round(alpha, 3),
            "tokens_per_round": round(tokens_per_round, 3),
            "measured_tokens_per_s": round(tps, 2),
            "predicted_tokens_per_s": round(pred, 2),
            "predicted_from_alpha_tokens_per_s": round(pred_alpha, 2),
            "prediction_error_pct": round(100 * (pred - tps) / tps, 1),
            "plain_tokens_per_s_interleaved": round(plain_k, 2),
            "speedup_vs_plain": round(tps / plain_k, 3),
            "identical_to_generate": identical,
        }
    return rows


def speculative(repeats: int, n_short: int, n_long: int, ks: list[int], pairs: list[str]) -> dict:
    enc = load_book_encoding()
    book = load_book_model()
    book_prompts = [enc.encode(p) for p in PROMPTS]
    res = {}
    if "book+draft" in pairs:
        from nexttoken import load_book_draft_model

        res["book+draft"] = speculative_pair(
            book, load_book_draft_model(), book_prompts, ks, n_short, n_long, repeats
        )
    if "book+int8" in pairs:
        res["book+int8"] = speculative_pair(
            book, quantize(book, "int8"), book_prompts, ks, n_short, n_long, repeats
        )
    for pair in ("gpt2+int8", "gpt2cm+int8"):  # cm: the target's weights column-major (notebook 10)
        if pair in pairs:
            g = gpt2_shaped() if pair == "gpt2+int8" else column_major_weights(gpt2_shaped())
            res[pair] = speculative_pair(
                g, quantize(g, "int8"), [list(range(8)), list(range(100, 108))], ks, n_short,
                n_long, max(1, repeats - 1),
            )  # fmt: skip
    return res


def agreement(res: dict) -> dict:
    """Teacher-forced argmax agreement of each draft with its target (256 positions: random ids for
    the random GPT-2, the opening of The Tempest for the book model), and what the cost model
    predicts at that acceptance with the pass costs measured above (a random model's greedy output
    repeats one token, so its measured alpha is not typical)."""
    from nexttoken import load_book_draft_model
    from nexttoken.data import HELD_OUT, load_plays

    torch.manual_seed(1)
    random_ids = torch.randint(0, 50257, (1, 256))
    book_ids = torch.tensor([load_book_encoding().encode(load_plays()[HELD_OUT][:4000])[:256]])
    book = load_book_model()
    g = gpt2_shaped()
    g_cm = column_major_weights(gpt2_shaped())
    out = {}
    for name, target, draft, ids in (
        ("gpt2+int8", g, quantize(g, "int8"), random_ids),
        ("gpt2cm+int8", g_cm, quantize(g_cm, "int8"), random_ids),
        ("book+int8", book, quantize(book, "int8"), book_ids),
        ("book+draft", book, load_book_draft_model(), book_ids),
    ):
        with torch.inference_mode():
            a = float((target(ids).argmax(-1) == draft(ids).argmax(-1)).float().mean())
        row = {"teacher_forced_agreement": round(a, 3)}
        spec = res.get("speculative", {}).get(name)
        if spec:
            for key, r in spec.items():
                if key.startswith("k="):
                    k = int(key[2:])
                    tps = predicted_tokens_per_s(
                        r["draft_step_in_round_ms"] / 1e3,
                        r["target_pass_in_round_ms"] / 1e3,
                        k,
                        expected_tokens_per_round(a, k),
                    )
                    row[f"predicted_speedup_{key}"] = round(tps / spec["plain_tokens_per_s"], 3)
        out[name] = row
    return out


def markdown(res: dict) -> str:
    """The tables of benchmarks/RESULTS.md from a results dict."""
    lines = []
    if "kernels" in res:
        rows_col = any("int8_rows_ms" in r for r in res["kernels"].values() if isinstance(r, dict))
        lines += ["| rows | fp32 ms | int8 dynamic (fbgemm) ms | `_weight_int8pack_mm` ms |"
                  + (" int8 per-row (RowInt8Linear) ms |" if rows_col else ""),
                  "|---|---|---|---|" + ("---|" if rows_col else "")]  # fmt: skip
        for key, r in res["kernels"].items():
            if key.startswith("rows_"):
                lines.append(f"| {key[5:]} | {r['fp32_ms']} | {r['int8_dynamic_ms']} | "
                             f"{r['int8pack_mm_ms']} |"
                             + (f" {r.get('int8_rows_ms')} |" if rows_col else ""))  # fmt: skip
        lines.append("")
    for name, rows in res.get("weights", {}).items():
        if not isinstance(rows, dict):
            continue
        lines += [f"**{name}**", "", "| weights | MB read/token | tokens/s | speed-up | "
                  "greedy tokens = fp32 (of 40) | held-out nats/token | loss delta |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for method, r in rows.items():
            lines.append(
                f"| {method} | {r['weight_bytes_per_token'] / 1e6:.2f} | {r['tokens_per_s']} | "
                f"{r.get('speedup', 1.0)} | {r['greedy_tokens_equal_fp32']} | "
                f"{r.get('held_out_nats_per_token', '')} | {r.get('loss_delta_pct', '')} |"
            )
        lines.append("")
    for name, rows in res.get("speculative", {}).items():
        lines += [f"**{name}**: target step {rows['target_step_ms']} ms, draft step "
                  f"{rows['draft_step_ms']} ms, target pass over 1..k+1 tokens "
                  f"{list(rows['target_pass_ms'].values())} ms, loop overhead "
                  f"{rows['loop_overhead_ms_per_call']} ms a call; plain greedy "
                  f"{rows['plain_tokens_per_s']} tokens/s", "",
                  "| k | alpha | tokens/pass | measured tok/s | cost model tok/s | error | "
                  "speed-up | identical |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for key, r in rows.items():
            if key.startswith("k="):
                lines.append(
                    f"| {key[2:]} | {r['alpha']} | {r['tokens_per_round']} | "
                    f"{r['measured_tokens_per_s']} | {r['predicted_tokens_per_s']} | "
                    f"{r['prediction_error_pct']}% | {r['speedup_vs_plain']} | "
                    f"{r['identical_to_generate']} |"
                )
        lines.append("")
    for name, r in res.get("agreement", {}).items():
        lines.append(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in r.items()))
    return "\n".join(lines)


def _machine(args) -> dict:
    return {
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "quantized_engine": torch.backends.quantized.engine,
        "threads": 1,
        "clock": "process CPU time, best of repeats",
        "repeats": args.repeats,
        "new_tokens": [args.short, args.long],
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sections", default="kernels,weights,speculative,agreement")
    ap.add_argument("--pairs", default="book+draft,book+int8,gpt2+int8,gpt2cm+int8")
    ap.add_argument("--ks", default="1,2,3,4,6")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--short", type=int, default=8)
    ap.add_argument("--long", type=int, default=40)
    ap.add_argument("--out", default=str(HERE / "results_faster.json"))
    ap.add_argument(
        "--markdown", action="store_true", help="print the tables of --out, run nothing"
    )
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.out).read_text())))
        return {}
    torch.set_num_threads(1)
    sections = args.sections.split(",")
    path = Path(args.out)
    res = json.loads(path.read_text()) if path.exists() else {}
    if "int8_rows" in sections:  # its own key, machine and load: run alone, it keeps the rest
        res["int8_rows"] = {"machine": _machine(args), **int8_rows(args.repeats, args.short,
                                                                   args.long)}  # fmt: skip
        print(json.dumps(res["int8_rows"], indent=1), flush=True)
        sections.remove("int8_rows")
        if not sections:
            path.write_text(json.dumps(res, indent=1) + "\n")
            return res
    res["machine"] = {
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "quantized_engine": torch.backends.quantized.engine,
        "python": platform.python_version(),
        "threads": 1,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "clock": "process CPU time, best of repeats",
        "repeats": args.repeats,
        "new_tokens": [args.short, args.long],
    }
    if "kernels" in sections:
        res["kernels"] = kernels(args.repeats)
        res["kernels"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(res["kernels"], indent=1), flush=True)
    if "weights" in sections:
        res["weights"] = weights(args.repeats, args.short, args.long)
        res["weights"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(res["weights"], indent=1), flush=True)
    if "speculative" in sections:
        ks = [int(k) for k in args.ks.split(",")]
        spec = speculative(args.repeats, args.short, args.long, ks, args.pairs.split(","))
        for row in spec.values():
            row["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        res.setdefault("speculative", {}).update(spec)
        print(json.dumps(spec, indent=1), flush=True)
    if "agreement" in sections:
        res["agreement"] = agreement(res)
        print(json.dumps(res["agreement"], indent=1), flush=True)
    res["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    path.write_text(json.dumps(res, indent=1) + "\n")
    return res


if __name__ == "__main__":
    main()
