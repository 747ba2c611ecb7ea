"""figures/ holds exactly what `make figures` makes, and it makes them the same way every time."""

from __future__ import annotations

from pathlib import Path

from nexttoken.figures import FIGURES, make_figures

ROOT = Path(__file__).resolve().parents[1]


def test_every_registered_figure_is_committed():
    committed = {p.name for p in (ROOT / "figures").glob("*.png")}
    assert set(FIGURES) <= committed, "run `make figures` and commit figures/"
    assert committed <= set(FIGURES), "a PNG in figures/ that no code makes"


def test_make_figures_is_deterministic(tmp_path):
    first = {p.name: p.read_bytes() for p in make_figures(tmp_path / "a")}
    assert set(first) == set(FIGURES)
    again = make_figures(tmp_path / "b", only=["pipeline.png"])
    assert again[0].read_bytes() == first["pipeline.png"]
