"""Widget for notebook 04: pick a GPT-2 / GPT-3 size, see its parameters and memory."""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets

from ..configs import GPT2_FAMILY, GPT3_FAMILY
from ..viz.decoder import parameter_breakdown_figure
from . import figure_widget

__all__ = ["sizes_widget"]


def sizes_widget(
    names: Sequence[str] = (*GPT2_FAMILY, *GPT3_FAMILY), value: str = "gpt3-175b"
) -> widgets.VBox:
    """A dropdown of configuration names -> :func:`nexttoken.viz.parameter_breakdown_figure`.

    CSS classes: ``nt-sizes`` (box), ``nt-sizes-name``, ``nt-sizes-figure``.
    """
    drop = widgets.Dropdown(options=list(names), value=value, description="model")
    return figure_widget(parameter_breakdown_figure, {"name": drop}, "nt-sizes")
