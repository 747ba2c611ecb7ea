"""nexttoken.roofline (intensities, roofs, points) and nexttoken.viz.roofline_figure."""

from __future__ import annotations

import pytest

from nexttoken.configs import get_config
from nexttoken.roofline import (
    attention_bytes,
    attention_flops,
    batching_points,
    decode_linears,
    decode_step_point,
    linear_bytes,
    linear_flops,
    machine_balance,
    machine_roof,
    measured_points,
    roof,
    step_bytes,
    step_flops,
)

GPT2 = get_config("gpt2")

# a results_roofline.json in miniature: two thread counts, the second slower to read (a busy machine)
RESULTS = {
    "machine": {"cpu": "test CPU"},
    "bandwidth": {"sizes_MB": [128, 256], "read_GB_per_s": {"1": [20.0, 25.0], "2": [22.0, 18.0]}},
    "peak": {"n": 2048, "GFLOP_per_s": {"1": 100.0, "2": 180.0}},
    "operations": [
        {
            "kind": "decode",
            "label": "decode step, B = 1",
            "flops": 10**9,
            "bytes": 2 * 10**9,
            "seconds": 0.1,
        },  # fmt: skip
        {"kind": "int8", "label": "int8", "flops": 4 * 10**8, "bytes": 2 * 10**8, "seconds": 0.02},
    ],
}


def test_linear_counts():
    assert linear_flops(5, 768, 50257) == 385_973_760
    assert linear_bytes(1, 768, 50257) == 4 * 768 * 50257 + 4 * (768 + 50257)
    assert linear_bytes(1, 768, 50257, weight_bytes=1) == 768 * 50257 + 4 * (768 + 50257)


def test_gpt2_decode_step():
    shapes = decode_linears(GPT2)
    assert (
        len(shapes) == 12 * 4 + 1
        and shapes[-1] == (768, 50257)
        and shapes[:2]
        == [
            (768, 2304),
            (768, 768),
        ]
    )
    assert sum(i * o for i, o in shapes) == 123_532_032
    assert step_flops(GPT2, 1) == 247_064_064
    assert step_flops(GPT2, 64) == 64 * 247_064_064
    assert step_bytes(GPT2, 1) == 4 * 123_532_032 + 4 * 198_481
    assert step_flops(GPT2, 1) / step_bytes(GPT2, 1) == pytest.approx(0.4992, abs=1e-4)


@pytest.mark.parametrize("batch, context", [(1, 1024), (16, 64)])
def test_attention_intensity_does_not_grow_with_the_batch(batch, context):
    f, b = attention_flops(GPT2, context, batch), attention_bytes(GPT2, context, batch)
    assert f == 4 * batch * 12 * context * 768
    assert f / b == 0.5


def test_roof_and_balance():
    assert roof(0.5, 20.0, 100.0) == 10.0
    assert roof(10.0, 20.0, 100.0) == 100.0
    assert machine_balance(25.0, 100.0) == 4.0
    with pytest.raises(ValueError, match="must be > 0"):
        roof(0, 20.0, 100.0)


def test_points():
    p = decode_step_point(GPT2, 2, 0.5)
    assert p == {
        "label": "decode, B = 2",
        "intensity": step_flops(GPT2, 2) / step_bytes(GPT2, 2),
        "gflops": 2 * 247_064_064 / 0.5 / 1e9,
    }
    with pytest.raises(ValueError, match="batch must be a positive int"):
        decode_step_point(GPT2, 0, 0.5)
    rows = [
        {"threads": 1, "batch": 64, "tokens_per_s": 318.85},
        {"threads": 2, "batch": 64, "tokens_per_s": 285.47},
    ]
    (b64,) = batching_points(GPT2, rows)  # notebook 10's B = 64: 318.85 tok/s x 0.247 GFLOP
    assert b64["gflops"] == pytest.approx(78.777, abs=1e-3)


def test_machine_roof_from_results():
    assert machine_roof(RESULTS, 1) == {
        "threads": 1,
        "bandwidth_GB_per_s": 25.0,
        "peak_GFLOP_per_s": 100.0,
        "balance": 4.0,
    }
    every = machine_roof(RESULTS, "all")  # up to 2 threads: the best of 1 and 2
    assert (every["threads"], every["bandwidth_GB_per_s"], every["peak_GFLOP_per_s"]) == (
        2,
        25,
        180,
    )
    assert machine_roof(RESULTS, 2)["bandwidth_GB_per_s"] == 22.0
    for bad in (3, "two", True):
        with pytest.raises(ValueError, match="threads must be one of"):
            machine_roof(RESULTS, bad)


def test_measured_points():
    assert measured_points(RESULTS) == [
        {"label": "decode step, B = 1", "intensity": 0.5, "gflops": 10.0, "kind": "decode"},
        {"label": "int8", "intensity": 2.0, "gflops": 20.0, "kind": "int8"},
    ]


def test_roofline_figure_draws_the_roof():
    from nexttoken.viz import roofline_figure

    fig = roofline_figure(RESULTS, measured_points(RESULTS))
    ax = fig.axes[0]
    one = ax.lines[0]  # the 1-thread roof: min(100, 25 x)
    assert max(one.get_ydata()) == 100.0
    x, y = one.get_xdata()[0], one.get_ydata()[0]
    assert y == pytest.approx(25.0 * x)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert "test CPU" in ax.get_title()
    labels = ax.get_legend_handles_labels()[1]
    assert labels[:2] == [
        "roof, 1 thread: 25.0 GB/s, 100 GFLOP/s",
        "roof, up to 2 threads: 25.0 GB/s, 180 GFLOP/s",
    ]
