"""Figures for notebook 03 (self-attention): attention heatmaps and why scores are scaled."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = ["attention_heatmap", "score_scale_figure"]


def attention_heatmap(
    weights: torch.Tensor | np.ndarray,
    labels: Sequence[str],
    *,
    title: str = "",
    highlight: int | None = None,
    annotate: bool | None = None,
) -> Figure:
    """Attention weights ``(N, N)`` as a heatmap: row ``i`` = what token ``i`` looks at (sums to 1).

    Cells above the diagonal (the future, hidden by the causal mask) are drawn hatched grey.
    ``highlight`` outlines one query row. Values are written in the cells when ``annotate`` (by
    default when ``N <= 12``).
    """
    w = np.asarray(weights.detach().float() if isinstance(weights, torch.Tensor) else weights)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"weights must be a square (N, N) matrix, got shape {w.shape}")
    n = w.shape[0]
    if len(labels) != n:
        raise ValueError(f"labels must have one entry per token ({n}), got {len(labels)}")
    if highlight is not None and not 0 <= highlight < n:
        raise ValueError(f"highlight must be a row in [0, {n - 1}] or None, got {highlight}")
    annotate = n <= 12 if annotate is None else annotate
    size = min(9.0, 2.2 + 0.55 * n)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    future = np.triu(np.ones((n, n), dtype=bool), k=1)
    shown = np.ma.masked_array(w, mask=future)
    im = ax.imshow(shown, cmap="viridis", vmin=0.0, vmax=1.0)
    for i, j in zip(*np.nonzero(future), strict=True):
        ax.add_patch(
            Rectangle(
                (j - 0.5, i - 0.5), 1, 1, facecolor="#dddddd", hatch="///", edgecolor="#aaa", lw=0
            )
        )
    if annotate:
        for i in range(n):
            for j in range(i + 1):
                ax.text(
                    j,
                    i,
                    f"{w[i, j]:.2f}",
                    ha="center",
                    va="center",
                    size=7,
                    color="white" if w[i, j] < 0.6 else "black",
                )
    if highlight is not None:
        ax.add_patch(
            Rectangle((-0.5, highlight - 0.5), n, 1, fill=False, edgecolor="#e4572e", lw=2.5)
        )
    ax.set_xticks(range(n), labels, rotation=60, ha="right", family="DejaVu Sans Mono", size=8)
    ax.set_yticks(range(n), labels, family="DejaVu Sans Mono", size=8)
    ax.set_xlabel("key: the token looked at")
    ax.set_ylabel("query: the token looking")
    fig.colorbar(im, ax=ax, shrink=0.75, label="attention weight")
    ax.set_title(title or "attention weights (grey: future, masked)", size=10)
    fig.tight_layout()
    plt.close(fig)
    return fig


def score_scale_figure(
    d_heads: Sequence[int], std_raw: Sequence[float], std_scaled: Sequence[float]
) -> Figure:
    """Standard deviation of ``q . k`` against ``d_head``, unscaled and divided by ``sqrt(d_head)``."""
    if not len(d_heads) == len(std_raw) == len(std_scaled):
        raise ValueError("d_heads, std_raw and std_scaled must have the same length")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(d_heads, std_raw, "o-", label="q · k")
    ax.plot(d_heads, std_scaled, "s-", label="q · k / sqrt(d_head)")
    ax.plot(
        d_heads, np.sqrt(np.asarray(d_heads, dtype=float)), ":", color="#888", label="sqrt(d_head)"
    )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("d_head")
    ax.set_ylabel("standard deviation of the score")
    ax.legend(fontsize=8)
    ax.set_title("Scores of random unit-variance q and k", size=10)
    fig.tight_layout()
    plt.close(fig)
    return fig
