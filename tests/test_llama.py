"""The book's Llama: its parts (RMSNorm, RoPE, SwiGLU, grouped-query attention, the rolling KV
cache) checked against their definitions, and GPT's interface: generate with and without a cache,
batched, the serving engine and speculative decoding give the tokens the model gives alone."""

from __future__ import annotations

import math

import pytest
import torch

from nexttoken.batching import generate_batch
from nexttoken.generate import generate
from nexttoken.llama import (
    Llama,
    LlamaConfig,
    RMSNorm,
    RollingKVCache,
    apply_rope,
    rope_cos_sin,
    rotate_half,
    swiglu_hidden,
)
from nexttoken.model import GPT, Decoder, GPTConfig, KVCache
from nexttoken.paged import PagedKVCache, pool_bytes
from nexttoken.serve import Engine
from nexttoken.speculative import speculative_generate

V = 257
NEW = 40


def tiny(seed: int = 0, std: float = 0.15, **kw) -> Llama:
    """A small Llama with random weights (std ``std``: peaked logits, no near ties)."""
    base = dict(vocab_size=V, block_size=128, n_layer=2, n_head=4, n_kv_head=2, n_embd=64,
                intermediate_size=96)  # fmt: skip
    torch.manual_seed(seed)
    model = Llama(LlamaConfig(**{**base, **kw})).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, std)
    return model


def prompts(n: int = 6, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, V, (int(L),), generator=g).tolist() for L in (3, 11, 1, 7, 17, 5)[:n]]


def alone(model, ps, n=NEW, **kw) -> list[list[int]]:
    return [generate(model, p, n, temperature=0, **kw)[0].tolist() for p in ps]


KINDS = {
    "gqa": dict(),
    "mha-tied": dict(n_kv_head=4, tie_embeddings=True),
    "mqa-qk_norm": dict(n_kv_head=1, qk_norm=True),
    "sliding": dict(sliding_window=9),
}


# --- the parts ---------------------------------------------------------------------------------
def test_swiglu_width_is_two_thirds_of_4d_rounded_up_to_256():
    assert swiglu_hidden(4096) == 11008  # Llama 2 7B
    assert swiglu_hidden(256) == 768 and swiglu_hidden(768) == 2048
    assert LlamaConfig(n_embd=256, n_head=4, n_kv_head=2).intermediate_size == 768


def test_rms_norm_is_x_over_root_mean_square_times_gain():
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    norm = RMSNorm(8, eps=1e-6).double()
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 8))
    rms = x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()
    assert torch.allclose(norm(x), x / rms * norm.weight, atol=1e-12)
    # unlike LayerNorm, the mean is not removed: a constant vector keeps its sign
    assert bool((norm(torch.ones(1, 8, dtype=torch.float64)) > 0).all())


def test_rope_rotates_pairs_and_scores_depend_only_on_the_distance():
    d = 16
    cos, sin = rope_cos_sin(torch.arange(40), d, theta=100.0)
    q, k = torch.randn(d, dtype=torch.float64), torch.randn(d, dtype=torch.float64)
    rq = apply_rope(q.expand(40, d), cos.double(), sin.double())
    rk = apply_rope(k.expand(40, d), cos.double(), sin.double())
    assert torch.allclose(rq.norm(dim=-1), q.norm().expand(40))  # a rotation keeps lengths
    scores = rq @ rk.T  # (m, n): depends only on m - n
    for shift in (0, 3, 17):
        diagonal = torch.diagonal(scores, offset=-shift)
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-9), shift
    assert not torch.allclose(scores[5, 2], scores[5, 3])
    # pair i is (x[i], x[i + d/2]): position 1 turns pair 0 by exactly 1 radian
    x = torch.zeros(d)
    x[0] = 1.0
    turned = apply_rope(x, *rope_cos_sin(torch.tensor([1]), d))[0]
    assert math.isclose(turned[0], math.cos(1.0), abs_tol=1e-6)
    assert math.isclose(turned[d // 2], math.sin(1.0), abs_tol=1e-6)
    assert torch.equal(rotate_half(torch.arange(4.0)), torch.tensor([-2.0, -3.0, 0.0, 1.0]))


def test_grouped_query_attention_equals_multi_head_with_repeated_kv_heads():
    gqa = tiny(n_kv_head=2)
    mha = tiny(n_kv_head=4)
    state = gqa.state_dict()
    for name, t in list(state.items()):
        if name.endswith(("k_proj.weight", "v_proj.weight")):  # (H_kv d_head, d) -> (H d_head, d)
            state[name] = t.view(2, 1, 16, 64).expand(2, 2, 16, 64).reshape(64, 64)
    mha.load_state_dict(state)
    ids = torch.tensor([prompts()[4]])
    with torch.no_grad():
        assert torch.allclose(gqa(ids), mha(ids), atol=1e-5)
    cache_g, cache_m = gqa.new_cache(1, 32), mha.new_cache(1, 32)
    assert cache_m.nbytes() == 2 * cache_g.nbytes()  # the cache shrinks by n_head / n_kv_head
    assert cache_g.k[0].shape == (1, 2, 32, 16)


def test_parameter_names_count_and_tied_output():
    model = tiny(tie_embeddings=True)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    c = model.config
    per_layer = 64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 96 + 2 * 64
    assert model.num_parameters() == V * 64 + 2 * per_layer + 64
    assert tiny().num_parameters() == model.num_parameters() + V * 64
    assert {n for n in dict(model.named_parameters()) if ".0." in n} == {
        f"model.layers.0.{n}.weight"
        for n in ["input_layernorm", "post_attention_layernorm", "self_attn.q_proj",
                  "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                  "mlp.up_proj", "mlp.down_proj"]
    }  # fmt: skip
    assert isinstance(model, Decoder) and c.d_head == 16 and c.d_ff == 96


def test_run_outputs_hidden_states_and_attention_weights():
    model = tiny(sliding_window=4)
    ids = torch.tensor([prompts()[4]])
    with torch.no_grad():
        out = model.run(ids, output_hidden_states=True, output_attentions=True)
        assert torch.allclose(out.logits, model(ids), atol=1e-5)
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2
    w = out.attentions[0]
    assert w.shape == (1, 4, 17, 17)
    assert torch.allclose(w.sum(-1), torch.ones(1, 4, 17))
    assert bool((w[0, :, 10, :7] == 0).all()) and bool((w[0, :, 10, 7:11] > 0).all())  # window 4


# --- the sliding window and its rolling cache -------------------------------------------------
def test_rolling_cache_stops_growing_and_equals_full_recomputation():
    model = tiny(sliding_window=9)
    ids = torch.tensor([prompts()[4] + prompts()[1] + prompts()[4]])  # 45 tokens, 5 windows
    cache = model.new_cache(1, 60)
    assert isinstance(cache, RollingKVCache)
    sizes = []
    with torch.no_grad():
        full = model(ids)  # every position, the window as a mask
        for t in range(ids.size(1)):
            step = model.run(ids[:, t : t + 1], cache=cache).logits
            assert torch.allclose(step[0, 0], full[0, t], atol=1e-5), t
            sizes.append(cache.held)
    assert sizes[:3] == [1, 2, 3] and set(sizes[24:]) == {cache.capacity}
    assert cache.capacity == 9 + 16 and cache.length == 45
    assert cache.nbytes() == model.new_cache(1, 200).nbytes()  # the same memory for any length


def test_one_layer_window_is_recomputation_over_the_last_window_tokens():
    """With one layer a token sees exactly the last ``window`` tokens; RoPE is relative, so running
    those alone (at positions 0 .. window-1) gives the same logits."""
    model = tiny(n_layer=1, sliding_window=6)
    ids = torch.tensor([prompts()[4] + prompts()[1]])
    with torch.no_grad():
        full = model(ids)
        for t in range(6, ids.size(1)):
            alone_ = model(ids[:, t - 5 : t + 1])[0, -1]
            assert torch.allclose(full[0, t], alone_, atol=1e-5), t
        two = tiny(n_layer=2, sliding_window=6)  # two layers see further: 2 (window - 1) back
        assert not torch.allclose(two(ids)[0, -1], two(ids[:, -6:])[0, -1], atol=1e-3)


def test_rolling_cache_rollback_is_refused_past_its_spare_positions():
    model = tiny(sliding_window=4)
    cache = model.new_cache(1, 100)
    with torch.no_grad():
        model.run(torch.tensor([prompts()[4] + prompts()[1]]), cache=cache)  # 28 tokens
    cache.length = 28 - 17  # spare 16: 17 tokens back still leave the window's 3 earlier keys
    assert cache.held == 20 - 17 and cache.length == 11
    with pytest.raises(ValueError, match="cannot roll back"):
        cache.length = 9


# --- the interface: what GPT's callers get ----------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_greedy_tokens_equal_with_and_without_cache(kind):
    model = tiny(**KINDS[kind])
    ps = prompts()
    assert alone(model, ps) == alone(model, ps, use_cache=False)


def test_generate_past_the_context_slides_like_gpt():
    model = tiny(block_size=16)
    assert alone(model, prompts()[4:5], 30) == alone(model, prompts()[4:5], 30, use_cache=False)


@pytest.mark.parametrize("kind", ["gqa", "mha-tied", "mqa-qk_norm"])
def test_batched_equals_alone(kind):
    model = tiny(**KINDS[kind])
    ps = prompts()
    assert generate_batch(model, ps, NEW, temperature=0) == alone(model, ps)


def test_batched_sliding_window_model_within_its_window():
    model = tiny(sliding_window=64)
    ps = prompts()
    assert generate_batch(model, ps, NEW, temperature=0) == alone(model, ps)


@pytest.mark.parametrize("reads", ["blocks", "gather"])
@pytest.mark.parametrize("kind", ["gqa", "mqa-qk_norm"])
def test_engine_equals_alone(kind, reads):
    model = tiny(**KINDS[kind])
    ps = prompts()
    engine = Engine(model, max_batch=3, num_blocks=48, block_tokens=4, max_step_tokens=8,
                    reads=reads)  # fmt: skip
    ids = [engine.add_request(p, NEW, temperature=0) for p in ps]
    results = engine.run()
    assert [results[i] for i in ids] == alone(model, ps)
    pool = PagedKVCache.for_model(model, 4, 4)
    H_kv = model.config.n_kv_head  # the pool holds the key/value heads only
    assert pool.k[0].shape == (4, H_kv, 4, 16) and pool.nbytes() == pool_bytes(
        model.config, 4, 4, torch.float32
    )


def test_ragged_paged_batch_gives_each_row_its_own_logits():
    """:class:`PagedBatch` (the gather view, with its ragged mask) on a GQA model: every row's
    logits are those of the row alone."""
    model = tiny()
    ps = prompts(4)
    cache = PagedKVCache.for_model(model, 32, 3)
    nxt = torch.tensor([[5], [6], [7], [8]])
    with torch.inference_mode():
        for i, p in enumerate(ps):
            cache.add(i)
            cache.batch([i], len(p)).run(model, torch.tensor([p]))
        got = cache.batch([0, 1, 2, 3], 1).run(model, nxt).logits[:, -1]
        for i, p in enumerate(ps):
            assert torch.allclose(got[i], model(torch.tensor([p + [5 + i]]))[0, -1], atol=1e-5)


def test_engine_refuses_a_sliding_window_model_past_its_window():
    model = tiny(sliding_window=8)
    engine = Engine(model, max_batch=2, num_blocks=16, block_tokens=4)
    engine.add_request(prompts()[4], 5, temperature=0)
    with pytest.raises(ValueError, match="shorter than its window"):
        engine.run()


@pytest.mark.parametrize("kind", ["gqa", "sliding"])
def test_speculative_with_a_llama_draft_equals_plain(kind):
    target = tiny(**KINDS[kind])
    draft = tiny(seed=1, n_layer=1, n_head=2, n_kv_head=1, n_embd=32, intermediate_size=48)
    for p in prompts(2):
        plain = alone(target, [p])[0]
        for k in (1, 4):
            out, stats = speculative_generate(target, draft, p, NEW, k=k, temperature=0)
            assert out[0].tolist() == plain
        out, stats = speculative_generate(target, target, p, NEW, k=5, temperature=0)
        assert out[0].tolist() == plain and stats.accepted == stats.proposed


def test_speculative_with_a_gpt_draft_for_a_llama_target_and_the_reverse():
    llama = tiny()
    torch.manual_seed(2)
    gpt = GPT(GPTConfig(vocab_size=V, block_size=128, n_layer=1, n_head=2, n_embd=32)).eval()
    p = prompts()[1]
    out, _ = speculative_generate(llama, gpt, p, NEW, k=3, temperature=0)
    assert out[0].tolist() == alone(llama, [p])[0]
    out, _ = speculative_generate(gpt, llama, p, NEW, k=3, temperature=0)
    assert out[0].tolist() == alone(gpt, [p])[0]


def test_new_cache_kinds_and_dtype_device():
    model = tiny(sliding_window=8)
    assert type(model.new_cache(2, 8)) is KVCache  # fits the window: an ordinary cache
    assert isinstance(model.new_cache(2, 9), RollingKVCache)
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    half = tiny().to(torch.bfloat16)
    assert half.new_cache(1, 4).k[0].dtype == torch.bfloat16


@pytest.mark.parametrize("tied", [True, False])
def test_save_model_and_load_model_round_trip_a_llama(tied, tmp_path):
    from nexttoken.checkpoint import load_model, read_config, save_model

    model = tiny(tie_embeddings=tied, qk_norm=True, sliding_window=9)
    path = save_model(model, tmp_path / "llama.safetensors", {"note": "x"})
    assert read_config(path) == model.config
    loaded = load_model(path)
    assert isinstance(loaded, Llama) and loaded.config == model.config
    assert (loaded.lm_head.weight is loaded.model.embed_tokens.weight) == tied
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert load_model(path, dtype=torch.bfloat16).dtype == torch.bfloat16
