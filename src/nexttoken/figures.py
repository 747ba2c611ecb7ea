"""Regenerate the book's key figures under ``figures/`` (``make figures``).

Every figure in ``figures/`` is made here, by the same pure plot functions the notebooks call.
Each entry of :data:`FIGURES` is a file name and a function returning a ``Figure``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure

from .notebook import setup
from .viz import pipeline_figure

__all__ = ["FIGURES", "make_figures"]

FIGURES: dict[str, Callable[[], Figure]] = {
    "pipeline.png": lambda: pipeline_figure(),
}


def make_figures(outdir: str | Path = "figures") -> list[Path]:
    """Write every figure of :data:`FIGURES` to ``outdir``; returns the paths written."""
    setup()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in FIGURES.items():
        path = outdir / name
        make().savefig(path, dpi=100, metadata={"Software": None})
        written.append(path)
        print(path)
    return written


if __name__ == "__main__":
    make_figures(sys.argv[1] if len(sys.argv) > 1 else "figures")
