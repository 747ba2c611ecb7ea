"""Bad input to nexttoken.train: refused before any work, and a diverging run writes no garbage."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nexttoken.checkpoint import load_model
from nexttoken.configs import get_config
from nexttoken.model import GPT, GPTConfig
from nexttoken.train import (
    LOG_JSON,
    TrainConfig,
    available_memory,
    estimate_train_memory,
    train_model,
)

TINY = GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, n_embd=16)
NAN, INF = float("nan"), float("inf")

CONFIG_ERRORS = [
    (dict(lr=INF), "TrainConfig.lr must be finite"),
    (dict(lr=NAN), "TrainConfig.lr must be finite"),
    (dict(lr=0), "need lr > 0"),
    (dict(lr="1e-3"), "TrainConfig.lr must be a number"),
    (dict(min_lr=NAN), "TrainConfig.min_lr must be finite"),
    (dict(min_lr=1.0), "0 <= min_lr <= lr"),
    (dict(grad_clip=NAN), "TrainConfig.grad_clip must be finite"),
    (dict(grad_clip=INF), "TrainConfig.grad_clip must be finite"),
    (dict(grad_clip=0), "TrainConfig.grad_clip must be > 0"),
    (dict(weight_decay=-0.1), "TrainConfig.weight_decay must be >= 0"),
    (dict(weight_decay=NAN), "TrainConfig.weight_decay must be finite"),
    (dict(beta1=1.0), "TrainConfig.beta1 must be in [0, 1)"),
    (dict(beta2=-0.5), "TrainConfig.beta2 must be in [0, 1)"),
    (dict(beta2=True), "TrainConfig.beta2 must be a number"),
    (dict(steps=0), "TrainConfig.steps must be an int >= 1"),
    (dict(batch_size=2.0), "TrainConfig.batch_size must be an int >= 1"),
    (dict(warmup=-1), "TrainConfig.warmup must be an int >= 0"),
    (dict(seed=-1), "TrainConfig.seed must be in [0, 1099511627776]"),
    (dict(seed=10**23), "TrainConfig.seed must be in [0, 1099511627776]"),
    (dict(seed=1.5), "TrainConfig.seed must be an int"),
]


@pytest.mark.parametrize("kwargs, match", CONFIG_ERRORS)
def test_bad_train_config_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError) as info:
        TrainConfig(**kwargs)
    assert match in str(info.value)


def _data(n: int = 400) -> torch.Tensor:
    return torch.arange(n) % 7


def _model() -> GPT:
    torch.manual_seed(0)
    return GPT(TINY)


CFG = TrainConfig(steps=4, batch_size=2, lr=1e-2, warmup=1, eval_every=2, min_lr=1e-3)

CALL_ERRORS = [
    (lambda p: train_model(_model(), _data(), _data(), "cfg"), TypeError, "cfg must be a TrainCon"),
    (lambda p: train_model("m", _data(), _data(), CFG), TypeError, "model must be a nexttoken GPT"),
    (lambda p: train_model(_model(), [1, 2], _data(), CFG), TypeError, "train_ids must be a 1-D"),
    (
        lambda p: train_model(_model(), _data().float(), _data(), CFG),
        TypeError,
        "train_ids must be a 1-D torch.long tensor",
    ),
    (lambda p: train_model(_model(), _data(10), _data(), CFG), ValueError, "at least 17 tokens"),
    (lambda p: train_model(_model(), _data(), _data(1), CFG), ValueError, "at least 2 tokens"),
    (
        lambda p: train_model(_model(), _data() + 30, _data(), CFG),
        ValueError,
        "train_ids holds token id 36, outside the model's vocabulary [0, 31]",
    ),
    (
        lambda p: train_model(_model(), _data(), _data(), CFG, out_dir=_file(p)),
        FileExistsError,
        "exists and is not a folder",
    ),
    (
        lambda p: train_model(_model(), _data(), _data(), CFG, out_dir=p, resume=True),
        FileNotFoundError,
        "resume=True needs an out_dir holding a previous run",
    ),
    (
        lambda p: train_model(_model(), _data(), _data(), CFG, out_dir=_log(p, "{x"), resume=True),
        ValueError,
        "training_log.json is not valid JSON",
    ),
    (
        lambda p: train_model(
            _model(),
            _data(),
            _data(),
            CFG,
            out_dir=_log(p, '{"losses": [1, 2, 3, 4, 5]}'),
            resume=True,
        ),
        ValueError,
        "has already done 5 steps, more than steps=4",
    ),
    (
        lambda p: train_model(
            _model(), _data(), _data(), CFG, out_dir=_log(p, '{"losses": [1]}'), resume=True
        ),
        FileNotFoundError,
        "cannot resume",
    ),
    (lambda p: estimate_train_memory("book", 16), TypeError, "config must be a GPTConfig"),
    (lambda p: estimate_train_memory(TINY, 0), ValueError, "batch_size must be an int >= 1"),
]


def _file(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    return f


def _log(tmp_path, text):
    (tmp_path / LOG_JSON).write_text(text)
    return tmp_path


@pytest.mark.parametrize("call, exc, match", CALL_ERRORS)
def test_bad_call_is_refused_before_any_step(tmp_path, call, exc, match):
    with pytest.raises(exc) as info:
        call(tmp_path)
    assert match in str(info.value)


def _poison(at_step: int):
    """An on_eval callback that makes the weights NaN after step ``at_step`` (a diverging run)."""

    def cb(row, model):
        if row["step"] == at_step:
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(NAN)

    return cb


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(FloatingPointError) as info:
        train_model(
            _model(), _data(), _data(), CFG, out_dir=tmp_path, on_eval=_poison(2), progress=False
        )
    msg = str(info.value)
    assert "step 3: the training loss is nan" in msg and "training diverged" in msg
    assert "the last good checkpoint (step 2) is kept" in msg
    saved = load_model(tmp_path / "model.safetensors")
    assert all(bool(torch.isfinite(p).all()) for p in saved.parameters())
    log = json.loads((tmp_path / LOG_JSON).read_text())
    assert len(log["losses"]) == 2 and all(math.isfinite(x) for x in log["losses"])


def test_huge_learning_rate_is_stopped_not_saved_as_nan(tmp_path):
    cfg = TrainConfig(steps=6, batch_size=2, lr=1e30, min_lr=0, warmup=0, eval_every=1)
    with pytest.raises(FloatingPointError, match="training diverged"):
        train_model(_model(), _data(), _data(), cfg, out_dir=tmp_path, progress=False)
    if (tmp_path / "model.safetensors").exists():  # only finite checkpoints are ever written
        saved = load_model(tmp_path / "model.safetensors")
        assert all(bool(torch.isfinite(p).all()) for p in saved.parameters())


def test_finished_resume_returns_the_log_unchanged(tmp_path):
    log = train_model(_model(), _data(), _data(), CFG, out_dir=tmp_path, progress=False)
    again = train_model(
        _model(), _data(), _data(), CFG, out_dir=tmp_path, resume=True, progress=False
    )
    assert again["losses"] == log["losses"] and len(again["losses"]) == CFG.steps


def test_memory_estimate_is_sane():
    book = estimate_train_memory(get_config("book"), 16)
    assert 300e6 < book < 1.5e9  # measured peak: about 640 MB
    assert estimate_train_memory(get_config("book"), 64) > 3 * book
    assert estimate_train_memory(get_config("gpt3-175b"), 1) > 2.8e12  # 16 bytes x 175e9
    have = available_memory()
    assert have is None or have > 0
