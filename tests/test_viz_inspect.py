"""Notebook 13's widget: the picture names the prompt, the position, its token and the model's
choice; the slider follows the prompt's length; bad input gets a clear error."""

from __future__ import annotations

import pytest

from nexttoken import load_book_encoding, load_book_model
from nexttoken.widgets import figure_title
from nexttoken.widgets.inspect import inspect_widget, lens_attribution

PROMPTS = ["Le chat mange une souris", "To be"]


@pytest.fixture(scope="module")
def book():
    return load_book_model(), load_book_encoding()


def test_picture_names_what_it_shows(book):
    model, enc = book
    fig = lens_attribution(model, enc, PROMPTS[0], 3)
    title = figure_title(fig)
    # 'Le chat...' is L|e| c|hat|...: position 3 is 'hat'; the book model's choice there is 's'
    assert title.startswith(
        "'Le chat mange une souris', position 3 ('hat'): the model's choice 's'"
    )
    assert "the logit lens" in title and "direct logit attribution" in title


def test_widget_follows_the_prompt(book):
    model, enc = book
    box = inspect_widget(model, enc, PROMPTS, position=3)
    assert {"nt-widget", "nt-inspect"} <= set(box._dom_classes)
    prompt, pos = box.children[0].children
    assert "nt-inspect-prompt" in prompt._dom_classes and "nt-inspect-position" in pos._dom_classes
    assert "nt-inspect-figure" in box.children[1]._dom_classes
    assert (pos.min, pos.max, pos.value) == (0, 10, 3)
    first = box.children[1].outputs[0]["data"]["image/png"]
    pos.value = 4
    assert box.children[1].outputs[0]["data"]["image/png"] != first
    prompt.value = "To be"  # 2 tokens: the slider moves to the last one
    assert (pos.max, pos.value) == (1, 1)
    assert len(box.children[1].outputs) == 1


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda m, e: lens_attribution(m, e, "", 0), ValueError),
        (lambda m, e: lens_attribution(m, e, "To be", 2), ValueError),
        (lambda m, e: lens_attribution(m, e, "To be", 1.0), TypeError),
        (lambda m, e: inspect_widget(m, e, []), ValueError),
        (lambda m, e: inspect_widget(m, e, ["To be"], position=5), ValueError),
    ],
)
def test_bad_input(book, call, error):
    with pytest.raises(error):
        call(*book)
