"""Checkers of notebook 00: the right answer passes, each recognised wrong answer fails and names
its misconception, hints are staged and never give the answer away."""

from __future__ import annotations

import pytest
import torch

from nexttoken.exercises import pipeline as ex
from nexttoken.exercises import reset_hints

N, D, V = 10, 12288, 50257


def _fails_with(capsys, ok: bool, misconception: str) -> None:
    out = capsys.readouterr().out
    assert ok is False, out
    assert out.startswith("FAIL"), out
    assert misconception in out, out


# ---- exercise 1: the decoder's output size --------------------------------------------------


def test_output_shape_right(capsys):
    assert ex.check_output_shape(N * D)
    assert capsys.readouterr().out == "PASS decoder output size\n"


@pytest.mark.parametrize(
    ("answer", "misconception"),
    [
        (N * V, "size of the logits"),
        (V, "logits of one position"),
        (D, "one contextual vector"),
        (N * D * 96, "every block's output"),
        (N * D * 97, "every hidden state"),
        (N * 4 * D, "MLP's hidden width"),
        (N * 3 * D, "q, k and v"),
        (N * 128, "one head's width"),
        (N * D + 0.5, "got the fraction"),
        ("122880", "got str"),
        (123, "is not the number"),
    ],
)
def test_output_shape_wrong(capsys, answer, misconception):
    _fails_with(capsys, ex.check_output_shape(answer), misconception)


# ---- exercise 2: logits to probabilities ----------------------------------------------------


def _stable(s):
    z = s - s.max(dim=-1, keepdim=True).values
    return z.exp() / z.exp().sum(-1, keepdim=True)


def test_probabilities_right(capsys):
    assert ex.check_probabilities(_stable)
    assert ex.check_probabilities(lambda s: torch.softmax(s, dim=-1))


@pytest.mark.parametrize(
    ("fn", "misconception"),
    [
        (lambda s: s.exp() / s.exp().sum(-1, keepdim=True), "overflow"),
        (lambda s: torch.softmax(s, dim=0), "wrong dimension"),
        (lambda s: s.exp(), "exp() alone"),
        (lambda s: s / s.sum(-1, keepdim=True), "without exp()"),
        (lambda s: s.exp() / s.exp().sum(), "whole tensor"),
        (lambda s: torch.log_softmax(s, -1), "log-probabilities"),
        (torch.sigmoid, "sigmoid"),
        (lambda s: 1 / 0, "ZeroDivisionError"),
        (lambda s: s[0], "of shape (3, 4), got shape (4,)"),
        ("softmax", "give a function"),
    ],
)
def test_probabilities_wrong(capsys, fn, misconception):
    _fails_with(capsys, ex.check_probabilities(fn), misconception)


# ---- exercise 3: one step of the loop -------------------------------------------------------


def _right_step(model, ids):
    with torch.no_grad():
        nxt = model(ids)[:, -1].argmax(-1, keepdim=True)
    return torch.cat([ids, nxt], dim=1)


def _first_position(model, ids):
    return torch.cat([ids, model(ids)[:, 0].argmax(-1, keepdim=True)], dim=1)


def _last_token_only(model, ids):  # no cache, but only the last token fed
    return torch.cat([ids, model(ids[:, -1:])[:, -1].argmax(-1, keepdim=True)], dim=1)


def _prepend(model, ids):
    return torch.cat([model(ids)[:, -1].argmax(-1, keepdim=True), ids], dim=1)


def _least_likely(model, ids):
    return torch.cat([ids, model(ids)[:, -1].argmin(-1, keepdim=True)], dim=1)


def test_one_step_right(capsys):
    assert ex.check_one_step(_right_step)


def test_one_step_right_on_the_book_model():
    from nexttoken import load_book_model

    assert ex.check_one_step(_right_step, load_book_model())
    assert not ex.check_one_step(_first_position, load_book_model())


@pytest.mark.parametrize(
    ("fn", "misconception"),
    [
        (lambda m, ids: m(ids)[:, -1].argmax(-1, keepdim=True), "forgot to append"),
        (lambda m, ids: ids, "forgot to append"),
        (_first_position, "first position"),
        (_last_token_only, "fed only the last token"),
        (_prepend, "put first"),
        (lambda m, ids: torch.cat([ids[:, 1:], ids[:, :2]], dim=1), "prompt itself was changed"),
        (_least_likely, "not the most likely"),
        (lambda m, ids: "ids", "expected a tensor of ids, got str"),
        (lambda m, ids: torch.zeros(2, 3), "expected shape"),
        (lambda m, ids: 1 / 0, "ZeroDivisionError"),
    ],
)
def test_one_step_wrong(capsys, fn, misconception):
    with torch.no_grad():
        _fails_with(capsys, ex.check_one_step(fn), misconception)


# ---- exercise 4: predict, then run ----------------------------------------------------------


def test_earlier_logits_prediction(capsys, tiny_model):
    ids = torch.tensor([[1, 2, 3, 4]])
    assert ex.check_earlier_logits_prediction(0, tiny_model, ids)
    assert "PASS" in capsys.readouterr().out
    assert not ex.check_earlier_logits_prediction(0.5, tiny_model, ids)
    out = capsys.readouterr().out
    assert out.startswith("FAIL") and "KV cache is exact" in out
    assert not ex.check_earlier_logits_prediction(None, tiny_model, ids)
    assert "TODO" in capsys.readouterr().out
    assert not ex.check_earlier_logits_prediction("zero", tiny_model, ids)


# ---- hints ----------------------------------------------------------------------------------


def test_hints_advance_and_stay_on_the_last_stage(capsys):
    for k in (1, 2, 3, 3):
        ex.check_output_shape(1)
        assert f"Hint {k}/3" in capsys.readouterr().out
    ex.check_output_shape(None)  # the TODO line does not count as a try
    assert "Hint: " in capsys.readouterr().out
    reset_hints()
    ex.check_output_shape(1)
    assert "Hint 1/3" in capsys.readouterr().out


SOLUTION_CODE = [
    "122880",
    "12288 * 10",
    "10 * 12288",
    "max(dim=-1, keepdim=True)",
    "torch.softmax",
    "argmax(dim=-1, keepdim=True)",
    "torch.cat([ids",
    "[:, -1].argmax",
]


@pytest.mark.parametrize("hints", list(ex.HINTS.values()), ids=list(ex.HINTS))
def test_no_hint_gives_the_answer(hints):
    assert len(hints.stages) >= 2
    for stage in hints.stages:
        for code in SOLUTION_CODE:
            assert code not in stage
