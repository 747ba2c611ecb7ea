"""The autoregressive loop: cache vs recompute equality, the context limit, stopping, errors."""

from __future__ import annotations

import pytest
import torch

from nexttoken.generate import generate


def prompt(cfg, B=1, N=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.vocab_size, (B, N), generator=g)


def test_shape_and_prompt_kept(tiny_model, tiny_config):
    ids = prompt(tiny_config, B=2)
    out = generate(tiny_model, ids, 6, temperature=0)
    assert out.shape == (2, 11)
    assert torch.equal(out[:, :5], ids)


def test_list_and_1d_prompts_are_batch_one(tiny_model):
    a = generate(tiny_model, [1, 2, 3], 4, temperature=0)
    b = generate(tiny_model, torch.tensor([1, 2, 3]), 4, temperature=0)
    assert a.shape == (1, 7) and torch.equal(a, b)


def test_zero_new_tokens_returns_the_prompt(tiny_model):
    assert generate(tiny_model, [4, 5], 0).tolist() == [[4, 5]]


@pytest.mark.parametrize("B", [1, 3])
def test_cache_and_recompute_give_identical_greedy_tokens(tiny_model, tiny_config, B):
    ids = prompt(tiny_config, B=B)
    a = generate(tiny_model, ids, 15, temperature=0, use_cache=True)
    b = generate(tiny_model, ids, 15, temperature=0, use_cache=False)
    assert torch.equal(a, b)


@pytest.mark.parametrize("kw", [dict(), dict(top_k=5), dict(top_p=0.8), dict(temperature=1.7)])
def test_cache_and_recompute_give_identical_sampled_tokens(tiny_model, tiny_config, kw):
    ids = prompt(tiny_config, B=2, seed=3)
    a = generate(tiny_model, ids, 15, generator=torch.Generator().manual_seed(7), **kw)
    b = generate(
        tiny_model, ids, 15, generator=torch.Generator().manual_seed(7), use_cache=False, **kw
    )
    assert torch.equal(a, b)


def test_same_seed_same_tokens_other_seed_other_tokens(tiny_model, tiny_config):
    ids = prompt(tiny_config)
    runs = [
        generate(tiny_model, ids, 12, generator=torch.Generator().manual_seed(s)) for s in (0, 0, 1)
    ]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_past_the_context_limit_the_window_slides(tiny_model, tiny_config):
    """block_size is 24: generating 40 tokens after 5 runs 21 steps past the limit."""
    ids = prompt(tiny_config)
    a = generate(tiny_model, ids, 40, temperature=0, use_cache=True)
    b = generate(tiny_model, ids, 40, temperature=0, use_cache=False)
    assert a.shape == (1, 45) and torch.equal(a, b)
    # each token past the limit is the greedy choice given exactly the last block_size tokens
    T = tiny_config.block_size
    for n in range(T, 45):
        window = a[:, n - T : n]
        expected = tiny_model(window)[0, -1].argmax()
        assert a[0, n] == expected


def test_prompt_longer_than_the_context(tiny_model, tiny_config):
    ids = prompt(tiny_config, N=30)
    a = generate(tiny_model, ids, 3, temperature=0)
    assert a.shape == (1, 33)
    assert torch.equal(a, generate(tiny_model, ids, 3, temperature=0, use_cache=False))


def test_stop_token_ends_generation_and_pads_finished_rows(tiny_model, tiny_config):
    ids = prompt(tiny_config)
    free = generate(tiny_model, ids, 10, temperature=0)
    stop = int(free[0, 7])  # the 3rd generated token
    out = generate(tiny_model, ids, 10, temperature=0, stop_token=stop)
    first = (out[0, 5:] == stop).nonzero()[0].item()
    assert out.shape[1] == 5 + first + 1
    assert int(out[0, -1]) == stop


def test_on_token_streams_each_step(tiny_model):
    seen = []
    out = generate(tiny_model, [1, 2], 5, temperature=0, on_token=lambda t: seen.append(t.tolist()))
    assert [s[0] for s in seen] == out[0, 2:].tolist()


def test_training_mode_is_restored(tiny_model):
    tiny_model.train()
    generate(tiny_model, [1], 2, temperature=0)
    assert tiny_model.training
    tiny_model.eval()


@pytest.mark.parametrize(
    "ids, kwargs, err, msg",
    [
        ([], {}, ValueError, "prompt is empty"),
        (torch.zeros(1, 0, dtype=torch.long), {}, ValueError, "prompt is empty"),
        ("hello", {}, TypeError, "torch.Tensor or a list of ints"),
        ([1.5, 2.0], {}, TypeError, "list of ints"),
        (torch.tensor([[0.5]]), {}, TypeError, "integer tensor"),
        (torch.zeros(1, 2, 2, dtype=torch.long), {}, ValueError, r"shape \(N,\) or \(B, N\)"),
        ([1, 200], {}, ValueError, r"token id 200 is out of range.*\[0, 96\]"),
        ([1], dict(max_new_tokens=-1), ValueError, "max_new_tokens must be >= 0"),
        ([1], dict(max_new_tokens=2.0), TypeError, "max_new_tokens must be an int"),
        ([1], dict(temperature=-1), ValueError, "temperature"),
        ([1], dict(top_k=0), ValueError, "top_k"),
        ([1], dict(top_k=98), ValueError, "top_k"),
        ([1], dict(top_p=0), ValueError, "top_p"),
        ([1], dict(stop_token=97), ValueError, "stop_token"),
    ],
)
def test_bad_arguments_get_clear_errors(tiny_model, ids, kwargs, err, msg):
    kwargs = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(err, match=msg):
        generate(tiny_model, ids, **kwargs)


def test_model_must_be_a_gpt():
    with pytest.raises(TypeError, match="nexttoken GPT"):
        generate(torch.nn.Linear(2, 2), [1], 1)
