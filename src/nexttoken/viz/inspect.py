"""Figures of notebook 13 (why this token? looking inside the model): the logit lens layer by layer,
direct logit attribution as bars, head scores as heatmaps, the phase change of a growing induction
head, an activation-patching heatmap, and how a difference between two models grows.

Each function is pure: it takes numbers (lists, tensors, dicts of floats computed by
:mod:`nexttoken.inspect`) and returns a closed ``Figure``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "layer_labels",
    "lens_figure",
    "attribution_figure",
    "head_scores_figure",
    "phase_change_figure",
    "grown_history_figure",
    "patching_figure",
    "divergence_figure",
    "lens_attribution_figure",
    "POSITIVE",
    "NEGATIVE",
]

POSITIVE, NEGATIVE = "#2b6cb0", "#c8453c"  # pushes the token up / down


def layer_labels(n_layer: int) -> list[str]:
    """The ``n_layer + 1`` points where the logit lens reads the residual stream: the embedding,
    then after each block."""
    if isinstance(n_layer, bool) or not isinstance(n_layer, int) or n_layer < 1:
        raise ValueError(f"n_layer must be an int >= 1, got {n_layer!r}")
    return ["embed", *(f"block {i}" for i in range(n_layer))]


def _matrix(values, what: str) -> np.ndarray:
    a = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=float)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"{what} must be a non-empty 2-D table, got shape {a.shape}")
    return a


def lens_figure(
    ranks: Mapping[str, Sequence[int]],
    probs: Mapping[str, Sequence[float]],
    title: str = "the logit lens",
) -> Figure:
    """The rank (0 = the top token) and the probability of each position's final choice, read
    after the embedding and after every block. ``ranks`` and ``probs`` map a label (the position
    and its token) to ``n_layer + 1`` values each."""
    if not ranks or set(ranks) != set(probs):
        raise ValueError("ranks and probs must be non-empty and have the same labels")
    n = {len(v) for v in ranks.values()} | {len(v) for v in probs.values()}
    if len(n) != 1 or min(n) < 2:
        raise ValueError("every label needs the same number (>= 2) of ranks and probabilities")
    xs = layer_labels(n.pop() - 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label in ranks:
        a.plot(xs, [r + 1 for r in ranks[label]], marker="o", label=label)
        b.plot(xs, list(probs[label]), marker="o", label=label)
    a.set_yscale("log")
    a.invert_yaxis()
    a.set_ylabel("rank of the final choice + 1 (1 = top)")
    b.set_ylabel("probability of the final choice")
    b.set_ylim(0, 1)
    a.set_title("rank, layer by layer", fontsize=10)
    b.set_title("probability, layer by layer", fontsize=10)
    b.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for ax in (a, b):
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    plt.close(fig)
    return fig


def attribution_figure(
    parts: Mapping[str, float], title: str = "direct logit attribution", ax=None
) -> Figure:
    """Horizontal bars, one per part of a logit (the embedding, each head ``L1H3``, each MLP
    ``L2.mlp``, the bias term), in the order given: blue pushes the token up, red down."""
    if not parts:
        raise ValueError("parts must hold at least one (name, value) pair")
    names, values = list(parts), [float(v) for v in parts.values()]
    if not all(math.isfinite(v) for v in values):
        raise ValueError("every part must be a finite number")
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5.5, 0.22 * len(names) + 1.2))
    else:
        fig = ax.figure
    y = np.arange(len(names))
    ax.barh(y, values, color=[POSITIVE if v >= 0 else NEGATIVE for v in values])
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlabel("contribution to the logit")
    ax.set_title(title, fontsize=10)
    if own:
        fig.tight_layout()
        plt.close(fig)
    return fig


def head_scores_figure(
    scores, title: str = "head scores", *, vmax: float = 1.0, ax=None, cmap: str = "Blues"
) -> Figure:
    """A heatmap of one score per head, ``scores`` ``(L, H)``, each cell written out (2 decimals)."""
    a = _matrix(scores, "scores")
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(1.0 * a.shape[1] + 1.8, 0.6 * a.shape[0] + 1.2))
    else:
        fig = ax.figure
    ax.imshow(a, cmap=cmap, vmin=0, vmax=vmax)
    for (i, j), v in np.ndenumerate(a):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                color="white" if v > 0.6 * vmax else "black")  # fmt: skip
    ax.set_xticks(range(a.shape[1]), [f"head {h}" for h in range(a.shape[1])], fontsize=8)
    ax.set_yticks(range(a.shape[0]), [f"layer {i}" for i in range(a.shape[0])], fontsize=8)
    ax.set_title(title, fontsize=10)
    if own:
        fig.tight_layout()
        plt.close(fig)
    return fig


def phase_change_figure(
    steps: Sequence[int],
    losses: Mapping[str, Sequence[float]],
    scores: Mapping[str, Sequence[float]],
    title: str = "an induction head forms",
    mark: int | None = None,
) -> Figure:
    """Training curves side by side: ``losses`` (e.g. on the first and on the repeated half of a
    sequence) and ``scores`` (e.g. the best induction and previous-token head scores), each a
    sequence over ``steps``. ``mark``: a step to draw as a dashed line (the phase change)."""
    steps = list(steps)
    if not steps:
        raise ValueError("steps must not be empty")
    for what, curves in (("losses", losses), ("scores", scores)):
        if not curves:
            raise ValueError(f"{what} must hold at least one curve")
        for name, ys in curves.items():
            if len(ys) != len(steps):
                raise ValueError(f"{what}[{name!r}] has {len(ys)} values for {len(steps)} steps")
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    for name, ys in losses.items():
        a.plot(steps, list(ys), label=name)
    for name, ys in scores.items():
        b.plot(steps, list(ys), label=name)
    a.set_ylabel("loss (nats/token)")
    b.set_ylabel("score")
    b.set_ylim(0, 1)
    a.set_title("loss", fontsize=10)
    b.set_title("head scores", fontsize=10)
    for ax in (a, b):
        ax.set_xlabel("training step")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        if mark is not None:
            ax.axvline(mark, color="gray", ls="--", lw=1)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    plt.close(fig)
    return fig


def grown_history_figure(
    history: Sequence[Mapping],
    title: str = "a 2-layer attention-only model grows an induction head",
) -> Figure:
    """:func:`phase_change_figure` of a :func:`nexttoken.heads.grow_induction_head` history (a list of
    its rows): the loss on the first and on the second copy, the best induction and previous-token
    scores, and the phase change (:func:`nexttoken.heads.phase_change_step`) as a dashed line."""
    from ..heads import phase_change_step

    if not history:
        raise ValueError("history must hold at least one row")
    steps = [row["step"] for row in history]
    losses = {
        "first copy": [row["loss_first"] for row in history],
        "second copy (the repeat)": [row["loss_second"] for row in history],
    }
    scores = {
        "induction (best head)": [row["induction"] for row in history],
        "previous token (best head)": [row["previous"] for row in history],
    }
    return phase_change_figure(steps, losses, scores, title, mark=phase_change_step(history))


def patching_figure(
    values,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str = "activation patching",
) -> Figure:
    """A heatmap ``values`` ``(rows, positions)``: how much of the clean answer each patched
    activation restores (1 = all of it, 0 = none), rows = where in the model, columns = which token."""
    a = _matrix(values, "values")
    if a.shape != (len(row_labels), len(col_labels)):
        raise ValueError(
            f"values has shape {a.shape}, the labels say ({len(row_labels)}, {len(col_labels)})"
        )
    fig, ax = plt.subplots(figsize=(0.75 * a.shape[1] + 2.5, 0.45 * a.shape[0] + 1.5))
    lim = max(1.0, float(np.abs(a).max()))
    im = ax.imshow(a, cmap="RdBu", vmin=-lim, vmax=lim)
    for (i, j), v in np.ndenumerate(a):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                color="white" if abs(v) > 0.6 * lim else "black")  # fmt: skip
    ax.set_xticks(range(a.shape[1]), list(col_labels), rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(a.shape[0]), list(row_labels), fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.04, label="share of the clean answer restored")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig


def divergence_figure(
    sizes: Mapping[str, float], atol: float, title: str = "where two models part"
) -> Figure:
    """The largest difference between two runs at each activation, in the order the forward pass
    computes them (log scale), with ``atol`` as a line and the first activation above it marked."""
    if not sizes:
        raise ValueError("sizes must hold at least one (activation, difference) pair")
    if not (isinstance(atol, (int, float)) and atol > 0):
        raise ValueError(f"atol must be a number > 0, got {atol!r}")
    names, v = list(sizes), np.asarray([float(x) for x in sizes.values()])
    shown = np.where(v > 0, v, np.nan)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.32 * len(names) + 2), 3.6))
    ax.plot(range(len(names)), shown, marker="o", color=POSITIVE)
    ax.axhline(atol, color=NEGATIVE, ls="--", lw=1, label=f"atol = {atol:g}")
    first = next((i for i, x in enumerate(v) if x > atol), None)
    if first is not None:
        ax.plot([first], [v[first]], marker="o", ms=11, mfc="none", mec=NEGATIVE, mew=2,
                label=f"first above: {names[first]}")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("max |difference|")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig


def lens_attribution_figure(
    table: Sequence[Sequence[tuple[str, float]]],
    labels: Sequence[str],
    parts: Mapping[str, float],
    title: str,
) -> Figure:
    """The widget's picture. Left: the logit lens as a table, one row per point in ``labels``
    (embedding, after each block), each row the top tokens there with their probabilities
    (``table[i]`` a list of ``(token, probability)``). Right: :func:`attribution_figure` of
    ``parts``. ``title`` goes on top."""
    if len(table) != len(labels) or not table:
        raise ValueError(f"table has {len(table)} rows for {len(labels)} labels")
    k = max(len(r) for r in table)
    fig, (a, b) = plt.subplots(
        1, 2, figsize=(12, max(3.6, 0.2 * len(parts) + 1.4)), gridspec_kw={"width_ratios": [3, 2]}
    )
    cells = [
        [f"{tok!r}"[:14] + f" {p:.2f}" for tok, p in row] + [""] * (k - len(row)) for row in table
    ]
    a.axis("off")
    t = a.table(
        cellText=cells,
        rowLabels=list(labels),
        colLabels=[f"top {i + 1}" for i in range(k)],
        loc="center",
        cellLoc="left",
    )
    t.auto_set_font_size(False)
    t.set_fontsize(8)
    t.scale(1.0, 1.5)
    a.set_title("the logit lens: top tokens after each layer", fontsize=10)
    attribution_figure(parts, "direct logit attribution of the final choice", ax=b)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    plt.close(fig)
    return fig
