"""Batched generation: ragged prompts in one batch give each prompt the tokens it gets alone."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nexttoken import load_book_model
from nexttoken.batching import column_major_weights, generate_batch, padded_batch
from nexttoken.generate import generate
from nexttoken.model import GPT, GPTConfig

# GPT-2 small's shape (12 x 768, 12 heads, the 50,257-token vocabulary), random weights, with a
# short context so that it builds fast
GPT2_SHAPED = GPTConfig(vocab_size=50257, block_size=64, n_layer=12, n_head=12, n_embd=768)


@pytest.fixture(scope="module")
def book():
    return load_book_model()


@pytest.fixture(scope="module")
def gpt2_shaped():
    torch.manual_seed(0)
    return GPT(GPT2_SHAPED).eval()


def _prompts(draw_lengths, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in draw_lengths]


def _alone(model, prompts, n, **kw):
    return [generate(model, p, n, temperature=0, **kw)[0].tolist() for p in prompts]


@settings(max_examples=12, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 30), min_size=1, max_size=8),
    new=st.integers(0, 10),
    seed=st.integers(0, 10_000),
)
def test_greedy_batch_equals_generate_alone_book_model(book, lengths, new, seed):
    prompts = _prompts(lengths, book.config.vocab_size, seed)
    assert generate_batch(book, prompts, new, temperature=0) == _alone(book, prompts, new)


@settings(max_examples=3, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 20), min_size=2, max_size=4),
    seed=st.integers(0, 10_000),
)
def test_greedy_batch_equals_generate_alone_gpt2_shaped(gpt2_shaped, lengths, seed):
    prompts = _prompts(lengths, GPT2_SHAPED.vocab_size, seed)
    assert generate_batch(gpt2_shaped, prompts, 5, temperature=0) == _alone(gpt2_shaped, prompts, 5)


@settings(max_examples=10, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=6),
    seed=st.integers(0, 10_000),
)
def test_greedy_batch_equals_generate_alone_tiny(tiny_model, lengths, seed):
    prompts = _prompts(lengths, tiny_model.config.vocab_size, seed)
    n = tiny_model.config.block_size - max(lengths)
    assert generate_batch(tiny_model, prompts, n, temperature=0) == _alone(tiny_model, prompts, n)


def test_stop_token_ends_each_row_on_its_own(book):
    prompts = _prompts([3, 9, 5, 1], book.config.vocab_size, 1)
    # each row's own 3rd greedy token as the stop token of the whole batch: rows stop at their own
    stop = _alone(book, prompts[:1], 3)[0][-1]
    got = generate_batch(book, prompts, 12, temperature=0, stop_token=stop)
    assert got == _alone(book, prompts, 12, stop_token=stop)
    assert got[0][-1] == stop and len(got[0]) == 3 + 3


def test_sampling_is_seeded_and_stays_in_vocabulary(tiny_model):
    prompts = [[1, 2, 3], [4], [5, 6]]
    kw = dict(temperature=0.9, top_k=20, top_p=0.9)
    a = generate_batch(tiny_model, prompts, 6, generator=torch.Generator().manual_seed(3), **kw)
    b = generate_batch(tiny_model, prompts, 6, generator=torch.Generator().manual_seed(3), **kw)
    assert a == b
    assert [len(r) for r in a] == [9, 7, 8]
    assert all(0 <= t < tiny_model.config.vocab_size for r in a for t in r)


def test_single_prompt_batch_is_generate(book):
    p = [10, 20, 30, 40]
    assert generate_batch(book, [p], 8, temperature=0) == _alone(book, [p], 8)


def test_padding_positions_and_mask():
    batch = padded_batch([[7, 8, 9], [5]], pad_id=0)
    assert batch.ids.tolist() == [[7, 8, 9], [0, 0, 5]]
    assert batch.pad.tolist() == [0, 2]
    assert batch.positions.tolist() == [[0, 1, 2], [0, 0, 0]]
    assert batch.valid.tolist() == [[True, True, True], [False, False, True]]
    m = batch.mask()[:, 0]
    assert m.shape == (2, 3, 3)
    # the real token of row 1 sees only itself; padding queries see only themselves
    assert m[1].tolist() == [[True, False, False], [False, True, False], [False, False, True]]
    assert m[0].tolist() == [[True, False, False], [True, True, False], [True, True, True]]


def test_without_positions_or_mask_the_tokens_change(book):
    """What the notebook shows: drop either fix and a short prompt's continuation changes."""
    short, long = [11, 12, 13], list(range(100, 130))
    batch = padded_batch([long, short])
    alone = book(torch.tensor([short]))[0, -1]
    with torch.inference_mode():
        right = book.run(batch.ids, positions=batch.positions, attn_mask=batch.mask()).logits
        no_mask = book.run(batch.ids, positions=batch.positions).logits
        no_pos = book.run(batch.ids, attn_mask=batch.mask()).logits
    assert torch.allclose(right[1, -1], alone, atol=1e-4)
    assert not torch.allclose(no_mask[1, -1], alone, atol=1e-2)
    assert not torch.allclose(no_pos[1, -1], alone, atol=1e-2)


@pytest.mark.parametrize(
    "prompts, new, kw, err",
    [
        ([], 3, {}, ValueError),
        ([[1, 2], []], 3, {}, ValueError),
        ([[1, 2], [1.5]], 3, {}, TypeError),
        ("abc", 3, {}, TypeError),
        (torch.tensor([[1, 2]]), 3, {}, TypeError),
        ([[1, 2], [97]], 3, {}, ValueError),
        ([[1, 2]], -1, {}, ValueError),
        ([[1, 2]], 30, {}, ValueError),  # 2 + 30 > block_size 24
        ([[1, 2]], 3, {"temperature": -1}, ValueError),
        ([[1, 2]], 3, {"top_k": 0}, ValueError),
        ([[1, 2]], 3, {"stop_token": 200}, ValueError),
        ([[1, 2]], 3, {"generator": 0}, TypeError),
    ],
)
def test_bad_input_is_a_clear_error(tiny_model, prompts, new, kw, err):
    with pytest.raises(err):
        generate_batch(tiny_model, prompts, new, **kw)


def test_model_stays_in_its_mode(tiny_model):
    tiny_model.train()
    try:
        generate_batch(tiny_model, [[1], [2, 3]], 2, temperature=0)
        assert tiny_model.training
    finally:
        tiny_model.eval()


def test_positions_are_checked(tiny_model):
    ids = torch.tensor([[1, 2]])
    with pytest.raises(ValueError, match="positions"):
        tiny_model.run(ids, positions=torch.tensor([[0]]))
    with pytest.raises(ValueError, match="positions"):
        tiny_model.run(ids, positions=torch.tensor([[0, 24]]))


def test_column_major_weights_keep_values_and_shapes(tiny_model):
    packed = column_major_weights(copy.deepcopy(tiny_model))
    before, after = tiny_model.state_dict(), packed.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # same values, same shapes
    w = packed.transformer.h[0].mlp.c_fc.weight  # (4d, d), laid out as (d, 4d) row by row
    assert w.shape == tiny_model.transformer.h[0].mlp.c_fc.weight.shape
    assert w.stride() == (1, w.size(0)) and not w.is_contiguous()
    assert packed.lm_head.weight is packed.transformer.wte.weight  # still tied, untouched


def test_column_major_batch_equals_its_own_generate(book):
    packed = column_major_weights(copy.deepcopy(book))
    prompts = [[5, 9, 200], list(range(30, 47)), [7]]
    together = generate_batch(packed, prompts, 12, temperature=0)
    for p, row in zip(prompts, together, strict=True):
        assert row == generate(packed, p, 12, temperature=0)[0].tolist()


def test_column_major_needs_a_gpt():
    with pytest.raises(TypeError, match="nexttoken GPT"):
        column_major_weights(torch.nn.Linear(2, 2))
