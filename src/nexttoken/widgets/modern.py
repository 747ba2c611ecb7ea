"""Widget for notebook 14: RoPE's angles, one dial per feature pair, by position and base."""

from __future__ import annotations

import ipywidgets as widgets

from ..viz.modern import rope_clock_figure
from . import figure_widget

__all__ = ["rope_widget", "ROPE_BASES"]

#: The bases offered: Llama 2's, Llama 3's, and a small one whose slow pairs still turn visibly.
ROPE_BASES = ("10000", "500000", "100")


def rope_widget(d_head: int = 16, position: int = 10, max_position: int = 300) -> widgets.VBox:
    """A position slider and a base dropdown above :func:`nexttoken.viz.modern.rope_clock_figure`:
    how far each pair of a ``d_head``-wide head has turned at that position.

    Moving the position one step turns the first pair by one radian and the last one barely; a
    larger base slows the slow pairs down further (longer contexts before their angles repeat).
    CSS classes: ``nt-widget nt-rope``, ``nt-rope-position`` (slider), ``nt-rope-theta``
    (dropdown), ``nt-rope-figure``.
    """
    slider = widgets.IntSlider(
        value=position, min=0, max=max_position, step=1, description="position"
    )
    base = widgets.Dropdown(options=list(ROPE_BASES), value=ROPE_BASES[0], description="base")

    def figure(position: int, theta: str):
        return rope_clock_figure(position, d_head, float(theta))

    return figure_widget(figure, {"position": slider, "theta": base}, "nt-rope")
