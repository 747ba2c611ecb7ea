"""Notebook 14's checkers: each right answer passes (including the package's own functions); each
recognised wrong answer fails and names its misconception; an answer that matches a mistake on one
case only is not diagnosed. Its figures draw, its widget redraws."""

from __future__ import annotations

import math

import pytest
import torch
from matplotlib.figure import Figure

from nexttoken.exercises import modern as ex
from nexttoken.llama import Llama, LlamaConfig, apply_rope, rope_cos_sin
from nexttoken.model import GPT, GPTConfig
from nexttoken.viz import modern as viz


def run(check, answer, capsys):
    ok = check(answer)
    return ok, capsys.readouterr().out


def test_rope_half_accepts_the_package_and_names_the_paper_layout(capsys):
    def package(x, positions, theta):
        cos, sin = rope_cos_sin(positions, x.size(-1), theta)
        return apply_rope(x, cos, sin)

    assert run(ex.check_rope_half, package, capsys) == (True, "PASS RoPE, Llama's layout\n")
    ok, out = run(ex.check_rope_half, lambda x, p, t: ex._rope(x, p, t, interleaved=True), capsys)
    assert not ok and "feature 2i with 2i + 1" in out
    ok, out = run(ex.check_rope_half, lambda x, p, t: x[:2], capsys)
    assert not ok and "expected a tensor of shape (5, 8), got shape (2, 8)" in out


def test_rope_half_mistake_on_one_case_only_is_not_diagnosed(capsys):
    def half_right(x, p, t):  # the paper's layout, except on the 4-wide case
        return ex._rope(x, p, t, interleaved=x.size(-1) != 4)

    ok, out = run(ex.check_rope_half, half_right, capsys)
    assert not ok and "the paper's layout" not in out and "for x of shape (5, 8)" in out


def test_equal_width_matches_models_built_on_the_meta_device():
    """The checker's right answer is the width at which the two models' counted parameters meet."""
    for case in ex._WIDTH_CASES:
        V, T, L, d, H, Hk = case.args
        h = ex._width_right(*case.args)
        with torch.device("meta"):
            gpt = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=H, n_embd=d))
            lo = Llama(LlamaConfig(vocab_size=V, block_size=T, n_layer=L, n_head=H,
                                   n_kv_head=Hk, n_embd=d, intermediate_size=math.floor(h),
                                   tie_embeddings=True))  # fmt: skip
        gap = gpt.num_parameters() - lo.num_parameters()  # what the fraction of h would add
        assert gap == pytest.approx((h - math.floor(h)) * 3 * d * L, abs=1e-6)
    assert ex._width_right(4096, 256, 4, 256, 4, 2) == pytest.approx(793.0833, abs=1e-4)


def test_equal_width_mistakes(capsys):
    assert run(ex.check_equal_width, ex._width_right, capsys)[0]
    for mistake in ex._WIDTH_MISTAKES:
        ok, out = run(ex.check_equal_width, mistake.formula, capsys)
        assert not ok and mistake.why[:40] in out, out
    ok, out = run(ex.check_equal_width, lambda *a: round(ex._width_right(*a)), capsys)
    assert not ok and "for vocab_size=50257" in out  # a rounded width is not the exact one


def test_kv_bytes(capsys):
    def kv(L, H, Hk, dh, t, w, nb):
        return 2 * L * Hk * dh * (t if w is None else min(t, w)) * nb

    assert run(ex.check_kv_bytes, kv, capsys) == (True, "PASS KV cache of one sequence\n")
    assert ex._kv_right(32, 32, 8, 128, 8192, None, 2) == 1_073_741_824  # Llama 3 8B, 1 GiB
    ok, out = run(ex.check_kv_bytes, lambda L, H, Hk, dh, t, w, nb: 2 * L * Hk * dh * t * nb,
                  capsys)  # fmt: skip
    assert not ok and "the window is ignored" in out
    # n_head instead of n_kv_head only on GPT-2's case (where they are equal): a plain line
    ok, out = run(ex.check_kv_bytes, lambda L, H, Hk, dh, t, w, nb: kv(L, H if H == Hk else 1,
                  1, dh, t, w, nb), capsys)  # fmt: skip
    assert not ok and "multi-head" not in out and "expected" in out


def test_merge_partials_against_full_softmax(capsys):
    """Merging the two partials of any split gives softmax over all keys (the checker's cases)."""
    g = torch.Generator().manual_seed(5)
    s, v = torch.randn(3, 11, generator=g, dtype=torch.float64), torch.randn(11, 4, generator=g,
                                                                              dtype=torch.float64)  # fmt: skip
    for split in (1, 5, 10):
        parts = (*ex._partial(s[:, :split], v[:split]), *ex._partial(s[:, split:], v[split:]))
        assert torch.allclose(ex._merge_right(*parts), s.softmax(-1) @ v, atol=1e-12)
    assert run(ex.check_merge_partials, ex._merge_right, capsys)[0]
    ok, out = run(ex.check_merge_partials, lambda m1, s1, a1, m2, s2, a2: (a1 + a2) / (s1 + s2),
                  capsys)  # fmt: skip
    assert not ok and "without rescaling" in out
    ok, out = run(ex.check_merge_partials, None, capsys)
    assert not ok and out.startswith("TODO")


def test_figures_draw():
    x = torch.linspace(-2, 3, 8)
    rows = [dict(model="A", mha_bytes_per_token=400, context=10, bytes_per_context=1000)]
    figs = [
        viz.norm_figure(x, x - x.mean(), x),
        viz.rope_clock_figure(7, 16, 10000.0),
        viz.rope_clock_figure(0, 2),
        viz.relative_scores_figure(torch.randn(5, 5), title="t"),
        viz.activation_figure(x, {"relu": x.relu()}, title="t"),
        viz.kv_sizes_figure(rows),
        viz.window_figure(8, 3),
        viz.online_memory_figure([1, 2], [4, 16], [2, 4], block_size=64),
        viz.loss_curves_figure(
            {"a": {"losses": [3.0, 2.0, 1.0], "evals": [{"step": 3, "held_loss": 1.5}]}}
        ),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    title = figs[1]._suptitle.get_text()
    assert title == "RoPE at position 7: the 8 pairs of a 16-wide head (base 10000)"
    for bad in (dict(position=-1), dict(position=1, d_head=7), dict(position=1, theta=0.0)):
        with pytest.raises(ValueError):
            viz.rope_clock_figure(**bad)
    with pytest.raises(ValueError, match="window"):
        viz.window_figure(4, 5)


def test_rope_widget_redraws_with_its_controls():
    from nexttoken.widgets import figure_title  # noqa: F401 (the titles the browser test reads)
    from nexttoken.widgets.modern import rope_widget

    box = rope_widget()
    assert {"nt-widget", "nt-rope"} <= set(box._dom_classes)
    slider, base = box.children[0].children
    out = box.children[1]
    first = out.outputs[0]["data"]["image/png"]
    slider.value = 11
    base.value = "500000"
    assert out.outputs[0]["data"]["image/png"] != first
    assert "nt-rope-position" in slider._dom_classes and "nt-rope-theta" in base._dom_classes
