"""Notebook 12's figures are returned closed: the inline backend must not draw them a second time."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from nexttoken.viz.parallel import block_split_figure, timeline_figure, times_figure

TIMELINE = [[0, 0, 0.0, 0.010], [0, 1, 0.010, 0.020], [1, 0, 0.011, 0.021], [1, 1, 0.021, 0.031]]


@pytest.mark.parametrize(
    "draw",
    [
        lambda: block_split_figure(2),
        lambda: timeline_figure(TIMELINE, "two stages"),
        lambda: times_figure(["one process", "TP=2"], [0.094, 0.138], "CPU time"),
    ],
    ids=["block_split", "timeline", "times"],
)
def test_figures_are_returned_closed(draw):
    plt.close("all")
    fig = draw()
    assert fig.axes  # something was drawn
    assert plt.get_fignums() == []  # and pyplot no longer holds it (shown once, by the return)
