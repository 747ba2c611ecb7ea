"""Figures for notebook 08: the corpus, loss curves, and the loss of every token.

Every function takes data and returns a closed matplotlib ``Figure``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from .logits import visible_token

__all__ = ["corpus_figure", "loss_curve_figure", "token_loss_figure"]


def corpus_figure(rows: Sequence[dict], held_out: str, key: str = "tokens") -> Figure:
    """Horizontal bars: ``row[key]`` per play (rows from ``nexttoken.data.corpus_stats``), the
    held-out play in orange, the training plays in blue."""
    if not rows or key not in rows[0]:
        raise ValueError(f"rows must be non-empty dicts holding {key!r}")
    rows = sorted(rows, key=lambda r: r[key])
    fig, ax = plt.subplots(figsize=(7, 0.19 * len(rows) + 1.2))
    colors = ["tab:orange" if r["title"] == held_out else "tab:blue" for r in rows]
    ax.barh(range(len(rows)), [r[key] for r in rows], color=colors)
    ax.set_yticks(range(len(rows)), [r["title"] for r in rows], fontsize=7)
    ax.set_xlabel(f"{key} per play")
    total = sum(r[key] for r in rows if r["title"] != held_out)
    ax.set_title(
        f"The corpus: {len(rows) - 1} training plays ({total:,} {key}), held out in orange"
    )
    ax.margins(y=0.01)
    fig.tight_layout()
    plt.close(fig)
    return fig


def loss_curve_figure(
    log: dict, *, title: str = "", baseline: float | None = None, smooth: int = 20
) -> Figure:
    """Training loss per step (light, and its running mean over ``smooth`` steps) and held-out loss
    at each evaluation (dots), in nats per token; ``baseline`` draws a dashed line (e.g. ``log V``).

    ``log`` is what :func:`nexttoken.train.train_model` returns (``losses``, ``evals``)."""
    losses = list(log.get("losses", []))
    if not losses:
        raise ValueError("log holds no losses")
    fig, ax = plt.subplots(figsize=(7, 3.4))
    steps = range(1, len(losses) + 1)
    ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.8)
    k = max(1, min(smooth, len(losses)))
    t = torch.tensor(losses)
    run = torch.nn.functional.avg_pool1d(t[None, None], k, stride=1)[0, 0].tolist()
    ax.plot(range(k, len(losses) + 1), run, color="tab:blue", label=f"training (mean of {k} steps)")
    ev = log.get("evals", [])
    if ev:
        ax.plot(
            [r["step"] for r in ev],
            [r["held_loss"] for r in ev],
            "o-",
            color="tab:orange",
            label="held-out",
        )
    if baseline is not None:
        ax.axhline(baseline, color="gray", linestyle="--", linewidth=0.8)
        ax.annotate(
            f"uniform guess, ln V = {baseline:.2f}",
            (len(losses) / 2, baseline),
            ha="center",
            va="bottom",
            fontsize=8,
            color="gray",
        )
        ax.set_ylim(top=max(ax.get_ylim()[1], baseline + 0.4))
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.legend(loc="center right", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    plt.close(fig)
    return fig


def token_loss_figure(
    pieces: Sequence[str], losses: torch.Tensor | Sequence[float], *, title: str = ""
) -> Figure:
    """One bar per predicted token: its loss ``-log p`` in nats (the token's text under it).

    ``pieces[i]`` is the text of the token predicted with loss ``losses[i]``; the title gives the
    mean loss and its perplexity."""
    vals = [float(v) for v in (losses.tolist() if isinstance(losses, torch.Tensor) else losses)]
    if len(pieces) != len(vals) or not vals:
        raise ValueError(f"pieces ({len(pieces)}) and losses ({len(vals)}) must match, non-empty")
    fig, ax = plt.subplots(figsize=(max(6.0, 0.32 * len(vals) + 1), 3.2))
    cmap = plt.get_cmap("viridis")
    ax.bar(range(len(vals)), vals, color=[cmap(min(v / 10, 1.0)) for v in vals])
    ax.set_xticks(
        range(len(vals)), [visible_token(p) for p in pieces], rotation=60, ha="right", fontsize=8
    )
    ax.set_ylabel("-log p (nats)")
    mean = sum(vals) / len(vals)
    head = f"{title}: " if title else ""
    ax.set_title(f"{head}mean {mean:.2f} nats/token, perplexity {math.exp(mean):.1f}", fontsize=10)
    ax.set_ylim(0, max(10.0, max(vals) * 1.05))
    fig.tight_layout()
    plt.close(fig)
    return fig
