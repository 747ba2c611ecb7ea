"""Checkers of notebooks 05-07: right answers pass; each recognised wrong answer fails and names its
misconception (mutation-style: a checker that accepts a wrong answer is a bug); hints are staged and
never print the answer."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from nexttoken.configs import get_config
from nexttoken.exercises import Hints
from nexttoken.exercises import logits as ex5
from nexttoken.exercises import loop as ex7
from nexttoken.exercises import sampling as ex6
from nexttoken.sampling import top_k_filter, top_p_filter


def run(check, *args, capsys):
    ok = check(*args)
    return ok, capsys.readouterr().out


def assert_fails(check, answer, misconception, capsys, *extra):
    ok, out = run(check, answer, *extra, capsys=capsys)
    assert not ok, f"accepted a wrong answer ({misconception!r})"
    assert out.startswith("FAIL"), out
    assert misconception in out, out


# ---- 05 -------------------------------------------------------------------------------------


def stable(x):
    z = x - x.amax(dim=-1, keepdim=True)
    return z.exp() / z.exp().sum(dim=-1, keepdim=True)


SOFTMAX_RIGHT = {
    "row max": stable,
    "torch": lambda x: torch.softmax(x, dim=-1),
    "row max then global (shift invariant)": lambda x: stable(x - x.max()),
    "float64": lambda x: torch.softmax(x.double(), dim=-1),
}
SOFTMAX_WRONG = {
    "overflow": ("exp overflowed", lambda x: x.exp() / x.exp().sum(dim=-1, keepdim=True)),
    "dim 0": ("wrong dimension", lambda x: torch.softmax(x, dim=0)),
    "no normalisation": ("not normalised", lambda x: (x - x.amax(-1, keepdim=True)).exp()),
    "batch sum": ("whole batch", lambda x: x.exp() / x.exp().sum()),
    "global max": (
        "maximum of the whole batch",
        lambda x: (x - x.max()).exp() / (x - x.max()).exp().sum(-1, keepdim=True),
    ),  # fmt: skip
    "min shift": (
        "shifting by the minimum",
        lambda x: (
            stable(x)
            if x.abs().max() > 500
            else (x - x.amin(-1, keepdim=True)).exp()
            / (x - x.amin(-1, keepdim=True)).exp().sum(-1, keepdim=True)
        ),
    ),  # fmt: skip
    "log softmax": ("log-probabilities", lambda x: torch.log_softmax(x, dim=-1)),
    "raises": ("it raised ZeroDivisionError", lambda x: 1 / 0),
    "shape": ("shape", lambda x: stable(x)[0]),
}


@pytest.mark.parametrize("name", SOFTMAX_RIGHT)
def test_softmax_right(name, capsys):
    ok, out = run(ex5.check_softmax, SOFTMAX_RIGHT[name], capsys=capsys)
    assert ok and out.startswith("PASS"), out


@pytest.mark.parametrize("name", SOFTMAX_WRONG)
def test_softmax_wrong(name, capsys):
    misconception, fn = SOFTMAX_WRONG[name]
    assert_fails(ex5.check_softmax, fn, misconception, capsys)


def test_min_shift_really_shifts_by_the_min(capsys):
    # the pure min-shift also overflows on the wide row only; check it is named there too
    def min_shift(x):
        z = x - x.amin(-1, keepdim=True)
        return z.exp() / z.exp().sum(-1, keepdim=True)

    ok, out = run(ex5.check_softmax, min_shift, capsys=capsys)
    assert not ok and ("exp overflowed" in out or "minimum" in out)


PROJ = 12288 * 50257
PROJECTION_WRONG = {
    12288 * 50000: "50,257",
    PROJ + 50257: "no bias",
    768 * 50257: "GPT-2 small",
    4 * 12288 * 50257: "d_ff",
    96 * PROJ: "not one per layer",
    2 * PROJ: "two matrices",
    128 * 50257: "d_head",
    50257: "not d_model x vocabulary",
}


def test_projection_right(capsys):
    assert run(ex5.check_projection_params, PROJ, capsys=capsys)[0]


@pytest.mark.parametrize("bad", PROJECTION_WRONG)
def test_projection_wrong(bad, capsys):
    assert_fails(ex5.check_projection_params, bad, PROJECTION_WRONG[bad], capsys)


def test_projection_accepts_any_whole_number_type(capsys):
    import numpy as np

    for good in (PROJ, float(PROJ), np.int64(PROJ), torch.tensor(PROJ)):
        assert run(ex5.check_projection_params, good, capsys=capsys)[0], good


@pytest.mark.parametrize("bad", ["617558016", True, PROJ + 0.5])
def test_projection_wrong_type(bad, capsys):
    assert_fails(ex5.check_projection_params, bad, "expected a count (a whole number)", capsys)


ENTROPY_RIGHT = {
    "xlogy": lambda p: -torch.special.xlogy(p, p).sum(-1),
    "where": lambda p: -(p * torch.where(p > 0, p, 1).log()).sum(-1),
}
ENTROPY_WRONG = {
    "nan on zeros": ("nan", lambda p: -(p * p.log()).sum(-1)),
    "bits": ("bits", lambda p: -(p * torch.log2(torch.where(p > 0, p, 1))).sum(-1)),
    "sign": ("wrong sign", lambda p: torch.special.xlogy(p, p).sum(-1)),
    "batch sum": ("2 entropies", lambda p: -torch.special.xlogy(p, p).sum()),
    "dim 0": ("last dimension", lambda p: -torch.special.xlogy(p, p).sum(0)),
    "not a number": ("expected one number", lambda p: "high"),
}


@pytest.mark.parametrize("name", ENTROPY_RIGHT)
def test_entropy_right(name, capsys):
    assert run(ex5.check_entropy, ENTROPY_RIGHT[name], capsys=capsys)[0]


@pytest.mark.parametrize("name", ENTROPY_WRONG)
def test_entropy_wrong(name, capsys):
    misconception, fn = ENTROPY_WRONG[name]
    assert_fails(ex5.check_entropy, fn, misconception, capsys)


def test_entropy_dim0_on_a_square_batch_is_caught(capsys):
    # sum(0) on a (2, 4) batch has shape (4,), caught by the shape; on (V,) it is right
    ok, out = run(ex5.check_entropy, lambda p: -torch.special.xlogy(p, p).sum(0), capsys=capsys)
    assert not ok


def test_shift_prediction(capsys):
    assert run(ex5.check_shift_prediction, 0.079, 0.079, capsys=capsys)[0]
    ok, out = run(ex5.check_shift_prediction, 1.0, 0.079, capsys=capsys)
    assert not ok and "DIFFERENCES" in out
    ok, out = run(ex5.check_shift_prediction, None, 0.079, capsys=capsys)
    assert not ok and out.startswith("TODO")


def test_temperature_ratio_prediction(capsys):
    actual = math.exp(1.5 / 0.5)  # a logit gap of 1.5 at T = 0.5
    assert run(ex5.check_temperature_ratio_prediction, 20, actual, capsys=capsys)[0]
    for wrong in (2 * math.exp(1.5), math.exp(1.5)):  # "the ratio doubles", "T changes nothing"
        ok, out = run(ex5.check_temperature_ratio_prediction, wrong, actual, capsys=capsys)
        assert not ok and "SQUARED" in out


# ---- 06 -------------------------------------------------------------------------------------


def my_top_k(x, k):
    return x.masked_fill(x < torch.topk(x, k, dim=-1).values[..., -1:], -math.inf)


TOP_K_WRONG = {
    "drops k-th": (
        "k-th largest logit itself was dropped",
        lambda x, k: x.masked_fill(x <= torch.topk(x, k, dim=-1).values[..., -1:], -math.inf),
    ),  # fmt: skip
    "smallest": (
        "SMALLEST",
        lambda x, k: x.masked_fill(
            x > torch.topk(x, k, dim=-1, largest=False).values[..., -1:], -math.inf
        ),
    ),  # fmt: skip
    "k+1": ("one too many", lambda x, k: top_k_filter(x, min(k + 1, x.size(-1)))),
    "global": (
        "per row",
        lambda x, k: x.masked_fill(x < torch.topk(x.flatten(), k).values[-1], -math.inf),
    ),  # fmt: skip
    "zero not -inf": (
        "set to 0, not -inf",
        lambda x, k: x.masked_fill(~torch.isfinite(top_k_filter(x, k)), 0.0),
    ),  # fmt: skip
    "values lost": (
        "unchanged",
        lambda x, k: torch.where(torch.isfinite(top_k_filter(x, k)), 0.0, -math.inf),
    ),  # fmt: skip
    "probabilities": ("probabilities", lambda x, k: torch.softmax(top_k_filter(x, k), -1)),
    "topk values": ("vocabulary order", lambda x, k: torch.topk(x, k, dim=-1).values),
    "no filter": ("nothing was set to -inf", lambda x, k: x.clone()),
    "int index": (
        "broadcast per row",
        lambda x, k: x.masked_fill(x < torch.topk(x, k, dim=-1).values[..., -1], -math.inf),
    ),  # fmt: skip
}


def test_top_k_right(capsys):
    for fn in (top_k_filter, my_top_k):
        assert run(ex6.check_top_k, fn, capsys=capsys)[0]


@pytest.mark.parametrize("name", TOP_K_WRONG)
def test_top_k_wrong(name, capsys):
    misconception, fn = TOP_K_WRONG[name]
    assert_fails(ex6.check_top_k, fn, misconception, capsys)


def drops_crossing(x, p):  # keeps only the tokens whose cumulative sum stays <= p
    s, order = torch.sort(x, descending=True)
    cum = torch.softmax(s, -1).cumsum(-1)
    drop = torch.zeros_like(cum, dtype=torch.bool).scatter(-1, order, cum > p)
    return x.masked_fill(drop, -math.inf)


def drops_crossing_keeps_top(x, p):  # the same, but the top token is always kept
    out = drops_crossing(x, p)
    return torch.where(torch.arange(x.size(-1)) == x.argmax(), x, out)


def unsorted(x, p):  # cumsum in vocabulary order
    probs = torch.softmax(x, -1)
    return x.masked_fill(probs.cumsum(-1) - probs >= p, -math.inf)


def ascending(x, p):
    s, order = torch.sort(x)
    sp = torch.softmax(s, -1)
    drop = torch.zeros_like(sp, dtype=torch.bool).scatter(-1, order, sp.cumsum(-1) - sp >= p)
    return x.masked_fill(drop, -math.inf)


def logit_cumsum(x, p):  # accumulates logits, not probabilities
    s, order = torch.sort(x, descending=True)
    drop = torch.zeros_like(s, dtype=torch.bool).scatter(-1, order, s.cumsum(-1) - s >= p)
    return x.masked_fill(drop, -math.inf)


TOP_P_WRONG = {
    "drops crossing": ("cross p was dropped", drops_crossing),
    "drops crossing, keeps top": ("cross p was dropped", drops_crossing_keeps_top),
    "unsorted": ("vocabulary order", unsorted),
    "ascending": ("LEAST likely", ascending),
    "zero not -inf": (
        "set to 0, not -inf",
        lambda x, p: x.masked_fill(~torch.isfinite(top_p_filter(x, p)), 0.0),
    ),  # fmt: skip
    "probabilities": ("probabilities", lambda x, p: torch.softmax(top_p_filter(x, p), -1)),
    "top-2": ("tokens kept", lambda x, p: top_k_filter(x, 2)),
    "logit cumsum": ("accumulated the logits", logit_cumsum),
    "drops top": (
        "most likely token was dropped (its probability",
        lambda x, p: top_p_filter(x, p).masked_fill(
            torch.arange(x.size(-1)) == x.argmax(), -math.inf
        ),
    ),  # fmt: skip
}


def test_top_p_right(capsys):
    def mine(x, p):
        s, order = torch.sort(x, descending=True)
        sp = torch.softmax(s, -1)
        drop = torch.zeros_like(sp, dtype=torch.bool).scatter(-1, order, sp.cumsum(-1) - sp >= p)
        return x.masked_fill(drop, -math.inf)

    for fn in (top_p_filter, mine):
        assert run(ex6.check_top_p, fn, capsys=capsys)[0]


@pytest.mark.parametrize("name", TOP_P_WRONG)
def test_top_p_wrong(name, capsys):
    misconception, fn = TOP_P_WRONG[name]
    assert_fails(ex6.check_top_p, fn, misconception, capsys)


TEMPERATURE_RIGHT = {
    "divide logits": lambda x, t: torch.softmax(x / t, dim=-1),
    "power of probs, renormalised": lambda x, t: (
        torch.softmax(x, -1) ** (1 / t) / (torch.softmax(x, -1) ** (1 / t)).sum(-1, keepdim=True)
    ),
}
TEMPERATURE_WRONG = {
    "after softmax": ("AFTER the softmax", lambda x, t: torch.softmax(x, -1) / t),
    "after softmax, renormalised": (
        "changes nothing",
        lambda x, t: (torch.softmax(x, -1) / t) / (torch.softmax(x, -1) / t).sum(),
    ),  # fmt: skip
    "multiplies": ("MULTIPLIED", lambda x, t: torch.softmax(x * t, -1)),
    "logits": ("scaled logits", lambda x, t: x / t),
    "T + 1": ("differ from the softmax", lambda x, t: torch.softmax(x / (t + 1), -1)),
    "shape": ("of shape (8,), got shape (3,)", lambda x, t: torch.softmax(x / t, -1)[:3]),
}


@pytest.mark.parametrize("name", TEMPERATURE_RIGHT)
def test_temperature_right(name, capsys):
    assert run(ex6.check_temperature, TEMPERATURE_RIGHT[name], capsys=capsys)[0]


@pytest.mark.parametrize("name", TEMPERATURE_WRONG)
def test_temperature_wrong(name, capsys):
    misconception, fn = TEMPERATURE_WRONG[name]
    assert_fails(ex6.check_temperature, fn, misconception, capsys)


def test_temperature_subtracting_t_is_caught(capsys):
    # softmax(x - T) is the T = 1 distribution (shift invariance)
    assert_fails(ex6.check_temperature, lambda x, t: torch.softmax(x - t, -1), "T = 1", capsys)


def pearson(o, p):
    e = o.sum() * p
    return float(((o - e) ** 2 / e).sum())


CHI_WRONG = {
    "neyman": ("OBSERVED", lambda o, p: float(((o - o.sum() * p) ** 2 / o).sum())),
    "forgot n": ("n * p", lambda o, p: float(((o - p) ** 2 / p).sum())),
    "no division": ("divided by its expected", lambda o, p: float(((o - o.sum() * p) ** 2).sum())),
    "not squared": ("cancel out", lambda o, p: float(((o - o.sum() * p) / (o.sum() * p)).sum())),
    "absolute": (
        "absolute value",
        lambda o, p: float(((o - o.sum() * p).abs() / (o.sum() * p)).sum()),
    ),  # fmt: skip
    "p-value": (
        "p-value",
        lambda o, p: float(scipy.stats.chisquare(o.numpy(), (o.sum() * p).numpy()).pvalue),
    ),  # fmt: skip
    "tensor of terms": ("one number", lambda o, p: (o - o.sum() * p) ** 2 / (o.sum() * p)),
}


def test_chi_square_right(capsys):
    for fn in (pearson, lambda o, p: scipy.stats.chisquare(o.numpy(), (o.sum() * p).numpy())[0]):
        assert run(ex6.check_chi_square, fn, capsys=capsys)[0]


@pytest.mark.parametrize("name", CHI_WRONG)
def test_chi_square_wrong(name, capsys):
    misconception, fn = CHI_WRONG[name]
    assert_fails(ex6.check_chi_square, fn, misconception, capsys)


def test_count_prediction(capsys):
    assert run(ex6.check_count_prediction, 790, 821, 793.3, capsys=capsys)[0]
    ok, out = run(ex6.check_count_prediction, 79, 821, 793.3, capsys=capsys)
    assert not ok and "n p = 793" in out


# ---- 07 -------------------------------------------------------------------------------------


def good_loop(model, ids, n):
    ids = list(ids)
    for _ in range(n):
        with torch.no_grad():
            logits = model(torch.tensor([ids]))[0, -1]
        ids.append(int(logits.argmax()))
    return ids


def forgets_to_append(model, ids, n):
    with torch.no_grad():
        nxt = int(model(torch.tensor([ids]))[0, -1].argmax())
    return list(ids) + [nxt] * n


def last_token_only(model, ids, n):
    ids = list(ids)
    for _ in range(n):
        with torch.no_grad():
            ids.append(int(model(torch.tensor([ids[-1:]]))[0, -1].argmax()))
    return ids


def first_position(model, ids, n):
    ids = list(ids)
    for _ in range(n):
        with torch.no_grad():
            ids.append(int(model(torch.tensor([ids]))[0, 0].argmax()))
    return ids


LOOP_WRONG = {
    "forgets to append": ("never appended", forgets_to_append),
    "last token only": ("only the last token", last_token_only),
    "first position": ("FIRST position", first_position),
    "only new": ("only the new ids", lambda m, i, n: good_loop(m, i, n)[len(i) :]),
    "unchanged": ("unchanged", lambda m, i, n: list(i)),
    "one short": ("expected", lambda m, i, n: good_loop(m, i, n - 1)),
    "tensor of floats": ("expected", lambda m, i, n: "text"),
}


def test_greedy_loop_right(capsys):
    def tensor_out(model, ids, n):
        return torch.tensor(good_loop(model, ids, n))

    for fn in (good_loop, tensor_out):
        assert run(ex7.check_greedy_loop, fn, capsys=capsys)[0]


@pytest.mark.parametrize("name", LOOP_WRONG)
def test_greedy_loop_wrong(name, capsys):
    misconception, fn = LOOP_WRONG[name]
    assert_fails(ex7.check_greedy_loop, fn, misconception, capsys)


def test_wrong_loops_differ_on_the_tiny_model():
    # each recognised wrong loop must give other tokens than the right one, or it is undetectable
    # (the checker's first prompt tells them all apart; the second only adds another length)
    model = ex7._tiny_model()
    right = good_loop(model, [1, 2, 3], 6)
    bad = list(ex7._wrong_loops(model, [1, 2, 3], 6).values())
    assert all(b != right for b in bad)
    assert len({tuple(b) for b in bad}) == len(bad)


KV_WRONG = {
    "keys only": ("key AND a value", lambda c, b: c.n_layer * c.n_embd * b),
    "queries too": ("query is not cached", lambda c, b: 3 * c.n_layer * c.n_embd * b),
    "d_head": ("d_head is one head", lambda c, b: 2 * c.n_layer * c.d_head * b),
    "n_head": ("n_head counts heads", lambda c, b: 2 * c.n_layer * c.n_head * b),
    "no bytes": ("not bytes", lambda c, b: 2 * c.n_layer * c.n_embd),
    "bits": ("bits", lambda c, b: 2 * c.n_layer * c.n_embd * b * 8),
    "no layers": ("multiply by n_layer", lambda c, b: 2 * c.n_embd * b),
    "full context": ("full context", lambda c, b: 2 * c.n_layer * c.n_embd * b * c.block_size),
    "float": ("got", lambda c, b: 2.5 * c.n_layer * c.n_embd * b),
}


def test_kv_bytes_right(capsys):
    assert run(ex7.check_kv_bytes, lambda c, b: 2 * c.n_layer * c.n_embd * b, capsys=capsys)[0]
    assert get_config("gpt3-175b").n_layer == 96


@pytest.mark.parametrize("name", KV_WRONG)
def test_kv_bytes_wrong(name, capsys):
    misconception, fn = KV_WRONG[name]
    assert_fails(ex7.check_kv_bytes, fn, misconception, capsys)


WINDOW_WRONG = {
    "oldest": ("OLDEST", lambda ids, b: ids[:b]),
    "one short": ("one token short", lambda ids, b: ids[-b + 1 :]),
    "one too many": ("one token too many", lambda ids, b: ids[-(b + 1) :]),
    "no crop": ("nothing was cropped", lambda ids, b: ids),
}


def test_window_right(capsys):
    for fn in (lambda ids, b: ids[-b:], lambda ids, b: torch.tensor(ids)[-b:]):
        assert run(ex7.check_window, fn, capsys=capsys)[0]


@pytest.mark.parametrize("name", WINDOW_WRONG)
def test_window_wrong(name, capsys):
    misconception, fn = WINDOW_WRONG[name]
    assert_fails(ex7.check_window, fn, misconception, capsys)


def test_unchanged_prediction(capsys):
    assert run(ex7.check_unchanged_prediction, 0, 0.0, capsys=capsys)[0]
    ok, out = run(ex7.check_unchanged_prediction, 0.5, 0.0, capsys=capsys)
    assert not ok and "bit for bit" in out


# ---- all checkers ---------------------------------------------------------------------------

CHECKERS = [
    ex5.check_softmax, ex5.check_projection_params, ex5.check_entropy,
    ex6.check_top_k, ex6.check_top_p, ex6.check_temperature, ex6.check_chi_square,
    ex7.check_greedy_loop, ex7.check_kv_bytes, ex7.check_window,
]  # fmt: skip

ALL_HINTS = {**ex5.HINTS, **ex6.HINTS, **ex7.HINTS}

# What the answers look like in the solutions notebooks: no hint stage may contain them.
SOLUTION_SNIPPETS = [
    "amax(dim=-1, keepdim=True)", "max(dim=-1, keepdim=True)", "logits - logits",
    "n_embd * cfg.vocab_size", "12288 * 50257", "617,558,016", "617558016",
    "xlogy(probs, probs)", "xlogy(p, p)", ".sum(dim=-1)",
    "torch.topk(logits, k", ".values[..., -1:]", "masked_fill", "cumsum(-1) - ",
    "(cumulative - prob >= p)", "softmax(logits / T", "logits / temperature",
    "observed.sum() * probs", "** 2 / E", "** 2 / expected",
    "model(torch.tensor([ids]))[0, -1]", "append(int(", "argmax())",
    "2 * n_layer * n_embd", "2 * config.n_layer", "ids[-block_size:]", "[-block_size:]",
]  # fmt: skip


def test_every_checker_has_staged_hints():
    assert len(ALL_HINTS) == len(CHECKERS)
    for hints in ALL_HINTS.values():
        assert isinstance(hints, Hints) and len(hints.stages) >= 3


@pytest.mark.parametrize("name", sorted(ALL_HINTS))
def test_no_hint_prints_the_answer(name):
    for stage in ALL_HINTS[name].stages:
        for snippet in SOLUTION_SNIPPETS:
            assert snippet not in stage, (name, snippet)


def test_hints_advance_and_stay_on_the_last(capsys):
    wrong = SOFTMAX_WRONG["overflow"][1]
    seen = []
    for _ in range(4):
        ok, out = run(ex5.check_softmax, wrong, capsys=capsys)
        assert not ok
        seen.append(out.split("Hint ")[1][:3])
    assert seen == ["1/3", "2/3", "3/3", "3/3"]
    stages = ex5.SOFTMAX_HINTS.stages
    assert stages[0] != stages[1] != stages[2]


def test_hints_are_counted_per_exercise(capsys):
    run(ex6.check_top_k, TOP_K_WRONG["smallest"][1], capsys=capsys)
    run(ex6.check_top_k, TOP_K_WRONG["smallest"][1], capsys=capsys)
    ok, out = run(ex6.check_top_p, drops_crossing, capsys=capsys)
    assert "Hint 1/3" in out  # another exercise starts at the nudge


def test_all_checkers_say_todo_for_none(capsys):
    for check in CHECKERS:
        assert check(None) is False
        out = capsys.readouterr().out
        assert out.startswith("TODO"), out
    for check in CHECKERS:  # a TODO does not count as a failed try
        assert ALL_HINTS[check(None) or _name(check)].stage() == 1
        capsys.readouterr()


def _name(check):
    return {
        ex5.check_softmax: "stable softmax",
        ex5.check_projection_params: "GPT-3 projection size",
        ex5.check_entropy: "entropy",
        ex6.check_top_k: "top-k filter",
        ex6.check_top_p: "top-p filter",
        ex6.check_temperature: "temperature",
        ex6.check_chi_square: "chi-square statistic",
        ex7.check_greedy_loop: "greedy loop",
        ex7.check_kv_bytes: "KV cache bytes per token",
        ex7.check_window: "sliding window",
    }[check]


def test_non_callables_fail_clearly(capsys):
    for check in CHECKERS:
        if check is ex5.check_projection_params:
            continue
        ok, out = run(check, 42, capsys=capsys)
        assert not ok and "function" in out, out
