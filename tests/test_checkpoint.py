"""Checkpoints: the book's safetensors format, and GPT-2 imports in the Hugging Face layout.

The GPT-2 files here are written by hand (no transformers needed): the tensors of a small random
model in GPT-2's own layout (Conv1D weights stored (in, out), optional ``transformer.`` prefix,
causal-mask buffers), so every path of ``load_gpt2`` is covered offline.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from nexttoken.checkpoint import (
    CONV1D_WEIGHTS,
    convert_gpt2_state_dict,
    export_hf_gpt2,
    find_gpt2,
    gpt2_config_from_hf,
    gpt2_tensor_map,
    load_gpt2,
    load_model,
    read_config,
    read_metadata,
    save_model,
    sha256_file,
)
from nexttoken.configs import get_config
from nexttoken.model import GPT, GPTConfig

HF_CFG = dict(
    model_type="gpt2",
    n_layer=2,
    n_head=2,
    n_embd=32,
    n_positions=24,
    vocab_size=97,
    layer_norm_epsilon=1e-5,
    activation_function="gelu_new",
)


def hf_tensors(model: GPT, prefix: bool = True, buffers: bool = False) -> dict:
    """``model``'s weights in GPT-2's stored layout."""
    out = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":
            continue
        t = v.t().contiguous() if k.endswith(CONV1D_WEIGHTS) else v.clone()
        out[k if prefix else k.removeprefix("transformer.")] = t
    if buffers:
        for i in range(model.config.n_layer):
            n = model.config.block_size
            out[f"h.{i}.attn.bias"] = torch.ones(1, 1, n, n).tril()
            out[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    return out


def write_hf(folder, model, cfg=HF_CFG, **kw):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    save_file(hf_tensors(model, **kw), folder / "model.safetensors")
    return folder


def same_logits(a: GPT, b: GPT) -> bool:
    ids = torch.arange(10)[None] % a.config.vocab_size
    with torch.no_grad():
        return torch.allclose(a(ids), b(ids), atol=1e-6)


# --- the book's format ----------------------------------------------------------------------------


def test_save_load_roundtrip(tiny_model, tmp_path):
    path = save_model(tiny_model, tmp_path / "m.safetensors", metadata={"note": "x"})
    assert read_config(path) == tiny_model.config
    back = load_model(path, expected_sha256=sha256_file(path))
    assert back.lm_head.weight is back.transformer.wte.weight
    assert same_logits(tiny_model, back)


def test_load_model_refuses_bad_hash_and_missing_file(tiny_model, tmp_path):
    path = save_model(tiny_model, tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="sha256 mismatch"):
        load_model(path, expected_sha256="0" * 64)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope.safetensors")


# --- GPT-2 import ---------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", [True, False])
@pytest.mark.parametrize("buffers", [True, False])
def test_load_gpt2_from_a_folder(tiny_model, tmp_path, prefix, buffers):
    folder = write_hf(tmp_path / "gpt", tiny_model, prefix=prefix, buffers=buffers)
    model = load_gpt2(folder)
    assert model.config == tiny_model.config and not model.training
    assert model.lm_head.weight is model.transformer.wte.weight
    assert same_logits(tiny_model, model)


def test_load_gpt2_bf16(tiny_model, tmp_path):
    model = load_gpt2(write_hf(tmp_path / "gpt", tiny_model), dtype=torch.bfloat16)
    assert model.transformer.h[0].attn.c_attn.weight.dtype == torch.bfloat16
    assert model.lm_head.weight is model.transformer.wte.weight


def test_forgetting_the_transpose_is_caught(tiny_model):
    tensors = hf_tensors(tiny_model)
    key = "transformer.h.0.attn.c_attn.weight"
    tensors[key] = tensors[key].t()  # stored as nn.Linear's (out, in): wrong for GPT-2
    with pytest.raises(ValueError, match=r"h\.0\.attn\.c_attn\.weight.*Conv1D"):
        convert_gpt2_state_dict(tensors, tiny_model.config)


def test_missing_and_unexpected_tensors_are_named(tiny_model):
    tensors = hf_tensors(tiny_model)
    del tensors["transformer.h.1.mlp.c_fc.bias"]
    with pytest.raises(ValueError, match=r"missing tensors \['transformer.h.1.mlp.c_fc.bias'\]"):
        convert_gpt2_state_dict(tensors, tiny_model.config)
    tensors = hf_tensors(tiny_model)
    tensors["transformer.h.0.extra"] = torch.zeros(1)
    with pytest.raises(ValueError, match="unexpected.*h.0.extra"):
        convert_gpt2_state_dict(tensors, tiny_model.config)


def test_lm_head_must_be_tied(tiny_model):
    tensors = hf_tensors(tiny_model)
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"].clone()
    convert_gpt2_state_dict(tensors, tiny_model.config)  # equal: fine
    tensors["lm_head.weight"] += 1
    with pytest.raises(ValueError, match="untied"):
        convert_gpt2_state_dict(tensors, tiny_model.config)


def test_conversion_transposes_exactly_the_conv1d_weights(tiny_model):
    state = convert_gpt2_state_dict(hf_tensors(tiny_model), tiny_model.config)
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(state[k], v), k


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(activation_function="relu"), "activation_function"),
        (dict(n_inner=100), "n_inner"),
        (dict(tie_word_embeddings=False), "tie_word_embeddings"),
        (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx"),
        (dict(scale_attn_weights=False), "scale_attn_weights"),
        (dict(add_cross_attention=True), "add_cross_attention"),
        (dict(model_type="llama"), "model_type"),
    ],
)
def test_unsupported_configs_are_refused(change, match):
    with pytest.raises(ValueError, match=match):
        gpt2_config_from_hf({**HF_CFG, **change})


def test_config_mapping():
    cfg = gpt2_config_from_hf({**HF_CFG, "layer_norm_epsilon": 1e-6, "n_inner": None})
    assert (cfg.vocab_size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.n_embd) == (
        97,
        24,
        2,
        2,
        32,
    )
    assert cfg.layer_norm_eps == 1e-6
    with pytest.raises(ValueError, match="lacks"):
        gpt2_config_from_hf({"n_layer": 2})
    with pytest.raises(TypeError, match="hf must be a dict"):
        gpt2_config_from_hf("gpt2")


def test_tensor_map_of_gpt2_small():
    rows = gpt2_tensor_map(get_config("gpt2"))
    by_name = {r["hf_name"]: r for r in rows}
    assert len(rows) == 4 + 12 * 12  # wte, wpe, ln_f (2); 12 tensors per block
    r = by_name["transformer.h.0.attn.c_attn.weight"]
    assert r["hf_shape"] == (768, 2304) and r["shape"] == (2304, 768) and r["transpose"]
    assert by_name["transformer.h.11.mlp.c_proj.weight"]["hf_shape"] == (3072, 768)
    assert not by_name["transformer.wte.weight"]["transpose"]
    assert sum(r["transpose"] for r in rows) == 4 * 12
    total = sum(torch.Size(r["shape"]).numel() for r in rows)
    assert total == 124_439_808


def test_names_are_looked_up_only_in_the_local_cache(tiny_model, tmp_path):
    cache = tmp_path / "hub"
    assert find_gpt2("gpt2", cache_dir=cache) is None
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_gpt2("gpt2", cache_dir=cache)
    # a cache entry as huggingface_hub lays it out
    repo = cache / "models--openai-community--gpt2"
    snap = write_hf(repo / "snapshots" / ("a" * 40), tiny_model)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    assert find_gpt2("gpt2", cache_dir=cache) == snap
    model = load_gpt2("gpt2", cache_dir=cache)
    assert model.config.name == "gpt2" and same_logits(tiny_model, model)


def test_bad_sources(tmp_path):
    with pytest.raises(TypeError, match="source"):
        load_gpt2(3)
    with pytest.raises(TypeError, match="download"):
        load_gpt2(tmp_path, download="yes")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_gpt2(tmp_path)
    with pytest.raises(FileNotFoundError, match="no folder"):
        load_gpt2(tmp_path / "missing")


def test_mis_shaped_config_and_weights_disagree(tiny_model, tmp_path):
    folder = write_hf(tmp_path / "gpt", tiny_model, cfg={**HF_CFG, "n_embd": 64})
    with pytest.raises(ValueError, match="has shape"):
        load_gpt2(folder)


def test_gpt2_small_config_matches_the_book():
    assert gpt2_config_from_hf(
        dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024, vocab_size=50257)
    ) == GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)


def test_the_same_weights_always_give_the_same_bytes(tmp_path):
    """One metadata key: safetensors would write several in a random order (and change the hash)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=8))
    hashes = set()
    for i in range(4):
        path = save_model(model, tmp_path / f"m{i}.safetensors", {"step": "3", "note": "x"})
        hashes.add(sha256_file(path))
    assert len(hashes) == 1
    assert read_metadata(path) == {"step": "3", "note": "x"}


# --- issue 24: quantized models --------------------------------------------------------------------


def test_int8_model_saves_and_loads_equal(tiny_model, tmp_path):
    from safetensors import safe_open

    from nexttoken.generate import generate
    from nexttoken.quantize import Float64Attention, RowInt8Linear, quantize

    q = quantize(tiny_model, "int8")
    path = save_model(q, tmp_path / "q.safetensors", metadata={"note": "x"})
    with safe_open(str(path), framework="pt") as f:
        assert f.get_tensor("lm_head.weight_int8").dtype == torch.int8
        assert f.get_tensor("transformer.h.0.mlp.c_fc.weight_scale").dtype == torch.float32
    assert read_metadata(path) == {"note": "x"}
    back = load_model(path, expected_sha256=sha256_file(path))
    assert (
        type(back.lm_head) is RowInt8Linear and type(back.transformer.h[1].attn) is Float64Attention
    )
    want, got = q.state_dict(), back.state_dict()
    assert list(got) == list(want) and all(torch.equal(want[k], got[k]) for k in want)
    for p in ([5, 6, 7], [1], list(range(20))):
        assert (
            generate(back, p, 4, temperature=0).tolist()
            == generate(q, p, 4, temperature=0).tolist()
        )
    again = save_model(back, tmp_path / "again.safetensors", metadata={"note": "x"})
    assert again.read_bytes() == path.read_bytes()  # the same bytes
    with pytest.raises(ValueError, match="int8 checkpoint: it loads as stored"):
        load_model(path, dtype=torch.bfloat16)


def test_int8_checkpoint_with_a_float_weight_is_refused(tiny_model, tmp_path):
    from safetensors import safe_open

    from nexttoken.quantize import quantize

    path = save_model(quantize(tiny_model, "int8"), tmp_path / "q.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors["lm_head.weight_int8"] = tensors["lm_head.weight_int8"].float()
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(
        ValueError, match="tensor lm_head.weight_int8 has dtype torch.float32; expected int8"
    ):
        load_model(path)


def test_other_quantized_copies_are_refused_by_save_model(tiny_model, tmp_path):
    from nexttoken.quantize import int8_weights

    with pytest.raises(TypeError, match="save_model cannot store .*Int8Linear.*quantize it after"):
        save_model(int8_weights(tiny_model), tmp_path / "t.safetensors")
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bf16_model_saves_and_loads(tiny_model, tmp_path):
    from nexttoken.quantize import quantize

    b = quantize(tiny_model, "bf16")
    back = load_model(save_model(b, tmp_path / "b.safetensors"))
    assert back.transformer.wte.weight.dtype == torch.bfloat16
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in b.state_dict().items())


def test_export_hf_refuses_a_quantized_model(tiny_model, tmp_path):
    from nexttoken.quantize import quantize

    with pytest.raises(TypeError, match="export_hf_gpt2 writes float models"):
        export_hf_gpt2(quantize(tiny_model, "int8"), tmp_path / "hf")
