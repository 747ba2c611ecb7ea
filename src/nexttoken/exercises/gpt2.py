"""Exercises of notebook 09 (a real GPT-2)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..checkpoint import CONV1D_WEIGHTS
from ..model import GPT, Block, GPTConfig, GPTOutput
from . import report, unanswered

__all__ = [
    "check_convert_block",
    "check_silent_transposes",
    "check_roofline",
    "check_hidden_pairs",
    "ROOFLINE_BANDWIDTH",
]

#: The memory bandwidth (bytes/s) the roofline exercise assumes.
ROOFLINE_BANDWIDTH = 20e9

_CFG = GPTConfig(vocab_size=61, block_size=16, n_layer=2, n_head=2, n_embd=8, name="exercise")


def _call(fn: Callable, *args: Any) -> tuple[Any, str]:
    try:
        return fn(*args), ""
    except Exception as err:  # the reader's code may raise anything
        return None, f"it raised {type(err).__name__}: {err}"


def _block_in_gpt2_layout(seed: int) -> tuple[Block, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    block = Block(_CFG).eval()
    with torch.no_grad():
        for p in block.parameters():  # LayerNorm weights/biases too, so nothing is the identity
            p.normal_(0, 0.3)
    stored = {
        k: (v.t().contiguous() if k.endswith(CONV1D_WEIGHTS) else v.clone())
        for k, v in block.state_dict().items()
    }
    return block, stored


def check_convert_block(fn: Callable[[dict], dict] | None) -> bool:
    """``fn(stored)`` turns one block's tensors as GPT-2 stores them into the book's
    ``Block.state_dict()`` (same names; the four Conv1D weights transposed)."""
    name = "convert one block"
    hint = (
        "GPT-2 stores its 2-D projection weights as (in, out); nn.Linear wants (out, in): "
        "transpose every 2-D '.weight' (all four, even the square attn.c_proj), keep the rest"
    )
    if unanswered(fn, name, hint):
        return False
    if not callable(fn):
        return report(False, name, hint, "answer must be a function fn(stored) -> dict")
    block, stored = _block_in_gpt2_layout(3)
    out, err = _call(fn, {k: v.clone() for k, v in stored.items()})
    if err:
        return report(False, name, hint, err)
    if not isinstance(out, dict):
        return report(False, name, hint, f"expected a dict, got {type(out).__name__}")
    target = Block(_CFG).eval()
    try:
        target.load_state_dict(out)
    except Exception as err:  # missing keys, wrong shapes
        return report(False, name, hint, f"load_state_dict refused it: {str(err)[:160]}")
    x = torch.randn(1, 5, _CFG.n_embd, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        same = torch.allclose(target(x)[0], block(x)[0], atol=1e-5)
    if not same:
        square = "attn.c_proj.weight"
        if torch.equal(out[square], stored[square]):
            return report(False, name, hint, f"{square} is square: it loads, but untransposed")
        return report(False, name, hint, "the block computes something else than the original")
    return report(True, name)


def check_silent_transposes(answer: set[str] | None) -> bool:
    """Which of GPT-2 small's four Conv1D weights would *load without error* if one forgot to
    transpose them (names without the ``transformer.h.<i>.`` prefix)?"""
    name = "silent transposes"
    hint = "a forgotten transpose only passes a shape check when the matrix is square (in == out)"
    if unanswered(answer, name, hint):
        return False
    if isinstance(answer, (str, list, tuple, frozenset)):
        answer = set([answer] if isinstance(answer, str) else answer)
    if not isinstance(answer, set):
        return report(False, name, hint, f"answer must be a set of names, got {type(answer)}")
    unknown = sorted(a for a in answer if a not in CONV1D_WEIGHTS)
    if unknown:
        return report(False, name, hint, f"not Conv1D weight names: {unknown}; see CONV1D_WEIGHTS")
    return report(answer == {"attn.c_proj.weight"}, name, hint, f"got {sorted(answer)}")


def check_roofline(answer: float | None) -> bool:
    """Most tokens/s GPT-2 small (124,439,808 parameters, float32) can decode at batch 1 if every
    weight is read from memory once per token at ``ROOFLINE_BANDWIDTH`` bytes/s."""
    name = "roofline"
    hint = "tokens/s <= bandwidth / (parameters x 4 bytes); the tied wte/lm_head is read once"
    if unanswered(answer, name, hint):
        return False
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return report(False, name, hint, f"answer must be a number, got {type(answer).__name__}")
    params = 124_439_808
    expected = ROOFLINE_BANDWIDTH / (params * 4)
    ratio = answer / expected
    if abs(ratio - 2) < 0.05:
        return report(False, name, hint, "that is bf16 (2 bytes); float32 takes 4 bytes")
    if abs(ratio - 8) < 0.2 or abs(ratio - 1 / 8) < 0.01:
        return report(False, name, hint, "mixed bits and bytes")
    if abs(answer - ROOFLINE_BANDWIDTH / ((params + 50257 * 768) * 4)) < 0.05:
        return report(False, name, hint, "lm_head is wte (tied): it is not a second matrix")
    return report(abs(ratio - 1) < 0.02, name, hint, f"got {answer:.3g}")


def check_hidden_pairs(fn: Callable[[list, GPTOutput, GPT], list] | None) -> bool:
    """``fn(ref_hidden, out, model)`` -> the ``n_layer + 1`` max abs differences between a
    Hugging Face ``hidden_states`` list and the book's :class:`GPTOutput` (from
    ``model.run(ids, output_hidden_states=True)``), pairing what is really the same tensor."""
    name = "pair the hidden states"
    hint = (
        "HF's last entry has the final LayerNorm applied: compare it with out.final_hidden "
        "(or model.transformer.ln_f(out.hidden_states[-1])); the others pair index by index"
    )
    if unanswered(fn, name, hint):
        return False
    if not callable(fn):
        return report(False, name, hint, "answer must be a function fn(ref_hidden, out, model)")
    torch.manual_seed(1)
    model = GPT(_CFG).eval()
    ids = torch.randint(0, _CFG.vocab_size, (1, 6), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model.run(ids, output_hidden_states=True)
        ref = [h.clone() for h in out.hidden_states[:-1]]
        ref.append(model.transformer.ln_f(out.hidden_states[-1]))  # as transformers does
        got, err = _call(fn, ref, out, model)
    if err:
        return report(False, name, hint, err)
    try:
        values = [float(v) for v in got]
    except (TypeError, ValueError):
        return report(False, name, hint, "expected a list of numbers")
    if len(values) != _CFG.n_layer + 1:
        return report(False, name, hint, f"expected {_CFG.n_layer + 1} numbers, got {len(values)}")
    if max(values) > 1e-5:
        return report(
            False, name, hint, f"a pair differs by {max(values):.3g}: not the same tensor"
        )
    moved = [h.clone() for h in ref]
    moved[1][0, 0, 0] += 0.5  # a real difference after block 1 must show up, at index 1
    with torch.no_grad():
        got, err = _call(fn, moved, out, model)
    try:
        values = [float(v) for v in got]
    except (TypeError, ValueError):
        return report(False, name, hint, err or "expected a list of numbers")
    if len(values) != len(ref) or abs(values[1] - 0.5) > 1e-5:
        return report(False, name, hint, "a difference of 0.5 after block 1 was not reported")
    return report(True, name)
