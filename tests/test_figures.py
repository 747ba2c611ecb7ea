"""figures/ holds exactly what `make figures` makes, and it makes them the same way every time."""

from __future__ import annotations

from pathlib import Path

from nexttoken.figures import FIGURES, make_figures

ROOT = Path(__file__).resolve().parents[1]


def test_every_registered_figure_is_committed():
    committed = {p.name for p in (ROOT / "figures").glob("*.png")}
    assert set(FIGURES) <= committed, "run `make figures` and commit figures/"
    assert committed <= set(FIGURES), "a PNG in figures/ that no code makes"


def test_committed_figures_are_what_the_code_makes_now(tmp_path):
    """Pixels, not bytes: PNG compression may differ between zlib builds, the image may not."""
    import numpy as np
    from matplotlib.image import imread

    made = make_figures(tmp_path)
    assert {p.name for p in made} == set(FIGURES)
    for path in made:
        committed = ROOT / "figures" / path.name
        same = np.array_equal(imread(path), imread(committed))
        assert same, f"figures/{path.name} is stale: run `make figures` and commit it"
