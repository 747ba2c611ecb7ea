"""Figures and widgets of notebooks 01-04: pure functions returning closed Figures; clear errors."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from nexttoken.tokenizer import get_encoding
from nexttoken.viz import (
    activation_figure,
    attention_heatmap,
    cosine_neighbours,
    layer_trajectory_figure,
    parameter_breakdown_figure,
    pca_2d,
    projection_figure,
    score_scale_figure,
    token_chips,
    token_counts_figure,
    token_label,
    token_pieces,
    token_vector_figure,
    vector_image,
    vocab_sizes_figure,
)


def closed(fig):
    assert isinstance(fig, Figure)
    assert fig.number not in plt.get_fignums()
    return True


def test_token_label():
    assert token_label(b" chat") == "␣chat"
    assert token_label("a\nb") == "a↵b"
    assert token_label(b"\xc3") == "\\xc3"
    assert token_label("\x94") == "\\x94"
    with pytest.raises(TypeError, match="piece"):
        token_label(3)


def test_chips_and_pieces():
    enc = get_encoding("gpt2")
    ids = enc.encode("Le chat mange une souris")
    labels = token_pieces(enc, ids)
    assert "".join(labels).replace("␣", " ") == "Le chat mange une souris"
    assert closed(token_chips(labels, ids, title="t"))
    with pytest.raises(ValueError, match="same length"):
        token_chips(labels, ids[:-1])


def test_bar_figures():
    assert closed(vocab_sizes_figure({"a": 3, "b": 5}))
    assert closed(token_counts_figure({"gpt2": {"fr": 8, "en": 5}, "o200k": {"fr": 6, "en": 5}}))
    with pytest.raises(ValueError):
        vocab_sizes_figure({})


def test_neighbours_and_pca():
    t = torch.tensor([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.0], [0.0, 1.0]])
    near = cosine_neighbours(t, 0, 2)
    assert [r for r, _ in near] == [1, 3]
    assert near[0][1] == pytest.approx(0.9 / (0.81 + 0.01) ** 0.5, abs=1e-6)
    with pytest.raises(ValueError, match="index"):
        cosine_neighbours(t, 9)
    x = torch.randn(20, 6, generator=torch.Generator().manual_seed(0))
    p1, p2 = pca_2d(x), pca_2d(-x[:, torch.randperm(6)] * 1.0)  # sign fixed by the loadings
    assert p1.shape == (20, 2)
    assert p1[:, 0].var() >= p1[:, 1].var()
    assert torch.allclose(p1.abs(), p2.abs(), atol=1e-4)
    assert torch.allclose(pca_2d(x), -pca_2d(-x), atol=1e-4)  # sign set by the data


def test_vector_figures():
    v = torch.randn(96 * 128)
    assert closed(vector_image(v, 96, 128, title="x"))
    with pytest.raises(ValueError, match="rows"):
        vector_image(v, 10, 10)
    assert closed(token_vector_figure(torch.randn(16), [("a", 0.5), ("b", 0.2)], 4, 4))
    assert closed(projection_figure(torch.randn(3, 2), ["a", "b", "c"]))


def test_attention_heatmap():
    w = torch.softmax(torch.randn(5, 5).masked_fill(~torch.ones(5, 5).bool().tril(), -1e9), -1)
    assert closed(attention_heatmap(w, list("abcde"), highlight=2))
    with pytest.raises(ValueError, match="labels"):
        attention_heatmap(w, list("abc"))
    with pytest.raises(ValueError, match="square"):
        attention_heatmap(w[:3], list("abc"))
    assert closed(score_scale_figure([16, 64], [4.0, 8.0], [1.0, 1.0]))


def test_decoder_figures():
    x = torch.linspace(-3, 3, 50)
    assert closed(activation_figure(x, {"relu": torch.relu(x)}))
    assert closed(layer_trajectory_figure([1.0, 2.0, 3.0], [0.1, 0.5, 1.0]))
    assert closed(parameter_breakdown_figure("gpt2"))
    with pytest.raises(ValueError, match="unknown config"):
        parameter_breakdown_figure("gpt9")


def test_widgets(tiny_model):
    from nexttoken.widgets.attention import attention_widget, head_heatmap
    from nexttoken.widgets.decoder import sizes_widget
    from nexttoken.widgets.embeddings import embeddings_widget
    from nexttoken.widgets.tokens import chips_for, tokens_widget

    w = tokens_widget(encodings=("gpt2", "cl100k_base"))
    assert "nt-tokens" in w._dom_classes
    w.children[0].children[1].value = "cl100k_base"  # redraw on change does not raise
    assert closed(chips_for("hello", "o200k_base"))
    ids = torch.tensor([[1, 2, 3]])
    a = attention_widget(tiny_model, ids, ["a", "b", "c"])
    a.children[0].children[1].value = 1
    with pytest.raises(ValueError, match="layer"):
        head_heatmap([torch.zeros(1, 2, 3, 3)], list("abc"), 5, 0)
    assert "nt-sizes" in sizes_widget(("gpt2", "gpt3-small"), "gpt2")._dom_classes

    class Enc:  # a stand-in encoding over the tiny vocabulary
        def encode(self, s, disallowed_special=()):
            return [ord(s) - 60]

        def decode_single_token_bytes(self, i):
            return chr(i + 60).encode()

    e = embeddings_widget(tiny_model, Enc(), ["A", "B"], k=3)
    e.children[0].children[0].value = "B"
    with pytest.raises(ValueError, match="single token"):
        from nexttoken.widgets.embeddings import token_vector

        token_vector(tiny_model, get_encoding("gpt2"), "a long phrase")
