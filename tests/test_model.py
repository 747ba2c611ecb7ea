"""The decoder: shapes, what run() hands back, causality, the KV cache, and clear errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nexttoken.model import GPT, GPTConfig, attention, causal_mask


def ids_for(cfg: GPTConfig, B: int, N: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.vocab_size, (B, N), generator=g)


def test_logits_shape(tiny_model, tiny_config):
    logits = tiny_model(ids_for(tiny_config, 3, 7))
    assert logits.shape == (3, 7, tiny_config.vocab_size)


def test_run_hands_back_hidden_states_and_attentions(tiny_model, tiny_config):
    ids = ids_for(tiny_config, 2, 9)
    out = tiny_model.run(ids, output_hidden_states=True, output_attentions=True)
    cfg = tiny_config
    assert len(out.hidden_states) == cfg.n_layer + 1
    assert all(h.shape == (2, 9, cfg.n_embd) for h in out.hidden_states)
    assert len(out.attentions) == cfg.n_layer
    assert all(a.shape == (2, cfg.n_head, 9, 9) for a in out.attentions)
    # the same pass: logits equal the plain forward, and the projection reads final_hidden
    torch.testing.assert_close(out.logits, tiny_model(ids))
    torch.testing.assert_close(out.logits, out.final_hidden @ tiny_model.transformer.wte.weight.T)
    # the first hidden state is token + position embedding
    emb = tiny_model.transformer.wte(ids) + tiny_model.transformer.wpe.weight[:9]
    torch.testing.assert_close(out.hidden_states[0], emb)


def test_attention_weights_are_causal_rows_summing_to_one(tiny_model, tiny_config):
    out = tiny_model.run(ids_for(tiny_config, 1, 12), output_attentions=True)
    for a in out.attentions:
        torch.testing.assert_close(a.sum(-1), torch.ones_like(a.sum(-1)))
        assert torch.all(a.triu(diagonal=1) == 0)


def test_tied_embedding_is_one_tensor(tiny_model):
    assert tiny_model.lm_head.weight is tiny_model.transformer.wte.weight
    assert tiny_model.lm_head.weight.data_ptr() == tiny_model.transformer.wte.weight.data_ptr()


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 24),
    cut=st.integers(1, 23),
    seed=st.integers(0, 10_000),
)
def test_changing_a_later_token_never_changes_earlier_logits(tiny_model, tiny_config, n, cut, seed):
    cut = min(cut, n - 1)
    ids = ids_for(tiny_config, 1, n, seed)
    other = ids.clone()
    other[0, cut:] = (other[0, cut:] + 1 + seed % 5) % tiny_config.vocab_size
    a, b = tiny_model(ids), tiny_model(other)
    torch.testing.assert_close(a[:, :cut], b[:, :cut], rtol=0, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 10),
    t_extra=st.integers(0, 6),
    d=st.sampled_from([1, 4, 8]),
    seed=st.integers(0, 10_000),
)
def test_attention_rows_sum_to_one_and_match_torch(n, t_extra, d, seed):
    g = torch.Generator().manual_seed(seed)
    T = n + t_extra
    q = torch.randn(2, n, d, generator=g) * 3
    k = torch.randn(2, T, d, generator=g) * 3
    v = torch.randn(2, T, d, generator=g)
    mask = causal_mask(n, T)
    out, w = attention(q, k, v, mask)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, n))
    assert torch.all(w[:, ~mask] == 0)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_causal_mask_shape_and_offset():
    assert causal_mask(3, 3).tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert causal_mask(1, 4).tolist() == [[1, 1, 1, 1]]
    assert causal_mask(2, 4).tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]


def test_kv_cache_step_by_step_equals_full_forward(tiny_model, tiny_config):
    ids = ids_for(tiny_config, 2, 10)
    full = tiny_model(ids)
    cache = tiny_model.new_cache(batch_size=2)
    parts = [tiny_model(ids[:, :4], cache=cache)]
    for i in range(4, 10):
        parts.append(tiny_model(ids[:, i : i + 1], cache=cache))
    assert cache.length == 10
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)


def test_kv_cache_chunked_prefill(tiny_model, tiny_config):
    ids = ids_for(tiny_config, 1, 12)
    cache = tiny_model.new_cache()
    a = tiny_model(ids[:, :5], cache=cache)
    b = tiny_model(ids[:, 5:], cache=cache)  # several new tokens over a non-empty cache
    torch.testing.assert_close(torch.cat([a, b], 1), tiny_model(ids), rtol=1e-5, atol=1e-5)


def test_cache_memory(tiny_model, tiny_config):
    cache = tiny_model.new_cache(batch_size=1)
    c = tiny_config
    assert cache.nbytes() == 2 * c.n_layer * c.block_size * c.n_embd * 4


def test_meta_device_forward_gives_shapes_only():
    cfg = GPTConfig(vocab_size=50257, block_size=2048, n_layer=2, n_head=96, n_embd=12288)
    with torch.device("meta"):
        model = GPT(cfg)
        ids = torch.zeros(1, 10, dtype=torch.long)
        out = model.run(ids, output_hidden_states=True)
    assert out.logits.shape == (1, 10, 50257)
    assert out.hidden_states[-1].shape == (1, 10, 12288)


@pytest.mark.parametrize(
    "ids, err, msg",
    [
        ([1, 2, 3], TypeError, "must be a torch.Tensor"),
        (torch.tensor([[1.0, 2.0]]), TypeError, "integer tensor"),
        (torch.tensor([1, 2, 3]), ValueError, r"shape \(B, N\)"),
        (torch.zeros(1, 0, dtype=torch.long), ValueError, "at least one token"),
        (torch.tensor([[1, 97]]), ValueError, r"token id 97 is out of range.*\[0, 96\]"),
        (torch.tensor([[-1, 3]]), ValueError, "token id -1 is out of range"),
        (torch.zeros(1, 25, dtype=torch.long), ValueError, "exceed the context length"),
    ],
)
def test_bad_ids_get_clear_errors(tiny_model, ids, err, msg):
    with pytest.raises(err, match=msg):
        tiny_model(ids)


def test_cache_for_wrong_batch(tiny_model):
    cache = tiny_model.new_cache(batch_size=2)
    with pytest.raises(ValueError, match="batch size 2"):
        tiny_model(torch.zeros(1, 3, dtype=torch.long), cache=cache)


def test_model_needs_a_config():
    with pytest.raises(TypeError, match="GPTConfig"):
        GPT({"n_layer": 2})
