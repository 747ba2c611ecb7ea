"""Exact parameter counts and the GPT-2 / GPT-3 tables, built on the meta device."""

from __future__ import annotations

import pytest
import torch

from nexttoken.configs import CONFIGS, GPT2_FAMILY, GPT3_FAMILY, get_config, names
from nexttoken.model import GPT, GPTConfig


def meta_params(name: str) -> int:
    with torch.device("meta"):
        return GPT(get_config(name)).num_parameters()


def closed_form(cfg: GPTConfig) -> int:
    """12 d^2 + 13 d per block, plus embeddings and the final LayerNorm (tied output)."""
    d = cfg.n_embd
    per_block = 12 * d * d + 13 * d
    return cfg.n_layer * per_block + cfg.vocab_size * d + cfg.block_size * d + 2 * d


def test_gpt2_small_exact():
    assert meta_params("gpt2") == 124_439_808


def test_gpt3_175b_exact_and_on_meta():
    with torch.device("meta"):
        model = GPT(get_config("gpt3-175b"))
    assert model.num_parameters() == 174_604_259_328
    assert model.transformer.wte.weight.device.type == "meta"
    assert model.lm_head.weight is model.transformer.wte.weight


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_config_matches_closed_form(name):
    assert meta_params(name) == closed_form(get_config(name))


@pytest.mark.parametrize(
    "name, millions",
    [("gpt2", 124), ("gpt2-medium", 355), ("gpt2-large", 774), ("gpt2-xl", 1558)],
)
def test_gpt2_family_sizes(name, millions):
    assert round(meta_params(name) / 1e6) == millions


@pytest.mark.parametrize(
    "name, billions",
    [
        ("gpt3-small", 0.125),
        ("gpt3-medium", 0.35),
        ("gpt3-large", 0.76),
        ("gpt3-xl", 1.3),
        ("gpt3-2.7b", 2.7),
        ("gpt3-6.7b", 6.7),
        ("gpt3-13b", 13.0),
        ("gpt3-175b", 175.0),
    ],
)
def test_gpt3_family_matches_table_2_1(name, billions):
    """Each size is within 5% of the paper's rounded number (Table 2.1)."""
    assert abs(meta_params(name) / 1e9 - billions) / billions < 0.05


def test_gpt3_table_shapes():
    c = get_config("gpt3-175b")
    assert (c.n_layer, c.n_embd, c.n_head, c.d_head, c.block_size, c.vocab_size) == (
        96,
        12288,
        96,
        128,
        2048,
        50257,
    )
    assert all(c.d_ff == 4 * c.n_embd for c in GPT3_FAMILY.values())
    assert all(c.d_head == 64 for c in GPT2_FAMILY.values())
    assert get_config("gpt3-13b").n_embd == 5120  # the paper's 5140 read as a typo


def test_unknown_config_name_lists_names():
    with pytest.raises(ValueError, match="unknown config 'gpt4'; known: gpt2, gpt2-medium"):
        get_config("gpt4")
    with pytest.raises(TypeError):
        get_config(3)
    assert names()[0] == "gpt2"


@pytest.mark.parametrize(
    "kwargs, err",
    [
        (dict(n_embd=100, n_head=3), ValueError),
        (dict(n_layer=0), ValueError),
        (dict(vocab_size=2.5), TypeError),
        (dict(dropout=1.0), ValueError),
    ],
)
def test_bad_config_values(kwargs, err):
    with pytest.raises(err):
        GPTConfig(**kwargs)
