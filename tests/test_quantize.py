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


# --- issue 24: int8 whose tokens do not depend on what else is in the pass ------------------------


def _int8_linear(k: int, n: int):
    from nexttoken.quantize import RowInt8Linear

    torch.manual_seed(0)
    return RowInt8Linear.from_linear(nn.Linear(k, n))


def _rows(m: int, k: int) -> torch.Tensor:
    """``m`` rows of very different sizes (a per-tensor scale would let the large ones decide)."""
    torch.manual_seed(1)
    return torch.randn(m, k) * torch.logspace(-2, 2, m)[:, None]


def test_quantize_rows_gives_integers_on_each_rows_own_scale():
    from nexttoken.quantize import quantize_rows

    x = _rows(5, 16)
    x[2] = 0  # an all-zero row must not divide by zero
    x_int, t = quantize_rows(x)
    assert t.shape == (5, 1) and torch.equal(x_int, torch.round(x_int))
    assert x_int.abs().amax(dim=1).tolist() == [63, 63, 0, 63, 63]
    assert bool(((t * x_int - x).abs() <= t / 2 * (1 + 1e-5)).all())
    x_int3, t3 = quantize_rows(x[3:4])  # a row alone: the same integers and scale
    assert torch.equal(x_int3, x_int[3:4]) and torch.equal(t3, t[3:4])


@pytest.mark.parametrize("k, n", [(32, 96), (768, 3072), (3072, 768)])
def test_int8_linear_is_exact_integer_arithmetic(k, n):
    # t * (s_j * sum x_int W_int8) + b, with the integer sum exact: compared with int64 products
    from nexttoken.quantize import quantize_rows

    lin = _int8_linear(k, n)
    x = _rows(9, k)
    x_int, t = quantize_rows(x)
    acc = x_int.to(torch.int64) @ lin.weight_int8.to(torch.int64).T
    want = (acc.float() * lin.weight_scale) * t + lin.bias
    assert torch.equal(lin(x), want)


ALL_M = tuple(range(1, 65))


@pytest.mark.parametrize(
    "k, n, ms",
    [(768, 2304, ALL_M), (3072, 768, ALL_M), (768, 50257, (1, 2, 3, 7, 8, 16, 17, 31, 33, 63, 64))],
)
def test_int8_linear_rows_are_bit_identical_for_any_number_of_rows(k, n, ms):
    lin = _int8_linear(k, n)
    x = _rows(64, k)
    with torch.inference_mode():
        full = lin(x)
        for m in ms:
            assert torch.equal(lin(x[:m]), full[:m]), m
            assert torch.equal(lin(x[64 - m :]), full[64 - m :]), m


def test_int8_logits_of_a_row_do_not_depend_on_its_neighbours(tiny_model):
    q = quantize(tiny_model, "int8")
    torch.manual_seed(2)
    ids = torch.randint(0, 97, (4, 10))
    ids[1:] *= 0  # neighbours with tiny activations... and
    ids[3] = 96  # one with others
    with torch.inference_mode():
        assert torch.equal(q(ids)[0], q(ids[:1])[0])


def _prompts(vocab: int, n: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 12, (n,), generator=g).tolist()
    return [torch.randint(0, vocab, (n_,), generator=g).tolist() for n_ in lengths]


@pytest.fixture(scope="module")
def book_int8():
    from nexttoken import load_book_model
    from nexttoken.book import load_book_draft_model

    model = load_book_model()
    return (
        quantize(model, "int8"),
        load_book_draft_model(),
        _prompts(model.config.vocab_size, 12, 7),
    )


@pytest.fixture(scope="module")
def gpt2_int8():
    from nexttoken.configs import get_config
    from nexttoken.model import GPTConfig

    torch.manual_seed(0)
    q = quantize(GPT(get_config("gpt2")).eval(), "int8")
    torch.manual_seed(1)  # a random draft of the same vocabulary: most proposals rejected
    draft = GPT(GPTConfig(vocab_size=50257, block_size=64, n_layer=1, n_head=2, n_embd=64)).eval()
    return q, draft, _prompts(50257, 3, 7)


@pytest.fixture(scope="module")
def alone_book(book_int8):
    q, _, prompts = book_int8
    return [generate(q, p, 40, temperature=0)[0].tolist() for p in prompts]


@pytest.fixture(scope="module")
def alone_gpt2(gpt2_int8):
    q, _, prompts = gpt2_int8
    return [generate(q, p, 40, temperature=0)[0].tolist() for p in prompts]


@pytest.fixture(params=["book", "gpt2"])
def case(request):
    """(int8 model, draft, 12 or 3 prompts, their 40 greedy tokens from ``generate`` alone)."""
    if request.param == "book":
        return (*request.getfixturevalue("book_int8"), request.getfixturevalue("alone_book"))
    return (*request.getfixturevalue("gpt2_int8"), request.getfixturevalue("alone_gpt2"))


# Each of the four below failed on both models with one activation scale per tensor (torch's
# quantize_dynamic, before issue 24); with per-row scales but fp32 attention, cached = uncached
# still failed on the GPT-2 shape (a last-bit difference crossing a 7-bit rounding boundary).


def test_int8_greedy_cached_equals_uncached(case):
    q, _, prompts, alone = case
    uncached = [generate(q, p, 40, temperature=0, use_cache=False)[0].tolist() for p in prompts]
    assert uncached == alone


def test_int8_generate_batch_equals_generate_alone(case):
    from nexttoken.batching import generate_batch

    q, _, prompts, alone = case
    assert generate_batch(q, prompts, 40, temperature=0) == alone


def test_int8_engine_equals_generate_alone(case):
    from nexttoken.serve import Engine

    q, _, prompts, alone = case
    engine = Engine(q, max_batch=4, num_blocks=64, block_tokens=8)  # ragged, joining mid-run
    ids = [engine.add_request(p, 40, temperature=0) for p in prompts]
    out = engine.run()
    assert [out[i] for i in ids] == alone


def test_int8_target_speculative_equals_generate(case):
    from nexttoken.speculative import speculative_generate

    q, draft, prompts, alone = case
    got = [
        speculative_generate(q, draft, p, 40, k=3, temperature=0)[0][0].tolist() for p in prompts
    ]
    assert got == alone


def test_int8_model_deep_copies(tiny_model):
    import copy

    q = quantize(tiny_model, "int8")
    c = copy.deepcopy(q)
    assert generate(c, [5, 6, 7], 6, temperature=0).tolist() == (
        generate(q, [5, 6, 7], 6, temperature=0).tolist()
    )


def test_bf16_rows_leave_generate_alone_only_at_near_ties(book_int8):
    # What bf16 guarantees (it is not batch-invariant): every logit is rounded to 8 significant
    # bits, so a batched pass, summing in another order, can tip a choice between two
    # tokens whose logits lie within a bf16 step or two; nowhere else.
    from nexttoken import load_book_model
    from nexttoken.batching import generate_batch

    b = quantize(load_book_model(), "bf16")
    prompts = book_int8[2]
    alone = [generate(b, p, 40, temperature=0)[0].tolist() for p in prompts]
    gaps = []
    for p, a, o in zip(prompts, alone, generate_batch(b, prompts, 40, temperature=0), strict=True):
        first = next((i for i in range(len(p), len(a)) if a[i] != o[i]), None)
        if first is None:
            continue
        with torch.inference_mode():
            top2 = b(torch.tensor([a[:first]]))[0, -1].float().topk(2).values
        gaps.append(float(top2[0] - top2[1]))
    assert all(g <= 2 * 2.0**-7 * 16 for g in gaps), gaps  # two bf16 steps at a logit of 16
