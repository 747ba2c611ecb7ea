"""Figures for notebook 02 (tokens to vectors): a vector as an image, neighbours, a 2-D projection.

Also the two small computations those figures need: cosine nearest neighbours in an embedding
table, and a deterministic 2-D PCA projection.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

__all__ = [
    "cosine_neighbours",
    "pca_2d",
    "vector_image",
    "token_vector_figure",
    "projection_figure",
]


def cosine_neighbours(table: torch.Tensor, index: int, k: int = 8) -> list[tuple[int, float]]:
    """The ``k`` rows of ``table`` ``(V, d)`` most cosine-similar to row ``index`` (itself excluded),
    as ``(row, similarity)`` pairs, most similar first."""
    if not isinstance(table, torch.Tensor) or table.dim() != 2:
        raise ValueError("table must be a 2-D tensor (V, d)")
    V = table.size(0)
    if not 0 <= index < V:
        raise ValueError(f"index must be in [0, {V - 1}], got {index}")
    if not 1 <= k < V:
        raise ValueError(f"k must be in [1, {V - 1}], got {k}")
    t = torch.nn.functional.normalize(table.detach().float(), dim=1)
    sims = t @ t[index]
    sims[index] = -float("inf")
    vals, rows = sims.topk(k)
    return [(int(r), float(v)) for r, v in zip(rows, vals, strict=True)]


def pca_2d(x: torch.Tensor) -> torch.Tensor:
    """Project the rows of ``x`` ``(n, d)`` on their first two principal components -> ``(n, 2)``.

    Uses an SVD of the centred rows. The sign of each component is fixed (its largest-magnitude
    loading is made positive) so the picture is the same on every run and machine.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.size(0) < 2:
        raise ValueError("x must be a 2-D tensor (n, d) with n >= 2")
    xc = x.detach().double() - x.detach().double().mean(0)
    _, _, vh = torch.linalg.svd(xc, full_matrices=False)
    comps = vh[:2]
    signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    return (xc @ (comps * signs).T).float()


def vector_image(
    vec: torch.Tensor | np.ndarray,
    rows: int,
    cols: int,
    *,
    title: str = "",
    row_label: str = "row",
    col_label: str = "column",
) -> Figure:
    """One vector of ``rows * cols`` numbers drawn as a ``rows x cols`` image (row ``r`` holds
    numbers ``r*cols .. r*cols + cols - 1``), on a symmetric colour scale.

    A way to *draw* many numbers, nothing more: the rows are not what attention heads read (every
    head reads the whole LayerNorm-ed vector through its own projections; only q, k and v are cut
    into heads)."""
    v = np.asarray(vec.detach().float() if isinstance(vec, torch.Tensor) else vec, dtype=float)
    if v.ndim != 1 or v.size != rows * cols:
        raise ValueError(f"vec must be 1-D with rows*cols = {rows * cols} numbers, got {v.shape}")
    img = v.reshape(rows, cols)
    lim = float(np.abs(img).max()) or 1.0
    fig, ax = plt.subplots(figsize=(6.2, max(2.2, 4.8 * rows / cols + 0.8)))
    im = ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
    ax.set_xlabel(f"{col_label} ({cols})")
    ax.set_ylabel(f"{row_label} ({rows})")
    fig.colorbar(im, ax=ax, shrink=0.8)
    if title:
        ax.set_title(title, size=10)
    fig.tight_layout()
    plt.close(fig)
    return fig


def token_vector_figure(
    vec: torch.Tensor,
    neighbours: Sequence[tuple[str, float]],
    rows: int,
    cols: int,
    *,
    title: str = "",
) -> Figure:
    """Left: ``vec`` as a ``rows x cols`` image (a way to draw it, see :func:`vector_image`); right:
    its nearest neighbours ``(label, cosine)``."""
    v = vec.detach().float().numpy()
    if v.size != rows * cols:
        raise ValueError(f"vec must hold rows*cols = {rows * cols} numbers, got {v.size}")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4), width_ratios=(1.3, 1))
    lim = float(np.abs(v).max()) or 1.0
    im = ax1.imshow(v.reshape(rows, cols), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax1.set_xlabel(f"column ({cols})")
    ax1.set_ylabel(f"row ({rows}): a drawing, not heads")
    fig.colorbar(im, ax=ax1, shrink=0.8)
    labels = [lab for lab, _ in neighbours][::-1]
    sims = [s for _, s in neighbours][::-1]
    ax2.barh(range(len(sims)), sims, color="#4c78a8")
    ax2.set_yticks(range(len(sims)), labels, family="DejaVu Sans Mono")
    ax2.set_xlim(min(0.0, min(sims, default=0.0)), 1.0)
    ax2.set_xlabel("cosine similarity")
    ax2.set_title("nearest tokens", size=10)
    if title:
        fig.suptitle(title, size=11)
    fig.tight_layout()
    plt.close(fig)
    return fig


def projection_figure(points: torch.Tensor, labels: Sequence[str], *, title: str = "") -> Figure:
    """A scatter of 2-D ``points`` ``(n, 2)`` with a text label next to each point."""
    p = points.detach().float().numpy()
    if p.ndim != 2 or p.shape[1] != 2 or len(labels) != p.shape[0]:
        raise ValueError("points must be (n, 2) with one label per point")
    fig, ax = plt.subplots(figsize=(7, 5.5))
    ax.scatter(p[:, 0], p[:, 1], s=14, color="#4c78a8")
    for (x, y), lab in zip(p, labels, strict=True):
        ax.annotate(lab, (x, y), xytext=(3, 2), textcoords="offset points", size=8)
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    if title:
        ax.set_title(title, size=10)
    fig.tight_layout()
    plt.close(fig)
    return fig
