"""Notebook 11's chart rows: a speculative pair as a point of the bytes / speed / loss chart."""

from __future__ import annotations

import pytest

from nexttoken.speculative import Round
from nexttoken.viz.faster import (
    round_figure,
    speculative_tradeoff_row,
    tradeoff_figure,
    tradeoff_rows,
)
from nexttoken.widgets import figure_title


def _pair(speedups: dict[int, float]) -> dict:
    rows = {"plain_tokens_per_s": 100.0}
    for k, s in speedups.items():
        rows[f"k={k}"] = {"speedup_vs_plain": s, "tokens_per_round": 2.0}
    return rows


RESULTS = {
    "weights": {
        "m": {
            "fp32": {"weight_bytes_per_token": 16e6, "tokens_per_s": 300.0,
                     "held_out_nats_per_token": 4.3},
            "bf16": {"weight_bytes_per_token": 8e6, "tokens_per_s": 200.0},
            "int8": {"weight_bytes_per_token": 4e6, "tokens_per_s": 400.0},
        }
    },
    "speculative": {"m+small": _pair({1: 0.9, 2: 1.2, 4: 1.1})},
}  # fmt: skip


def test_speculative_row_is_the_best_k():
    row = speculative_tradeoff_row(RESULTS["weights"]["m"]["fp32"], RESULTS["speculative"]["m+small"],
                                   draft_bytes=1e6)  # fmt: skip
    assert row["k"] == 2
    # a round reads the target once and the draft k times, and emits 2 tokens
    assert row["weight_bytes_per_token"] == pytest.approx((16e6 + 2 * 1e6) / 2)
    assert row["tokens_per_s"] == pytest.approx(300.0 * 1.2)
    assert row["held_out_nats_per_token"] == 4.3  # the target's own output


def test_tradeoff_rows_and_figure():
    rows = tradeoff_rows(RESULTS, "m", {"m+small": 1_000_000})
    assert list(rows) == ["fp32", "bf16", "int8", "speculative m+small, k=2"]
    assert len(tradeoff_figure(rows).axes[0].texts) == 4


def test_round_figure_title_counts_tokens():
    one = Round(position=7, proposed=[1, 2], accepted=0, corrected=3, target_argmax=[3, 4, 5])
    assert "1 token for one target pass" in figure_title(round_figure(one))
    three = Round(position=7, proposed=[1, 2], accepted=2, corrected=5, target_argmax=[1, 2, 5])
    assert "3 tokens for one target pass" in figure_title(round_figure(three))
    assert "bonus token" in figure_title(round_figure(three))
