"""Figures for notebook 10: batching and its bound, KV memory, paging, continuous batching."""

from __future__ import annotations

import random
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from ..loop import kv_cache_bytes_per_token
from ..model import GPT, GPTConfig
from ..paged import blocks_for
from ..serve import Engine

__all__ = [
    "DEMO_LINES",
    "DEMO_NEW_TOKENS",
    "chat_lengths",
    "run_schedulers",
    "throughput_figure",
    "run_conditions",
    "batching_table",
    "layouts_table",
    "continuous_table",
    "kv_vs_weights_figure",
    "paging_waste",
    "paging_figure",
    "block_table_figure",
    "timeline_figure",
    "engine_figure",
    "load_peer_results",
    "peer_table",
]

GB = 10**9  # the book's unit: 10^9 bytes

#: Notebook 10's small workload for the book model: twelve prompts and their very different
#: numbers of new tokens (4 to 40).
DEMO_LINES = [
    "To be, or not to",
    "Now is the winter of our",
    "O Romeo, Romeo,",
    "Friends, Romans,",
    "All the world's a",
    "Shall I compare thee",
    "If music be the food",
    "The quality of mercy",
    "Is this a dagger",
    "Once more unto the",
    "What's in a name?",
    "A horse! a horse!",
]
DEMO_NEW_TOKENS = [4, 40, 6, 8, 36, 5, 7, 30, 4, 9, 6, 5]


def chat_lengths(n: int = 200, max_len: int = 1024, seed: int = 0) -> list[int]:
    """``n`` request lengths (prompt + output tokens) spread like a chat service's: log-normal,
    median about 150 tokens, a long tail, cut to ``[8, max_len]``. Seeded, and drawn with Python's
    ``random`` (the same numbers on every CPU, unlike vectorised tensor kernels)."""
    rng = random.Random(seed)
    return [min(max_len, max(8, round(rng.lognormvariate(5.0, 0.8)))) for _ in range(n)]


def run_schedulers(
    model: GPT, work: Sequence[tuple[list[int], int]], max_batch: int = 4, block_tokens: int = 8
) -> dict[str, Engine]:
    """Run the requests ``work`` (``(prompt, max_new_tokens)`` pairs, greedy, all arriving at
    once) through a static and a continuous :class:`~nexttoken.serve.Engine`; returns both engines
    (``{"static": ..., "continuous": ...}``), finished, with their ``history``."""
    blocks = sum(blocks_for(len(p) + n, block_tokens) for p, n in work)
    engines = {}
    for name, static in (("static", True), ("continuous", False)):
        engine = Engine(
            model, max_batch=max_batch, num_blocks=blocks, block_tokens=block_tokens, static=static
        )
        for p, n in work:
            engine.add_request(p, n, temperature=0)
        engine.run()
        engines[name] = engine
    return engines


# one colour per request id, cycling; white = free
_PALETTE = plt.get_cmap("tab20").colors


def _color(i) -> tuple:
    return _PALETTE[int(i) % len(_PALETTE)]


def throughput_figure(rows: Sequence[dict]) -> Figure:
    """Measured decoding tokens/s against batch size (log-log), one line per thread count, with
    the bound the model's matrix products allow (``tokens/s(1) x bound(B)``, dashed).

    ``rows``: the ``batching`` rows of ``benchmarks/results_batching.json``."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for threads, color in ((1, "tab:blue"), (2, "tab:orange")):
        r = [x for x in rows if x["threads"] == threads]
        if not r:
            continue
        B = [x["batch"] for x in r]
        tps = [x["tokens_per_s"] for x in r]
        bound = [r[0]["tokens_per_s"] * x["bound"] for x in r]
        ax.plot(B, tps, "o-", color=color, label=f"measured, {threads} thread(s)")
        ax.plot(B, bound, "--", color=color, alpha=0.7, label=f"matrix-product bound, {threads}")
        ax2.plot(B, [x["fraction_of_bound"] for x in r], "o-", color=color, label=f"{threads}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size B (sequences decoded together)")
    ax.set_ylabel("tokens per CPU-second")
    ax.set_title("GPT-2 small, fp32, CPU: throughput grows with the batch")
    ax.legend(fontsize=8)
    ax2.axhline(
        1.0, color="gray", ls=":", label="1 = the bound: the step gains what its products gain"
    )
    ax2.set_xscale("log", base=2)
    ax2.set_ylim(0, max(1.3, 1.08 * max(r["fraction_of_bound"] for r in rows)))  # every point shown
    ax2.set_xlabel("batch size B")
    ax2.set_ylabel("measured gain / bound")
    ax2.set_title("fraction of the bound reached")
    ax2.legend(title="threads", fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def run_conditions(bench: dict, section: str) -> str:
    """When and under what load the last run of a benchmark that measured ``section`` ran.

    ``bench``: a results JSON with ``runs`` (each with ``command`` and ``machine``), such as
    ``load_results("batching")``; a run whose command has no ``--sections`` measured every one."""
    runs = [
        r
        for r in bench.get("runs", [bench])
        if "--sections" not in r["command"]
        or section in r["command"].split("--sections")[1].split()[0].split(",")
    ]
    if not runs:
        raise ValueError(f"no run of this benchmark measured section {section!r}")
    m = runs[-1]["machine"]
    return (
        f"{section}: measured {m['date_utc']} UTC on {m['cpu']} ({m['logical_cpus']} logical CPUs, "
        f"torch {m['torch']}), load average (1, 5, 15 min) {m['load_average_at_start']}"
    )


def batching_table(rows: Sequence[dict]) -> str:
    """The batching rows of ``results_batching.json`` as a text table, one line per (threads, B).

    Columns: tokens/s; ``x prev``, the throughput over the previous batch size's; ``step x``, a
    step's time over the 1-row step's (``B / gain``: 2 means twice the time of one row); the
    weight products' time alone at ``B`` rows (ms); gain over B = 1, its bound, gain / bound."""
    lines = [" B  threads  tokens/s  x prev  step x  products ms   gain   bound  gain/bound"]
    prev = {}
    for r in rows:
        t = r["threads"]
        ratio = f"{r['tokens_per_s'] / prev[t]:6.2f}" if t in prev else f"{'-':>6}"
        prev[t] = r["tokens_per_s"]
        lines.append(
            f"{r['batch']:2d}  {t:7d}  {r['tokens_per_s']:8.1f}  {ratio}  "
            f"{r['batch'] / r['gain']:6.2f}  {1e3 * r['matmul_s_MB']:11.1f}  {r['gain']:5.2f}  "
            f"{r['bound']:6.2f}  {r['fraction_of_bound']:10.2f}"
        )
    return "\n".join(lines)


def layouts_table(rows: Sequence[dict]) -> str:
    """The ``layouts`` rows of ``results_batching.json``: one step's block products with the
    weights stored ``(out, in)`` and ``(in, out)``, ms, and their ratio (> 1: ``(in, out)`` faster)."""
    lines = ["rows  (out, in) ms  (in, out) ms  (out, in) / (in, out)"]
    for r in rows:
        ratio = r["row_major_ms"] / r["column_major_ms"]
        lines.append(
            f"{r['rows']:4d}  {r['row_major_ms']:12.1f}  {r['column_major_ms']:12.1f}  {ratio:10.2f}"
        )
    return "\n".join(lines)


def continuous_table(cont: dict) -> str:
    """The ``continuous`` section of ``results_batching.json``: per scheduler, tokens/s, engine
    steps, mean batch, seconds per step, latency (steps and CPU seconds: mean and p90)."""
    head = "scheduler              tokens/s  steps  mean batch  s/step  latency, steps: mean / p90"
    lines = [head + "   CPU s: mean / p90"]
    for key, label in (
        ("continuous", "continuous"),
        ("static_engine", "static (engine)"),
        ("static_padded", "static (padded batch)"),
    ):
        r = cont[key]
        mean_batch = f"{r['mean_batch']:.2f}" if "mean_batch" in r else "-"
        lines.append(
            f"{label:<22}{r['tokens_per_s']:8.1f}  {r['steps']:5d}  {mean_batch:>10}  "
            f"{r['cpu_s'] / r['steps']:6.3f}  {r['latency_mean_steps']:14.0f} / "
            f"{r['latency_p90_steps']:<10d}{r['latency_mean_s']:8.1f} / {r['latency_p90_s']:.1f}"
        )
    return "\n".join(lines)


def kv_vs_weights_figure(
    configs: Sequence[GPTConfig],
    n_params: Sequence[int],
    contexts: Sequence[int],
    batches: Sequence[int],
    dtype: str = "fp16",
) -> Figure:
    """KV cache memory (GB = 10^9 bytes, log scale) against batch size, one line per context
    length, with the weights' size as a horizontal line: one panel per model. Where a line crosses
    the weights, the cache outweighs the model."""
    bytes_per = 2 if dtype == "fp16" else 4
    fig, axes = plt.subplots(1, len(configs), figsize=(5.5 * len(configs), 3.8), squeeze=False)
    for ax, cfg, n in zip(axes[0], configs, n_params, strict=True):
        per_token = kv_cache_bytes_per_token(cfg, dtype)
        for ctx in contexts:
            ax.plot(batches, [b * ctx * per_token / GB for b in batches], "o-", label=f"{ctx} tok")
        ax.axhline(n * bytes_per / GB, color="black", lw=2, label="weights")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(f"GB ({dtype})")
        ax.set_title(f"{cfg.name}: KV cache vs weights")
        ax.legend(fontsize=8, title="context")
    fig.tight_layout()
    plt.close(fig)
    return fig


def paging_waste(lengths: Sequence[int], max_len: int, block_tokens: int) -> dict[str, float]:
    """Token positions reserved and used by a contiguous cache (``max_len`` per request) and by a
    paged one (whole blocks): ``{"used", "contiguous", "paged", "contiguous_waste",
    "paged_waste"}``, the wastes as fractions of what is reserved."""
    used = int(sum(lengths))
    contiguous = len(lengths) * max_len
    paged = sum(blocks_for(n, block_tokens) * block_tokens for n in lengths)
    return {
        "used": used,
        "contiguous": contiguous,
        "paged": paged,
        "contiguous_waste": 1 - used / contiguous,
        "paged_waste": 1 - used / paged,
    }


def paging_figure(lengths: Sequence[int], max_len: int, block_tokens: Sequence[int]) -> Figure:
    """Reserved KV memory (token positions) for the requests of ``lengths``: a contiguous cache of
    ``max_len`` per request against paged caches of several block sizes; the used part hatched."""
    labels = [f"contiguous\n(max {max_len})"] + [f"paged\n{b} tok/block" for b in block_tokens]
    stats = [paging_waste(lengths, max_len, block_tokens[0])]
    stats += [paging_waste(lengths, max_len, b) for b in block_tokens]
    reserved = [stats[0]["contiguous"]] + [s["paged"] for s in stats[1:]]
    waste = [stats[0]["contiguous_waste"]] + [s["paged_waste"] for s in stats[1:]]
    used = stats[0]["used"]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    x = np.arange(len(labels))
    ax.bar(x, reserved, color="lightgray", edgecolor="black", label="reserved, never written")
    ax.bar(x, [used] * len(x), color="tab:green", label="used (the tokens' keys and values)")
    for i, (r, w) in enumerate(zip(reserved, waste, strict=True)):
        ax.text(i, r, f"{w:.0%} waste", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(x, labels)
    ax.set_ylabel("token positions reserved")
    ax.set_ylim(0, 1.15 * max(reserved))
    ax.set_title(f"{len(lengths)} requests, {used} tokens in all: reserved KV memory")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    plt.close(fig)
    return fig


def block_table_figure(
    tables: dict, lengths: dict, num_blocks: int, block_tokens: int, *, title: str = ""
) -> Figure:
    """The pool as a strip of blocks coloured by owner (filled part darker), and each sequence's
    block table beneath: ``tables`` and ``lengths`` as in :class:`~nexttoken.paged.PagedKVCache`."""
    fig = plt.figure(figsize=(10, 1.6 + 0.35 * max(1, len(tables))))
    ax = fig.add_axes((0.03, 0.55, 0.94, 0.3))
    ax.set_xlim(-0.05, num_blocks + 0.05)  # a margin, so that the border lines show
    ax.set_ylim(-0.05, 1.05)
    ax.set_axis_off()
    owner = {b: s for s, t in tables.items() for b in t}
    for b in range(num_blocks):
        s = owner.get(b)
        face = "white" if s is None else _color(list(tables).index(s))
        ax.add_patch(plt.Rectangle((b, 0), 1, 1, facecolor=face, edgecolor="black", lw=0.8))
        if s is not None:  # how full this block is
            k = tables[s].index(b)
            fill = min(block_tokens, max(0, lengths[s] - k * block_tokens)) / block_tokens
            ax.add_patch(plt.Rectangle((b, 0), fill, 0.25, facecolor="black", alpha=0.5, lw=0))
        ax.text(b + 0.5, 0.6, str(b), ha="center", va="center", fontsize=7)
    ax.set_title(
        title
        or f"pool of {num_blocks} blocks x {block_tokens} tokens (dark bar: positions written)",
        fontsize=10,
    )
    lines = [
        f"seq {s!s:>3}: {lengths[s]:3d} tokens -> block table {t}" for s, t in tables.items()
    ] or ["(no sequence)"]
    fig.text(0.03, 0.45, "\n".join(lines), family="monospace", fontsize=8, va="top")
    plt.close(fig)
    return fig


def _slot_image(history: Sequence[Sequence], max_batch: int) -> np.ndarray:
    img = np.full((max_batch, len(history)), -1.0)
    for t, slots in enumerate(history):
        for s, rid in enumerate(slots):
            if rid is not None:
                img[s, t] = rid
    return img


def timeline_figure(
    histories: dict[str, Sequence[Sequence]],
    max_batch: int,
    prefill: dict[str, Sequence[dict]] | None = None,
) -> Figure:
    """Which request occupies which batch slot at every step, one panel per scheduler (e.g.
    ``{"static": ..., "continuous": ...}``, each a list of per-step slot lists). White = idle.

    ``prefill`` (optional, the same keys): for each step, ``{request id: prompt tokens}`` that the
    step's pass carried (an engine's ``history[t]["prefill"]``); those cells are hatched and show
    the chunk's size."""
    n = max(len(h) for h in histories.values())
    fig, axes = plt.subplots(
        len(histories), 1, figsize=(10, 1.3 + 1.1 * len(histories) * max_batch / 4)
    )
    axes = np.atleast_1d(axes)
    cmap = ListedColormap(["white", *_PALETTE])
    for ax, (name, hist) in zip(axes, histories.items(), strict=True):
        img = _slot_image(hist, max_batch)
        shown = np.where(img < 0, 0, img % len(_PALETTE) + 1)
        ax.imshow(shown, aspect="auto", cmap=cmap, vmin=0, vmax=len(_PALETTE), interpolation="none")
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_yticks(range(max_batch), [f"slot {s}" for s in range(max_batch)], fontsize=7)
        busy = float((img >= 0).mean())
        ax.set_title(f"{name}: {len(hist)} steps, slots busy {busy:.0%} of the time", fontsize=10)
        if prefill is not None and name in prefill:
            _hatch_prefill(ax, hist, prefill[name])
    label = "step (one pass: a token for every running request"
    label += ", hatched: prompt tokens in that pass)" if prefill is not None else ")"
    axes[-1].set_xlabel(label)
    fig.tight_layout()
    plt.close(fig)
    return fig


def _hatch_prefill(ax, hist: Sequence[Sequence], chunks: Sequence[dict]) -> None:
    """Hatch the cells whose request had prompt tokens in that step's pass; write their count."""
    for t, (slots, step) in enumerate(zip(hist, chunks, strict=True)):
        for s, rid in enumerate(slots):
            if rid is not None and rid in step:
                ax.add_patch(
                    plt.Rectangle(
                        (t - 0.5, s - 0.5), 1, 1, fill=False, hatch="///", lw=0, edgecolor="black"
                    )
                )
                ax.text(t, s, str(step[rid]), ha="center", va="center", fontsize=6)


def load_peer_results() -> dict:
    """``benchmarks/results_serving_peer.json`` (written by ``benchmarks/serving_peer.py``)."""
    from ..results import load_results

    return load_results("serving_peer")


def peer_table(results: dict) -> str:
    """The Engine against transformers' continuous batching and static ``generate_batch``, one
    row per model, from :func:`load_peer_results`'s dict (a Markdown table)."""
    lines = [
        "| model | Engine tok/s | transformers continuous tok/s | Engine / transformers "
        "| static generate_batch tok/s | Engine / static | first token, Engine / transformers "
        "| mean latency, Engine / transformers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["models"].items():
        e, h, st = r["engine"], r["hf_continuous"], r["static"]
        lines.append(
            f"| {name} ({r['parameters'] / 1e6:.2f} M) | {e['tokens_per_s']:.1f} "
            f"| {h['tokens_per_s']:.1f} | {r['engine_vs_hf_continuous']:.2f}x "
            f"| {st['tokens_per_s']:.1f} | {r['engine_vs_static']:.2f}x "
            f"| {e['mean_ttft_s']:.2f} s / {h['mean_ttft_s']:.2f} s "
            f"| {e['mean_latency_s']:.2f} s / {h['mean_latency_s']:.2f} s |"
        )
    return "\n".join(lines)


def engine_figure(engine) -> Figure:
    """The engine now: its batch slots (request and tokens so far), the block pool coloured by owner,
    and the waiting queue. For the widget of notebook 10."""
    cache = engine.cache
    fig = plt.figure(figsize=(10, 3.4))
    ax = fig.add_axes((0.03, 0.6, 0.94, 0.22))
    ax.set_xlim(-0.05, cache.num_blocks + 0.05)
    ax.set_ylim(-0.05, 1.05)
    ax.set_axis_off()
    for b, owner in enumerate(cache.owner_map()):
        face = "white" if owner is None else _color(owner)
        ax.add_patch(plt.Rectangle((b, 0), 1, 1, facecolor=face, edgecolor="black", lw=0.6))
        if owner is not None:
            ax.text(b + 0.5, 0.5, str(owner), ha="center", va="center", fontsize=7)
    ax.set_title(
        f"step {engine.steps}: {cache.num_free} of {cache.num_blocks} blocks free "
        f"({cache.block_tokens} tokens each); {len(engine.running)} of {engine.max_batch} slots busy, "
        f"{len(engine.waiting)} waiting, "
        f"{sum(r.state == 'finished' for r in engine.requests.values())} finished",
        fontsize=10,
    )
    lines = []
    for s, r in enumerate(engine.slots):
        if r is None:
            lines.append(f"slot {s}: idle")
        else:
            lines.append(
                f"slot {s}: request {r.id}, {r.n_new}/{r.max_new_tokens} new tokens, "
                f"blocks {cache.tables[r.id]}"
            )
    waiting = ", ".join(str(r.id) for r in engine.waiting) or "none"
    lines.append(f"waiting requests: {waiting}")  # their ids
    fig.text(0.03, 0.5, "\n".join(lines), family="monospace", fontsize=8, va="top")
    plt.close(fig)
    return fig
