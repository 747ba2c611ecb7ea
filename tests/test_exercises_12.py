"""Notebook 12's checkers: each right answer passes; each recognised wrong answer fails and names its
misconception; hints are staged and never give the answer away. Its figures draw."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from nexttoken.exercises import parallel as ex
from nexttoken.viz.parallel import (
    block_split_figure,
    measured_bubble,
    timeline_figure,
    times_figure,
)


def run(check, answer, capsys):
    ok = check(answer)
    return ok, capsys.readouterr().out


def test_mlp_cut(capsys):
    assert run(ex.check_mlp_cut, {"W_fc": "columns", "W_proj": "rows"}, capsys) == (
        True,
        "PASS MLP cut\n",
    )
    for answer, words in [
        ({"W_fc": "rows", "W_proj": "columns"}, "GELU(a + b)"),
        ({"W_fc": "columns", "W_proj": "columns"}, "all-gather"),
        ({"W_fc": "rows", "W_proj": "rows"}, "partial sums"),
        ({"W_fc": "colums", "W_proj": "rows"}, '"columns" or "rows"'),
        (["columns", "rows"], "a dict"),
    ]:
        ok, out = run(ex.check_mlp_cut, answer, capsys)
        assert not ok and words in out, out
    ok, out = run(ex.check_mlp_cut, None, capsys)
    assert not ok and out.startswith("TODO")


BYTES_WRONG = {
    "half of it": lambda L, B, N, d, nb: L * B * N * d * nb,
    "hidden width": lambda L, B, N, d, nb: 8 * L * B * N * d * nb,
    "counts numbers": lambda L, B, N, d, nb: 2 * L * B * N * d,
    "multiply by n_layer": lambda L, B, N, d, nb: 2 * B * N * d * nb,
    "it raised": lambda L, B, N, d, nb: 1 / 0,
    "got": lambda L, B, N, d, nb: 7,
}


def test_tp_bytes(capsys):
    ok, out = run(ex.check_tp_bytes, lambda L, B, N, d, nb: 2 * L * B * N * d * nb, capsys)
    assert ok, out
    for words, fn in BYTES_WRONG.items():
        ok, out = run(ex.check_tp_bytes, fn, capsys)
        assert not ok and words in out, (words, out)


def test_bubble(capsys):
    assert run(ex.check_bubble, lambda p, m: (p - 1) / (m + p - 1), capsys)[0]
    for words, fn in {
        "idle / all": lambda p, m: (p - 1) / m,
        "leaves out the micro-batches": lambda p, m: (p - 1) / p,
        "grows with the number of stages": lambda p, m: 1 / m,
        "busy share": lambda p, m: m / (m + p - 1),
        "expected a fraction (a number), got str": lambda p, m: "half",
    }.items():
        ok, out = run(ex.check_bubble, fn, capsys)
        assert not ok and words in out, (words, out)


def test_hints_are_staged_and_never_the_answer(capsys):
    outs = [run(ex.check_bubble, lambda p, m: 0.5, capsys)[1] for _ in range(4)]
    assert [o.split("Hint ")[1][:3] for o in outs] == ["1/3", "2/3", "3/3", "3/3"]
    assert not any("(p - 1) / (m + p - 1)" in o for o in outs)


def test_prediction(capsys):
    assert run(lambda a: ex.check_allreduce_count_prediction(a, 192), 192, capsys)[0]
    ok, out = run(lambda a: ex.check_allreduce_count_prediction(a, 192), 24, capsys)
    assert not ok and "two per block" in out


def test_figures_draw():
    assert isinstance(block_split_figure(2), Figure)
    assert isinstance(block_split_figure(4), Figure)
    with pytest.raises(ValueError):
        block_split_figure(0)
    tl = [[0, 0, 0.0, 1.0], [0, 1, 1.0, 2.0], [1, 0, 1.0, 2.0], [1, 1, 2.0, 3.0]]
    assert measured_bubble(tl) == pytest.approx(1 / 3)
    assert isinstance(timeline_figure(tl, "t"), Figure)
    with pytest.raises(ValueError):
        timeline_figure([])
    assert isinstance(times_figure(["a", "b"], [0.01, 0.02]), Figure)
