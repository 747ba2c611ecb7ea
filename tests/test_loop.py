"""nexttoken.loop: step records agree with generate(); KV cache memory; decode timing helper."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nexttoken.configs import get_config
from nexttoken.generate import generate
from nexttoken.loop import (
    MiB,
    StepRecord,
    decode_times,
    dtype_bytes,
    format_steps,
    kv_cache_bytes,
    kv_cache_bytes_per_token,
    next_step,
    trace_generation,
)
from nexttoken.sampling import softmax


def test_gpt3_175b_fp16_needs_4_5_mib_per_token():
    assert kv_cache_bytes_per_token(get_config("gpt3-175b"), "fp16") == 4.5 * MiB
    assert kv_cache_bytes_per_token(get_config("gpt3-175b"), torch.float16) == 4.5 * MiB


def test_kv_bytes_formula_and_full_context():
    cfg = get_config("gpt2")
    assert kv_cache_bytes_per_token(cfg, torch.float32) == 2 * 12 * 768 * 4
    assert kv_cache_bytes(cfg, dtype="fp32") == 1024 * 2 * 12 * 768 * 4
    assert kv_cache_bytes(cfg, 10, "fp16", batch_size=3) == 3 * 10 * 2 * 12 * 768 * 2


def test_kv_bytes_matches_the_models_cache(tiny_model, tiny_config):
    cache = tiny_model.new_cache(1)
    assert cache.nbytes() == kv_cache_bytes(tiny_config, dtype=torch.float32)


@pytest.mark.parametrize("bad", ["fp12", 0, -1, 1.5, None])
def test_dtype_bytes_rejects_bad_input(bad):
    with pytest.raises((ValueError, TypeError), match="dtype"):
        dtype_bytes(bad)


def test_kv_bytes_rejects_bad_config():
    with pytest.raises(TypeError, match="config"):
        kv_cache_bytes_per_token("gpt2")
    with pytest.raises(ValueError, match="n_tokens"):
        kv_cache_bytes(get_config("gpt2"), -3)


@pytest.mark.parametrize("temperature", [0, 0.9])
def test_trace_matches_generate_without_cache(tiny_model, temperature):
    prompt = [3, 1, 4, 1, 5]
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    recs = trace_generation(tiny_model, prompt, 8, temperature=temperature, generator=g1)
    out = generate(tiny_model, prompt, 8, temperature=temperature, generator=g2, use_cache=False)
    assert [r.token for r in recs] == out[0, 5:].tolist()
    assert [r.step for r in recs] == list(range(1, 9))
    assert list(recs[2].context) == out[0, :7].tolist()


def test_record_prob_and_rank(tiny_model):
    rec = next_step(tiny_model, [1, 2, 3], temperature=0)
    with torch.no_grad():
        probs = softmax(tiny_model(torch.tensor([[1, 2, 3]]))[0, -1])
    assert rec.rank == 1 and rec.token == int(probs.argmax())
    assert rec.prob == pytest.approx(float(probs.max()))
    assert rec.top_ids[0] == rec.token and len(rec.top_ids) == 5
    assert list(rec.top_probs) == sorted(rec.top_probs, reverse=True)


def test_sampled_rank_is_consistent(tiny_model):
    g = torch.Generator().manual_seed(0)
    for r in trace_generation(tiny_model, [7], 10, temperature=2.0, generator=g):
        probs = softmax(tiny_model(torch.tensor([list(r.context)]))[0, -1])
        assert r.rank == int((probs > probs[r.token]).sum()) + 1


def test_context_is_the_sliding_window(tiny_model, tiny_config):
    recs = trace_generation(tiny_model, list(range(20)), 10, temperature=0)
    assert all(len(r.context) <= tiny_config.block_size for r in recs)
    assert len(recs[-1].context) == tiny_config.block_size


def test_stop_token_ends_the_trace(tiny_model):
    first = next_step(tiny_model, [2, 2], temperature=0).token
    recs = trace_generation(tiny_model, [2, 2], 10, temperature=0, stop_token=first)
    assert len(recs) == 1


def test_format_steps_is_a_table():
    rec = StepRecord(1, (1, 2), 3, 0.25, 2, (4, 3), (0.5, 0.25))
    text = format_steps([rec], lambda ids: "".join(" ab\n"[i % 4] for i in ids))
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["step", "context"] and "0.250" in lines[1]
    assert "↵" in lines[1]


def test_next_step_errors(tiny_model):
    with pytest.raises(TypeError, match="model"):
        next_step("model", [1])
    with pytest.raises(ValueError, match="batch size 1"):
        next_step(tiny_model, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        next_step(tiny_model, [1], temperature=-1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        trace_generation(tiny_model, [1], -1)


@pytest.mark.parametrize("use_cache", [True, False])
def test_decode_times_shapes(tiny_model, use_cache):
    pos, secs = decode_times(tiny_model, [1, 2, 3], 6, use_cache=use_cache, repeats=2)
    assert pos == [3, 4, 5, 6, 7, 8]
    assert len(secs) == 6 and all(s >= 0 for s in secs)
    with pytest.raises(ValueError, match="repeats"):
        decode_times(tiny_model, [1], 2, use_cache=True, repeats=0)


@settings(max_examples=15, deadline=None)
@given(
    prefix=st.lists(st.integers(0, 96), min_size=1, max_size=12),
    a=st.integers(0, 96),
    b=st.integers(0, 96),
)
def test_appended_token_never_changes_earlier_states(tiny_model, prefix, a, b):
    """Notebook 07's claim: what comes after a token cannot change its vectors (bit for bit)."""
    with torch.no_grad():
        ha = tiny_model.run(torch.tensor([prefix + [a]]), output_hidden_states=True).hidden_states
        hb = tiny_model.run(torch.tensor([prefix + [b]]), output_hidden_states=True).hidden_states
    n = len(prefix)
    assert all(torch.equal(x[:, :n], y[:, :n]) for x, y in zip(ha, hb, strict=True))
