"""Every notebook is committed executed, in order, clean, and built the book's way.

These checks read the committed files only (no execution); ``pytest --nbval`` re-runs them.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))
ALL = NOTEBOOKS + SOLUTIONS

# things that must never appear in a committed output
LEAKS = [
    (re.compile(r"/(root|home|work|tmp|Users)/"), "a machine path"),
    (re.compile(r"site-packages"), "a machine path"),
    (re.compile(r"[A-Z]:\\\\"), "a Windows path"),
    (re.compile(r" at 0x[0-9a-fA-F]+"), "a memory address"),
]


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def output_texts(cell: dict) -> list[str]:
    texts = []
    for out in cell.get("outputs", []):
        if "text" in out:
            texts.append("".join(out["text"]))
        for mime, value in out.get("data", {}).items():
            if mime.startswith("text/"):
                texts.append("".join(value) if isinstance(value, list) else value)
    return texts


def test_there_are_notebooks():
    assert (ROOT / "notebooks" / "00_the_pipeline.ipynb") in NOTEBOOKS


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_executed_top_to_bottom_without_errors(path):
    nb = load(path)
    counts = [c["execution_count"] for c in code_cells(nb) if source(c).strip()]
    assert counts == list(range(1, len(counts) + 1)), "re-run with `make notebooks`"
    for cell in code_cells(nb):
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"error output in {path.name}"
            assert out.get("name") != "stderr", f"stderr output in {path.name}: {out.get('text')}"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_no_machine_paths_or_addresses_in_outputs(path):
    for cell in code_cells(load(path)):
        for text in output_texts(cell):
            for pattern, what in LEAKS:
                assert not pattern.search(text), f"{what} in an output of {path.name}: {text[:200]}"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_starts_with_title_and_setup(path):
    nb = load(path)
    first_md = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
    assert source(first_md).lstrip().startswith("# "), "the first markdown cell is the title"
    first_code = source(code_cells(nb)[0])
    assert "setup()" in first_code, "the first code cell calls nexttoken.notebook.setup()"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    from nexttoken.execute import stable_widget_state  # saved: stable ids, shown widgets only

    again = stable_widget_state(nbformat.from_dict(copy.deepcopy(nb)), path.name)
    assert again == nb, "widget state as a run left it (random ids?): use `make notebooks`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_structure(path):
    nb = load(path)
    codes = [source(c) for c in code_cells(nb)]
    assert "pipeline_figure(" in codes[1], "2nd code cell shows the pipeline with the stage"
    headings = "\n".join(source(c) for c in nb["cells"] if c["cell_type"] == "markdown")
    for heading in ("Summary", "Exercises"):
        assert re.search(rf"^#+ .*{heading}", headings, re.M), f"{path.name} lacks '{heading}'"
    solution = ROOT / "notebooks" / "solutions" / f"{path.stem}_solutions.ipynb"
    assert solution.exists(), f"{path.name} has no solutions notebook"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_ignored_outputs_are_only_timings_or_versions(path):
    for cell in code_cells(load(path)):
        src = source(cell)
        if "NBVAL_IGNORE_OUTPUT" in src:
            assert re.search(r"perf_counter|timeit|time\(|__version__|version", src), (
                f"{path.name}: NBVAL_IGNORE_OUTPUT on a cell that is not a timing: {src[:120]}"
            )


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_no_trailing_semicolon_to_hide_output(path):
    for cell in code_cells(load(path)):
        lines = [ln for ln in source(cell).rstrip().splitlines() if ln.strip()]
        if lines:
            assert not lines[-1].rstrip().endswith(";"), "nbval ignores ';' - write `_ = ...`"
