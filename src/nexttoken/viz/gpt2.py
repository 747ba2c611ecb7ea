"""Figures of notebook 09 (a real GPT-2): parity layer by layer, and decode speed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["parity_figure", "speed_figure"]


def parity_figure(
    diffs: Mapping[str, Sequence[float]],
    *,
    highlight: str | None = None,
    tol: float = 1e-4,
    floor: float = 1e-9,
) -> Figure:
    """Max abs difference from the reference at each depth, one line per variant (log scale).

    ``diffs[name]`` holds ``n_layer + 2`` numbers: the embedding output, each block's output, then
    the logits (the x axis: ``emb``, ``1`` .. ``n_layer``, ``logits``). Values below ``floor``
    (exact zeros included) are drawn at ``floor``. ``highlight`` draws one variant thick and the
    others faint. The dashed line is the tolerance ``tol``.
    """
    if not diffs:
        raise ValueError("diffs must hold at least one variant")
    lengths = {len(v) for v in diffs.values()}
    if len(lengths) != 1 or lengths.pop() < 3:
        raise ValueError("every variant in diffs needs the same length (>= 3: emb, blocks, logits)")
    if highlight is not None and highlight not in diffs:
        raise ValueError(f"highlight must be one of {list(diffs)} or None, got {highlight!r}")
    n = len(next(iter(diffs.values())))
    labels = ["emb"] + [str(i) for i in range(1, n - 1)] + ["logits"]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for name, values in diffs.items():
        ys = [max(float(v), floor) for v in values]
        strong = highlight is None or name == highlight
        ax.plot(
            range(n),
            ys,
            marker="o",
            lw=2.5 if strong else 1.0,
            alpha=1.0 if strong else 0.25,
            label=name,
        )
    ax.axhline(tol, color="k", ls="--", lw=1)
    ax.text(n - 1, tol * 1.6, f"tolerance {tol:g}", ha="right", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(range(n), labels)
    ax.set_xlabel("depth (embedding output, block outputs, logits)")
    ax.set_ylabel("max |book - reference|")
    title = "Where an import goes wrong: difference from the reference, layer by layer"
    ax.set_title(title if highlight is None else f"{title}\n(thick line: {highlight})")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    plt.close(fig)
    return fig


def speed_figure(rates: Mapping[str, float], *, title: str = "") -> Figure:
    """Horizontal bars of tokens/s, one per entry of ``rates`` (name -> tokens/s)."""
    if not rates:
        raise ValueError("rates must hold at least one entry")
    names = list(rates)
    values = [float(rates[k]) for k in names]
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.55 * len(names)))
    bars = ax.barh(range(len(names)), values, color="#4c72b0")
    for bar, v in zip(bars, values, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:.1f}", va="center")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("tokens per second (higher is better)")
    ax.set_xlim(0, max(values) * 1.18)
    ax.set_title(title or "Greedy decoding, GPT-2 small size, batch 1, CPU")
    fig.tight_layout()
    plt.close(fig)
    return fig
