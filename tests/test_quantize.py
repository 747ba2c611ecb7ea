"""int8 weights: the visible lines are right, and the quantized models run where a GPT runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from nexttoken.generate import generate
from nexttoken.model import GPT
from nexttoken.quantize import (
    Int8Linear,
    dequantize,
    int8_weights,
    quantize,
    quantize_int8,
    weight_bytes,
)


def test_quantize_int8_rounds_each_row_to_its_own_scale():
    torch.manual_seed(0)
    w = torch.randn(6, 10) * torch.tensor([0.01, 0.1, 1, 10, 100, 1e-8])[:, None]
    w_int8, scale = quantize_int8(w)
    assert w_int8.dtype == torch.int8 and scale.shape == (6,)
    assert int(w_int8.abs().max()) == 127  # each row uses the full range
    err = (dequantize(w_int8, scale) - w).abs()
    assert bool((err <= scale[:, None] / 2 * (1 + 1e-5)).all())  # at most half a step
    zero = torch.zeros(2, 3)  # an all-zero row must not divide by zero
    assert torch.equal(dequantize(*quantize_int8(zero)), zero)


def test_int8_weights_swaps_every_linear_and_keeps_the_original(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    q = int8_weights(tiny_model)
    assert isinstance(q, GPT)
    assert not any(isinstance(m, nn.Linear) for m in q.modules())
    n_linear = sum(isinstance(m, nn.Linear) for m in tiny_model.modules())
    assert sum(isinstance(m, Int8Linear) for m in q.modules()) == n_linear
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, before[k])
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(q(ids), tiny_model(ids), atol=5e-3, rtol=0)


@pytest.mark.parametrize("make", [int8_weights, lambda m: quantize(m, "int8"),
                                  lambda m: quantize(m, "bf16")])  # fmt: skip
def test_generate_accepts_the_quantized_model(tiny_model, make):
    q = make(tiny_model)
    out = generate(q, [5, 6, 7], 6, temperature=0)
    assert out.shape == (1, 9)
    g = torch.Generator().manual_seed(0)
    assert generate(q, [5, 6, 7], 4, generator=g).shape == (1, 7)


@pytest.mark.parametrize("make", [int8_weights, lambda m: quantize(m, "int8"),
                                  lambda m: quantize(m, "bf16")])  # fmt: skip
def test_batching_serving_and_the_loop_accept_the_quantized_model(tiny_model, make):
    # they once read the device from lm_head.weight, which a quantized lm_head does not have
    from nexttoken.batching import generate_batch
    from nexttoken.loop import next_step
    from nexttoken.serve import Engine

    q = make(tiny_model)
    prompts = [[5, 6, 7], [8, 9]]
    alone = [generate(q, p, 4, temperature=0)[0].tolist() for p in prompts]
    assert generate_batch(q, prompts, 4, temperature=0) == alone
    engine = Engine(q, max_batch=2, num_blocks=8, block_tokens=4)
    ids = [engine.add_request(p, 4, temperature=0) for p in prompts]
    out = engine.run()
    assert [out[i] for i in ids] == alone
    assert next_step(q, [5, 6, 7]) is not None


def test_int8_reads_about_a_quarter_of_the_bytes(tiny_model):
    fp32 = weight_bytes(tiny_model)
    for q in (int8_weights(tiny_model), quantize(tiny_model, "int8")):
        assert 0.25 * fp32 < weight_bytes(q) < 0.35 * fp32
    assert weight_bytes(quantize(tiny_model, "bf16")) == fp32 // 2


def test_book_model_held_out_loss_within_one_percent():
    from nexttoken import load_book_model
    from nexttoken.book import held_out_metrics, load_model_card

    fp32 = load_model_card()["held_out_metrics"]["nats_per_token"]
    got = held_out_metrics(quantize(load_book_model(), "int8"))["nats_per_token"]
    assert abs(got - fp32) / fp32 < 0.01


def test_bad_arguments(tiny_model):
    with pytest.raises(ValueError, match="known: int8, bf16"):
        quantize(tiny_model, "int4")
    with pytest.raises(TypeError, match="nexttoken GPT"):
        quantize(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="already quantized"):
        int8_weights(int8_weights(tiny_model))


def test_tradeoff_figure_draws():
    from nexttoken.viz.faster import tradeoff_figure

    rows = {
        "fp32": {"weight_bytes_per_token": 16e6, "tokens_per_s": 300.0,
                 "held_out_nats_per_token": 4.31},
        "int8": {"weight_bytes_per_token": 4e6, "tokens_per_s": 500.0},
    }  # fmt: skip
    assert len(tradeoff_figure(rows).axes[0].texts) == 2
