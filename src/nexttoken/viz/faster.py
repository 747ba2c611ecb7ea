"""Figures of notebook 11 (faster tokens): one speculative round, acceptance against ``k``, and
the trade-off of bytes per token, tokens/s and held-out loss.

Each function is pure: it takes numbers (a :class:`~nexttoken.speculative.Round`, rows of
``benchmarks/results_faster.json``) and returns a closed ``Figure``.
"""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from ..speculative import Round

__all__ = [
    "round_figure",
    "acceptance_figure",
    "tradeoff_figure",
    "speculative_tradeoff_row",
    "tradeoff_rows",
    "ROUND_COLORS",
]

#: kept proposal, rejected proposal, never checked (after a rejection), the target's own token
ROUND_COLORS = {
    "kept": "#4c9a2a",
    "rejected": "#c8453c",
    "unchecked": "#b0b0b0",
    "target": "#2b6cb0",
}


def _box(ax, x, y, text, color, w=1.0, h=0.6):
    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02", fc=color, ec="black", lw=0.6
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=9, color="white")


def round_figure(r: Round, decode: Callable[[int], str] | None = None) -> Figure:
    """One round of speculative decoding: the draft's proposals (kept, rejected, never checked),
    the target's argmax at each position, and the token the target adds itself."""
    label = decode or str
    k = len(r.proposed)
    fig, ax = plt.subplots(figsize=(1.3 * (k + 2) + 1, 2.6))
    ax.text(-0.9, 1.0, "draft\nproposes", ha="right", va="center", fontsize=9)
    ax.text(-0.9, 0.0, "target\nchooses", ha="right", va="center", fontsize=9)
    for i, x in enumerate(r.proposed):
        state = "kept" if i < r.accepted else "rejected" if i == r.accepted else "unchecked"
        _box(ax, 1.2 * i, 1.0, repr(label(x))[1:-1][:10], ROUND_COLORS[state])
    for i, t in enumerate(r.target_argmax):
        agrees, used = i < r.accepted, i == r.accepted  # past the first disagreement: unused
        color = ROUND_COLORS["kept" if agrees else "target" if used else "unchecked"]
        _box(ax, 1.2 * i, 0.0, repr(label(t))[1:-1][:10], color)
    what = "bonus token (all kept)" if r.bonus else f"corrects proposal {r.accepted + 1}"
    ax.set_title(
        f"position {r.position}: {r.accepted} of {k} proposals kept, the target adds "
        f"{label(r.corrected)!r} ({what}): {r.accepted + 1} token{'s' * (r.accepted > 0)} for one "
        "target pass",
        fontsize=9,
    )
    ax.set_xlim(-2.2, 1.2 * k + 0.8)
    ax.set_ylim(-0.6, 1.6)
    ax.axis("off")
    plt.close(fig)
    return fig


def acceptance_figure(pairs: dict[str, dict]) -> Figure:
    """For each pair (rows of ``results_faster.json["speculative"]``): the acceptance ``alpha`` and
    tokens per target pass against ``k`` (left), measured and predicted speed-up (right)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4 + 0.25 * len(pairs)))
    for name, rows in pairs.items():
        ks = sorted(int(key[2:]) for key in rows if key.startswith("k="))
        got = [rows[f"k={k}"] for k in ks]
        (line,) = a.plot(
            ks, [g["tokens_per_round"] for g in got], "o-", label=f"{name}: tokens/pass"
        )
        a.plot(ks, [g["alpha"] for g in got], "s--", color=line.get_color(), label=f"{name}: alpha")
        # against plain generate timed interleaved with each k where recorded (same load)
        base = [g.get("plain_tokens_per_s_interleaved", rows["plain_tokens_per_s"]) for g in got]
        b.plot(ks, [g["measured_tokens_per_s"] / p for g, p in zip(got, base, strict=True)], "o-",
               color=line.get_color(), label=f"{name}: measured")  # fmt: skip
        b.plot(ks, [g["predicted_tokens_per_s"] / p for g, p in zip(got, base, strict=True)], "x:",
               color=line.get_color(), label=f"{name}: cost model")  # fmt: skip
    a.set_xlabel("k (draft tokens per round)")
    a.set_ylabel("tokens per target pass / alpha")
    b.axhline(1.0, color="black", lw=0.8)
    b.set_xlabel("k")
    b.set_ylabel("speed-up over plain greedy generate")
    for ax in (a, b):  # below the axes, two columns: never over a line
        ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.17))
    fig.tight_layout()
    plt.close(fig)
    return fig


def speculative_tradeoff_row(target: dict, pair: dict, draft_bytes: int) -> dict:
    """One speculative pair as a row of :func:`tradeoff_figure`, at its best ``k``.

    ``target``: the target's row of ``results_faster.json["weights"][model]["fp32"]``; ``pair``: the
    pair's rows of ``results_faster.json["speculative"]``; ``draft_bytes``: the draft's
    :func:`~nexttoken.quantize.weight_bytes`. A round reads the target's weights once and the
    draft's ``k`` times, and emits ``tokens_per_round`` tokens: that many bytes per token. Its
    tokens/s are the target's times the speed-up measured against plain ``generate`` in the same
    series; its loss is the target's (the output is the target's own).
    """
    k, best = max(
        ((int(key[2:]), r) for key, r in pair.items() if key.startswith("k=")),
        key=lambda kr: kr[1]["speedup_vs_plain"],
    )
    return {
        "k": k,
        "weight_bytes_per_token": (target["weight_bytes_per_token"] + k * draft_bytes)
        / best["tokens_per_round"],
        "tokens_per_s": target["tokens_per_s"] * best["speedup_vs_plain"],
        "held_out_nats_per_token": target.get("held_out_nats_per_token"),
    }


def tradeoff_rows(results: dict, model: str, drafts: dict[str, int]) -> dict[str, dict]:
    """The rows of :func:`tradeoff_figure` for ``model`` (a key of ``results["weights"]``, e.g.
    ``"book"``): its fp32, bf16 and int8 rows, then one row per speculative pair of ``drafts``
    (pair name, e.g. ``"book+draft"`` -> the draft's weight bytes), at the pair's best ``k``."""
    weights = results["weights"][model]
    rows = {name: weights[name] for name in ("fp32", "bf16", "int8")}
    for pair, draft_bytes in drafts.items():
        row = speculative_tradeoff_row(weights["fp32"], results["speculative"][pair], draft_bytes)
        rows[f"speculative {pair}, k={row['k']}"] = row
    return rows


def tradeoff_figure(rows: dict[str, dict], title: str = "the book model") -> Figure:
    """Bytes of weights read per token against tokens/s, each point labelled with its name and
    held-out loss (rows: ``results_faster.json["weights"]["book"]`` and, optionally, speculative
    rows with the same keys, see :func:`tradeoff_rows`). Labels are stacked so they never overlap."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    points = [
        (r["weight_bytes_per_token"] / 1e6, r["tokens_per_s"], name, r) for name, r in rows.items()
    ]
    x_max = max(p[0] for p in points)
    y_max = max(p[1] for p in points)
    gap = 0.075 * y_max  # one label line, in data units
    label_y = float("inf")
    for x, y, name, r in sorted(points, key=lambda p: -p[1]):  # top to bottom
        ax.scatter([x], [y], s=50)
        label_y = min(y, label_y - gap)
        loss = r.get("held_out_nats_per_token")
        ax.annotate(
            f"{name}" + ("" if loss is None else f": {loss:.4f} nats/token"),
            (x, y),
            xytext=(x + 0.04 * x_max, label_y),
            va="center",
            fontsize=8,
            arrowprops=dict(arrowstyle="-", lw=0.5, color="grey") if label_y < y else None,
        )
    ax.set_xlabel("MB of weights read per token")
    ax.set_ylabel("tokens/s (1 thread, CPU time)")
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, 2.0 * x_max)
    ax.set_ylim(0, 1.12 * y_max)
    fig.tight_layout()
    plt.close(fig)
    return fig
