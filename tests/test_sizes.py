"""nexttoken.sizes: parameter counts, memory, FLOPs and shapes measured on the meta device."""

from __future__ import annotations

import pytest
import torch

from nexttoken.configs import GPT2_FAMILY, GPT3_FAMILY, get_config
from nexttoken.model import GPT
from nexttoken.sizes import (
    flops_per_token,
    format_bytes,
    memory_bytes,
    meta_model,
    parameter_breakdown,
    shape_trace,
)


def analytic(cfg):
    d, L, V, T = cfg.n_embd, cfg.n_layer, cfg.vocab_size, cfg.block_size
    return {
        "embeddings": V * d + T * d,
        "attention": L * (4 * d * d + 4 * d),
        "mlp": L * (8 * d * d + 5 * d),
        "norms": L * 4 * d + 2 * d,
    }


def test_known_totals():
    assert sum(parameter_breakdown("gpt2").values()) == 124_439_808
    assert sum(parameter_breakdown("gpt3-175b").values()) == 174_604_259_328


@pytest.mark.parametrize("name", ["gpt2", "gpt2-xl", "gpt3-small", "gpt3-13b", "book"])
def test_breakdown_matches_formula(name):
    assert parameter_breakdown(name) == analytic(get_config(name))


def test_breakdown_matches_real_model(tiny_config):
    torch.manual_seed(0)
    assert sum(parameter_breakdown(tiny_config).values()) == GPT(tiny_config).num_parameters()


def test_meta_model_allocates_nothing():
    m = meta_model("gpt3-175b")
    assert m.transformer.wte.weight.device.type == "meta"
    assert tuple(m.lm_head.weight.shape) == (50257, 12288)


def test_memory_bytes():
    n = 174_604_259_328
    assert memory_bytes(n, "fp32") == 4 * n
    assert memory_bytes(n, "fp16") == 2 * n
    assert memory_bytes(n, "int8") == n
    assert format_bytes(2 * n) == "349.2 GB"
    with pytest.raises(ValueError, match="dtype"):
        memory_bytes(n, "bf8")
    with pytest.raises(ValueError, match="n_params"):
        memory_bytes(-1)


def test_flops_close_to_two_per_parameter():
    f = flops_per_token("gpt3-175b")
    n = sum(parameter_breakdown("gpt3-175b").values())
    assert f["total"] == f["matmul"] + f["attention"]
    assert 1.9 < f["matmul"] / n < 2.1
    assert f["attention"] == 4 * 96 * 2048 * 12288
    assert flops_per_token("gpt3-175b", n_ctx=1)["attention"] == 4 * 96 * 12288
    with pytest.raises(ValueError, match="n_ctx"):
        flops_per_token("gpt2", n_ctx=5000)


def test_shape_trace_gpt3():
    rows = shape_trace("gpt3-175b", 1, 10)
    shapes = {name: shape for name, _, shape in rows}
    assert shapes["ids"] == (1, 10)
    assert shapes["transformer.wte"] == (1, 10, 12288)
    assert shapes["transformer.h.0.attn.c_attn"] == (1, 10, 3 * 12288)
    assert shapes["transformer.h.0.attn.split_heads (q)"] == (1, 96, 10, 128)
    assert shapes["transformer.h.0.attn weights"] == (1, 96, 10, 10)
    assert shapes["transformer.h.0.mlp.c_fc"] == (1, 10, 4 * 12288)
    assert shapes["lm_head"] == (1, 10, 50257)
    assert not any(n.startswith("transformer.h.1.") for n in shapes)


def test_shape_trace_all_layers(tiny_config):
    rows = shape_trace(tiny_config, 2, 3, layers=None)
    blocks = [n for n, kind, _ in rows if kind == "Block"]
    assert blocks == [f"transformer.h.{i}" for i in range(tiny_config.n_layer)]
    with pytest.raises(ValueError, match="n_tokens"):
        shape_trace(tiny_config, 1, tiny_config.block_size + 1)


def test_bad_config():
    with pytest.raises(TypeError, match="config"):
        parameter_breakdown(3)
    with pytest.raises(ValueError, match="unknown config"):
        parameter_breakdown("gpt5")


def test_families_are_ordered_by_size():
    for fam in (GPT2_FAMILY, GPT3_FAMILY):
        totals = [sum(analytic(c).values()) for c in fam.values()]
        assert totals == sorted(totals)
