"""The shipped book model: its card, hash, size, loading, and its held-out loss recomputed."""

from __future__ import annotations

import shutil

import pytest

from nexttoken import book
from nexttoken.checkpoint import load_model, sha256_file
from nexttoken.configs import BOOK

CARD = book.load_model_card()
WEIGHTS = book.assets_dir() / book.MODEL_FILE


def test_card_has_everything():
    for key in (
        "config",
        "parameters",
        "encoding",
        "corpus",
        "held_out",
        "training_wall_time_s",
        "command",
        "held_out_metrics",
        "sha256",
    ):
        assert key in CARD, key
    assert CARD["held_out"] == "The Tempest"
    assert CARD["command"].startswith("python -m nexttoken train")
    for key in ("nats_per_token", "nats_per_char", "perplexity"):
        assert key in CARD["held_out_metrics"]
    assert (book.assets_dir() / book.CARD_MD).read_text().count(CARD["sha256"]) == 1


def test_checkpoint_hash_size_and_config():
    assert sha256_file(WEIGHTS) == CARD["sha256"]
    assert WEIGHTS.stat().st_size <= 20 * 1024 * 1024
    model = book.load_book_model()
    assert not model.training
    assert model.config == BOOK
    assert model.num_parameters() == CARD["parameters"]


def test_a_tampered_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "m.safetensors"
    shutil.copyfile(WEIGHTS, bad)
    with open(bad, "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ValueError, match="sha256"):
        load_model(bad, expected_sha256=CARD["sha256"])


def test_encoding_matches_the_model():
    enc = book.load_book_encoding()
    assert enc.n_vocab == BOOK.vocab_size == 4096
    assert enc.eot_token == 4095
    text = "To be, or not to be, that is the question."
    assert enc.decode(enc.encode(text)) == text


def test_held_out_loss_recomputed_from_the_shipped_weights():
    m = book.held_out_metrics(book.load_book_model())
    assert m["nats_per_char"] <= 1.55
    assert m["nats_per_token"] == pytest.approx(
        CARD["held_out_metrics"]["nats_per_token"], abs=2e-3
    )
    assert m["nats_per_char"] == pytest.approx(CARD["held_out_metrics"]["nats_per_char"], abs=2e-3)


def test_training_log_is_shipped():
    log = book.load_training_log()
    assert len(log["losses"]) == CARD["steps_done"]
    assert log["evals"][-1]["held_loss"] < log["evals"][0]["held_loss"]


def test_load_book_model_matches_load_model_and_keeps_the_rng():
    import torch

    model = book.load_book_model()
    ref = load_model(WEIGHTS, expected_sha256=CARD["sha256"])
    x = torch.randint(0, BOOK.vocab_size, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(model(x), ref(x))
    assert model.lm_head.weight is model.transformer.wte.weight
    torch.manual_seed(0)
    a = torch.rand(3)
    torch.manual_seed(0)
    book.load_book_model()
    assert torch.equal(torch.rand(3), a)


def test_load_book_model_refuses_a_wrong_hash(tmp_path, monkeypatch):
    import json

    shutil.copyfile(WEIGHTS, tmp_path / book.MODEL_FILE)
    card = dict(CARD, sha256="0" * 64)
    (tmp_path / book.CARD_JSON).write_text(json.dumps(card))
    monkeypatch.setattr(book, "assets_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match="sha256"):
        book.load_book_model()
    assert book.load_book_model(verify=False).config == BOOK
