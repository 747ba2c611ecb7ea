"""Figures for notebook 05: logits, softmax and temperature.

Every function takes data (lists, tensors) and returns a closed matplotlib ``Figure``.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from ..tokenizer import visible_token

__all__ = ["visible_token", "candidate_bars", "entropy", "temperature_figure"]


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats over the last dimension, ``-sum p log p`` (with ``0 log 0 = 0``).

    ``probs`` ``(..., V)`` -> ``(...)``.
    """
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point():
        raise TypeError("probs must be a floating-point torch.Tensor")
    logp = torch.where(probs > 0, probs.log(), torch.zeros_like(probs))
    return -(probs * logp).sum(dim=-1)


def _as_list(values: torch.Tensor | Sequence[float]) -> list[float]:
    if isinstance(values, torch.Tensor):
        return [float(v) for v in values.detach().flatten()]
    return [float(v) for v in values]


def candidate_bars(
    labels: Sequence[str],
    values: torch.Tensor | Sequence[float],
    *,
    title: str = "",
    ylabel: str = "probability",
    color: str = "tab:blue",
    ax: plt.Axes | None = None,
) -> Figure:
    """Bars of the top candidates: ``labels[i]`` (token text, spaces made visible) vs ``values[i]``.

    Draws on ``ax`` when given (and returns its figure), else on a new figure.
    """
    vals = _as_list(values)
    if len(labels) != len(vals):
        raise ValueError(f"labels ({len(labels)}) and values ({len(vals)}) must have equal length")
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(7, 3.2))
    fig = ax.figure
    x = range(len(vals))
    bars = ax.bar(x, vals, color=color)
    ax.set_xticks(list(x), [visible_token(s) for s in labels], rotation=45, ha="right")
    ax.set_ylabel(ylabel)
    ax.axhline(0, color="black", linewidth=0.6)
    if title:
        ax.set_title(title)
    for b, v in zip(bars, vals, strict=True):
        ax.annotate(
            f"{v:.2f}" if abs(v) >= 0.01 or v == 0 else f"{v:.0e}",
            (b.get_x() + b.get_width() / 2, v),
            ha="center",
            va="bottom" if v >= 0 else "top",
            fontsize=7,
        )
    if own:
        fig.tight_layout()
        plt.close(fig)
    return fig


def temperature_figure(
    logits: torch.Tensor,
    labels: Sequence[str],
    temperature: float = 1.0,
    *,
    k: int = 10,
    temperatures: Sequence[float] | None = None,
) -> Figure:
    """Left: the ``k`` most likely tokens' probabilities at ``temperature``. Right: entropy vs T.

    ``logits`` ``(V,)``; ``labels[i]`` is the text of token ``i`` (length ``V``). The right panel
    draws the entropy of ``softmax(logits / T)`` over ``temperatures`` (default 0.1 .. 3), with a
    marker at ``temperature`` and the limits ``0`` (greedy) and ``log V`` (uniform).
    """
    from ..sampling import softmax

    if not isinstance(logits, torch.Tensor) or logits.dim() != 1:
        raise ValueError("logits must be a 1-D tensor (V,)")
    if len(labels) != logits.numel():
        raise ValueError(
            f"labels must have one entry per logit ({logits.numel()}), got {len(labels)}"
        )
    logits = logits.detach().float()
    probs = softmax(logits, temperature)
    top = torch.topk(probs, min(k, probs.numel()))
    temps = [0.1 + 0.05 * i for i in range(59)] if temperatures is None else list(temperatures)
    ents = [float(entropy(softmax(logits, t))) for t in temps]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 2]})
    candidate_bars(
        [labels[int(i)] for i in top.indices],
        top.values,
        title=f"top {len(top.values)} tokens at T = {temperature:.2f}",
        ax=ax1,
    )
    ax1.set_ylim(0, min(1.05, 1.25 * float(top.values[0])))
    ax2.plot(temps, ents, color="tab:purple")
    h = float(entropy(probs))
    ax2.plot([temperature], [h], "o", color="tab:red")
    ax2.annotate(f"H = {h:.2f} nats", (temperature, h), xytext=(6, -12), textcoords="offset points")
    log_v = float(torch.log(torch.tensor(float(logits.numel()))))
    ax2.axhline(log_v, ls="--", color="gray")
    ax2.text(
        temps[-1], log_v * 0.97, "log V (uniform)", ha="right", va="top", fontsize=8, color="gray"
    )
    ax2.set_xlabel("temperature T")
    ax2.set_ylabel("entropy (nats)")
    ax2.set_title("entropy of softmax(logits / T)")
    ax2.set_ylim(0, log_v * 1.08)
    fig.tight_layout()
    plt.close(fig)
    return fig
