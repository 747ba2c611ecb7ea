"""Figures: pure functions that take data and return a matplotlib ``Figure``.

One submodule per stage of the book; everything is re-exported here.
"""

from .pipeline import STAGES, pipeline_figure

__all__ = ["STAGES", "pipeline_figure"]
