"""Figures and widgets of notebooks 05-07: pure, closed, and the widgets redraw without leaking."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from nexttoken.configs import get_config
from nexttoken.loop import trace_generation
from nexttoken.viz import (
    candidate_bars,
    distribution_text_figure,
    draws_figure,
    entropy,
    filter_figure,
    kv_memory_figure,
    kv_timing_figure,
    repeated_ngrams,
    repetition_figure,
    step_figure,
    temperature_figure,
    visible_token,
)
from nexttoken.widgets.logits import temperature_widget
from nexttoken.widgets.loop import next_token_widget
from nexttoken.widgets.sampling import sampling_figure, sampling_widget

LABELS = [f"t{i}" if i % 3 else f" w{i}" for i in range(97)]


class FakeEncoding:
    """Enough of tiktoken.Encoding for the widgets (ids 0..96 <-> one character each)."""

    def encode(self, text):
        return [ord(c) % 97 for c in text]

    def decode(self, ids):
        return "".join(chr(32 + i % 90) for i in ids)


def test_visible_token():
    assert visible_token(" to\n") == "␣to↵"
    with pytest.raises(TypeError):
        visible_token(3)


def test_entropy_limits():
    assert float(entropy(torch.full((8,), 1 / 8))) == pytest.approx(math.log(8))
    assert float(entropy(torch.tensor([1.0, 0.0]))) == 0.0
    assert entropy(torch.full((3, 4), 0.25)).shape == (3,)


def test_plot_functions_return_closed_figures():
    logits = torch.linspace(-3, 4, 97)
    probs = torch.softmax(logits, -1)
    figs = [
        candidate_bars(["a", " b"], [1.5, -0.5]),
        temperature_figure(logits, LABELS, 0.7),
        filter_figure(probs, LABELS, top_k=4, top_p=0.8),
        draws_figure(["a", "b"], [0.4, 0.6], [39, 61]),
        distribution_text_figure(probs, LABELS, "hello|world\nsecond line"),
        repetition_figure([("greedy", ["a", " b"] * 5, repeated_ngrams(list(range(2)) * 5, 2))]),
        kv_memory_figure([get_config("book"), get_config("gpt2"), get_config("gpt3-175b")]),
        kv_timing_figure([1, 2, 3], [0.01, 0.02, 0.03], [0.01, 0.01, 0.01]),
    ]
    for fig in figs:
        assert isinstance(fig, Figure)
    assert not plt.get_fignums()


def test_plot_argument_errors():
    with pytest.raises(ValueError, match="labels"):
        candidate_bars(["a"], [1.0, 2.0])
    with pytest.raises(ValueError, match="labels"):
        temperature_figure(torch.zeros(5), ["a"], 1.0)
    with pytest.raises(ValueError):
        kv_timing_figure([1, 2], [0.1], [0.1, 0.2])


def test_repeated_ngrams():
    assert repeated_ngrams([1, 2, 3, 4, 1, 2, 3, 5], 3) == [False] * 4 + [True] * 3 + [False]
    assert not any(repeated_ngrams(list(range(10)), 2))
    with pytest.raises(ValueError, match="n"):
        repeated_ngrams([1], 0)


def test_step_figure_with_and_without_records(tiny_model):
    enc = FakeEncoding()
    recs = trace_generation(tiny_model, [1, 2], 3, temperature=0)
    for r in (recs, []):
        assert isinstance(step_figure("ab", r, enc.decode), Figure)
    assert not plt.get_fignums()


def test_temperature_widget_redraws():
    w = temperature_widget(torch.linspace(-2, 2, 97), LABELS)
    slider, out = w.children[0].children[0], w.children[1]
    assert "nt-temperature" in w._dom_classes
    assert "nt-temperature-temperature" in slider._dom_classes
    assert len(out.outputs) == 1
    slider.value = 2.0
    assert len(out.outputs) == 1 and out.outputs[0]["output_type"] == "display_data"
    assert not plt.get_fignums()


def test_sampling_widget_and_figure(tiny_model):
    enc = FakeEncoding()
    fig = sampling_figure(tiny_model, enc, "abc", temperature=0.0, max_new_tokens=5)
    assert isinstance(fig, Figure)
    w = sampling_widget(tiny_model, enc, "abc", max_new_tokens=5)
    assert "nt-sampling" in w._dom_classes
    out = w.children[1]
    top_k = w.children[0].children[1]
    top_k.value = 3
    assert len(out.outputs) == 1
    assert not plt.get_fignums()


def test_next_token_widget_advances_and_resets(tiny_model):
    enc = FakeEncoding()
    w = next_token_widget(tiny_model, enc, "abc", temperature=0.0)
    nxt, reset = w.children[0].children
    out = w.children[1]
    assert "nt-loop-next" in nxt._dom_classes and "nt-loop" in w._dom_classes
    nxt.click()
    nxt.click()
    assert len(w.loop_state["records"]) == 2 and len(w.loop_state["ids"]) == 5
    greedy = [r.token for r in trace_generation(tiny_model, enc.encode("abc"), 2, temperature=0)]
    assert [r.token for r in w.loop_state["records"]] == greedy
    assert len(out.outputs) == 1
    reset.click()
    assert w.loop_state["records"] == [] and len(out.outputs) == 1
    assert not plt.get_fignums()


def test_context_times_interleaved_two_clocks(tiny_model):
    from nexttoken.viz.loop import context_times, context_timing_figure, part_times

    n = tiny_model.config.block_size
    ids = torch.arange(n).remainder(tiny_model.config.vocab_size).reshape(1, n)
    lengths = [1, n // 2, n]
    times = context_times(tiny_model, ids, lengths, rounds=3)
    for clock in ("wall", "cpu"):
        for kind in ("recompute", "cache"):
            assert [len(t) for t in times[clock][kind]] == [3, 3, 3]
            assert all(x >= 0 for t in times[clock][kind] for x in t)
    parts = part_times(tiny_model, ids, lengths, rounds=2)
    assert set(parts) == {"linear layers", "attention", "GELU + LayerNorm", "logits"}
    assert all(len(v) == 3 and min(v) >= 0 for v in parts.values())
    for fig in (
        context_timing_figure(lengths, times),
        context_timing_figure(lengths, times, parts),
    ):
        assert isinstance(fig, Figure) and not plt.fignum_exists(fig.number)


def test_context_times_bad_input(tiny_model):
    from nexttoken.viz.loop import context_times, context_timing_figure, part_times

    ids = torch.zeros(1, 4, dtype=torch.long)
    for bad in ([0], [5], []):
        with pytest.raises(ValueError, match="lengths"):
            context_times(tiny_model, ids, bad)
    with pytest.raises(ValueError, match="rounds"):
        part_times(tiny_model, ids, [2], rounds=0)
    with pytest.raises(ValueError, match=r"\(1, N\)"):
        context_times(tiny_model, torch.zeros(2, 4, dtype=torch.long), [2])
    with pytest.raises(TypeError, match="GPT"):
        context_times("model", ids, [2])
    times = context_times(tiny_model, ids, [1, 2], rounds=1)
    with pytest.raises(ValueError, match="same length"):
        context_timing_figure([1, 2, 3], times)
