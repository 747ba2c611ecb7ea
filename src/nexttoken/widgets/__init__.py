"""Interactive widgets: thin wrappers around the pure plot functions of :mod:`nexttoken.viz`.

Each widget redraws by replacing the outputs of an ``ipywidgets.Output`` with a new ``Figure``
(``out.outputs = (); out.append_display_data(fig)``) instead of ``plt.show()`` or ``print``, so that
nothing leaks into the notebook's own outputs and ``pytest --nbval`` stays strict. Every control and
container gets a stable CSS class (``nt-...``) that a browser test can find.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure

__all__ = ["figure_widget", "show_figure"]


def show_figure(out: widgets.Output, fig: Figure) -> None:
    """Replace what ``out`` shows with ``fig``."""
    out.outputs = ()
    out.append_display_data(fig)


def figure_widget(
    make_fig: Callable[..., Figure],
    controls: dict[str, widgets.ValueWidget],
    css_class: str,
    *,
    fixed: dict[str, Any] | None = None,
) -> widgets.VBox:
    """A box of ``controls`` above a figure ``make_fig(**values, **fixed)`` redrawn on every change.

    ``controls`` maps each keyword of ``make_fig`` to the widget that sets it. The first figure is
    drawn at once, so the widget shows something before it is touched.
    """
    fixed = dict(fixed or {})
    out = widgets.Output()
    out.add_class(f"{css_class}-figure")

    def redraw(_change: object = None) -> None:
        show_figure(out, make_fig(**{k: w.value for k, w in controls.items()}, **fixed))

    for name, w in controls.items():
        w.add_class(f"{css_class}-{name.replace('_', '-')}")
        w.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox(list(controls.values())), out])
    box.add_class(css_class)
    return box
