"""Figures for notebook 14 (today's decoders): RMSNorm, RoPE, SwiGLU, the KV cache of real models,
sliding windows, the memory of online-softmax attention, and two training runs side by side.

Every function takes data and returns a closed matplotlib ``Figure``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

__all__ = [
    "norm_figure",
    "rope_clock_figure",
    "relative_scores_figure",
    "activation_figure",
    "kv_sizes_figure",
    "window_figure",
    "online_memory_figure",
    "loss_curves_figure",
]


def _values(x: torch.Tensor | Sequence[float]) -> list[float]:
    return [float(v) for v in (x.flatten().tolist() if isinstance(x, torch.Tensor) else x)]


def norm_figure(
    x: torch.Tensor | Sequence[float],
    layer_norm: torch.Tensor | Sequence[float],
    rms_norm: torch.Tensor | Sequence[float],
) -> Figure:
    """One vector ``(d,)`` as bars, then after LayerNorm (centred, then scaled) and after RMSNorm
    (only scaled): each panel's title gives its mean and root mean square."""
    panels = [("input x", x), ("LayerNorm(x)", layer_norm), ("RMSNorm(x)", rms_norm)]
    vals = [_values(v) for _, v in panels]
    if len({len(v) for v in vals}) != 1 or not vals[0]:
        raise ValueError("x, layer_norm and rms_norm must be non-empty vectors of one length")
    fig, axes = plt.subplots(1, 3, figsize=(9, 2.6), sharey=True)
    for ax, (name, _), v in zip(axes, panels, vals, strict=True):
        mean = sum(v) / len(v)
        rms = math.sqrt(sum(t * t for t in v) / len(v))
        ax.bar(range(len(v)), v, color=["tab:blue" if t >= 0 else "tab:red" for t in v])
        ax.axhline(mean, color="black", linewidth=0.8, linestyle="--")
        ax.set_title(f"{name}\nmean {mean:+.2f}, rms {rms:.2f}", fontsize=9)
        ax.set_xticks([])
    axes[0].set_ylabel("value of each feature")
    fig.tight_layout()
    plt.close(fig)
    return fig


def rope_clock_figure(position: int, d_head: int = 16, theta: float = 10000.0) -> Figure:
    """RoPE at one position: one dial per feature pair of a ``d_head``-wide head, its hand turned
    by ``position x theta^(-2i / d_head)`` radians. The first pairs spin fast, the last barely move:
    together they tell positions apart like the hands of a clock."""
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise ValueError(f"position must be an int >= 0, got {position!r}")
    if isinstance(d_head, bool) or not isinstance(d_head, int) or d_head < 2 or d_head % 2:
        raise ValueError(f"d_head must be an even int >= 2, got {d_head!r}")
    if not (isinstance(theta, (int, float)) and math.isfinite(theta) and theta > 0):
        raise ValueError(f"theta must be a finite number > 0, got {theta!r}")
    pairs = d_head // 2
    cols = min(pairs, 8)
    rows = -(-pairs // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols + 0.4, 1.35 * rows + 0.7))
    axes = [axes] if pairs == 1 else list(getattr(axes, "flat", axes))
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= pairs:
            continue
        freq = theta ** (-2 * i / d_head)
        angle = position * freq
        ax.add_patch(plt.Circle((0, 0), 1, fill=False, color="gray", linewidth=0.8))
        ax.plot([0, 0], [0, 1], color="lightgray", linewidth=1)  # position 0
        ax.plot([0, math.sin(angle)], [0, math.cos(angle)], color="tab:blue", linewidth=2)
        ax.set_xlim(-1.15, 1.15)
        ax.set_ylim(-1.15, 1.15)
        ax.set_aspect("equal")
        turns = angle / (2 * math.pi)
        ax.set_title(f"pair {i}\n{turns:.3g} turns", fontsize=7)
    fig.suptitle(
        f"RoPE at position {position}: the {pairs} pairs of a {d_head}-wide head (base {theta:g})",
        fontsize=10,
    )
    fig.tight_layout()
    plt.close(fig)
    return fig


def relative_scores_figure(scores: torch.Tensor, *, title: str) -> Figure:
    """A heatmap of ``scores[m, n]`` ``(N, N)``: query position ``m`` down, key position ``n``
    across. With RoPE, the same query and key contents give the same score wherever ``m - n`` is
    the same: constant along every diagonal."""
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2:
        raise ValueError("scores must be a 2-D tensor (N, N)")
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    im = ax.imshow(scores.detach().float().numpy(), cmap="viridis")
    ax.set_xlabel("key position n")
    ax.set_ylabel("query position m")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.85)
    fig.tight_layout()
    plt.close(fig)
    return fig


def activation_figure(x: torch.Tensor, curves: dict[str, torch.Tensor], *, title: str) -> Figure:
    """Activation functions ``curves[name]`` ``(n,)`` against ``x`` ``(n,)`` (GELU, SiLU, ReLU...)."""
    if not curves:
        raise ValueError("curves must hold at least one curve")
    fig, ax = plt.subplots(figsize=(5, 3))
    for name, y in curves.items():
        ax.plot(_values(x), _values(y), label=name)
    ax.axhline(0, color="gray", linewidth=0.6)
    ax.axvline(0, color="gray", linewidth=0.6)
    ax.set_xlabel("input")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig


def kv_sizes_figure(rows: Sequence[dict], *, dtype: str = "bf16") -> Figure:
    """One pair of bars per model (rows of :func:`nexttoken.sizes.kv_cache_table`): the cache of
    one full sequence with as many key/value heads as query heads, and as published (grouped-query
    attention, a sliding window), in GB, on a log scale."""
    if not rows:
        raise ValueError("rows must be non-empty")
    fig, ax = plt.subplots(figsize=(7, 0.55 * len(rows) + 1.3))
    y = range(len(rows))
    mha = [r["mha_bytes_per_token"] * r["context"] / 1e9 for r in rows]
    real = [r["bytes_per_context"] / 1e9 for r in rows]
    ax.barh(
        [i + 0.2 for i in y],
        mha,
        height=0.4,
        color="lightgray",
        label="one K/V head per query head",
    )
    ax.barh([i - 0.2 for i in y], real, height=0.4, color="tab:blue", label="as published")
    for i, (m, r) in enumerate(zip(mha, real, strict=True)):
        ax.annotate(f"{r:.2f} GB", (r, i - 0.2), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=7)  # fmt: skip
        ax.annotate(f"{m:.2f} GB", (m, i + 0.2), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=7, color="gray")  # fmt: skip
    ax.set_yticks(list(y), [r["model"] for r in rows], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"KV cache of one full-context sequence, GB ({dtype})")
    ax.set_title("The KV cache of one sequence, with and without fewer K/V heads", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_xlim(right=max(mha) * 6)
    fig.tight_layout()
    plt.close(fig)
    return fig


def window_figure(n: int, window: int) -> Figure:
    """Left: which keys each query sees, causal (gray) and within a sliding ``window`` (blue).
    Right: tokens held in the KV cache after each step, full cache against a rolling one."""
    if not (isinstance(n, int) and isinstance(window, int) and 1 <= window <= n):
        raise ValueError(f"need ints 1 <= window <= n, got window={window!r}, n={n!r}")
    m = torch.arange(n)[:, None]
    k = torch.arange(n)[None, :]
    causal = (k <= m).float()
    sliding = ((k <= m) & (k > m - window)).float()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2))
    a.imshow((causal * 0.35 + sliding * 0.65).numpy(), cmap="Blues", vmin=0, vmax=1)
    a.set_xlabel("key position")
    a.set_ylabel("query position")
    a.set_title(f"sliding window of {window} (blue) inside causal (pale)", fontsize=9)
    steps = list(range(1, n + 1))
    b.plot(steps, steps, color="gray", label="full cache")
    b.plot(steps, [min(s, window) for s in steps], color="tab:blue", label="rolling cache")
    b.set_xlabel("tokens seen")
    b.set_ylabel("positions held in the cache")
    b.set_title(f"the cache stops growing at {window}", fontsize=9)
    b.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def online_memory_figure(
    ns: Sequence[int], plain: Sequence[float], online: Sequence[float], *, block_size: int
) -> Figure:
    """Largest tensor of one attention call (bytes) against the sequence length ``N``, log-log:
    the full ``(N, N)`` score matrix against one ``(N, block_size)`` block of online softmax."""
    if not (len(ns) == len(plain) == len(online) > 0):
        raise ValueError("ns, plain and online must be non-empty and of one length")
    fig, ax = plt.subplots(figsize=(5.5, 3.3))
    ax.loglog(
        ns, [p / 1e6 for p in plain], "o-", color="tab:red", label="full score matrix (N x N)"
    )
    ax.loglog(ns, [o / 1e6 for o in online], "o-", color="tab:blue",
              label=f"online softmax (N x {block_size} block)")  # fmt: skip
    ax.set_xlabel("sequence length N")
    ax.set_ylabel("largest intermediate tensor (MB)")
    ax.set_title("Attention's memory: N^2 against N", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def loss_curves_figure(logs: dict[str, dict], *, smooth: int = 50, title: str = "") -> Figure:
    """Two (or more) training runs: the training loss per step (running mean over ``smooth``
    steps) as lines and the held-out loss at each evaluation as dots, one colour per run.

    ``logs`` maps a name to a log of :func:`nexttoken.train.train_model` (``losses``, ``evals``)."""
    if not logs:
        raise ValueError("logs must hold at least one training log")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for (name, log), color in zip(logs.items(), colors, strict=False):
        losses = list(log.get("losses", []))
        if not losses:
            raise ValueError(f"the log of {name!r} holds no losses")
        k = max(1, min(smooth, len(losses)))
        run = torch.nn.functional.avg_pool1d(torch.tensor(losses)[None, None], k, stride=1)[0, 0]
        ax.plot(range(k, len(losses) + 1), run.tolist(), color=color,
                label=f"{name}: training (mean of {k} steps)")  # fmt: skip
        ev = log.get("evals", [])
        ax.plot([r["step"] for r in ev], [r["held_loss"] for r in ev], "o--", color=color,
                markersize=4, linewidth=0.8, label=f"{name}: held-out")  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig
