"""The training loop: loss, batches, schedule, a 20-step smoke run, resuming."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nexttoken.model import GPT, GPTConfig
from nexttoken.train import (
    LOG_CSV,
    LOG_JSON,
    TrainConfig,
    cross_entropy,
    encode_documents,
    evaluate,
    get_batch,
    lr_at,
    train_model,
)

TINY = GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, n_embd=16)


def _data(n: int = 2000) -> torch.Tensor:
    # a learnable stream: a repeating pattern with some noise
    g = torch.Generator().manual_seed(0)
    base = torch.arange(n) % 7
    noise = torch.randint(0, 32, (n,), generator=g)
    return torch.where(torch.rand(n, generator=g) < 0.1, noise, base)


def test_cross_entropy_is_minus_log_softmax():
    logits = torch.randn(2, 3, 5)
    y = torch.randint(0, 5, (2, 3))
    manual = -torch.log_softmax(logits, -1).gather(-1, y[..., None]).mean()
    assert torch.allclose(cross_entropy(logits, y), manual)
    with pytest.raises(ValueError, match="logits"):
        cross_entropy(logits[0], y)


def test_uniform_logits_give_log_v():
    assert math.isclose(
        float(cross_entropy(torch.zeros(1, 4, 10), torch.zeros(1, 4, dtype=torch.long))),
        math.log(10),
        rel_tol=1e-6,
    )


def test_get_batch_targets_are_shifted_inputs():
    data = torch.arange(100)
    x, y = get_batch(data, 4, 8, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(y, x + 1)
    with pytest.raises(ValueError, match="block_size"):
        get_batch(torch.arange(5), 1, 8, torch.Generator())


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(steps=100, warmup=10, lr=1.0, min_lr=0.1)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] == pytest.approx(0.1)


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=-1.0)


def test_evaluate_counts_every_target_once():
    torch.manual_seed(0)
    model = GPT(TINY)
    ids = _data(50)
    loss, n = evaluate(model, ids)
    assert n == 49
    # the same number by hand, window by window
    total = 0.0
    for s in range(0, 49, 16):
        x, y = ids[s : s + 16][None], ids[s + 1 : s + 17][None]
        x = x[:, : y.size(1)]
        with torch.no_grad():
            total += float(cross_entropy(model(x), y)) * y.numel()
    assert loss == pytest.approx(total / 49, rel=1e-5)


def test_twenty_steps_loss_falls(tmp_path):
    torch.manual_seed(0)
    model = GPT(TINY)
    data = _data()
    cfg = TrainConfig(steps=20, batch_size=8, lr=1e-2, min_lr=1e-3, warmup=2, eval_every=10)
    log = train_model(model, data, data[:200], cfg, out_dir=tmp_path, progress=False)
    assert len(log["losses"]) == 20
    assert sum(log["losses"][-5:]) < sum(log["losses"][:5])
    assert log["evals"][-1]["held_loss"] < log["evals"][0]["held_loss"] + 0.5
    assert log["evals"][-1]["held_loss"] < math.log(32)
    saved = json.loads((tmp_path / LOG_JSON).read_text())
    assert [r["step"] for r in saved["evals"]] == [10, 20]
    assert (tmp_path / LOG_CSV).read_text().startswith("step,train_loss,held_loss")
    assert (tmp_path / "model.safetensors").exists()


def test_resume_gives_the_same_weights(tmp_path):
    data = _data()
    full = TrainConfig(steps=8, batch_size=4, lr=1e-2, warmup=2, eval_every=4, min_lr=1e-3)
    torch.manual_seed(0)
    a = GPT(TINY)
    train_model(a, data, data[:100], full, progress=False)
    # the same run, stopped at its first evaluation (step 4), then resumed from out_dir
    torch.manual_seed(0)
    b = GPT(TINY)
    _train_until(b, data, full, tmp_path, 4)
    c = GPT(TINY)
    train_model(c, data, data[:100], full, out_dir=tmp_path, resume=True, progress=False)
    for (k, va), vc in zip(a.state_dict().items(), c.state_dict().values(), strict=True):
        assert torch.allclose(va, vc, atol=1e-6), k


class _Stop(Exception):
    pass


def _stop_at(step):
    def cb(row, model):
        if row["step"] >= step:
            raise _Stop

    return cb


def _train_until(model, data, cfg, out_dir, step):
    with pytest.raises(_Stop):
        train_model(
            model, data, data[:100], cfg, out_dir=out_dir, progress=False, on_eval=_stop_at(step)
        )


def test_encode_documents_puts_endoftext_first():
    from nexttoken.book import load_book_encoding

    enc = load_book_encoding()
    ids = encode_documents(["Hi", "Yo"], enc).tolist()
    assert ids[0] == enc.eot_token and ids.count(enc.eot_token) == 2
    assert enc.decode(ids) == "<|endoftext|>Hi<|endoftext|>Yo"


# --- notebook 08's exercise checkers accept the right answers and reject typical wrong ones ---

from nexttoken.exercises import training as ex  # noqa: E402


def test_check_cross_entropy(capsys):
    def right(logits, y):
        return -torch.log_softmax(logits, -1).gather(-1, y[..., None]).mean()

    def wrong_axis(logits, y):
        return -torch.log_softmax(logits, 1).gather(-1, y[..., None]).mean()

    def no_minus(logits, y):
        return torch.log_softmax(logits, -1).gather(-1, y[..., None]).mean()

    def summed(logits, y):
        return -torch.log_softmax(logits, -1).gather(-1, y[..., None]).sum()

    def no_log(logits, y):
        return -torch.softmax(logits, -1).gather(-1, y[..., None]).mean()

    assert ex.check_cross_entropy(right)
    for bad in (wrong_axis, no_minus, summed, no_log, 3.0):
        assert not ex.check_cross_entropy(bad)
    assert not ex.check_cross_entropy(None)
    assert "TODO" in capsys.readouterr().out


def test_check_uniform_loss():
    assert ex.check_uniform_loss(math.log(4096))
    for bad in (math.log2(4096), 1 / 4096, 4096, "8.3"):
        assert not ex.check_uniform_loss(bad)


def test_check_perplexity():
    assert ex.check_perplexity(math.exp)
    for bad in (lambda x: 2**x, lambda x: 10**x, lambda x: 1 / (x + 1), lambda x: math.log(x + 1)):
        assert not ex.check_perplexity(bad)


def test_check_nats_per_char(capsys):
    assert ex.check_nats_per_char(lambda n, t, c: n * t / c)
    assert not ex.check_nats_per_char(lambda n, t, c: n * c / t)
    assert "swapped" in capsys.readouterr().out
    assert not ex.check_nats_per_char(lambda n, t, c: n / c)


def test_check_targets(capsys):
    assert ex.check_targets(lambda d, s, n: (d[s : s + n], d[s + 1 : s + n + 1]))
    assert not ex.check_targets(lambda d, s, n: (d[s : s + n], d[s : s + n]))
    assert "copy" in capsys.readouterr().out
    assert not ex.check_targets(lambda d, s, n: (d[s : s + n], d[s - 1 : s + n - 1]))
    assert not ex.check_targets(lambda d, s, n: d[s : s + n])


def test_evaluate_with_a_stride_scores_every_target_once():
    torch.manual_seed(0)
    model = GPT(TINY)
    ids = _data(70)
    loss, n = evaluate(model, ids, stride=4)
    assert n == 69
    # by hand: target j is scored in the window that ends at the first window end >= j
    with torch.no_grad():
        total = 0.0
        prev = 0
        for begin in range(0, 69, 4):
            end = min(begin + 16, 69)
            per = torch.nn.functional.cross_entropy(
                model(ids[begin:end][None])[0], ids[begin + 1 : end + 1], reduction="none"
            )
            total += float(per[-(end - prev) :].sum())
            prev = end
            if end == 69:
                break
    assert loss == pytest.approx(total / 69, rel=1e-5)
    assert evaluate(model, ids, stride=16) == pytest.approx(evaluate(model, ids))
    with pytest.raises(ValueError, match="stride"):
        evaluate(model, ids, stride=17)


# --- notebook 08's figures and widget ---


def test_training_figures_and_widget():
    from matplotlib.figure import Figure

    from nexttoken.book import load_book_encoding
    from nexttoken.viz.training import corpus_figure, loss_curve_figure, token_loss_figure
    from nexttoken.widgets.training import token_loss_widget

    log = {"losses": [8.0, 7.0, 6.5, 6.0], "evals": [{"step": 2, "held_loss": 7.2}]}
    assert isinstance(loss_curve_figure(log, baseline=8.3, smooth=2), Figure)
    with pytest.raises(ValueError, match="losses"):
        loss_curve_figure({"losses": []})
    rows = [{"title": "A", "tokens": 3}, {"title": "B", "tokens": 5}]
    assert isinstance(corpus_figure(rows, "B"), Figure)
    assert isinstance(token_loss_figure(["a", " b"], [1.0, 2.0]), Figure)
    with pytest.raises(ValueError, match="match"):
        token_loss_figure(["a"], [1.0, 2.0])
    enc = load_book_encoding()
    torch.manual_seed(0)
    small = GPT(GPTConfig(vocab_size=4096, block_size=16, n_layer=1, n_head=2, n_embd=16))
    box = token_loss_widget(small, enc, {"one": "To be, or not to be", "two": "Le chat"})
    assert "nt-token-loss" in box._dom_classes
    dropdown = box.children[0].children[0]
    dropdown.value = "two"
    assert len(box.children[1].outputs) == 1
