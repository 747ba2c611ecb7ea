"""nexttoken.sizes: the KV cache of published models, per token and per full context."""

from __future__ import annotations

import pytest

from nexttoken.sizes import (
    KV_CONFIGS,
    KVConfig,
    kv_cache_table,
    llama_parameters,
    parameter_breakdown,
)


def test_kv_table_exact_numbers():
    rows = {r["model"]: r for r in kv_cache_table("bf16")}
    assert list(rows) == ["GPT-3 175B", "Llama 3 8B", "Llama 3 70B", "Mistral 7B"]
    pinned = {  # bytes per token, tokens kept, bytes per full context, MHA bytes per token
        "GPT-3 175B": (4_718_592, 2048, 9_663_676_416, 4_718_592),
        "Llama 3 8B": (131_072, 8192, 1_073_741_824, 524_288),
        "Llama 3 70B": (327_680, 8192, 2_684_354_560, 2_621_440),
        "Mistral 7B": (131_072, 4096, 536_870_912, 524_288),
    }
    for name, (per_token, kept, per_context, mha) in pinned.items():
        r = rows[name]
        assert (r["bytes_per_token"], r["cached_tokens"], r["bytes_per_context"]) == (
            per_token,
            kept,
            per_context,
        )
        assert r["mha_bytes_per_token"] == mha
        # 2 (K and V) x layers x KV heads x d_head x 2 bytes, by hand
        assert per_token == 2 * r["n_layer"] * r["n_kv_head"] * r["d_head"] * 2
    assert rows["Llama 3 70B"]["mha_bytes_per_token"] // rows["Llama 3 70B"]["bytes_per_token"] == 8
    assert rows["Mistral 7B"]["sliding_window"] == 4096


def test_kv_table_dtypes():
    fp16 = kv_cache_table("fp16")
    assert fp16 == kv_cache_table("bf16") == kv_cache_table()
    fp32 = kv_cache_table("fp32")
    assert [r["bytes_per_token"] for r in fp32] == [2 * r["bytes_per_token"] for r in fp16]
    with pytest.raises(ValueError, match="dtype must be one of fp32, fp16, bf16, int8, got 'fp8'"):
        kv_cache_table("fp8")
    with pytest.raises(TypeError, match="configs must hold KVConfig entries, got str"):
        kv_cache_table(configs=["Llama 3 8B"])


def test_parameters_match_the_published_sizes():
    """Counted from the configs: 8.03B, 70.55B, 7.24B (the model cards' 8B, 70B, 7B); GPT-3 175B
    is the book's own meta-device count."""
    assert KV_CONFIGS["Llama 3 8B"].parameters == 8_030_261_248
    assert KV_CONFIGS["Llama 3 70B"].parameters == 70_553_706_496
    assert KV_CONFIGS["Mistral 7B"].parameters == 7_241_732_096
    assert KV_CONFIGS["GPT-3 175B"].parameters == sum(parameter_breakdown("gpt3-175b").values())
    rows = {r["model"]: r for r in kv_cache_table()}
    assert rows["Llama 3 8B"]["weights_bytes"] == 16_060_522_496
    assert [r["batch_cache_outweighs_weights"] for r in rows.values()] == [37, 15, 53, 27]
    for r in rows.values():  # the smallest batch whose caches outweigh the weights
        n = r["batch_cache_outweighs_weights"]
        assert n * r["bytes_per_context"] > r["weights_bytes"] >= (n - 1) * r["bytes_per_context"]


def test_llama_parameters_tied_and_small():
    cfg = KVConfig("tiny", 2, 4, 2, 8, 64, "test", d_model=32, d_ff=80, vocab_size=100)
    per_layer = 32 * 32 * 2 + 32 * 16 * 2 + 3 * 32 * 80 + 2 * 32
    assert llama_parameters(cfg) == 2 * per_layer + 2 * 100 * 32 + 32
    tied = KVConfig("tiny", 2, 4, 2, 8, 64, "test", d_model=32, d_ff=80, vocab_size=100, tied=True)
    assert llama_parameters(tied) == 2 * per_layer + 100 * 32 + 32


def test_every_config_names_its_source():
    for c in KV_CONFIGS.values():
        assert ("Table" in c.source) or ("config.json" in c.source)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(n_kv_head=3), "KVConfig.n_kv_head (3) must divide n_head (8)"),
        (dict(n_layer=0), "KVConfig.n_layer must be an int >= 1, got 0"),
        (dict(sliding_window=0), "KVConfig.sliding_window must be None or an int >= 1, got 0"),
    ],
)
def test_bad_kv_config(kwargs, words):
    args = dict(name="x", n_layer=2, n_head=8, n_kv_head=2, d_head=4, context=16, source="s")
    args.update(kwargs)
    with pytest.raises(ValueError) as info:
        KVConfig(**args)
    assert words in str(info.value)


@pytest.mark.parametrize("name", ["Llama 3 8B", "Llama 3 70B", "Mistral 7B"])
def test_parameters_equal_the_book_llama_on_the_meta_device(name):
    """The count from shapes is the count of nexttoken.llama.Llama's own tensors, and the bytes
    per token those of its own KV cache."""
    import torch

    from nexttoken.llama import Llama, LlamaConfig

    c = KV_CONFIGS[name]
    cfg = LlamaConfig(
        vocab_size=c.vocab_size,
        block_size=c.context,
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_kv_head=c.n_kv_head,
        n_embd=c.d_model,
        intermediate_size=c.d_ff,
        head_dim=c.d_head,
        sliding_window=c.sliding_window,
    )
    with torch.device("meta"):
        model = Llama(cfg)
    assert model.num_parameters() == c.parameters
    cache = model.new_cache(1, 1)  # the model's own KV cache for one token (fp32, on meta)
    assert cache.nbytes() == kv_cache_table("fp32", configs=[c])[0]["bytes_per_token"]
