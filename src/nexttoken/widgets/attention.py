"""Widget for notebook 03: pick a layer and a head, see its attention weights on a sentence."""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure

from ..viz.attention import attention_heatmap
from . import figure_widget

__all__ = ["head_heatmap", "attention_widget"]


def head_heatmap(
    attentions: Sequence[torch.Tensor], labels: Sequence[str], layer: int, head: int
) -> Figure:
    """Heatmap of ``attentions[layer][0, head]`` (``attentions`` as returned by
    ``GPT.run(ids, output_attentions=True).attentions``: per layer ``(B, H, N, N)``)."""
    if not 0 <= layer < len(attentions):
        raise ValueError(f"layer must be in [0, {len(attentions) - 1}], got {layer}")
    H = attentions[layer].size(1)
    if not 0 <= head < H:
        raise ValueError(f"head must be in [0, {H - 1}], got {head}")
    return attention_heatmap(
        attentions[layer][0, head], labels, title=f"layer {layer}, head {head}"
    )


def attention_widget(model, ids: torch.Tensor, labels: Sequence[str]) -> widgets.VBox:
    """Sliders for layer and head over the attention weights of ``model`` on ``ids`` ``(1, N)``.

    CSS classes: ``nt-attention`` (box), ``nt-attention-layer``, ``nt-attention-head``,
    ``nt-attention-figure``.
    """
    with torch.no_grad():
        att = model.run(ids, output_attentions=True).attentions
    cfg = model.config
    layer = widgets.IntSlider(value=0, min=0, max=cfg.n_layer - 1, description="layer")
    head = widgets.IntSlider(value=0, min=0, max=cfg.n_head - 1, description="head")
    return figure_widget(
        head_heatmap,
        {"layer": layer, "head": head},
        "nt-attention",
        fixed={"attentions": att, "labels": list(labels)},
    )
