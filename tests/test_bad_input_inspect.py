"""Bad input to nexttoken.inspect: each a ValueError/TypeError from our code naming the allowed
values, and no hook is left on the model after any of them."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nexttoken import inspect as I
from nexttoken.model import GPT
from nexttoken.quantize import quantize

IDS = torch.tensor([[3, 9, 27, 81, 50, 11]])
OTHER = torch.tensor([[3, 9, 40, 81, 50, 11]])


@pytest.fixture(scope="module")
def t(tiny_model):
    return I.trace(tiny_model, IDS)


def no_hooks_left(model: GPT) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


VALID = "valid names: hook_embed, hook_pos_embed, blocks.{l}.hook_resid_pre"
CASES = [
    # hook names
    ("unknown name", lambda m, t: I.trace(m, IDS, names=["blocks.0.hook_resid"]), ValueError,
     "unknown hook name 'blocks.0.hook_resid'; " + VALID),
    ("layer past the last", lambda m, t: I.trace(m, IDS, names=["blocks.2.hook_resid_pre"]),
     ValueError, "(l in 0..1)"),
    ("names not strings", lambda m, t: I.trace(m, IDS, names=[3]), TypeError,
     "hook names must be a str or a list of str"),
    ("trace[unknown]", lambda m, t: t["resid_pre"], ValueError, "unknown hook name 'resid_pre'"),
    ("trace[logits]", lambda m, t: t["logits"], ValueError, "ln_final.hook_normalized"),
    ("name not recorded", lambda m, t: I.trace(m, IDS, names="hook_embed")["hook_pos_embed"],
     ValueError, "'hook_pos_embed' was not recorded by this trace (names=...); recorded: "
     "hook_embed"),
    ("patch an unknown hook", lambda m, t: I.patch(m, IDS, OTHER, hook="blocks.0.attn.hook_x"),
     ValueError, "cannot patch 'blocks.0.attn.hook_x'; patchable names: blocks.{l}.hook_resid_pre"),
    ("patch resid_mid", lambda m, t: I.patch(m, IDS, OTHER, hook="blocks.0.hook_resid_mid"),
     ValueError, "cannot patch 'blocks.0.hook_resid_mid'"),
    ("patch layer 2 of 2", lambda m, t: I.patch(m, IDS, OTHER, hook="blocks.2.hook_resid_pre"),
     ValueError, "(l in 0..1)"),
    ("patch hook not a str", lambda m, t: I.patch(m, IDS, OTHER, hook=0), TypeError,
     "hook must be a str"),
    ("sweep kind", lambda m, t: I.patch_sweep(m, IDS, OTHER, hook_kind="resid_pre"), ValueError,
     "unknown hook_kind 'resid_pre'; one of: hook_resid_pre, attn.hook_q"),
    # positions, heads, tokens
    ("position past the end", lambda m, t: I.direct_logit_attribution(m, t, 6, 0), ValueError,
     "position must be in [0, 5], got 6"),
    ("negative position", lambda m, t: I.direct_logit_attribution(m, t, -1, 0), ValueError,
     "position must be in [0, 5], got -1"),
    ("float position", lambda m, t: I.direct_logit_attribution(m, t, 1.0, 0), TypeError,
     "position must be an int in [0, 5]"),
    ("token past the vocabulary", lambda m, t: I.direct_logit_attribution(m, t, 2, 97),
     ValueError, "token must be in [0, 96], got 97"),
    ("batch row", lambda m, t: I.direct_logit_attribution(m, t, 2, 5, batch=1), ValueError,
     "batch must be in [0, 0], got 1"),
    ("patch position", lambda m, t: I.patch(m, IDS, OTHER, hook="hook_embed", position=6),
     ValueError, "position must be in [0, 5], got 6"),
    ("patch head", lambda m, t: I.patch(m, IDS, OTHER, hook="blocks.0.attn.hook_z", head=2),
     ValueError, "head must be in [0, 1], got 2"),
    ("head on a residual", lambda m, t: I.patch(m, IDS, OTHER, hook="blocks.0.hook_resid_pre",
     head=0), ValueError, "head= applies to per-head hooks only (attn.hook_q, attn.hook_k"),
    ("prompts of two lengths", lambda m, t: I.patch(m, IDS, OTHER[:, :5], hook="hook_embed"),
     ValueError, "clean_ids and corrupt_ids must have the same shape (B, N), got (1, 6) and (1, 5)"),
    ("clean trace of other ids", lambda m, t: I.patch(m, OTHER, IDS, hook="hook_embed", clean=t),
     ValueError, "clean must be the Trace of clean_ids"),
    ("metric not callable", lambda m, t: I.patch_sweep(m, IDS, OTHER, metric=3), TypeError,
     "metric must be a function of the logits (B, N, V)"),
    # ids
    ("float ids", lambda m, t: I.trace(m, IDS.float()), TypeError,
     "ids must be an integer tensor (torch.long), got dtype torch.float32"),
    ("bool ids", lambda m, t: I.trace(m, IDS > 5), TypeError, "ids must be an integer tensor"),
    ("a list of ids", lambda m, t: I.trace(m, [[1, 2]]), TypeError,
     "ids must be a torch.Tensor of shape (B, N), got list"),
    ("1-D ids", lambda m, t: I.trace(m, IDS[0]), ValueError,
     "ids must have shape (B, N), got (6,)"),
    ("ids past the vocabulary", lambda m, t: I.trace(m, IDS + 90), ValueError,
     "token id 171 is out of range: ids must be in [0, 96]"),
    ("too many tokens", lambda m, t: I.trace(m, torch.zeros(1, 25, dtype=torch.long)), ValueError,
     "25 tokens exceed the context length block_size=24"),
    ("float corrupt ids", lambda m, t: I.patch(m, IDS, OTHER * 1.0, hook="hook_embed"), TypeError,
     "corrupt_ids must be an integer tensor"),
    # models and traces
    ("not a model", lambda m, t: I.trace(torch.nn.Linear(2, 2), IDS), TypeError,
     "model must be a nexttoken GPT, got Linear"),
    ("not a trace", lambda m, t: I.logit_lens(m, {"a": 1}), TypeError,
     "trace must be a Trace (from inspect.trace), got dict"),
    ("attribution on int8", lambda m, t: I.direct_logit_attribution(quantize(m, "int8"), t, 1, 1),
     TypeError, "direct_logit_attribution needs float weights"),
    ("TransformerLens layout of int8", lambda m, t: I.hooked_transformer_state_dict(
        quantize(m, "int8")), TypeError, "needs a float model, not an int8 copy"),
    ("parity of other shapes", lambda m, t: I.max_differences({"x": torch.zeros(2)},
     {"x": torch.zeros(3)}), ValueError, "x: shapes differ, (2,) vs (3,)"),
    ("parity of missing names", lambda m, t: I.max_differences({"x": torch.zeros(2)}, {}),
     ValueError, "names missing from the second dict: x"),
]  # fmt: skip


@pytest.mark.parametrize("what, call, exc, match", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error(tiny_model, t, what, call, exc, match):
    with pytest.raises(exc) as info:
        call(tiny_model, t)
    assert match in str(info.value)
    assert no_hooks_left(tiny_model)


@pytest.fixture(scope="module")
def wider(tiny_config):
    torch.manual_seed(1)
    return GPT(dataclasses.replace(tiny_config, n_embd=48)).eval()


DIVERGENCE_CASES = [
    ("models of different shapes", lambda m, w: I.first_divergence(m, w, IDS, atol=1e-3),
     ValueError, "the models must have the same shapes; model_a is GPTConfig(vocab_size=97, "
     "block_size=24, n_layer=2, n_head=2, n_embd=32"),
    ("atol 0", lambda m, w: I.first_divergence(m, m, IDS, atol=0), ValueError,
     "atol must be a finite number > 0, got 0"),
    ("negative atol", lambda m, w: I.first_divergence(m, m, IDS, atol=-1e-3), ValueError,
     "atol must be a finite number > 0, got -0.001"),
    ("nan atol", lambda m, w: I.first_divergence(m, m, IDS, atol=float("nan")), ValueError,
     "atol must be a finite number > 0, got nan"),
    ("atol a string", lambda m, w: I.first_divergence(m, m, IDS, atol="1e-3"), TypeError,
     "atol must be a number > 0, got '1e-3'"),
    ("model_b not a model", lambda m, w: I.first_divergence(m, None, IDS, atol=1e-3), TypeError,
     "model_b must be a nexttoken GPT, got NoneType"),
    ("batch_with of another length", lambda m, w: I.first_divergence(
        m, m, IDS, atol=1e-3, batch_with=OTHER[:, :4]), ValueError,
     "batch_with must have as many tokens per row as ids (6), got shape (1, 4)"),
    ("float ids", lambda m, w: I.first_divergence(m, m, IDS.double(), atol=1e-3), TypeError,
     "ids must be an integer tensor"),
]  # fmt: skip


@pytest.mark.parametrize("what, call, exc, match", DIVERGENCE_CASES,
                         ids=[c[0] for c in DIVERGENCE_CASES])  # fmt: skip
def test_bad_first_divergence_input_is_a_clear_error(tiny_model, wider, what, call, exc, match):
    with pytest.raises(exc) as info:
        call(tiny_model, wider)
    assert match in str(info.value)
    assert no_hooks_left(tiny_model) and no_hooks_left(wider)


def test_a_failing_metric_leaves_no_hook_behind(tiny_model):
    def metric(logits):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        I.patch_sweep(tiny_model, IDS, OTHER, metric=metric)
    assert no_hooks_left(tiny_model)
