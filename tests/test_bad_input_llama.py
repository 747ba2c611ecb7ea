"""Bad input to LlamaConfig, Llama and the Llama checkpoint readers: each error names the field or
the file and what is allowed. (Weights are read from safetensors only: pickles are never loaded.)"""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from nexttoken.checkpoint import export_hf_gpt2, load_gpt2, load_llama, save_llama
from nexttoken.llama import Llama, LlamaConfig, RollingKVCache
from nexttoken.model import GPT, GPTConfig

BASE = dict(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
            intermediate_size=48)  # fmt: skip

CONFIG_ERRORS = [
    (dict(n_kv_head=3), ValueError, "n_kv_head (3) must divide n_head (4): one of [1, 2, 4]"),
    (dict(n_kv_head=0), ValueError, "n_kv_head must be an int >= 1, got 0"),
    (dict(n_kv_head=2.0), TypeError, "n_kv_head must be an int >= 1, got float"),
    (dict(n_head=3, n_kv_head=1), ValueError, "n_embd (32) must be divisible by n_head (3)"),
    (dict(head_dim=7), ValueError, "head_dim must be even (RoPE rotates pairs"),
    (dict(head_dim=0), ValueError, "head_dim must be an int >= 1"),
    (dict(intermediate_size=-4), ValueError, "intermediate_size must be an int >= 1"),
    (dict(vocab_size=True), TypeError, "vocab_size must be an int >= 1, got bool"),
    (dict(block_size=0), ValueError, "block_size must be an int >= 1"),
    (dict(rope_theta=0.0), ValueError, "rope_theta must be a finite number > 0"),
    (dict(rope_theta=-1e4), ValueError, "rope_theta must be a finite number > 0"),
    (dict(rope_theta=float("inf")), ValueError, "rope_theta must be a finite number > 0"),
    (dict(rope_theta="1e4"), TypeError, "rope_theta must be a number"),
    (dict(rms_norm_eps=0.0), ValueError, "rms_norm_eps must be a small number in (0, 1)"),
    (dict(rms_norm_eps=float("nan")), ValueError, "rms_norm_eps must be a small number in (0, 1)"),
    (dict(sliding_window=0), ValueError, "sliding_window must be None or an int >= 1, got 0"),
    (dict(sliding_window=4.5), TypeError, "sliding_window must be None or an int >= 1"),
    (dict(tie_embeddings=1), TypeError, "tie_embeddings must be True or False, got 1"),
    (dict(qk_norm="yes"), TypeError, "qk_norm must be True or False"),
    (dict(name=3), TypeError, "name must be a str"),
]


@pytest.mark.parametrize("kwargs, exc, match", CONFIG_ERRORS)
def test_bad_config_names_the_field_and_what_is_allowed(kwargs, exc, match):
    with pytest.raises(exc) as info:
        LlamaConfig(**{**BASE, **kwargs})
    assert "LlamaConfig." in str(info.value) and match in str(info.value)


def test_models_and_caches_refuse_the_wrong_config():
    with pytest.raises(TypeError, match="config must be a LlamaConfig, got GPTConfig"):
        Llama(GPTConfig(vocab_size=97, block_size=32, n_layer=1, n_head=2, n_embd=32))
    with pytest.raises(TypeError, match="config must be a GPTConfig, got LlamaConfig"):
        GPT(LlamaConfig(**BASE))
    with pytest.raises(ValueError, match="needs a config with a sliding_window"):
        RollingKVCache(LlamaConfig(**BASE), 1)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Llama(LlamaConfig(**BASE)).eval()


RUN_ERRORS = [
    (lambda m: m(torch.tensor([[1.0, 2.0]])), TypeError, "ids must be an integer tensor"),
    (lambda m: m(torch.tensor([1, 2])), ValueError, "ids must have shape (B, N)"),
    (lambda m: m(torch.tensor([[1, 97]])), ValueError, "token id 97 is out of range"),
    (lambda m: m(torch.zeros(1, 33, dtype=torch.long)), ValueError, "exceed the context length"),
    (
        lambda m: m.run(torch.tensor([[1, 2]]), positions=torch.tensor([[0]])),
        ValueError,
        "positions must be a tensor with the shape of ids (1, 2)",
    ),
    (
        lambda m: m.run(torch.tensor([[1, 2]]), positions=torch.tensor([[0, 32]])),
        ValueError,
        "positions must be in [0, 31]",
    ),
    (
        lambda m: m.run(torch.tensor([[1, 2]]), last_only=True, logits_at=torch.tensor([0])),
        ValueError,
        "pass last_only=True or logits_at, not both",
    ),
    (
        lambda m: m.run(torch.tensor([[1, 2]]), cache=m.new_cache(2, 8)),
        ValueError,
        "cache was made for batch size 2, ids have 1",
    ),
    (lambda m: m.new_cache(1, 33), ValueError, "max_len must be in [1, 32]"),
]


@pytest.mark.parametrize("call, exc, match", RUN_ERRORS)
def test_bad_run_arguments(model, call, exc, match):
    with pytest.raises(exc) as info:
        call(model)
    assert match in str(info.value)


def test_batched_sliding_window_model_past_its_window_is_refused():
    from nexttoken.batching import generate_batch

    torch.manual_seed(0)
    m = Llama(LlamaConfig(**{**BASE, "sliding_window": 6})).eval()
    with pytest.raises(ValueError, match=r"shorter than its window \(6 tokens\)"):
        generate_batch(m, [[1, 2, 3], [4]], 5, temperature=0)


# --- the checkpoint readers --------------------------------------------------------------------
@pytest.fixture
def folder(model, tmp_path):
    return save_llama(model, tmp_path / "llama")


def _edit_config(folder, **changes):
    path = folder / "config.json"
    hf = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            hf.pop(k, None)
        else:
            hf[k] = v
    path.write_text(json.dumps(hf))


def _edit_tensors(folder, change):
    from safetensors.torch import load_file

    tensors = load_file(str(folder / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "model.safetensors"))


CONFIG_FILE_ERRORS = [
    (dict(model_type="gpt2"), "this is a GPT-2 checkpoint, load it with load_gpt2"),
    (dict(model_type="qwen2"), "model_type must be one of ['llama', 'mistral', 'qwen3']"),
    (dict(hidden_act="gelu"), "hidden_act must be 'silu'"),
    (dict(attention_bias=True), "attention_bias=True is not supported (no biases)"),
    (dict(mlp_bias=True), "mlp_bias=True is not supported"),
    (dict(num_hidden_layers=0), "num_hidden_layers must be an int >= 1, got 0"),
    (dict(hidden_size="32"), "hidden_size must be an int >= 1"),
    (dict(num_key_value_heads=3), "n_kv_head (3) must divide n_head (4)"),
    (dict(rope_parameters={"rope_type": "llama3", "rope_theta": 5e5}), "rope_type 'llama3'"),
    (dict(rope_scaling={"rope_type": "linear", "factor": 2.0}), "is not implemented"),
    (dict(rope_scaling=4), "is not implemented"),
    (dict(rope_parameters={"rope_theta": "big"}), "rope_theta must be a number"),
    (dict(tie_word_embeddings="no"), "tie_word_embeddings must be true or false"),
    (dict(use_sliding_window=True), "use_sliding_window / layer_types"),
    (dict(rms_norm_eps=None, vocab_size=None), "vocab_size must be an int >= 1, got None"),
]


@pytest.mark.parametrize("changes, match", CONFIG_FILE_ERRORS)
def test_bad_config_json_is_refused_by_name(folder, changes, match):
    _edit_config(folder, **changes)
    with pytest.raises(ValueError) as info:
        load_llama(folder)
    assert "config.json" in str(info.value) and match in str(info.value)


def test_gpt2_and_llama_folders_are_each_refused_by_the_other_loader(folder, tmp_path):
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=97, block_size=32, n_layer=1, n_head=2, n_embd=32))
    gpt_folder = export_hf_gpt2(gpt, tmp_path / "gpt2")
    with pytest.raises(ValueError, match="GPT-2 checkpoint, load it with load_gpt2"):
        load_llama(gpt_folder)
    with pytest.raises(ValueError, match="model_type must be 'gpt2', got 'llama'"):
        load_gpt2(folder)


TENSOR_ERRORS = [
    (lambda t: t.pop("model.norm.weight"), "missing tensors ['model.norm.weight']"),
    (lambda t: t.update(extra=torch.zeros(2)), "unexpected ['extra']"),
    (
        lambda t: t.update({"model.layers.0.self_attn.k_proj.weight": torch.zeros(32, 32)}),
        "tensor model.layers.0.self_attn.k_proj.weight has shape (32, 32), expected (16, 32)",
    ),
    (
        lambda t: t.update({"model.norm.weight": torch.ones(32, dtype=torch.int32)}),
        "tensor model.norm.weight has dtype torch.int32; model weights must be floating point",
    ),
    (
        lambda t: t.update({"model.norm.weight": torch.full((32,), float("nan"))}),
        "tensor model.norm.weight holds 32 NaN",
    ),
    (
        lambda t: t.update({"model.norm.weight": torch.ones(32, dtype=torch.float16)}),
        "tensors of several dtypes ['torch.float16', 'torch.float32']: pass dtype",
    ),
]


@pytest.mark.parametrize("change, match", TENSOR_ERRORS)
def test_bad_tensors_are_refused_by_name(folder, change, match):
    _edit_tensors(folder, change)
    with pytest.raises(ValueError) as info:
        load_llama(folder)
    assert match in str(info.value)


def test_tied_output_that_differs_from_the_embedding_is_refused(folder):
    _edit_config(folder, tie_word_embeddings=True)
    with pytest.raises(ValueError, match="lm_head.weight differs from model.embed_tokens.weight"):
        load_llama(folder)


def test_missing_files_and_pickles(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder at"):
        load_llama(tmp_path / "nowhere")
    with pytest.raises(TypeError, match="source must be a folder path"):
        load_llama(3)
    (folder / "config.json").rename(folder / "other.json")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_llama(folder)
    (folder / "other.json").rename(folder / "config.json")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(FileNotFoundError, match=r"pytorch_model.bin'\]: pickles, which are never"):
        load_llama(folder)
    (folder / "model.safetensors").write_bytes(pickle.dumps({"x": 1}))  # a pickle, renamed
    with pytest.raises(ValueError, match="is not a readable safetensors file"):
        load_llama(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_llama(folder)


def test_sharded_folders(model, folder):
    from safetensors.torch import load_file

    tensors = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    names = sorted(tensors)
    first, second = names[: len(names) // 2], names[len(names) // 2 :]
    save_file({k: tensors[k] for k in first}, str(folder / "model-00001-of-00002.safetensors"))
    save_file({k: tensors[k] for k in second}, str(folder / "model-00002-of-00002.safetensors"))
    weight_map = {k: "model-00001-of-00002.safetensors" for k in first}
    weight_map |= {k: "model-00002-of-00002.safetensors" for k in second}
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    loaded = load_llama(folder)
    assert all(torch.equal(loaded.state_dict()[k], t) for k, t in model.state_dict().items())
    index.write_text(json.dumps({"weight_map": {**weight_map, "x": "../evil.safetensors"}}))
    with pytest.raises(ValueError, match="must be a .safetensors file in"):
        load_llama(folder)
    index.write_text(json.dumps({"weight_map": {**weight_map, "x": "model-3.safetensors"}}))
    with pytest.raises(FileNotFoundError, match="lists model-3.safetensors, which is not in"):
        load_llama(folder)
    index.write_text(json.dumps({"files": []}))
    with pytest.raises(ValueError, match="is not a safetensors index"):
        load_llama(folder)


def test_dtype_and_block_size_overrides(folder):
    m = load_llama(folder, dtype=torch.bfloat16, block_size=64)
    assert m.dtype == torch.bfloat16 and m.config.block_size == 64
    with pytest.raises(TypeError, match="dtype must be None or a floating-point torch.dtype"):
        load_llama(folder, dtype=torch.int8)
    with pytest.raises(ValueError, match="block_size must be an int >= 1"):
        load_llama(folder, block_size=0)


def test_save_llama_refuses_what_it_cannot_write(model, tmp_path):
    gpt = GPT(GPTConfig(vocab_size=97, block_size=32, n_layer=1, n_head=2, n_embd=32))
    with pytest.raises(TypeError, match="model must be a nexttoken Llama, got GPT"):
        save_llama(gpt, tmp_path)
    with pytest.raises(ValueError, match=r"eos_token_id must be None or an int in \[0, 97\)"):
        save_llama(model, tmp_path, eos_token_id=97)
    both = Llama(LlamaConfig(**{**BASE, "qk_norm": True, "sliding_window": 4}))
    with pytest.raises(ValueError, match="both qk_norm and one sliding window"):
        save_llama(both, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written
