"""Interactive widgets: thin wrappers around the pure plot functions of :mod:`nexttoken.viz`.

Each widget redraws by replacing the outputs of an ``ipywidgets.Output`` with a new figure as PNG
(:func:`show_figure`) instead of ``plt.show()`` or ``print``, so that nothing leaks into the
notebook's own outputs and ``pytest --nbval`` stays strict. The PNG carries the figure's titles in
its ``Title`` text chunk, so a browser test can check that the picture names what the controls say.
Every control and container gets a stable CSS class (``nt-...``) that a browser test can find.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure

__all__ = ["figure_title", "figure_output", "figure_widget", "show_figure"]


def figure_title(fig: Figure) -> str:
    """The titles drawn on ``fig`` (its suptitle, then each axes' titles), joined by ``" | "``."""
    texts = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    for ax in fig.axes:
        texts += [ax.get_title(loc) for loc in ("left", "center", "right")]
    return " | ".join(t for t in texts if t)


def figure_output(fig: Figure) -> dict:
    """``fig`` as a notebook ``display_data`` output: a PNG drawn like the inline backend draws it
    (``bbox_inches="tight"`` at the figure's dpi) with :func:`figure_title` in its ``Title``."""
    buf = io.BytesIO()
    fig.savefig(
        buf,
        format="png",
        dpi=fig.dpi,
        bbox_inches="tight",
        facecolor=fig.get_facecolor(),
        edgecolor=fig.get_edgecolor(),
        metadata={"Title": figure_title(fig)},
    )
    return {
        "output_type": "display_data",
        "data": {"image/png": base64.b64encode(buf.getvalue()).decode(), "text/plain": repr(fig)},
        "metadata": {},
    }


def show_figure(out: widgets.Output, fig: Figure) -> None:
    """Replace what ``out`` shows with ``fig`` (see :func:`figure_output`)."""
    out.outputs = (figure_output(fig),)


def figure_widget(
    make_fig: Callable[..., Figure],
    controls: dict[str, widgets.ValueWidget],
    css_class: str,
    *,
    fixed: dict[str, Any] | None = None,
) -> widgets.VBox:
    """A box of ``controls`` above a figure ``make_fig(**values, **fixed)`` redrawn on every change.

    ``controls`` maps each keyword of ``make_fig`` to the widget that sets it. The first figure is
    drawn at once, so the widget shows something before it is touched. CSS classes: ``nt-widget``
    and ``css_class`` (the box), ``<css_class>-<keyword>`` (each control), ``<css_class>-figure``.
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
    box.add_class("nt-widget")
    box.add_class(css_class)
    return box
