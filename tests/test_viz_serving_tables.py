"""nexttoken.viz.serving's tables of results_batching.json (what notebook 10 prints)."""

from __future__ import annotations

import pytest

from nexttoken.viz.serving import batching_table, continuous_table, layouts_table, run_conditions

MACHINE = {"cpu": "CPU X", "logical_cpus": 2, "torch": "2.0", "date_utc": "2026-01-01 10:00"}


def test_batching_table_columns():
    rows = [
        {"threads": 1, "batch": 1, "tokens_per_s": 20.0, "gain": 1.0, "matmul_s_MB": 0.04,
         "bound": 1.0, "fraction_of_bound": 1.0},
        {"threads": 1, "batch": 4, "tokens_per_s": 50.0, "gain": 2.5, "matmul_s_MB": 0.07,
         "bound": 2.6, "fraction_of_bound": 0.96},
    ]  # fmt: skip
    lines = batching_table(rows).splitlines()
    assert lines[1].split() == ["1", "1", "20.0", "-", "1.00", "40.0", "1.00", "1.00", "1.00"]
    # x prev = 50 / 20; step x = B / gain = 4 / 2.5
    assert lines[2].split() == ["4", "1", "50.0", "2.50", "1.60", "70.0", "2.50", "2.60", "0.96"]


def test_layouts_and_continuous_tables():
    lay = layouts_table([{"rows": 2, "row_major_ms": 30.0, "column_major_ms": 24.0}])
    assert lay.splitlines()[1].split() == ["2", "30.0", "24.0", "1.25"]
    r = {"tokens_per_s": 60.0, "steps": 100, "cpu_s": 20.0, "latency_mean_steps": 40.4,
         "latency_p90_steps": 90, "latency_mean_s": 8.52, "latency_p90_s": 18.49}  # fmt: skip
    cont = {"continuous": {**r, "mean_batch": 8.25}, "static_engine": r, "static_padded": r}
    lines = continuous_table(cont).splitlines()
    assert lines[1].split() == ["continuous", "60.0", "100", "8.25", "0.200", "40", "/", "90",
                                "8.5", "/", "18.5"]  # fmt: skip
    assert lines[3].split()[4:6] == ["100", "-"]


def test_run_conditions_picks_the_last_run_of_a_section():
    bench = {
        "runs": [
            {"command": "python b.py", "machine": {**MACHINE, "load_average_at_start": [1, 2, 3]}},
            {"command": "python b.py --sections layouts",
             "machine": {**MACHINE, "load_average_at_start": [5, 5, 5]}},
        ]
    }  # fmt: skip
    assert run_conditions(bench, "batching").endswith("[1, 2, 3]")
    assert run_conditions(bench, "layouts").endswith("[5, 5, 5]")
    assert "CPU X" in run_conditions(bench, "layouts")
    with pytest.raises(ValueError, match="no run of this benchmark measured section 'x'"):
        run_conditions({"runs": [bench["runs"][1]]}, "x")
