"""Notebook 09's checkers: each right answer passes; each recognised wrong answer fails and names its
misconception; hints are staged and never give the answer away. Its figures draw."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from nexttoken.checkpoint import CONV1D_WEIGHTS
from nexttoken.exercises import gpt2 as ex
from nexttoken.viz.gpt2 import parity_figure, speed_figure

PARAMS = 124_439_808
BW = ex.ROOFLINE_BANDWIDTH


def run(check, answer, capsys):
    ok = check(answer)
    return ok, capsys.readouterr().out


def right_convert(stored):
    return {k: v.t() if k.endswith(CONV1D_WEIGHTS) else v for k, v in stored.items()}


CONVERT_WRONG = {
    "nothing was transposed": lambda s: s,
    "is square": lambda s: {
        k: v.t() if v.dim() == 2 and v.shape[0] != v.shape[1] else v for k, v in s.items()
    },
    "reshaped, not transposed": lambda s: {
        k: v.reshape(v.shape[::-1]) if k.endswith(CONV1D_WEIGHTS) else v for k, v in s.items()
    },
    "prefix": lambda s: {f"transformer.h.0.{k}": v for k, v in right_convert(s).items()},
    "missing": lambda s: {k: v for k, v in right_convert(s).items() if "ln_1" not in k},
    "raised ZeroDivisionError": lambda s: 1 / 0,
    "expected a dict": lambda s: list(s),
    "must be a function": "not a function",
}


def test_convert_block_right(capsys):
    assert run(ex.check_convert_block, right_convert, capsys)[0]
    fn = lambda s: {k: v.T if v.dim() == 2 else v for k, v in s.items()}  # noqa: E731
    assert run(ex.check_convert_block, fn, capsys)[0]
    ok, out = run(ex.check_convert_block, None, capsys)
    assert not ok and out.startswith("TODO")


@pytest.mark.parametrize("why", list(CONVERT_WRONG))
def test_convert_block_wrong(why, capsys):
    ok, out = run(ex.check_convert_block, CONVERT_WRONG[why], capsys)
    assert not ok and out.startswith("FAIL convert one block: ") and why in out, out


@pytest.mark.parametrize(
    "answer, why",
    [
        (set(CONV1D_WEIGHTS), "not all four"),
        (set(), "one of them does load"),
        ({"attn.c_proj.weight", "mlp.c_proj.weight"}, "(3072, 768) in the file: not square"),
        ({"attn.c_attn.weight"}, "(768, 2304) in the file: not square"),
        ({"wte.weight"}, "not Conv1D weight names"),
        (3, "a set of names"),
    ],
)
def test_silent_transposes(answer, why, capsys):
    assert run(ex.check_silent_transposes, {"attn.c_proj.weight"}, capsys)[0]
    assert run(ex.check_silent_transposes, "attn.c_proj.weight", capsys)[0]
    ok, out = run(ex.check_silent_transposes, answer, capsys)
    assert not ok and why in out, out


@pytest.mark.parametrize(
    "answer, why",
    [
        (BW / (PARAMS * 2), "bf16"),
        (BW / (PARAMS * 32), "bits and bytes"),
        (BW * 8 / (PARAMS * 4), "bits and bytes"),
        (BW / PARAMS, "counts parameters, not bytes"),
        (BW / ((PARAMS + 50257 * 768) * 4), "tied"),
        (PARAMS * 4 / BW, "seconds per token"),
        (1000.0, "got 1e+03"),
        ("40", "expected a number of tokens per second, got str"),
        (True, "got bool"),
        (20 * 2**30 / (124_439_808 * 4), "GiB"),
    ],
)
def test_roofline(answer, why, capsys):
    assert run(ex.check_roofline, BW / (PARAMS * 4), capsys)[0]
    ok, out = run(ex.check_roofline, answer, capsys)
    assert not ok and why in out, out


def diffs(ref, ours):
    return [(a - b).abs().max().item() for a, b in zip(ref, ours, strict=False)]


HIDDEN_WRONG = {
    "final LayerNorm": lambda r, o, m: diffs(r, o.hidden_states),  # HF's last is after ln_f
    "off by one": lambda r, o, m: diffs(
        r, [*o.hidden_states[1:-1], o.final_hidden, o.final_hidden]
    ),
    "not return fixed numbers": lambda r, o, m: [0.0] * 3,
    "expected 3 numbers": lambda r, o, m: [0.0] * 2,
    "list of numbers": lambda r, o, m: None,
}


def test_hidden_pairs_right(capsys):
    ok, _ = run(
        ex.check_hidden_pairs,
        lambda r, o, m: diffs(r, [*o.hidden_states[:-1], o.final_hidden]),
        capsys,
    )
    assert ok
    fn = lambda r, o, m: diffs(r, [*o.hidden_states[:-1], m.transformer.ln_f(o.hidden_states[-1])])  # noqa: E731
    assert run(ex.check_hidden_pairs, fn, capsys)[0]
    assert not run(ex.check_hidden_pairs, None, capsys)[0]


@pytest.mark.parametrize("why", list(HIDDEN_WRONG))
def test_hidden_pairs_wrong(why, capsys):
    ok, out = run(ex.check_hidden_pairs, HIDDEN_WRONG[why], capsys)
    assert not ok and why in out, out


def test_stored_tensors_prediction(capsys):
    assert ex.check_stored_tensors(52, 52)
    assert not ex.check_stored_tensors(53, 52)  # counted lm_head as a stored tensor
    assert "tied" in capsys.readouterr().out
    assert not ex.check_stored_tensors(None, 52)
    assert not ex.check_stored_tensors("52", 52)


def test_hints_are_staged_and_never_the_answer(capsys):
    outs = [run(ex.check_roofline, BW / (PARAMS * 2), capsys)[1] for _ in range(3)]
    assert [o.split("Hint ")[1][:3] for o in outs] == ["1/2", "2/2", "2/2"]
    outs = [run(ex.check_convert_block, CONVERT_WRONG["is square"], capsys)[1] for _ in range(4)]
    assert [o.split("Hint ")[1][:3] for o in outs] == ["1/3", "2/3", "3/3", "3/3"]
    solutions = ["{'attn.c_proj.weight'}", '{"attn.c_proj.weight"}', "final_hidden", "/ (124"]
    solutions += ["v.t() if", "v.T if", "* 4)"]
    for hints in ex.HINTS.values():
        for stage in hints.stages:
            assert not any(s in stage for s in solutions), stage


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
