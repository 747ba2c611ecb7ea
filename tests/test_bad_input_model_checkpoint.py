"""Bad input to GPTConfig and to the checkpoint readers: each error names the file and the problem.

(Checkpoints are safetensors: a pickle renamed ``.safetensors`` is refused as a damaged file, and
never unpickled.)
"""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from nexttoken.book import load_book_model
from nexttoken.checkpoint import (
    gpt2_config_from_hf,
    load_gpt2,
    load_model,
    read_config,
    read_metadata,
    save_model,
)
from nexttoken.model import GPT, GPTConfig

CFG = GPTConfig(vocab_size=97, block_size=24, n_layer=2, n_head=2, n_embd=32, name="tiny")
HF = dict(model_type="gpt2", n_layer=2, n_head=2, n_embd=32, n_positions=24, vocab_size=97)

CONFIG_ERRORS = [
    (dict(layer_norm_eps=-1), ValueError, "layer_norm_eps must be a small number > 0"),
    (dict(layer_norm_eps=0), ValueError, "layer_norm_eps must be a small number > 0"),
    (dict(layer_norm_eps=float("nan")), ValueError, "layer_norm_eps must be a small number > 0"),
    (dict(layer_norm_eps=5.0), ValueError, "layer_norm_eps must be a small number > 0"),
    (dict(layer_norm_eps="x"), TypeError, "layer_norm_eps must be a number"),
    (dict(dropout="0.1"), TypeError, "dropout must be a number"),
    (dict(dropout=1.0), ValueError, "dropout must be in [0, 1)"),
    (dict(dropout=float("nan")), ValueError, "dropout must be in [0, 1)"),
    (dict(dropout=True), TypeError, "dropout must be a number"),
    (dict(n_layer=2.7), TypeError, "n_layer must be an int"),
    (dict(n_layer=0), ValueError, "n_layer must be >= 1"),
    (dict(n_head=3), ValueError, "must be divisible by n_head"),
    (dict(vocab_size=True), TypeError, "vocab_size must be an int"),
    (dict(name=5), TypeError, "name must be a str"),
]


@pytest.mark.parametrize("kwargs, exc, match", CONFIG_ERRORS)
def test_bad_config_is_a_clear_error(kwargs, exc, match):
    with pytest.raises(exc) as info:
        dataclasses.replace(CFG, **kwargs)
    assert match in str(info.value)


HF_ERRORS = [
    ({**HF, "n_layer": 2.7}, "n_layer must be an integer, got 2.7"),
    ({**HF, "n_head": "2"}, "n_head must be an integer"),
    ({**HF, "vocab_size": True}, "vocab_size must be an integer"),
    ({**HF, "layer_norm_epsilon": "1e-5"}, "layer_norm_epsilon must be a number"),
    ({**HF, "layer_norm_epsilon": -1.0}, "layer_norm_eps must be a small number > 0"),
    ({k: v for k, v in HF.items() if k != "n_embd"}, "config.json lacks ['n_embd']"),
    ({**HF, "model_type": "llama"}, "model_type must be 'gpt2'"),
]


@pytest.mark.parametrize("hf, match", HF_ERRORS)
def test_bad_hf_config_is_a_clear_error(hf, match):
    with pytest.raises(ValueError) as info:
        gpt2_config_from_hf(hf)
    assert match in str(info.value)


# --- damaged or foreign checkpoint files ----------------------------------------------------


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    torch.manual_seed(0)
    return save_model(GPT(CFG), tmp_path_factory.mktemp("ckpt") / "good.safetensors")


def _tensors():
    torch.manual_seed(0)
    return {k: v.contiguous() for k, v in GPT(CFG).state_dict().items() if k != "lm_head.weight"}


def _meta(**config):
    info = {"format": "nexttoken-gpt", "config": {**dataclasses.asdict(CFG), **config}}
    return {"nexttoken": json.dumps(info)}


def _flip(data: bytes) -> bytes:
    b = bytearray(data)
    b[7] ^= 0xFF  # the top byte of the header length
    return bytes(b)


DAMAGED = [
    ("truncated", lambda d: d[: len(d) // 2], "not a readable safetensors file"),
    ("20 bytes", lambda d: d[:20], "not a readable safetensors file"),
    ("empty", lambda d: b"", "not a readable safetensors file"),
    ("pickle", lambda d: pickle.dumps({"w": [1.0, 2.0]}), "not a readable safetensors file"),
    ("header flipped", _flip, "not a readable safetensors file"),
    ("text", lambda d: b'{"not": "safetensors"}', "not a readable safetensors file"),
]


@pytest.mark.parametrize("reader", [load_model, read_config, read_metadata])
@pytest.mark.parametrize("name, damage, match", DAMAGED)
def test_damaged_file_names_the_path(good, tmp_path, reader, name, damage, match):
    path = tmp_path / f"{name.replace(' ', '_')}.safetensors"
    path.write_bytes(damage(good.read_bytes()))
    with pytest.raises(ValueError) as info:
        reader(path)
    assert match in str(info.value) and str(path) in str(info.value)


def _write(tmp_path, name, tensors=None, metadata=None):
    path = tmp_path / name
    save_file(tensors or _tensors(), str(path), metadata=metadata)
    return path


FILE_ERRORS = [
    (
        lambda p: _write(
            p,
            "int.safetensors",
            {**_tensors(), "transformer.wte.weight": _tensors()["transformer.wte.weight"].long()},
            _meta(),
        ),
        ValueError,
        "tensor transformer.wte.weight has dtype torch.int64",
    ),
    (
        lambda p: _write(p, "unknown.safetensors", metadata=_meta(rope_theta=10000)),
        ValueError,
        "unknown config fields ['rope_theta']",
    ),
    (
        lambda p: _write(p, "badjson.safetensors", metadata={"nexttoken": "{not json"}),
        ValueError,
        "its metadata is not valid JSON",
    ),
    (
        lambda p: _write(p, "list.safetensors", metadata={"nexttoken": "[1, 2]"}),
        ValueError,
        "its metadata is not a JSON object",
    ),
    (
        lambda p: _write(p, "noconfig.safetensors", metadata={"other": "x"}),
        ValueError,
        "is not a nexttoken checkpoint",
    ),
    (
        lambda p: _write(p, "badvalue.safetensors", metadata=_meta(n_layer="2")),
        TypeError,
        "bad config in its metadata: GPTConfig.n_layer must be an int",
    ),
    (
        lambda p: _write(p, "badeps.safetensors", metadata=_meta(layer_norm_eps=-1)),
        ValueError,
        "layer_norm_eps must be a small number > 0",
    ),
    (lambda p: p / "missing.safetensors", FileNotFoundError, "no checkpoint at"),
]


@pytest.mark.parametrize("make, exc, match", FILE_ERRORS)
def test_bad_checkpoint_names_the_file_and_the_problem(tmp_path, make, exc, match):
    path = make(tmp_path)
    with pytest.raises(exc) as info:
        load_model(path)
    assert match in str(info.value) and path.name in str(info.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda path: load_model(path, dtype="float16"),
        lambda path: load_model(path, dtype=torch.int8),
        lambda path: load_book_model(dtype="float16"),
    ],
)
def test_dtype_must_be_a_torch_float_dtype(good, call):
    with pytest.raises(TypeError, match="dtype must be None or a floating-point torch.dtype"):
        call(good)


# --- Hugging Face folders -----------------------------------------------------------------


def _hf_folder(tmp_path, config_text, weights: bytes):
    (tmp_path / "config.json").write_text(config_text)
    (tmp_path / "model.safetensors").write_bytes(weights)
    return tmp_path


def _hf_weights(tmp_path, **change) -> bytes:
    path = tmp_path / "w.safetensors"
    save_file({**_tensors(), **change}, str(path))
    return path.read_bytes()


HF_FOLDER_ERRORS = [
    (lambda p: _hf_folder(p, "{bad json", _hf_weights(p)), "config.json is not valid JSON"),
    (
        lambda p: _hf_folder(p, json.dumps({**HF, "n_layer": 2.7}), _hf_weights(p)),
        "config.json: n_layer must be an integer, got 2.7",
    ),
    (lambda p: _hf_folder(p, json.dumps(HF), b"x" * 20), "model.safetensors is not a readable"),
    (
        lambda p: _hf_folder(p, json.dumps(HF), pickle.dumps({"a": 1})),
        "model.safetensors is not a readable",
    ),
    (
        lambda p: _hf_folder(
            p,
            json.dumps(HF),
            _hf_weights(p, **{"transformer.wpe.weight": torch.zeros(24, 32).long()}),
        ),
        "tensor transformer.wpe.weight has dtype torch.int64",
    ),
    (
        lambda p: _hf_folder(
            p, json.dumps(HF), _hf_weights(p, **{"transformer.extra.weight": torch.zeros(2)})
        ),
        "model.safetensors: GPT-2 checkpoint: missing tensors [], unexpected",
    ),
]


@pytest.mark.parametrize("make, match", HF_FOLDER_ERRORS)
def test_bad_hf_folder_names_the_file_and_the_problem(tmp_path, make, match):
    folder = make(tmp_path)
    with pytest.raises(ValueError) as info:
        load_gpt2(folder)
    assert match in str(info.value) and str(folder) in str(info.value)


def test_hf_dtype_string_is_refused(tmp_path):
    folder = _hf_folder(tmp_path, json.dumps(HF), b"")
    with pytest.raises(TypeError, match="dtype must be None or a floating-point torch.dtype"):
        load_gpt2(folder, dtype="float16")


# --- issue 24, the three left from Part I -------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("name", ["transformer.h.1.mlp.c_fc.weight", "transformer.ln_f.bias"])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, name, bad):
    tensors = _tensors()
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[3] = bad
    path = tmp_path / "nan.safetensors"
    save_file(tensors, str(path), metadata=_meta())
    with pytest.raises(ValueError, match=f"tensor {name} holds .* must be finite") as info:
        load_model(path)
    assert path.name in str(info.value)
    folder = _hf_folder(tmp_path, json.dumps(HF), _hf_weights(tmp_path, **{name: tensors[name]}))
    with pytest.raises(ValueError, match=f"tensor {name} holds .* must be finite"):
        load_gpt2(folder)


def test_book_model_with_non_finite_weights_is_refused(tmp_path, monkeypatch):
    import shutil

    from nexttoken import book
    from nexttoken.configs import BOOK

    shutil.copytree(book.assets_dir(), tmp_path, dirs_exist_ok=True)
    with torch.device("meta"):
        names = [k for k in GPT(BOOK).state_dict() if k != "lm_head.weight"]
    tensors = {k: torch.zeros(1) for k in names}  # shapes do not matter: refused before
    tensors["transformer.h.0.attn.c_proj.weight"] = torch.tensor([1.0, float("nan")])
    save_file(tensors, str(tmp_path / book.MODEL_FILE), metadata=_meta())
    monkeypatch.setattr(book, "assets_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match="tensor transformer.h.0.attn.c_proj.weight holds 1 NaN"):
        load_book_model(verify=False)


@pytest.mark.parametrize("verify", ["no", "yes", 0, 1, None])
def test_load_book_model_verify_must_be_a_bool(verify):
    from nexttoken.book import load_book_draft_model

    with pytest.raises(TypeError, match="verify must be True or False"):
        load_book_model(verify=verify)
    with pytest.raises(TypeError, match="verify must be True or False"):
        load_book_draft_model(verify=verify)


@pytest.mark.parametrize("source", ["", "   "])
def test_load_gpt2_empty_path_says_so(source):
    with pytest.raises(ValueError, match="source is empty"):
        load_gpt2(source)
