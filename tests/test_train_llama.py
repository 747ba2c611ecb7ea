"""Training the book model's Llama-family twin (notebook 14) with the book's own loop and CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from nexttoken.book import (
    LLAMA_CARD_JSON,
    LLAMA_FILE,
    book_llama_config,
    ship_llama_model,
)
from nexttoken.checkpoint import load_model, sha256_file
from nexttoken.cli import main
from nexttoken.configs import get_config
from nexttoken.llama import Llama, LlamaConfig
from nexttoken.model import GPT
from nexttoken.train import TrainConfig, estimate_train_memory, train_model

TINY = LlamaConfig(
    vocab_size=64,
    block_size=16,
    n_layer=1,
    n_head=2,
    n_kv_head=1,
    n_embd=16,
    intermediate_size=24,
    tie_embeddings=True,
    name="tiny",
)


def _data(n: int = 400) -> torch.Tensor:
    return torch.randint(0, 64, (n,), generator=torch.Generator().manual_seed(1))


def _llama(config: LlamaConfig = TINY) -> Llama:
    torch.manual_seed(0)
    return Llama(config)


def test_book_llama_matches_the_book_models_size():
    c = book_llama_config()
    assert (c.vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd) == (4096, 256, 4, 4, 256)
    assert (c.n_kv_head, c.intermediate_size, c.tie_embeddings) == (2, 792, True)
    with torch.device("meta"):
        llama, gpt = Llama(c).num_parameters(), GPT(get_config("book")).num_parameters()
    assert (llama, gpt) == (4_270_336, 4_273_664)  # within 0.08%
    assert estimate_train_memory(c, 16) == 16 * 4_270_336 + 4 * 16 * 256 * (
        4 * (8 * 256 + 4 * 792 + 2 * 4 * 256) + 3 * 4096
    )


def test_a_llama_trains_and_resumes_bit_for_bit(tmp_path):
    cfg = TrainConfig(steps=4, batch_size=2, eval_every=2)
    whole = _llama()
    log = train_model(whole, _data(), _data(100), cfg, out_dir=tmp_path / "a", progress=False)
    assert len(log["losses"]) == 4 and log["config"]["n_kv_head"] == 1
    assert not torch.equal(whole.lm_head.weight, _llama().lm_head.weight)  # it was trained

    half = _llama()
    train_model(half, _data(), _data(100), TrainConfig(steps=2, batch_size=2, eval_every=2),
                out_dir=tmp_path / "b", progress=False)  # fmt: skip
    again = _llama()  # a fresh process would start from other weights: resume overwrites them
    log_b = train_model(again, _data(), _data(100), cfg, out_dir=tmp_path / "b", resume=True,
                        progress=False)  # fmt: skip
    assert log_b["losses"] == log["losses"]
    for (name, p), q in zip(whole.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    saved = load_model(tmp_path / "a" / "model.safetensors")
    ids = _data(12)[None]
    assert torch.equal(saved(ids), whole.eval()(ids))
    assert saved.lm_head.weight is saved.model.embed_tokens.weight  # tied after loading


def test_train_model_still_refuses_other_models():
    with pytest.raises(TypeError, match="model must be a nexttoken GPT or Llama, got Linear"):
        train_model(torch.nn.Linear(2, 2), _data(), _data(), TrainConfig(steps=1))
    with pytest.raises(TypeError, match="config must be a GPTConfig or LlamaConfig, got str"):
        estimate_train_memory("book-llama", 16)


@pytest.mark.parametrize(
    "args, match",
    [
        (["--arch", "llama", "--config", "gpt2"], "takes --config book (the default) only"),
        (["--arch", "mamba"], "invalid choice: 'mamba'"),
    ],
)
def test_cli_arch_bad_input(capsys, tmp_path, args, match):
    code = main(["train", "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert match in err
    assert not (tmp_path / "r").exists()


def test_ship_llama_model_writes_a_checked_card(tmp_path, monkeypatch):
    import nexttoken.book as book

    def metrics(model, stride=None):  # the real one reads all of The Tempest (minutes here)
        with torch.no_grad():
            x = round(float(model(_data(8)[None]).logsumexp(-1).mean()), 4)
        keys = ("nats_per_token", "nats_per_char", "bits_per_char", "perplexity")
        return {"windows": f"stride {stride}", **dict.fromkeys(keys, x)}

    monkeypatch.setattr(book, "held_out_metrics", metrics)
    named = LlamaConfig(**{**dataclasses.asdict(TINY), "name": "book-llama"})
    model = _llama(named)
    cfg = TrainConfig(steps=2, batch_size=2, eval_every=2)
    train_model(model, _data(), _data(100), cfg, out_dir=tmp_path / "run", progress=False)
    card = ship_llama_model(tmp_path / "run", tmp_path, command="python -m nexttoken train x")
    assert card == json.loads((tmp_path / LLAMA_CARD_JSON).read_text())
    assert card["sha256"] == sha256_file(tmp_path / LLAMA_FILE)
    assert card["parameters"] == model.num_parameters() and card["steps_done"] == 2
    assert card["command"] == "python -m nexttoken train x"
    assert card["held_out_metrics"] == metrics(model)  # measured on the shipped weights
    assert card["held_out_metrics_sliding"]["windows"] == "stride 128"
    shipped = load_model(tmp_path / LLAMA_FILE)
    ids = _data(12)[None]
    assert torch.equal(shipped(ids), model.eval()(ids))
    train_model(_llama(), _data(), _data(100), cfg, out_dir=tmp_path / "tiny", progress=False)
    with pytest.raises(ValueError, match="does not hold a book-llama run"):
        ship_llama_model(tmp_path / "tiny", tmp_path)


def test_the_shipped_llama_twin_loads_checked(tmp_path, monkeypatch):
    import shutil

    import nexttoken
    import nexttoken.book as book

    model = nexttoken.load_book_llama_model()
    card = json.loads((book.assets_dir() / LLAMA_CARD_JSON).read_text())
    assert model.config == book_llama_config() and not model.training
    assert model.num_parameters() == card["parameters"] == 4_270_336
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert (
        card["train_config"]
        == json.loads((book.assets_dir() / "book_model.json").read_text())["train_config"]
    )  # trained exactly as the book model
    assert card["size_bytes"] <= 20_000_000
    for name in (LLAMA_FILE, LLAMA_CARD_JSON):
        shutil.copy(book.assets_dir() / name, tmp_path / name)
    with open(tmp_path / LLAMA_FILE, "r+b") as f:  # one byte of the last tensor changed
        f.seek(-3, 2)
        byte = f.read(1)
        f.seek(-3, 2)
        f.write(bytes([byte[0] ^ 1]))
    monkeypatch.setattr(book, "assets_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match="sha256 mismatch for book_llama_model.safetensors"):
        book.load_book_llama_model()
    assert isinstance(book.load_book_llama_model(verify=False), Llama)
