"""The simulated-CPU passes (``make other-cpus``) run a chapter's solutions instead of the chapter
where the solutions hold every cell of the chapter.

For the chapters the Makefile lists in ``COVERED_BY_SOLUTIONS``, the solutions notebook is the
chapter with its exercise cells answered: the same cells, in the same order, with the same
outputs, up to the exercises; after that, every chapter cell is either in the solutions with the
same source and outputs, or an unanswered exercise (a prediction left empty, or a checker that
prints its constant "TODO ... not answered yet" line, and nothing the solutions do not print). So running the solutions on a simulated
CPU checks every output of the chapter that could depend on the CPU, and the chapter need not run
there a second time. The native nbval pass still runs every chapter as a reader runs it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_notebooks_hygiene import code_cells, load, output_texts, source

ROOT = Path(__file__).resolve().parents[1]
STUB = re.compile(r"# your (code|prediction|answer)\b")
ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")  # tests/nbval_sanitize.cfg


def covered_chapters() -> list[str]:
    """The chapter numbers after ``COVERED_BY_SOLUTIONS :=`` in the Makefile."""
    text = (ROOT / "Makefile").read_text()
    m = re.search(r"^COVERED_BY_SOLUTIONS\s*:=\s*(.*)$", text, flags=re.M)
    assert m, "the Makefile defines COVERED_BY_SOLUTIONS"
    return m.group(1).split()


def texts(cell: dict) -> list[str]:
    return [ADDRESS.sub("0xADDRESS", t) for t in output_texts(cell)]


def pair(number: str) -> tuple[Path, Path]:
    (chapter,) = (ROOT / "notebooks").glob(f"{number}_*.ipynb")
    solutions = ROOT / "notebooks" / "solutions" / f"{chapter.stem}_solutions.ipynb"
    return chapter, solutions


def test_the_makefile_lists_real_chapters():
    numbers = covered_chapters()
    assert numbers, "COVERED_BY_SOLUTIONS is empty"
    for number in numbers:
        chapter, solutions = pair(number)
        assert solutions.exists(), f"{chapter.name} has no solutions notebook"


@pytest.mark.parametrize("number", covered_chapters())
def test_solutions_hold_every_cell_of_the_chapter(number):
    chapter, solutions = pair(number)
    mine, theirs = code_cells(load(chapter)), code_cells(load(solutions))
    first_stub = next(i for i, c in enumerate(mine) if STUB.search(source(c)))
    # up to the first exercise: the same cells in the same order, so the same state reaches each
    for i, (a, b) in enumerate(zip(mine[:first_stub], theirs[:first_stub], strict=True)):
        assert source(a) == source(b), f"{chapter.name} code cell {i} differs in the solutions"
        if "NBVAL_IGNORE_OUTPUT" not in source(a):
            assert texts(a) == texts(b), (
                f"{chapter.name} code cell {i}: other outputs in the solutions"
            )
    later = {source(c): c for c in theirs[first_stub:]}
    solution_lines = {line for c in theirs for t in texts(c) for line in t.splitlines()}
    for i, cell in enumerate(mine[first_stub:], start=first_stub):
        if source(cell) in later and texts(cell) == texts(later[source(cell)]):
            continue
        outs = texts(cell)
        assert STUB.search(source(cell)) or "prediction" in source(cell), (
            f"{chapter.name} code cell {i} is neither in the solutions nor an unanswered exercise"
        )
        lines = [line for t in outs for line in t.splitlines()]
        assert not lines or any(line.startswith("TODO ") for line in lines), (
            f"{chapter.name} code cell {i}: an unanswered exercise prints its TODO line, got {outs}"
        )
        for line in lines:  # anything else it prints, the solutions print too (checked there)
            assert line.startswith("TODO ") or line in solution_lines, (
                f"{chapter.name} code cell {i} prints {line!r}, which the solutions do not"
            )
