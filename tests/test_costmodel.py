"""Notebook 11's 'what it would take' table: the cost model inverted, on hand-made rows."""

from __future__ import annotations

import pytest

from nexttoken.costmodel import (
    alpha_needed,
    cost_model_speedup,
    k_rows,
    verify_pass_table,
    what_it_takes,
    what_it_takes_table,
)
from nexttoken.evidence import hypothesis_examples

# plain decoding: 100 tokens/s, a step of 10 ms; a draft step of 2 ms; a pass over k + 1 of 12 ms
ROW = {
    "draft_step_in_round_ms": 2.0,
    "target_pass_in_round_ms": 12.0,
    "plain_tokens_per_s_interleaved": 100.0,
    "alpha": 0.5,
    "speedup_vs_plain": 1.0,
}
PAIR = {"target_step_ms": 10.0, "k=2": ROW, "k=1": dict(ROW, alpha=1.0)}


def test_k_rows_in_order():
    assert list(k_rows(PAIR)) == [1, 2]


def test_speedup_is_the_cost_model():
    # k = 2, alpha = 1: 3 tokens for 2 x 2 + 12 = 16 ms, plain 3 tokens in 30 ms: 30 / 16
    assert cost_model_speedup(ROW, 2, 1.0) == pytest.approx(30 / 16)
    # alpha = 0.5: E = 1.75 tokens for 16 ms against 17.5 ms
    assert cost_model_speedup(ROW, 2, 0.5) == pytest.approx(17.5 / 16)
    assert cost_model_speedup(ROW, 2, 0.5, verify_ms=4.0) == pytest.approx(17.5 / 8)


def test_alpha_needed_bisects_to_the_speedup():
    need = alpha_needed(ROW, 2, 1.3)
    assert cost_model_speedup(ROW, 2, need) == pytest.approx(1.3, abs=1e-5)
    assert alpha_needed(ROW, 2, 2.0) is None  # 30 / 16 < 2 even with every proposal kept


def test_what_it_takes_budgets():
    row = what_it_takes({"k=2": ROW}, 1.25)[0]
    # a round may cost 17.5 / 1.25 = 14 ms: a pass of 14 - 4 = 10 ms (1 step), a draft of 1 ms
    assert row["verify_steps"] == pytest.approx(1.0)
    assert row["draft_steps"] == pytest.approx(0.1)
    assert row["verify_steps_now"] == pytest.approx(1.2)
    assert row["draft_steps_now"] == pytest.approx(0.2)
    low = what_it_takes({"k=2": ROW}, 1.3, alpha=0.0)[0]  # 1 token, 7.7 ms: less than 12 + 4
    assert low["draft_steps"] is None and low["verify_steps"] == pytest.approx(3.6923 / 10, 1e-4)


def test_tables_print_one_line_per_k():
    table = what_it_takes_table(PAIR, 2.0)
    assert table.splitlines()[2].split()[:5] == [
        "1",
        "1.000",
        "1.43",
        "|",
        "unreachable",
    ]  # 20 ms / 14 ms
    assert len(table.splitlines()) == 4
    passes = verify_pass_table({"a": PAIR, "b": PAIR}, ("a", "b")).splitlines()
    assert passes[1].split() == ["1", "2", "12.0", "(1.20)", "12.0", "(1.20)"]


def test_bad_input():
    with pytest.raises(ValueError, match="no 'k=<int>' rows"):
        k_rows({"target_step_ms": 1.0})
    with pytest.raises(ValueError, match="lacks target_pass_in_round_ms"):
        k_rows({"k=1": {"draft_step_in_round_ms": 1, "plain_tokens_per_s_interleaved": 1}})
    with pytest.raises(TypeError, match="pair must be a dict"):
        k_rows([1, 2])
    with pytest.raises(ValueError, match="alpha must be a number in \\[0, 1\\]"):
        cost_model_speedup(ROW, 2, 1.5)
    with pytest.raises(ValueError, match="speedup must be a positive number"):
        what_it_takes(PAIR, 0)
    with pytest.raises(ValueError, match="unknown pair"):
        verify_pass_table({"a": PAIR}, ("a", "z"))


def test_hypothesis_examples_read_from_the_file(tmp_path):
    f = tmp_path / "test_x.py"
    f.write_text(
        "from hypothesis import given, settings\n\n"
        "@settings(max_examples=25, deadline=None)\n@given()\ndef test_a():\n    pass\n\n"
        "def test_b():\n    pass\n\ndef helper():\n    pass\n"
    )
    assert hypothesis_examples(f) == {"test_a": 25, "test_b": None}
    with pytest.raises(FileNotFoundError, match="not found"):
        hypothesis_examples("tests/no_such_test_file.py")
