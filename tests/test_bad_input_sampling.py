"""Bad input to nexttoken.sampling: every case is a clear error or a correct result (issue 9.2).

Each row: the call, the exception type, and a piece of the message that names the problem; or the
call and a check of its (right) result. The rules are in the module docstring of sampling.py.
"""

from __future__ import annotations

import pytest
import torch

from nexttoken.sampling import (
    check_generator,
    check_sampling_args,
    filtered_probs,
    greedy,
    sample,
    softmax,
    top_k_filter,
    top_p_filter,
)

NAN, INF = float("nan"), float("inf")
L = torch.tensor([[1.0, 3.0, 2.0, 0.5], [0.0, -1.0, 4.0, 4.0]])  # (2, 4)
WITH_NAN = torch.tensor([1.0, NAN, 0.0])
WITH_POSINF = torch.tensor([1.0, INF, 0.0])
ALL_NEGINF = torch.tensor([[0.0, 1.0], [-INF, -INF]])


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


ERRORS = [
    # logits that are not scores
    (lambda: sample(WITH_NAN, generator=_g()), ValueError, "logits contain NaN"),
    (lambda: greedy(WITH_NAN), ValueError, "logits contain NaN"),
    (lambda: softmax(WITH_NAN), ValueError, "logits contain NaN"),
    (lambda: filtered_probs(WITH_NAN, 0.5), ValueError, "logits contain NaN"),
    (lambda: top_k_filter(WITH_NAN, 1), ValueError, "logits contain NaN"),
    (lambda: top_p_filter(WITH_NAN, 0.5), ValueError, "logits contain NaN"),
    (lambda: sample(WITH_POSINF, generator=_g()), ValueError, "logits contain +inf"),
    (lambda: greedy(WITH_POSINF), ValueError, "logits contain +inf"),
    (lambda: softmax(WITH_POSINF), ValueError, "logits contain +inf"),
    (lambda: filtered_probs(WITH_POSINF, 0), ValueError, "logits contain +inf"),
    (lambda: sample(ALL_NEGINF, generator=_g()), ValueError, "every logit of a row is -inf"),
    (lambda: greedy(ALL_NEGINF), ValueError, "every logit of a row is -inf"),
    (lambda: softmax(ALL_NEGINF), ValueError, "every logit of a row is -inf"),
    (lambda: sample(torch.tensor([1, 2]), generator=_g()), TypeError, "floating-point tensor"),
    (lambda: sample([1.0, 2.0]), TypeError, "logits must be a torch.Tensor"),
    (lambda: softmax(torch.tensor(1.0)), ValueError, "non-empty last dimension"),
    (lambda: greedy(torch.empty(3, 0)), ValueError, "non-empty last dimension"),
    # settings
    (lambda: sample(L, -1.0), ValueError, "temperature must be a finite number >= 0"),
    (lambda: sample(L, NAN), ValueError, "temperature must be a finite number >= 0"),
    (lambda: sample(L, INF), ValueError, "temperature must be a finite number >= 0"),
    (lambda: sample(L, "0.8"), TypeError, "temperature must be a number"),
    (lambda: sample(L, True), TypeError, "temperature must be a number"),
    (lambda: softmax(L, 0), ValueError, "softmax needs temperature > 0"),
    (lambda: sample(L, top_k=0), ValueError, "top_k must be in [1, 4]"),
    (lambda: sample(L, top_k=5), ValueError, "top_k must be in [1, 4]"),
    (lambda: sample(L, top_k=2.0), TypeError, "top_k must be an int"),
    (lambda: top_k_filter(L, True), TypeError, "top_k must be an int"),
    (lambda: sample(L, top_p=0), ValueError, "top_p must be in (0, 1]"),
    (lambda: sample(L, top_p=1.5), ValueError, "top_p must be in (0, 1]"),
    (lambda: sample(L, top_p=NAN), ValueError, "top_p must be in (0, 1]"),
    (lambda: top_p_filter(L, "0.9"), TypeError, "top_p must be a number"),
    (lambda: check_sampling_args(4, temperature=[1]), TypeError, "temperature must be a number"),
    # the generator is checked before anything is drawn, also when greedy
    (lambda: sample(L, generator="seed"), TypeError, "generator must be a torch.Generator"),
    (lambda: sample(L, generator=42), TypeError, "generator must be a torch.Generator"),
    (lambda: sample(L, 0, generator="seed"), TypeError, "generator must be a torch.Generator"),
    (lambda: check_generator(0), TypeError, "generator must be a torch.Generator"),
]


@pytest.mark.parametrize("call, exc, match", ERRORS)
def test_bad_input_is_a_clear_error(call, exc, match):
    with pytest.raises(exc) as info:
        call()
    assert match in str(info.value)


def _one_hot_at(probs: torch.Tensor, index: int) -> bool:
    return (
        bool(torch.isfinite(probs).all())
        and int(probs.argmax()) == index
        and float(probs.max()) == pytest.approx(1.0)
    )


TOP = L[0].argmax().item()  # 1
HALF = (L[0] * 30).half()  # half-precision logits: 90 / 1e-4 overflows float16 (max 65504)
HUGE = torch.tensor([3e38, -3e38, 0.0])

RESULTS = [
    # a tiny temperature is the limit it should be: all the mass on the top logit
    (lambda: filtered_probs(L[0], 1e-50), lambda p: _one_hot_at(p, TOP)),
    (lambda: filtered_probs(L[0], 1e-38), lambda p: _one_hot_at(p, TOP)),
    (lambda: filtered_probs(L[0], 5e-324), lambda p: _one_hot_at(p, TOP)),
    (lambda: softmax(L[0], 1e-45), lambda p: _one_hot_at(p, TOP)),
    (lambda: int(sample(L[0], 1e-50, generator=_g())), lambda t: t == TOP),
    (lambda: int(sample(L[0], 1e-38, generator=_g())), lambda t: t == TOP),
    # exact ties share the mass equally (row 1: logits 4 and 4)
    (lambda: filtered_probs(L[1], 1e-50), lambda p: p.tolist() == [0.0, 0.0, 0.5, 0.5]),
    # a tiny top_p keeps exactly the top token
    (lambda: filtered_probs(L[0], top_p=1e-300), lambda p: _one_hot_at(p, TOP)),
    (lambda: filtered_probs(L[0], top_p=1e-46), lambda p: _one_hot_at(p, TOP)),
    (lambda: int(sample(L[0], top_p=1e-300, generator=_g())), lambda t: t == TOP),
    (lambda: top_p_filter(L[0], 1e-300), lambda z: int(torch.isfinite(z).sum()) == 1),
    # half precision: no overflow, probabilities in the logits' dtype
    (
        lambda: filtered_probs(HALF, 1e-4),
        lambda p: p.dtype == torch.float16 and _one_hot_at(p, TOP),
    ),
    (lambda: filtered_probs(HALF, top_p=1e-8), lambda p: _one_hot_at(p, TOP)),
    (lambda: int(sample(HALF, 1e-4, generator=_g())), lambda t: t == TOP),
    (lambda: int(sample(HALF, 1.0, top_p=1e-8, generator=_g())), lambda t: t == TOP),
    # huge finite logits: s / T overflows float32, the float64 path does not
    (lambda: filtered_probs(HUGE, 0.5), lambda p: p.tolist() == [1.0, 0.0, 0.0]),
    (lambda: softmax(HUGE), lambda p: p.tolist() == [1.0, 0.0, 0.0]),
    # -inf marks an impossible token: allowed, and never chosen
    (lambda: softmax(torch.tensor([0.0, -INF])), lambda p: p.tolist() == [1.0, 0.0]),
    (lambda: int(greedy(torch.tensor([-INF, 2.0, -INF]))), lambda t: t == 1),
    # greedy ignores the generator but still takes a real one
    (lambda: int(sample(L[0], 0, generator=_g())), lambda t: t == TOP),
]


@pytest.mark.parametrize("call, check", RESULTS)
def test_awkward_but_valid_input_gives_the_right_result(call, check):
    assert check(call())


def test_valid_draws_are_unchanged_by_the_overflow_path():
    """The float64 fallback only runs when s / T overflows: ordinary draws keep their tokens."""
    logits = torch.randn(8, 50, generator=_g(3)) * 4
    for t in (0.3, 0.8, 1.0, 1.7):
        z = logits / t
        expected = torch.softmax(z, -1)
        assert torch.allclose(filtered_probs(logits, t), expected, atol=1e-6)
        a = sample(logits, t, generator=_g(1))
        b = torch.multinomial(filtered_probs(logits, t), 1, generator=_g(1))[:, 0]
        assert torch.equal(a, b)
