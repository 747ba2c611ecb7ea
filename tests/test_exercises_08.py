"""Notebook 08's checkers: each right answer passes; each recognised wrong answer fails and names its
misconception; hints are staged and never give the answer away."""

from __future__ import annotations

import math

import pytest
import torch

from nexttoken.exercises import reset_hints
from nexttoken.exercises import training as ex


def run(check, answer, capsys):
    ok = check(answer)
    return ok, capsys.readouterr().out


def right_ce(logits, targets):
    return -torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).mean()


def pick(lp, t):
    return lp.gather(-1, t.unsqueeze(-1))


CE_WRONG = {
    "minus sign": lambda s, t: pick(torch.log_softmax(s, -1), t).mean(),
    "sum over the positions": lambda s, t: -pick(torch.log_softmax(s, -1), t).sum(),
    "bits": lambda s, t: -pick(torch.log_softmax(s, -1), t).mean() / math.log(2),
    "wrong axis": lambda s, t: -pick(torch.log_softmax(s, 1), t).mean(),
    "wrong axis ": lambda s, t: -pick(torch.log_softmax(s, 0), t).mean(),
    "not normalised": lambda s, t: -pick(s, t).mean(),
    "-p, not -log p": lambda s, t: -pick(torch.softmax(s, -1), t).mean(),
    "one loss per position": lambda s, t: -pick(torch.log_softmax(s, -1), t)[..., 0],
    "underflowed to 0": lambda s, t: -pick(torch.log(torch.softmax(s, -1)), t).mean(),
    "raised ZeroDivisionError": lambda s, t: 1 / 0,
    "one number": lambda s, t: "a string",
}


def test_cross_entropy_right(capsys):
    assert run(ex.check_cross_entropy, right_ce, capsys) == (True, "PASS cross-entropy\n")
    f = torch.nn.functional.cross_entropy
    assert run(ex.check_cross_entropy, lambda s, t: f(s.flatten(0, 1), t.flatten()), capsys)[0]
    ok, out = run(ex.check_cross_entropy, None, capsys)
    assert not ok and out.startswith("TODO")


@pytest.mark.parametrize("why", list(CE_WRONG))
def test_cross_entropy_wrong(why, capsys):
    ok, out = run(ex.check_cross_entropy, CE_WRONG[why], capsys)
    assert not ok and out.startswith("FAIL cross-entropy: ")
    assert why.strip() in out, out


@pytest.mark.parametrize(
    "answer, why",
    [
        (math.log2(4096), "bits"),
        (math.log10(4096), "base 10"),
        (1 / 4096, "probability"),
        (4096, "perplexity"),
        (-math.log(4096), "minus sign"),
        (7.0, "got 7.0000"),
        ("8.3", "must be a number"),
    ],
)
def test_uniform_loss(answer, why, capsys):
    assert run(ex.check_uniform_loss, math.log(4096), capsys)[0]
    ok, out = run(ex.check_uniform_loss, answer, capsys)
    assert not ok and why in out, out


@pytest.mark.parametrize(
    "fn, why",
    [
        (lambda x: 2**x, "2 ** loss"),
        (lambda x: 10**x, "10 ** loss"),
        (lambda x: math.exp(-x), "inverse"),
        (lambda x: 1 / x, "1 / loss"),
        (math.log, "not the log of the loss"),
        (lambda x: x, "expected"),
        (lambda x: None, "expected a number, got None"),
    ],
)
def test_perplexity(fn, why, capsys):
    assert run(ex.check_perplexity, math.exp, capsys)[0]
    assert run(ex.check_perplexity, lambda x: torch.tensor(x).exp(), capsys)[0]
    ok, out = run(ex.check_perplexity, fn, capsys)
    assert not ok and why in out, out


@pytest.mark.parametrize(
    "fn, why",
    [
        (lambda a, t, c: a * c / t, "swapped"),
        (lambda a, t, c: a / c, "number of tokens is missing"),
        (lambda a, t, c: a * t / c / math.log(2), "bits per character"),
        (lambda a, t, c: a, "still the loss per token"),
        (lambda a, t, c: a * t, "total loss of the text"),
        (lambda a, t, c: a * t + 1, "expected"),
        (lambda a, t, c: [a], "expected a number, got list"),
    ],
)
def test_nats_per_char(fn, why, capsys):
    assert run(ex.check_nats_per_char, lambda a, t, c: a * t / c, capsys)[0]
    ok, out = run(ex.check_nats_per_char, fn, capsys)
    assert not ok and why in out, out


@pytest.mark.parametrize(
    "fn, why",
    [
        (lambda d, s, n: (d[s : s + n], d[s : s + n]), "copy"),
        (lambda d, s, n: (d[s : s + n], d[s - 1 : s + n - 1]), "one token behind"),
        (lambda d, s, n: (d[s + 1 : s + n + 1], d[s : s + n]), "swapped"),
        (lambda d, s, n: (d[s : s + n], d[s + 1 : s + n]), "cut from x"),
        (lambda d, s, n: (d[s : s + n + 1], d[s + 1 : s + n + 2]), "must both hold"),
        (lambda d, s, n: (d[s + 1 : s + n + 1], d[s + 2 : s + n + 2]), "x should be"),
        (lambda d, s, n: (d[s : s + n], d[s + 2 : s + n + 2]), "moved one token on"),
        (lambda d, s, n: d[s : s + n], "pair"),
    ],
)
def test_targets(fn, why, capsys):
    assert run(ex.check_targets, lambda d, s, n: (d[s : s + n], d[s + 1 : s + n + 1]), capsys)[0]
    ok, out = run(ex.check_targets, fn, capsys)
    assert not ok and why in out, out


def test_short_context_prediction(capsys):
    assert ex.check_short_context_loss(4.9, 4.85)
    assert not ex.check_short_context_loss(4.3, 4.85)
    assert "Why:" in capsys.readouterr().out
    assert not ex.check_short_context_loss(None, 4.85)
    assert not ex.check_short_context_loss("5", 4.85)


def test_hints_are_staged_and_never_the_answer(capsys):
    wrong = CE_WRONG["minus sign"]
    outs = [run(ex.check_cross_entropy, wrong, capsys)[1] for _ in range(4)]
    assert [o.split("Hint ")[1][:3] for o in outs] == ["1/3", "2/3", "3/3", "3/3"]
    solutions = ["gather(-1, targets", "math.log(4096)", "math.exp(loss)", "* tokens / char"]
    solutions += ["data[start + 1", "log_softmax(logits, dim=-1).gather"]
    for hints in ex.HINTS.values():
        for stage in hints.stages:
            assert not any(s in stage for s in solutions), stage
    reset_hints()
    assert "Hint 1/3" in run(ex.check_cross_entropy, wrong, capsys)[1]
