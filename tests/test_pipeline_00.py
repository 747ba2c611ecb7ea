"""Notebook 00's figure functions and exercise checkers (which must reject wrong answers)."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from nexttoken.exercises import pipeline as ex
from nexttoken.viz import pipeline_figure, walkthrough_figure
from nexttoken.viz.pipeline import NOTEBOOK_STAGES, STAGES


@pytest.mark.parametrize("highlight", [None, "tokens", "05", ["logits", "softmax"]])
def test_pipeline_figure_variants(highlight):
    assert isinstance(pipeline_figure(highlight), Figure)


def test_pipeline_figure_reads_sizes_from_the_config():
    fig = pipeline_figure()
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts) + fig.axes[0].get_title()
    assert "12,288" in texts and "50,257" in texts and "Decoder x 96" in texts
    small = pipeline_figure(model="gpt2")
    texts = " ".join(t.get_text() for t in small.axes[0].texts)
    assert "768" in texts and "Decoder x 12" in texts


def test_every_notebook_highlights_known_stages():
    assert all(set(v) <= set(STAGES) for v in NOTEBOOK_STAGES.values())


def test_pipeline_figure_rejects_unknown_stage():
    with pytest.raises(ValueError, match="unknown stage 'embedding'; use one of text, tokens"):
        pipeline_figure("embedding")
    with pytest.raises(ValueError, match="unknown stage"):
        pipeline_figure(["tokens", "nope"])


def test_walkthrough_figure_and_its_errors():
    fig = walkthrough_figure(
        ["To", " be"], [(" or", 0.5), (",", 0.2)], " or", d_model=8, vocab_size=10
    )
    assert isinstance(fig, Figure)
    with pytest.raises(ValueError, match="pieces"):
        walkthrough_figure([], [(" or", 0.5)], " or", d_model=8, vocab_size=10)
    with pytest.raises(ValueError, match="top"):
        walkthrough_figure(["a"], [], " or", d_model=8, vocab_size=10)


def test_output_shape_checker(capsys):
    assert ex.check_output_shape(10 * 12288)
    assert not ex.check_output_shape(10 * 50257)  # the logits' size
    assert "logits" in capsys.readouterr().out
    assert not ex.check_output_shape(12288)  # one token only
    assert not ex.check_output_shape(None)
    assert "TODO" in capsys.readouterr().out


def stable(logits):
    return torch.softmax(logits, dim=-1)


def test_probabilities_checker_rejects_typical_mistakes():
    assert ex.check_probabilities(stable)
    assert not ex.check_probabilities(lambda s: torch.softmax(s, dim=0))  # wrong axis
    assert not ex.check_probabilities(lambda s: torch.exp(s) / torch.exp(s).sum(-1, keepdim=True))
    assert not ex.check_probabilities(lambda s: s)  # logits are not probabilities
    assert not ex.check_probabilities(lambda s: 1 / 0)  # raises
    assert not ex.check_probabilities("softmax")


def test_one_step_checker_rejects_typical_mistakes():
    def right(model, ids):
        return torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], 1)

    def first_position(model, ids):
        return torch.cat([ids, model(ids)[:, 0].argmax(-1, keepdim=True)], 1)

    def forgets_to_append(model, ids):
        return model(ids)[:, -1].argmax(-1, keepdim=True)

    assert ex.check_one_step(right)
    assert not ex.check_one_step(first_position)
    assert not ex.check_one_step(forgets_to_append)
    assert not ex.check_one_step(None)
