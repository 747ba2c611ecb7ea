"""Bad input to nexttoken.generate: every argument is checked before the first forward pass."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from nexttoken.generate import MAX_NEW_TOKENS, as_ids, check_max_new_tokens, generate
from nexttoken.model import GPT, GPTConfig

CFG = GPTConfig(vocab_size=97, block_size=24, n_layer=2, n_head=2, n_embd=32, name="tiny")


@functools.cache
def _model() -> GPT:
    torch.manual_seed(0)
    return GPT(CFG).eval()


class _Counting(GPT):
    """A GPT that counts its forward passes (to prove a check came before any work)."""

    calls = 0

    def run(self, *args, **kwargs):
        type(self).calls += 1
        return super().run(*args, **kwargs)


def _gen(*args, **kwargs):
    return generate(_model(), *args, **kwargs)


ERRORS = [
    # max_new_tokens: bounded, so that the output buffer can be allocated
    (lambda: _gen([1], 10**13), ValueError, "max_new_tokens must be >= 0 and <= 1_000_000"),
    (lambda: _gen([1], 10**20), ValueError, "max_new_tokens must be >= 0 and <= 1_000_000"),
    (lambda: _gen([1], MAX_NEW_TOKENS + 1), ValueError, "max_new_tokens must be >= 0"),
    (lambda: _gen([1], -1), ValueError, "max_new_tokens must be >= 0"),
    (lambda: _gen([1], 2.0), TypeError, "max_new_tokens must be an int"),
    (lambda: _gen([1], True), TypeError, "max_new_tokens must be an int"),
    (lambda: check_max_new_tokens("5"), TypeError, "max_new_tokens must be an int"),
    # the generator, also when greedy
    (lambda: _gen([1], 2, generator="seed"), TypeError, "generator must be a torch.Generator"),
    (lambda: _gen([1], 2, generator=42), TypeError, "generator must be a torch.Generator"),
    (
        lambda: _gen([1], 2, temperature=0, generator="seed"),
        TypeError,
        "generator must be a torch.Generator",
    ),
    # stop_token: an id, not a bool
    (lambda: _gen([1], 2, stop_token=True), TypeError, "stop_token must be a token id"),
    (lambda: _gen([1], 2, stop_token=False), TypeError, "stop_token must be a token id"),
    (lambda: _gen([1], 2, stop_token=97), ValueError, "stop_token must be a token id in [0, 96]"),
    (lambda: _gen([1], 2, stop_token=-1), ValueError, "stop_token must be a token id in [0, 96]"),
    (lambda: _gen([1], 2, stop_token=5.0), TypeError, "stop_token must be a token id"),
    (lambda: _gen([1], 2, stop_token="5"), TypeError, "stop_token must be a token id"),
    # on_token: a function
    (lambda: _gen([1], 2, on_token=5), TypeError, "on_token must be a function"),
    (lambda: _gen([1], 2, on_token="print"), TypeError, "on_token must be a function"),
    (lambda: _gen([1], 2, use_cache="yes"), TypeError, "use_cache must be True or False"),
    # sampling settings
    (lambda: _gen([1], 2, temperature=-0.5), ValueError, "temperature must be a finite number"),
    (lambda: _gen([1], 2, top_k=98), ValueError, "top_k must be in [1, 97]"),
    (lambda: _gen([1], 2, top_p=0.0), ValueError, "top_p must be in (0, 1]"),
    # the prompt and the model
    (lambda: _gen([97], 2), ValueError, "token id 97 is out of range"),
    (lambda: _gen([-1], 2), ValueError, "token id -1 is out of range"),
    (lambda: _gen([], 2), ValueError, "the prompt is empty"),
    (lambda: _gen([1.0], 2), TypeError, "ids must be a list of ints"),
    (lambda: _gen([True], 2), TypeError, "ids must be a list of ints"),
    (lambda: _gen("hello", 2), TypeError, "ids must be a torch.Tensor or a list of ints"),
    (lambda: _gen(torch.tensor([1.0]), 2), TypeError, "ids must be an integer tensor"),
    (lambda: as_ids(torch.zeros(1, 1, 1, dtype=torch.long)), ValueError, "ids must have shape"),
    (lambda: generate("gpt2", [1], 2), TypeError, "model must be a nexttoken GPT"),
]


@pytest.mark.parametrize("call, exc, match", ERRORS)
def test_bad_input_is_a_clear_error(call, exc, match):
    with pytest.raises(exc) as info:
        call()
    assert match in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"generator": "seed"},
        {"temperature": 0, "generator": 42},
        {"stop_token": True},
        {"on_token": 5},
    ],
)
def test_checks_come_before_the_first_forward_pass(kwargs):
    torch.manual_seed(0)
    model = _Counting(CFG).eval()
    _Counting.calls = 0
    with pytest.raises(TypeError):
        generate(model, [1, 2], 3, **kwargs)
    assert _Counting.calls == 0


def _greedy(**kw):
    return _gen([1, 2], 4, temperature=0, **kw)[0].tolist()


RESULTS = [
    # integer types that are ids: NumPy and torch integers are accepted as stop tokens
    (lambda: _gen([1], 3, stop_token=np.int64(5)).shape[0], lambda b: b == 1),
    (lambda: _gen([1], 3, stop_token=torch.tensor(5)).shape[0], lambda b: b == 1),
    (
        lambda: _greedy(stop_token=np.int64(_greedy()[2])),
        lambda ids: ids == _greedy()[:3],
    ),
    # a tiny temperature on the model: the greedy tokens, not a torch error
    (lambda: _gen([1, 2], 4, temperature=1e-50)[0].tolist(), lambda ids: ids == _greedy()),
    (lambda: _gen([1, 2], 4, top_p=1e-300)[0].tolist(), lambda ids: ids == _greedy()),
    (lambda: _gen([1], 0).tolist(), lambda ids: ids == [[1]]),
    (lambda: _gen([1], 2, on_token=None).shape, lambda s: tuple(s) == (1, 3)),
]


@pytest.mark.parametrize("call, check", RESULTS)
def test_awkward_but_valid_input_gives_the_right_result(call, check):
    assert check(call())


def test_half_precision_model_with_a_tiny_temperature():
    """A float16 model at T = 1e-4 used to overflow to inf/NaN inside torch.multinomial."""
    half = GPT(CFG).eval()
    half.load_state_dict(_model().state_dict())
    half = half.half()
    ids = generate(half, [1, 2], 3, temperature=1e-4, generator=torch.Generator().manual_seed(0))
    greedy = generate(half, [1, 2], 3, temperature=0)
    assert ids.tolist() == greedy.tolist()
