"""Checkers of notebooks 05-07 accept right answers and reject typical wrong ones."""

from __future__ import annotations

import math

import torch

from nexttoken.configs import get_config
from nexttoken.exercises import logits as ex5
from nexttoken.exercises import loop as ex7
from nexttoken.exercises import sampling as ex6
from nexttoken.sampling import top_k_filter, top_p_filter


def quiet(check, answer, capsys):
    ok = check(answer)
    out = capsys.readouterr().out
    return ok, out


# ---- 05 -------------------------------------------------------------------------------------


def stable(x):
    z = x - x.amax(dim=-1, keepdim=True)
    return z.exp() / z.exp().sum(dim=-1, keepdim=True)


def test_softmax_checker(capsys):
    ok, out = quiet(ex5.check_softmax, None, capsys)
    assert not ok and out.startswith("TODO")
    assert quiet(ex5.check_softmax, stable, capsys)[0]
    assert quiet(ex5.check_softmax, lambda x: torch.softmax(x, dim=-1), capsys)[0]
    wrong = {
        "naive": lambda x: x.exp() / x.exp().sum(dim=-1, keepdim=True),
        "wrong axis": lambda x: torch.softmax(x, dim=0),
        "global max": lambda x: stable(x - x.max()),  # fine, must pass (shift invariant)
        "no normalisation": lambda x: (x - x.amax(-1, keepdim=True)).exp(),
        "sum over all": lambda x: (x - x.max()).exp() / (x - x.max()).exp().sum(),
        "raises": lambda x: 1 / 0,
    }
    for name, fn in wrong.items():
        ok, out = quiet(ex5.check_softmax, fn, capsys)
        assert ok == (name == "global max"), name
        if not ok:
            assert out.startswith("FAIL"), out


def test_naive_softmax_fails_on_overflow(capsys):
    ok, out = quiet(ex5.check_softmax, lambda x: x.exp() / x.exp().sum(-1, keepdim=True), capsys)
    assert not ok and "overflow" in out


def test_projection_checker(capsys):
    assert quiet(ex5.check_projection_params, 12288 * 50257, capsys)[0]
    for bad in (12288 * 50000, 12288 * 50257 + 50257, 50257, 12288.0 * 50257, "617558016"):
        assert not quiet(ex5.check_projection_params, bad, capsys)[0]


def test_entropy_checker(capsys):
    good = lambda p: -torch.special.xlogy(p, p).sum(-1)
    assert quiet(ex5.check_entropy, good, capsys)[0]
    wrong = [
        lambda p: -(p * p.log()).sum(-1),  # nan on zeros
        lambda p: -(p * torch.log2(torch.where(p > 0, p, 1))).sum(-1),  # bits, not nats
        lambda p: (torch.special.xlogy(p, p)).sum(-1),  # sign
        lambda p: -torch.special.xlogy(p, p).sum(),  # sums over the batch too
    ]
    for fn in wrong:
        assert not quiet(ex5.check_entropy, fn, capsys)[0]


# ---- 06 -------------------------------------------------------------------------------------


def test_top_k_checker(capsys):
    assert quiet(ex6.check_top_k, top_k_filter, capsys)[0]
    wrong = [
        lambda x, k: x.masked_fill(x <= torch.topk(x, k, dim=-1).values[..., -1:], -math.inf),
        lambda x, k: x.masked_fill(
            x < torch.topk(x, k, dim=-1, largest=False).values[..., -1:], -math.inf
        ),
        lambda x, k: top_k_filter(x, min(k + 1, x.size(-1))),
        lambda x, k: x.masked_fill(x < torch.topk(x.flatten(), k).values[-1], -math.inf),  # global
        lambda x, k: torch.where(torch.isfinite(top_k_filter(x, k)), 0.0, -math.inf),  # values lost
    ]
    for fn in wrong:
        assert not quiet(ex6.check_top_k, fn, capsys)[0]


def test_top_p_checker(capsys):
    assert quiet(ex6.check_top_p, top_p_filter, capsys)[0]

    def drops_crossing(x, p):  # keeps only tokens with cumulative < p: can drop the top token
        s, order = torch.sort(x, descending=True)
        cum = torch.softmax(s, -1).cumsum(-1)
        drop = torch.zeros_like(cum, dtype=torch.bool).scatter(-1, order, cum > p)
        return x.masked_fill(drop, -math.inf)

    def unsorted(x, p):  # cumsum in vocabulary order
        cum = torch.softmax(x, -1).cumsum(-1)
        return x.masked_fill(cum - torch.softmax(x, -1) >= p, -math.inf)

    def drops_top(x, p):
        out = top_p_filter(x, p)
        return out.masked_fill(torch.arange(x.size(-1)) == x.argmax(), -math.inf)

    for fn in (drops_crossing, unsorted, drops_top, lambda x, p: top_k_filter(x, 2)):
        assert not quiet(ex6.check_top_p, fn, capsys)[0]
    ok, out = quiet(ex6.check_top_p, drops_crossing, capsys)
    assert "most likely token was dropped" in out


def test_chi_square_checker(capsys):
    good = lambda o, p: float(((o - o.sum() * p) ** 2 / (o.sum() * p)).sum())
    assert quiet(ex6.check_chi_square, good, capsys)[0]
    wrong = [
        lambda o, p: float(((o - o.sum() * p) ** 2 / o).sum()),  # Neyman: divides by O
        lambda o, p: float(((o - p) ** 2 / p).sum()),  # forgot n
        lambda o, p: float(((o - o.sum() * p) ** 2).sum()),  # no division
    ]
    for fn in wrong:
        assert not quiet(ex6.check_chi_square, fn, capsys)[0]


# ---- 07 -------------------------------------------------------------------------------------


def good_loop(model, ids, n):
    ids = list(ids)
    for _ in range(n):
        with torch.no_grad():
            logits = model(torch.tensor([ids]))[0, -1]
        ids.append(int(logits.argmax()))
    return ids


def test_greedy_loop_checker(capsys):
    assert quiet(ex7.check_greedy_loop, good_loop, capsys)[0]

    def forgets_to_append(model, ids, n):
        with torch.no_grad():
            nxt = int(model(torch.tensor([ids]))[0, -1].argmax())
        return list(ids) + [nxt] * n

    def first_position(model, ids, n):
        ids = list(ids)
        for _ in range(n):
            with torch.no_grad():
                ids.append(int(model(torch.tensor([ids]))[0, 0].argmax()))
        return ids

    def only_new(model, ids, n):
        return good_loop(model, ids, n)[len(ids) :]

    for fn in (forgets_to_append, first_position, only_new, lambda m, i, n: i):
        assert not quiet(ex7.check_greedy_loop, fn, capsys)[0]


def test_kv_bytes_checker(capsys):
    assert quiet(ex7.check_kv_bytes, lambda c, b: 2 * c.n_layer * c.n_embd * b, capsys)[0]
    wrong = [
        lambda c, b: c.n_layer * c.n_embd * b,  # keys only
        lambda c, b: 2 * c.n_layer * c.n_head * b,
        lambda c, b: 2 * c.n_layer * c.d_head * b,
        lambda c, b: 2 * c.n_layer * c.n_embd,  # forgot bytes
        lambda c, b: 2 * c.n_layer * c.n_embd * b * c.block_size,  # whole context
    ]
    for fn in wrong:
        assert not quiet(ex7.check_kv_bytes, fn, capsys)[0]
    assert get_config("gpt3-175b").n_layer == 96


def test_window_checker(capsys):
    assert quiet(ex7.check_window, lambda ids, b: ids[-b:], capsys)[0]
    for fn in (lambda ids, b: ids[:b], lambda ids, b: ids[-b + 1 :], lambda ids, b: ids):
        assert not quiet(ex7.check_window, fn, capsys)[0]


def test_all_checkers_say_todo_for_none(capsys):
    checks = [ex5.check_softmax, ex5.check_projection_params, ex5.check_entropy,
              ex6.check_top_k, ex6.check_top_p, ex6.check_chi_square,
              ex7.check_greedy_loop, ex7.check_kv_bytes, ex7.check_window]  # fmt: skip
    for check in checks:
        assert check(None) is False
        assert capsys.readouterr().out.startswith("TODO")
