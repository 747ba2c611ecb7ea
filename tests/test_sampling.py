"""Softmax and the choice of the next token: properties, exactness, reproducibility, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nexttoken import sampling
from nexttoken.sampling import filtered_probs, greedy, sample, softmax, top_k_filter, top_p_filter

logit_lists = st.lists(
    st.floats(-50, 50, allow_nan=False, allow_infinity=False), min_size=1, max_size=40
)


@settings(max_examples=100, deadline=None)
@given(values=logit_lists, temperature=st.floats(0.05, 5.0))
def test_softmax_is_a_distribution(values, temperature):
    p = softmax(torch.tensor(values, dtype=torch.float64), temperature)
    assert torch.all(p >= 0)
    assert math.isclose(float(p.sum()), 1.0, rel_tol=1e-9)


@settings(max_examples=100, deadline=None)
@given(values=logit_lists, shift=st.floats(-1e3, 1e3))
def test_softmax_is_shift_invariant(values, shift):
    x = torch.tensor(values, dtype=torch.float64)
    torch.testing.assert_close(softmax(x + shift), softmax(x))


def test_softmax_is_stable_where_the_naive_formula_overflows():
    x = torch.tensor([1000.0, 999.0, 0.0])
    naive = torch.exp(x) / torch.exp(x).sum()
    assert torch.isnan(naive).any()
    p = softmax(x)
    assert torch.isfinite(p).all()
    torch.testing.assert_close(p, torch.softmax(x, dim=-1))


def test_temperature_sharpens_and_flattens():
    x = torch.tensor([2.0, 1.0, 0.0])
    assert softmax(x, 0.5)[0] > softmax(x)[0] > softmax(x, 2.0)[0]


def test_greedy_and_temperature_zero():
    x = torch.tensor([[0.1, 3.0, -1.0], [5.0, 0.0, 4.9]])
    assert greedy(x).tolist() == [1, 0]
    assert sample(x, temperature=0).tolist() == [1, 0]
    assert filtered_probs(x, temperature=0).tolist() == [[0, 1, 0], [1, 0, 0]]


def test_top_k_keeps_k():
    x = torch.tensor([1.0, 5.0, 3.0, 4.0, 2.0])
    kept = torch.isfinite(top_k_filter(x, 2))
    assert kept.tolist() == [False, True, False, True, False]


def test_top_p_keeps_the_smallest_nucleus_and_always_the_top_token():
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    x = p.log()
    assert torch.isfinite(top_p_filter(x, 0.5)).tolist() == [True, False, False, False]
    assert torch.isfinite(top_p_filter(x, 0.6)).tolist() == [True, True, False, False]
    assert torch.isfinite(top_p_filter(x, 0.8)).tolist() == [True, True, False, False]
    assert torch.isfinite(top_p_filter(x, 0.81)).tolist() == [True, True, True, False]
    assert torch.isfinite(top_p_filter(x, 1.0)).all()
    assert torch.isfinite(top_p_filter(x, 1e-9)).tolist() == [True, False, False, False]


def test_top_p_breaks_ties_by_token_id():
    kept = torch.isfinite(top_p_filter(torch.zeros(17, dtype=torch.float64), 0.5))
    assert kept.tolist() == [True] * 9 + [False] * 8
    kept = torch.isfinite(top_p_filter(torch.tensor([1.0, 3.0, 0.0, 3.0]), 0.3))
    assert kept.tolist() == [False, True, False, False]


@settings(max_examples=60, deadline=None)
@given(values=logit_lists, p=st.floats(0.01, 1.0))
# all tied: the kept ones are the lowest ids, argmax's among them
@example(values=[0.0] * 17, p=0.5)
def test_top_p_mass_reaches_p(values, p):
    x = torch.tensor(values, dtype=torch.float64)
    kept = torch.isfinite(top_p_filter(x, p))
    assert kept[x.argmax()]
    assert float(softmax(x)[kept].sum()) >= p - 1e-9


def test_filtered_probs_renormalises():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    q = filtered_probs(x, temperature=1.0, top_k=2)
    torch.testing.assert_close(q.sum(-1), torch.ones(1))
    assert (q[0, :2] == 0).all()


def test_seeded_sampling_is_reproducible_and_follows_the_distribution():
    x = torch.tensor([0.0, 1.0, 2.0]).expand(20_000, 3)
    a = sample(x, generator=torch.Generator().manual_seed(0))
    b = sample(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    freq = torch.bincount(a, minlength=3).double() / a.numel()
    torch.testing.assert_close(freq, softmax(x[0].double()), atol=0.015, rtol=0)


def test_sample_shape():
    x = torch.randn(4, 7, 11)
    assert sample(x, generator=torch.Generator().manual_seed(1)).shape == (4, 7)


@pytest.mark.parametrize(
    "kwargs, err, msg",
    [
        (dict(temperature=-0.1), ValueError, "temperature must be a finite number >= 0"),
        (dict(temperature=float("nan")), ValueError, "temperature"),
        (dict(temperature="hot"), TypeError, "temperature must be a number"),
        (dict(top_k=0), ValueError, r"top_k must be in \[1, 5\]"),
        (dict(top_k=6), ValueError, r"top_k must be in \[1, 5\]"),
        (dict(top_k=2.0), TypeError, "top_k must be an int"),
        (dict(top_p=0.0), ValueError, r"top_p must be in \(0, 1\]"),
        (dict(top_p=1.5), ValueError, r"top_p must be in \(0, 1\]"),
    ],
)
def test_bad_sampling_arguments(kwargs, err, msg):
    with pytest.raises(err, match=msg):
        sample(torch.zeros(5), **kwargs)


def test_softmax_rejects_zero_temperature_and_int_logits():
    with pytest.raises(ValueError, match="temperature 0 means greedy"):
        softmax(torch.zeros(3), 0)
    with pytest.raises(TypeError, match="floating-point"):
        softmax(torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        sampling.greedy([1.0, 2.0])
