"""The book's draft model: shipped small and checked, and a faithful partner for the book model."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import nexttoken
from nexttoken import book
from nexttoken.configs import BOOK_DRAFT
from nexttoken.generate import generate
from nexttoken.speculative import speculative_generate


@pytest.fixture(scope="module")
def models():
    return nexttoken.load_book_model(), nexttoken.load_book_draft_model()


@pytest.fixture(scope="module")
def held():
    """The first tokens of The Tempest (held out from both models' training)."""
    from nexttoken.data import HELD_OUT, load_plays

    return nexttoken.load_book_encoding().encode(load_plays()[HELD_OUT][:8000])


def test_draft_is_small_checked_and_documented():
    card = json.loads((book.assets_dir() / book.DRAFT_CARD_JSON).read_text())
    path = book.assets_dir() / book.DRAFT_FILE
    assert path.stat().st_size == card["size_bytes"] <= 2_000_000
    assert card["sha256"] == book.sha256_file(path)
    draft = nexttoken.load_book_draft_model()
    assert draft.config == BOOK_DRAFT and not draft.training
    assert draft.transformer.wte.weight.dtype == torch.float32
    assert draft.num_parameters() == card["parameters"]
    log = json.loads((book.assets_dir() / book.DRAFT_LOG_FILE).read_text())
    assert len(log["losses"]) == card["steps_done"] == card["train_config"]["steps"]
    assert "--config book-draft" in card["command"]
    # a weaker model than the book model, on the same held-out play
    assert (
        card["held_out_metrics"]["nats_per_token"]
        > book.load_model_card()["held_out_metrics"]["nats_per_token"]
    )
    assert (book.assets_dir() / book.DRAFT_CARD_MD).read_text().count(card["sha256"]) == 1


def test_a_tampered_draft_is_refused(tmp_path, monkeypatch):
    for name in (book.DRAFT_FILE, book.DRAFT_CARD_JSON):
        shutil.copy(book.assets_dir() / name, tmp_path / name)
    with open(tmp_path / book.DRAFT_FILE, "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    monkeypatch.setattr(book, "assets_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        book.load_book_draft_model()


@settings(max_examples=4, deadline=None)
@given(
    start=st.integers(0, 2000),
    length=st.integers(1, 12),
    k=st.integers(1, 6),
    n_new=st.integers(1, 24),
)
def test_greedy_with_the_draft_is_the_book_model(models, held, start, length, k, n_new):
    target, draft = models
    prompt = held[start : start + length]
    want = generate(target, prompt, n_new, temperature=0)
    got, stats = speculative_generate(target, draft, prompt, n_new, k=k, temperature=0)
    assert torch.equal(got, want)
    assert stats.accepted + stats.target_passes == n_new


def test_speculative_widget_steps_through_rounds(models):
    from nexttoken.widgets.faster import speculative_widget

    target, draft = models
    box = speculative_widget(target, draft, nexttoken.load_book_encoding(), "PROSPERO.\n", k=3,
                             max_new_tokens=12)  # fmt: skip
    assert {"nt-widget", "nt-speculative"} <= set(box._dom_classes)
    st = box.speculative_state
    prev, nxt = box.children[0].children
    assert prev.disabled and st["state"]["i"] == 0
    for _ in range(len(st["rounds"]) + 2):
        nxt.click()
    assert st["state"]["i"] == len(st["rounds"]) - 1 and nxt.disabled
    prev.click()
    assert st["state"]["i"] == len(st["rounds"]) - 2 or len(st["rounds"]) == 1
    assert "target passes" in box.children[1].value
