"""The roofline figure (notebook 10, section 1; notebooks 11 and 12 draw their operations on it)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..roofline import machine_roof

__all__ = ["roofline_figure", "KIND_STYLE"]

#: marker and colour of each kind of operation (a point without ``kind`` is drawn as "other")
KIND_STYLE = {
    "decode": ("o", "tab:blue", "decoding step, fp32 (B rows)"),
    "prefill": ("s", "tab:green", "prefill (many tokens at once)"),
    "attention": ("^", "tab:red", "attention over the KV cache"),
    "int8": ("D", "tab:purple", "int8 weights (1 byte each)"),
    "other": ("X", "tab:gray", "other"),
}


def _short(label: str) -> str:
    """'decode step, B = 16' -> 'B = 16'; other labels unchanged."""
    return label.split(", ")[-1] if label.startswith("decode step, B") else label


def roofline_figure(roofline: dict, points: Sequence[dict], title: str | None = None) -> Figure:
    """The roof ``min(peak, bandwidth x intensity)`` (log-log) of one thread (solid) and of all
    threads (dashed), the machine balance, and measured operations as points.

    ``roofline``: ``benchmarks/results_roofline.json`` (``load_results("roofline")``).
    ``points``: dicts ``{"label", "intensity" (FLOP/byte), "gflops" (GFLOP/s)}``, optionally
    ``"kind"`` (a key of :data:`KIND_STYLE`) for the marker. Each point gets a dotted line up to
    its roof: the gap between what the operation reached and what the machine allows."""
    one, every = machine_roof(roofline, 1), machine_roof(roofline, "all")
    xs = [p["intensity"] for p in points] or [1.0]
    ys = [p["gflops"] for p in points] or [1.0]
    lo = min(0.04, 0.1 * min(xs))
    hi = max(4 * one["balance"], 5 * max(xs))
    x = np.logspace(np.log10(lo), np.log10(hi), 400)
    fig, ax = plt.subplots(figsize=(9, 5.2))
    for r, ls in ((one, "-"), (every, "--")):
        label = "roof, 1 thread: " if r is one else f"roof, up to {r['threads']} threads: "
        label += f"{r['bandwidth_GB_per_s']:.1f} GB/s, {r['peak_GFLOP_per_s']:.0f} GFLOP/s"
        ax.plot(
            x, np.minimum(r["peak_GFLOP_per_s"], r["bandwidth_GB_per_s"] * x), ls, color="k",
            lw=1.6 if ls == "-" else 1.0, label=label,
        )  # fmt: skip
    ax.axvline(one["balance"], color="gray", ls=":", lw=1)
    ax.text(
        one["balance"] * 1.08, 0.03 * one["peak_GFLOP_per_s"],
        f"machine balance\n(1 thread): {one['balance']:.1f} FLOP/byte", fontsize=8, color="0.3",
    )  # fmt: skip
    ax.text(one["balance"] / 1.15, 0.012 * one["peak_GFLOP_per_s"], "<- memory-bound", ha="right",
            fontsize=9, color="0.3")  # fmt: skip
    ax.text(one["balance"] * 1.15, 0.012 * one["peak_GFLOP_per_s"], "compute-bound ->", fontsize=9,
            color="0.3")  # fmt: skip
    seen = set()
    decode = [p for p in points if p.get("kind") == "decode" and p["label"].startswith("decode")]
    if len(decode) > 1:
        ax.plot([p["intensity"] for p in decode], [p["gflops"] for p in decode], "-",
                color=KIND_STYLE["decode"][1], lw=0.8, alpha=0.6)  # fmt: skip
    for p in points:
        kind = p.get("kind", "other") if p.get("kind", "other") in KIND_STYLE else "other"
        marker, color, name = KIND_STYLE[kind]
        top = min(one["peak_GFLOP_per_s"], one["bandwidth_GB_per_s"] * p["intensity"])
        ax.plot([p["intensity"]] * 2, [p["gflops"], top], ":", color=color, lw=0.9)
        ax.plot(p["intensity"], p["gflops"], marker, color=color, ms=7,
                label=None if kind in seen else name)  # fmt: skip
        seen.add(kind)
        chain = p in decode  # the decoding curve: labels below right; others left, above or below
        below = chain or kind in ("decode", "other")
        ax.annotate(_short(p["label"]), (p["intensity"], p["gflops"]),
                    xytext=(5 if chain else -7, -11 if below else 4), textcoords="offset points",
                    ha="left" if chain else "right", fontsize=7.5, color=color)  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(0.5 * min(min(ys), one["bandwidth_GB_per_s"] * lo), 2.5 * every["peak_GFLOP_per_s"])
    ax.set_xlabel("arithmetic intensity (FLOP per byte moved)")
    ax.set_ylabel("GFLOP/s")
    m = roofline["machine"]
    ax.set_title(title or f"Roofline of this book's CPU ({m['cpu']}), float32, measured")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    plt.close(fig)
    return fig
