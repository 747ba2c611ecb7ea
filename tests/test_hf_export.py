"""export_hf_gpt2 writes the Hugging Face GPT-2 layout: the book's importer reads it back to the very
same logits, and ``transformers`` computes the same logits and attention weights from it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from nexttoken.checkpoint import (
    CONV1D_WEIGHTS,
    export_hf_gpt2,
    gpt2_config_from_hf,
    gpt2_tensor_map,
    load_gpt2,
)
from nexttoken.model import GPT, GPTConfig

CFG = GPTConfig(vocab_size=67, block_size=24, n_layer=2, n_head=2, n_embd=16, name="tiny")


def random_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(CFG).eval()
    with torch.no_grad():  # LayerNorm gains/biases too, so that no tensor is an identity
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = random_model()
    folder = export_hf_gpt2(model, tmp_path_factory.mktemp("hf") / "tiny", eos_token_id=66)
    return model, folder


def test_files_and_layout(exported):
    model, folder = exported
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert gpt2_config_from_hf(config, name="tiny") == CFG
    assert config["eos_token_id"] == 66
    rows = {r["hf_name"]: r for r in gpt2_tensor_map(CFG)}
    state = model.state_dict()
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        assert set(f.keys()) == set(rows)  # the tied output layer is not stored
        for name in f.keys():
            t = f.get_tensor(name)
            assert tuple(t.shape) == rows[name]["hf_shape"]
            want = state[name].t() if name.endswith(CONV1D_WEIGHTS) else state[name]
            assert torch.equal(t, want), name


def test_round_trip_identical_logits(exported):
    model, folder = exported
    back = load_gpt2(folder)
    ids = torch.randint(0, CFG.vocab_size, (2, CFG.block_size), generator=torch.Generator())
    with torch.no_grad():
        assert torch.equal(back(ids), model(ids))
    assert back.lm_head.weight is back.transformer.wte.weight


def test_transformers_parity(exported):
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    model, folder = exported
    hf = transformers.GPT2LMHeadModel.from_pretrained(
        folder, local_files_only=True, attn_implementation="eager"
    ).eval()
    ids = torch.randint(0, CFG.vocab_size, (2, 11), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = hf(ids, output_attentions=True)
        out = model.run(ids, output_attentions=True)
    torch.testing.assert_close(ref.logits, out.logits, atol=1e-5, rtol=1e-5)
    for a, b in zip(ref.attentions, out.attentions, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        greedy = hf.generate(
            ids[:1], attention_mask=torch.ones_like(ids[:1]), max_new_tokens=8, do_sample=False
        )
    from nexttoken.generate import generate

    assert torch.equal(generate(model, ids[:1], 8, temperature=0), greedy)


def test_refuses_bad_input(tmp_path):
    with pytest.raises(TypeError, match="GPT"):
        export_hf_gpt2("not a model", tmp_path)
    with pytest.raises(ValueError, match="eos_token_id"):
        export_hf_gpt2(random_model(), tmp_path, eos_token_id=CFG.vocab_size)
