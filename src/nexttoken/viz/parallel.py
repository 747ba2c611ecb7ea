"""Figures for notebook 12: one block cut across devices, and the pipeline's timeline."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Rectangle

__all__ = ["block_split_figure", "timeline_figure", "measured_bubble", "times_figure"]

_DEVICE_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple")


def _box(ax, x, y, w, h, text, color="white", edge="0.3", fontsize=8):
    ax.add_patch(
        FancyBboxPatch(
            (x, y), w, h, boxstyle="round,pad=0.02", fc=color, ec=edge, lw=1.0, alpha=0.9
        )
    )
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize)


def _matrix(ax, x, y, w, h, T, axis, label, sub, parts=("",)):
    """A weight matrix ``(d_in, d_out)`` drawn as ``x @ W``: cut along ``axis`` ('cols' or 'rows').

    ``parts``: column blocks that are each cut (Q, K, V side by side in ``W_QKV``).
    """
    pw = w / len(parts)
    for k, part in enumerate(parts):
        for t in range(T):
            color = _DEVICE_COLORS[t % len(_DEVICE_COLORS)]
            if axis == "cols":
                xy, size = (x + k * pw + t * pw / T, y), (pw / T, h)
            else:
                xy, size = (x, y + h - (t + 1) * h / T), (w, h / T)
            ax.add_patch(Rectangle(xy, *size, fc=color, ec="k", lw=0.6, alpha=0.55))
        if part:
            ax.add_patch(Rectangle((x + k * pw, y), pw, h, fc="none", ec="k", lw=1.6))
            ax.text(x + (k + 0.5) * pw, y + h / 2, part, ha="center", va="center", fontsize=9)
    ax.text(x + w / 2, y + h + 0.08, label, ha="center", va="bottom", fontsize=9, weight="bold")
    ax.text(x + w / 2, y - 0.08, sub, ha="center", va="top", fontsize=7.5)


def block_split_figure(T: int = 2) -> Figure:
    """One decoder block on ``T`` devices: which matrix is cut along which axis, where the all-reduces sit.

    Top: the four weight matrices, written as ``x @ W`` (``d_in`` rows, ``d_out`` columns; PyTorch's
    ``nn.Linear`` stores the transpose), coloured by the device that holds each part. Bottom: the
    forward pass of each device, left to right; the two grey bars are the only communication.
    """
    if isinstance(T, bool) or not isinstance(T, int) or not 1 <= T <= 4:
        raise ValueError(f"T must be an int in [1, 4] (devices drawn), got {T!r}")
    lane_h, gap = 0.55, 0.25
    lanes = T * (lane_h + gap)
    H = lanes + 2.6
    fig = plt.figure(figsize=(12, H))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 12)
    ax.set_ylim(0, H)
    ax.set_axis_off()
    top = lanes + 0.75
    _matrix(
        ax,
        0.4,
        top,
        3.3,
        0.9,
        T,
        "cols",
        "W_QKV  (d x 3d)",
        "cut by columns: each device the Q, K, V columns of its heads",
        ("Q", "K", "V"),
    )
    _matrix(
        ax, 4.3, top, 0.9, 0.9, T, "rows", "W_O  (d x d)", "cut by rows: the rows its heads feed"
    )
    _matrix(ax, 6.4, top, 3.2, 0.9, T, "cols", "W_fc  (d x 4d)", "cut by columns")
    _matrix(ax, 10.3, top, 0.9, 0.9, T, "rows", "W_proj  (4d x d)", "cut by rows")
    steps = [
        ("LN1", 0.6),
        ("x W_QKV[:, t]\nits heads", 1.25),
        ("attention\nits heads", 1.05),
        ("y W_O[t, :]\npartial sum", 1.2),
        (None, 0.5),
        ("+ b, + x", 0.75),
        ("LN2", 0.6),
        ("x W_fc[:, t]", 1.1),
        ("GELU", 0.7),
        ("h W_proj[t, :]\npartial sum", 1.35),
        (None, 0.5),
        ("+ b, + x", 0.75),
    ]
    x0 = 0.35
    for t in range(T):
        y = 0.2 + (T - 1 - t) * (lane_h + gap)
        color = _DEVICE_COLORS[t % len(_DEVICE_COLORS)]
        ax.text(
            0.15,
            y + lane_h / 2,
            f"device {t}",
            rotation=90,
            ha="center",
            va="center",
            fontsize=8,
            color=color,
        )
        x = x0
        for text, w in steps:
            if text is not None:
                fc = color if "W_" in text else "white"
                _box(ax, x, y, w - 0.1, lane_h, text, color=fc, fontsize=7.5)
            x += w
    x = x0
    for text, w in steps:
        if text is None:
            y_lo, y_hi = 0.12, lanes + 0.05
            ax.add_patch(Rectangle((x + 0.08, y_lo), w - 0.26, y_hi - y_lo, fc="0.55", ec="k"))
            ax.text(
                x + w / 2 - 0.05,
                y_hi + 0.03,
                "all-reduce",
                ha="center",
                va="bottom",
                fontsize=7.5,
                weight="bold",
            )
        x += w
    ax.text(
        6.0,
        H - 0.08,
        f"one block on {T} devices: two all-reduces of (B, N, d), none inside attention or the MLP",
        ha="center",
        va="top",
        fontsize=10,
        weight="bold",
    )
    plt.close(fig)  # returned, not also drawn by the inline backend (it would show twice)
    return fig


def measured_bubble(timeline: Sequence[Sequence[float]]) -> float:
    """Idle fraction of the stages over the run: ``1 - busy / (stages x span)``.

    ``timeline``: rows ``(stage, micro_batch, t_start, t_stop)`` (one per tensor-parallel rank is
    fine: rows of one stage are merged by taking, per micro-batch, the earliest start and latest
    stop).
    """
    spans: dict[tuple[int, int], list[float]] = {}
    for s, j, t0, t1 in timeline:
        key = (int(s), int(j))
        lo, hi = spans.get(key, [t0, t1])
        spans[key] = [min(lo, t0), max(hi, t1)]
    if not spans:
        raise ValueError("the timeline is empty")
    stages = {s for s, _ in spans}
    start = min(v[0] for v in spans.values())
    stop = max(v[1] for v in spans.values())
    busy = sum(v[1] - v[0] for v in spans.values())
    return 1.0 - busy / (len(stages) * (stop - start))


def timeline_figure(timeline: Sequence[Sequence[float]], title: str = "") -> Figure:
    """The pipeline's measured timeline: one row per stage, one bar per micro-batch (``ms``).

    The white space before and after each row's bars is the bubble; the title compares its measured
    share with GPipe's ``(p - 1) / (m + p - 1)``.
    """
    from ..parallel.pipeline import bubble

    rows = [(int(s), int(j), float(t0), float(t1)) for s, j, t0, t1 in timeline]
    if not rows:
        raise ValueError("the timeline is empty")
    p = len({s for s, *_ in rows})
    m = len({j for _, j, *_ in rows})
    fig, ax = plt.subplots(figsize=(9, 0.7 + 0.55 * p))
    cmap = plt.get_cmap("tab10")
    for s, j, t0, t1 in rows:
        ax.barh(s, (t1 - t0) * 1e3, left=t0 * 1e3, color=cmap(j % 10), ec="k", lw=0.5, height=0.6)
        ax.text((t0 + t1) / 2 * 1e3, s, str(j), ha="center", va="center", fontsize=8)
    ax.set_yticks(range(p), [f"stage {s}" for s in range(p)])
    ax.invert_yaxis()
    ax.set_xlabel("time (ms); each bar is one micro-batch's blocks on that stage")
    measured = measured_bubble(rows)
    ax.set_title(
        (title + "\n" if title else "")
        + f"p = {p} stages, m = {m} micro-batches: idle {measured:.0%} measured, "
        f"(p - 1) / (m + p - 1) = {bubble(p, m):.0%}",
        fontsize=10,
    )
    fig.tight_layout()
    plt.close(fig)  # returned, not also drawn by the inline backend
    return fig


def times_figure(labels: Sequence[str], seconds: Sequence[float], title: str = "") -> Figure:
    """Wall time of one forward pass per configuration (ms), as bars."""
    fig, ax = plt.subplots(figsize=(7, 2.8))
    ms = [s * 1e3 for s in seconds]
    ax.barh(range(len(ms)), ms, color=["0.5", *["tab:blue"] * (len(ms) - 1)])
    for i, v in enumerate(ms):
        ax.text(v, i, f" {v:.1f} ms", va="center", fontsize=8)
    ax.set_yticks(range(len(ms)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, max(ms) * 1.25)
    ax.set_xlabel("ms per forward pass")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    plt.close(fig)  # returned, not also drawn by the inline backend
    return fig
