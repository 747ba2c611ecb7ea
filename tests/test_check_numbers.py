"""`python -m nexttoken.notebook check-numbers`: every number in a notebook's prose is printed by the
notebook (at the prose's precision) or cited in its metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nexttoken.notebook import check_numbers, main, output_numbers, prose_numbers

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def shown(prose: str, printed: str, code: str = "") -> list[bool]:
    """For each claim of ``prose``: whether some number of ``printed`` shows it."""
    values = output_numbers(printed)
    return [any(c.matches(v) for v in values) for c in prose_numbers(prose, code)]


def texts(prose: str, code: str = "") -> list[str]:
    return [c.text for c in prose_numbers(prose, code)]


def notebook(tmp_path: Path, markdown: str, printed: str, cited: dict | None = None) -> Path:
    nb = {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": "# Title"},
            {"cell_type": "markdown", "metadata": {}, "source": markdown},
            {
                "cell_type": "code",
                "metadata": {},
                "source": "print(x)",
                "outputs": [{"output_type": "stream", "name": "stdout", "text": printed}],
            },
        ],
        "metadata": {"nexttoken": {"cited_numbers": cited}} if cited else {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    return path


# --- the matcher -----------------------------------------------------------------------------


def test_rounding_to_the_prose_precision():
    assert shown("reaches 17.2 GFLOP/s", "17.21") == [True]
    assert shown("reaches 17.2 GFLOP/s", "speed: 17.2 GFLOP/s") == [True]
    assert shown("reaches 17.2 GFLOP/s", "17.25") == [True]  # either half-rounding
    assert shown("reaches 17.2 GFLOP/s", "17.26") == [False]
    assert shown("reaches 17.2 GFLOP/s", "17.3 17.1 172") == [False]
    assert shown("reaches 17.21 GFLOP/s", "17.2") == [False]  # prose more precise than output
    assert shown("a loss of 0.249", "-0.2494") == [True]  # signs are ignored
    assert shown("about 3,850", "3846.1") == [True]  # an integer's trailing zero: to the ten
    assert shown("about 3,850", "3856") == [False]
    assert shown("about 3,800", "1") == []  # 2 significant digits: not a claim
    assert shown("4096 tokens", "4095") == [False]


def test_thousands_separators_in_prose_and_outputs():
    assert shown("50,257 tokens", "vocab 50257") == [True]
    assert shown("50257 tokens", "vocab 50,257") == [True]
    assert shown("$d = 14{,}336$", "14336") == [True]
    assert shown("50,257 tokens", "50,258") == [False]
    assert texts("a list [1, 234] and 1,234,567") == ["234", "1,234,567"]


def test_ratios():
    assert texts("1.36× faster, 1.4x, 2× the bytes, a 96 × 128 picture, 4x4") == [
        "1.36×",
        "1.4x",
        "2×",
        "128",
    ]
    assert shown("1.36× faster", "ratio 1.357") == [True]
    assert shown("1.4x faster", "1.36") == [True]
    assert shown("1.4x faster", "1.46") == [False]
    assert shown("2× the bytes", "2.4") == [True]  # a one-digit ratio is still a claim
    assert shown("2× the bytes", "2.6") == [False]


def test_percentages():
    assert texts("30% of the interval, 12.5 % of it, 5 percent") == ["30%", "12.5 %", "5 percent"]
    assert shown("loss moves by 5.2%", "5.2 %") == [True]
    assert shown("loss moves by 5.2%", "0.0521") == [True]  # the fraction
    assert shown("loss moves by 5.2%", "0.0531 5.3") == [False]


def test_scientific_forms():
    assert shown("1.3 × 10^-5 away", "1.31e-05") == [True]
    assert shown("1.3 × 10<sup>-5</sup> away", "0.0000131") == [True]
    assert shown("$1.3 \\times 10^{-5}$", "1.26e-05") == [True]
    assert shown("1.3e-05 away", "1.4e-05") == [False]
    assert shown("about $3.4\\times10^{38}$", "3.4028e+38") == [True]
    assert shown("about 10^-14", "diff 3.1e-14") == [True]
    assert shown("about $10^{-14}$", "diff 3.1e-12") == [False]
    assert texts("GB = 10^9 bytes") == []  # a unit's definition


def test_exponents_and_latex_are_read():
    assert shown("$e^{-103.3}$ is below", "1.40e-45 = e^-103.3") == [True]
    assert shown("$e^{-103.3}$ is below", "e^-104.0") == [False]
    assert texts("$0.044715\\,x^3$") == ["0.044715"]


def test_multiplier_suffixes():
    assert shown("GPT-2 small (124M parameters)", "124,439,808") == [True]
    assert shown("124M parameters", "124.4 M") == [True]
    assert shown("124M parameters", "125,439,808") == [False]


def test_exemptions():
    assert texts("GPT-2, GPT-3, float32, cl100k_base, o200k_base, an A100, top-5") == []
    assert texts("GPT-3 175B has 175B parameters") == ["175B"]
    assert texts("BPE (Sennrich et al. 2016; Vaswani et al., 2017) of 2020 (NVIDIA)") == []
    assert texts("in 2019, a context of 2048 tokens") == ["2048"]
    assert texts("torch 2.13 and version 2.13.0 and Python 3.11") == []
    assert texts("see [the 2,048 cells](https://x.org/a/123456) and <img width='640'>") == ["2,048"]
    assert texts("notebook 07, section 3, 12 layers") == []
    assert texts("```\nx = 123456\n```\nand 654321") == ["654321"]


def test_code_spans_quoting_the_code_are_exempt_and_others_are_checked():
    code = "layer_norm(x, eps=1e-5)\nids = enc.encode('12345678')"
    assert texts("`eps = 1e-5`, `12345678`", code) == []
    assert texts("a `10 × 12,288` tensor", code) == ["12,288"]
    assert texts("`eps = 1e-5`") == ["1e-5"]  # not in the code: a claim


# --- a notebook --------------------------------------------------------------------------------


def test_offenders_are_named_by_cell_and_quote(tmp_path):
    path = notebook(tmp_path, "reaches 17.2 GFLOP/s and 1.36× faster", "17.21")
    assert check_numbers(path) == ['nb cell 1: "1.36×" not printed']


def test_cited_numbers_count(tmp_path):
    cited = {"1.36×": "benchmarks/RESULTS.md, table 2", "3.4e38": "IEEE 754 float32 max"}
    path = notebook(tmp_path, "1.36× faster; $3.4\\times10^{38}$", "nothing", cited)
    assert check_numbers(path) == []
    path = notebook(tmp_path, "1.37× faster", "nothing", cited)
    assert check_numbers(path) == ['nb cell 1: "1.37×" not printed']
    with pytest.raises(ValueError, match="has no source"):
        check_numbers(notebook(tmp_path, "x", "y", {"1.36×": " "}))
    with pytest.raises(ValueError, match="is not a number"):
        check_numbers(notebook(tmp_path, "x", "y", {"fast": "me"}))


def test_bad_paths(tmp_path, capsys):
    with pytest.raises(ValueError, match="no such file"):
        check_numbers(tmp_path / "missing.ipynb")
    (tmp_path / "bad.ipynb").write_text("not json")
    with pytest.raises(ValueError, match="not a notebook"):
        check_numbers(tmp_path / "bad.ipynb")
    (tmp_path / "list.ipynb").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a notebook"):
        check_numbers(tmp_path / "list.ipynb")
    assert main(["check-numbers", str(tmp_path / "missing.ipynb")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main([]) == 2
    assert main(["check-numbers"]) == 2


def test_main_exit_codes_and_lines(tmp_path, capsys):
    bad = notebook(tmp_path, "1.36× faster", "1.2")
    assert main(["check-numbers", str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        'nb cell 1: "1.36×" not printed',
        "check-numbers: 1 of 1 numbers in the prose of 1 notebook(s) not printed",
    ]
    good = notebook(tmp_path, "1.36× faster", "1.357")
    assert main(["check-numbers", str(good)]) == 0
    assert capsys.readouterr().out == (
        "check-numbers: 1 notebook(s), 1 numbers in the prose, each printed or cited\n"
    )


def test_a_number_changed_by_hand_in_a_real_notebook_is_caught(tmp_path):
    """Mutation: notebook 08's prose states the untrained loss, 8.242, that its section 2 prints."""
    source = ROOT / "notebooks" / "08_training_the_book_model.ipynb"
    nb = json.loads(source.read_text())
    cells = [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "markdown" and "(loss 8.242" in "".join(c["source"])
    ]
    assert len(cells) == 1
    assert not [line for line in check_numbers(source) if "8.242" in line]
    cell = nb["cells"][cells[0]]
    cell["source"] = "".join(cell["source"]).replace("(loss 8.242", "(loss 8.247")
    mutated = tmp_path / source.name
    mutated.write_text(json.dumps(nb))
    assert f'08_training_the_book_model cell {cells[0]}: "8.247" not printed' in check_numbers(
        mutated
    )


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem[:2] for p in CHAPTERS])
def test_every_chapter_prints_the_numbers_its_prose_states(path):
    assert len(CHAPTERS) >= 13
    assert check_numbers(path) == []
