"""Notebook 09's checkers accept right answers and reject the typical wrong ones; its figures draw."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from nexttoken.checkpoint import CONV1D_WEIGHTS
from nexttoken.exercises import gpt2 as ex
from nexttoken.viz.gpt2 import parity_figure, speed_figure

PARAMS = 124_439_808


def right_convert(stored):
    return {k: v.t() if k.endswith(CONV1D_WEIGHTS) else v for k, v in stored.items()}


def test_convert_block(capsys):
    assert ex.check_convert_block(right_convert)
    assert ex.check_convert_block(lambda s: {k: v.t() if v.dim() == 2 else v for k, v in s.items()})
    assert not ex.check_convert_block(None)
    assert "TODO" in capsys.readouterr().out
    assert not ex.check_convert_block(lambda s: s)  # forgot the transpose: shapes refuse it
    # transposed only the non-square ones: loads, but attn.c_proj is wrong
    assert not ex.check_convert_block(
        lambda s: {
            k: v.t() if v.dim() == 2 and v.shape[0] != v.shape[1] else v for k, v in s.items()
        }
    )
    assert "square" in capsys.readouterr().out
    assert not ex.check_convert_block(lambda s: {k: v for k, v in s.items() if "ln_1" not in k})
    assert not ex.check_convert_block(lambda s: 1 / 0)
    assert not ex.check_convert_block("not a function")


def test_silent_transposes():
    assert ex.check_silent_transposes({"attn.c_proj.weight"})
    assert ex.check_silent_transposes("attn.c_proj.weight")
    assert not ex.check_silent_transposes(None)
    assert not ex.check_silent_transposes(set())
    assert not ex.check_silent_transposes(set(CONV1D_WEIGHTS))
    assert not ex.check_silent_transposes({"attn.c_proj.weight", "mlp.c_proj.weight"})
    assert not ex.check_silent_transposes({"wte.weight"})
    assert not ex.check_silent_transposes(3)


def test_roofline(capsys):
    assert ex.check_roofline(ex.ROOFLINE_BANDWIDTH / (PARAMS * 4))
    assert not ex.check_roofline(None)
    assert not ex.check_roofline(ex.ROOFLINE_BANDWIDTH / (PARAMS * 2))  # bf16
    assert "bf16" in capsys.readouterr().out
    assert not ex.check_roofline(ex.ROOFLINE_BANDWIDTH / (PARAMS * 32))  # bits
    assert not ex.check_roofline(ex.ROOFLINE_BANDWIDTH / ((PARAMS + 50257 * 768) * 4))  # untied
    assert "tied" in capsys.readouterr().out
    assert not ex.check_roofline(ex.ROOFLINE_BANDWIDTH / PARAMS)
    assert not ex.check_roofline("40")
    assert not ex.check_roofline(True)


def diffs(ref, out, model, last):
    return [
        (a - b).abs().max().item()
        for a, b in zip(ref, [*out.hidden_states[:-1], last], strict=True)
    ]


def test_hidden_pairs(capsys):
    assert ex.check_hidden_pairs(lambda r, o, m: diffs(r, o, m, o.final_hidden))
    assert ex.check_hidden_pairs(
        lambda r, o, m: diffs(r, o, m, m.transformer.ln_f(o.hidden_states[-1]))
    )
    assert not ex.check_hidden_pairs(None)
    # naive pairing: HF's last entry is after ln_f, ours is before
    assert not ex.check_hidden_pairs(lambda r, o, m: diffs(r, o, m, o.hidden_states[-1]))
    assert "LayerNorm" in capsys.readouterr().out
    assert not ex.check_hidden_pairs(lambda r, o, m: [0.0] * 3)  # does not compare anything
    assert not ex.check_hidden_pairs(lambda r, o, m: [0.0] * 2)
    assert not ex.check_hidden_pairs(
        lambda r, o, m: [
            (a - b).abs().max().item() for a, b in zip(r, o.hidden_states[1:], strict=False)
        ]
    )  # off by one
    assert not ex.check_hidden_pairs(lambda r, o, m: None)


def test_parity_figure():
    d = {"correct": [0.0, 1e-7, 2e-7, 3e-7], "wrong": [0.0, 0.1, 0.5, 3.0]}
    assert isinstance(parity_figure(d), Figure)
    assert isinstance(parity_figure(d, highlight="wrong"), Figure)
    with pytest.raises(ValueError, match="highlight"):
        parity_figure(d, highlight="nope")
    with pytest.raises(ValueError, match="same length"):
        parity_figure({"a": [1, 2, 3], "b": [1, 2, 3, 4]})
    with pytest.raises(ValueError, match="at least one"):
        parity_figure({})


def test_speed_figure():
    assert isinstance(speed_figure({"a": 20.0, "b": torch.tensor(10.0).item()}), Figure)
    with pytest.raises(ValueError):
        speed_figure({})
