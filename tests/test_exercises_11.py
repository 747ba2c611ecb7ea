"""Notebook 11's checkers: each right answer passes; each recognised wrong answer fails and names its
misconception; hints are staged and never give the answer away."""

from __future__ import annotations

import torch

from nexttoken.exercises import faster as ex


def run(check, answer, capsys):
    ok = check(answer)
    return ok, capsys.readouterr().out


def right_quantize(w):
    scale = w.abs().amax(dim=1) / 127
    return torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


QUANT_WRONG = {
    "one scale for the whole matrix": lambda w: (
        torch.round(w / (w.abs().max() / 127)).to(torch.int8),
        w.abs().max() / 127,
    ),
    "a scale per column": lambda w: (
        torch.round(w / (w.abs().amax(dim=0) / 127)).to(torch.int8),
        w.abs().amax(dim=0) / 127,
    ),
    "128 or 255": lambda w: (
        torch.round(w / (w.abs().amax(dim=1, keepdim=True) / 128)).clamp(-128, 127).to(torch.int8),
        w.abs().amax(dim=1) / 128,
    ),
    "truncated towards zero": lambda w: (
        torch.trunc(w / (w.abs().amax(dim=1, keepdim=True) / 127)).to(torch.int8),
        w.abs().amax(dim=1) / 127,
    ),
    "stored as torch.int8": lambda w: (
        torch.round(w / (w.abs().amax(dim=1, keepdim=True) / 127)),
        w.abs().amax(dim=1) / 127,
    ),
    "raised ZeroDivisionError": lambda w: 1 / 0,
    "must be a function": "nope",
}


def test_quantize_int8(capsys):
    assert run(ex.check_quantize_int8, right_quantize, capsys)[0]
    ok, out = run(ex.check_quantize_int8, None, capsys)
    assert not ok and "TODO" in out
    for why, wrong in QUANT_WRONG.items():
        ok, out = run(ex.check_quantize_int8, wrong, capsys)
        assert not ok and why in out, (why, out)


ACCEPT_WRONG = {
    "capped at 1": lambda p, q: p / q,
    "upside down": lambda p, q: min(1.0, q / p) if p else 1.0,
    "ignores how often the draft": lambda p, q: p,
    "draft's distribution": lambda p, q: 1.0 if p > 0 else 0.0,
    "for p=0.5, q=0.25: expected 1, got 0.5": lambda p, q: 0.5,
}


def test_accept_probability(capsys):
    assert run(ex.check_accept_probability, lambda p, q: min(1.0, p / q), capsys)[0]
    for why, wrong in ACCEPT_WRONG.items():
        ok, out = run(ex.check_accept_probability, wrong, capsys)
        assert not ok and why in out, (why, out)


ROUND_WRONG = {
    "target's own token is missing": lambda a, k: sum(a**i for i in range(1, k + 1)),
    "not alpha": lambda a, k: k * a + 1,
    "chance that all k are kept": lambda a, k: a**k,
    "for alpha=0.5, k=1: expected 1.5, got 2": lambda a, k: 2.0,
}


def test_tokens_per_round(capsys):
    assert run(ex.check_tokens_per_round, lambda a, k: sum(a**i for i in range(k + 1)), capsys)[0]
    for why, wrong in ROUND_WRONG.items():
        ok, out = run(ex.check_tokens_per_round, wrong, capsys)
        assert not ok and why in out, (why, out)


def test_hints_are_staged_and_never_the_answer(capsys):
    outs = [run(ex.check_accept_probability, lambda p, q: p, capsys)[1] for _ in range(4)]
    assert [o.count("Hint 1/3") for o in outs[:1]] == [1]
    assert "Hint 2/3" in outs[1] and "Hint 3/3" in outs[2] and "Hint 3/3" in outs[3]
    assert not any("min(1" in o for o in outs)


def test_verify_cost_prediction(capsys):
    assert ex.check_verify_cost_prediction(1.5, 1.7)
    assert not ex.check_verify_cost_prediction(1.0, 1.7)
    assert "few-row matrix kernel is inefficient" in capsys.readouterr().out
