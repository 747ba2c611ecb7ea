"""Figures for notebook 04 (the decoder block): activations, a token across layers, model sizes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..configs import get_config
from ..sizes import BYTES_PER_PARAM, format_bytes, memory_bytes, parameter_breakdown

__all__ = ["activation_figure", "layer_trajectory_figure", "parameter_breakdown_figure"]


def activation_figure(x: torch.Tensor, curves: Mapping[str, torch.Tensor]) -> Figure:
    """Plot each activation ``curves[name]`` (same shape as ``x``) against ``x``."""
    if not curves:
        raise ValueError("curves must not be empty")
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name, y in curves.items():
        if y.shape != x.shape:
            raise ValueError(f"curve {name!r} has shape {tuple(y.shape)}, x has {tuple(x.shape)}")
        ax.plot(x.numpy(), y.detach().numpy(), label=name, lw=2)
    ax.axhline(0, color="#999", lw=0.8)
    ax.axvline(0, color="#999", lw=0.8)
    ax.set_xlabel("input")
    ax.set_ylabel("output")
    ax.legend()
    ax.set_title("The non-linearity of the MLP", size=10)
    fig.tight_layout()
    plt.close(fig)
    return fig


def layer_trajectory_figure(
    norms: Sequence[float], cosines: Sequence[float], *, title: str = ""
) -> Figure:
    """One token's vector through the stack: its norm and its cosine similarity to the last layer,
    for the embedding (layer 0) and after each block (layers 1..L)."""
    if len(norms) != len(cosines):
        raise ValueError("norms and cosines must have the same length")
    layers = np.arange(len(norms))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
    a1.plot(layers, norms, "o-")
    a1.set_xlabel("layer (0 = embedding + position)")
    a1.set_ylabel("norm of the vector")
    a2.plot(layers, cosines, "o-", color="#e45756")
    a2.set_ylim(min(0.0, min(cosines)) - 0.05, 1.05)
    a2.set_xlabel("layer (0 = embedding + position)")
    a2.set_ylabel("cosine similarity to the last layer")
    for a in (a1, a2):
        a.set_xticks(layers)
    if title:
        fig.suptitle(title, size=11)
    fig.tight_layout()
    plt.close(fig)
    return fig


def _percent(share: float) -> str:
    pct = 100 * share
    return f"{pct:.1f}%" if pct >= 0.1 else f"{pct:.3f}%"


def parameter_breakdown_figure(name: str) -> Figure:
    """Parameters of the configuration ``name`` by group, and the memory its weights take at
    fp32 / fp16 / int8 (both measured on the meta device by :mod:`nexttoken.sizes`)."""
    cfg = get_config(name)
    parts = parameter_breakdown(cfg)
    total = sum(parts.values())
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4), width_ratios=(1.4, 1))
    groups = list(parts)
    vals = [parts[g] for g in groups]
    bars = a1.barh(groups[::-1], vals[::-1], color=["#72b7b2", "#f58518", "#e45756", "#4c78a8"])
    for bar, v in zip(bars, vals[::-1], strict=True):
        a1.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {v:,} ({_percent(v / total)})",
            va="center",
            size=8,
        )
    a1.set_xlim(0, max(vals) * 1.7)
    a1.set_xlabel("parameters")
    a1.set_title(f"{name}: {total:,} parameters", size=10)
    dtypes = list(BYTES_PER_PARAM)
    mem = [memory_bytes(total, d) for d in dtypes]
    bars = a2.bar(dtypes, [m / 1e9 for m in mem], color="#bab0ac")
    for bar, m in zip(bars, mem, strict=True):
        a2.text(
            bar.get_x() + bar.get_width() / 2,
            bar.get_height(),
            format_bytes(m),
            ha="center",
            va="bottom",
            size=8,
        )
    a2.set_ylim(0, mem[0] / 1e9 * 1.2)
    a2.set_ylabel("GB (10^9 bytes) for the weights")
    a2.set_title(f"d = {cfg.n_embd:,}, {cfg.n_layer} layers, {cfg.n_head} heads", size=10)
    fig.tight_layout()
    plt.close(fig)
    return fig
