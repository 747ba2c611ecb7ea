"""Widget for notebook 05: a temperature slider over the next-token distribution."""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import torch

from ..viz.logits import temperature_figure
from . import figure_widget

__all__ = ["temperature_widget"]


def temperature_widget(
    logits: torch.Tensor, labels: Sequence[str], *, k: int = 10, value: float = 1.0
) -> widgets.VBox:
    """Slide the temperature; redraws :func:`nexttoken.viz.temperature_figure` (bars + entropy).

    ``logits`` ``(V,)``, ``labels`` the V token texts. CSS classes: ``nt-temperature`` (box),
    ``nt-temperature-temperature`` (slider), ``nt-temperature-figure`` (output).
    """
    slider = widgets.FloatSlider(
        value=value, min=0.1, max=3.0, step=0.05, description="temperature", continuous_update=False
    )
    return figure_widget(
        temperature_figure,
        {"temperature": slider},
        "nt-temperature",
        fixed={"logits": logits, "labels": list(labels), "k": k},
    )
