"""Exercises of notebook 09 (GPT-2 checkpoints).

Each checker recognises the common wrong answers of its exercise and names the misconception (a
forgotten transpose that loads because the matrix is square, a reshape taken for a transpose, bf16
bytes, a hidden state paired before the final LayerNorm, ...); its hints are staged
(:class:`~nexttoken.exercises.Hints`) and never print the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..checkpoint import CONV1D_WEIGHTS
from ..model import GPT, Block, GPTConfig, GPTOutput
from . import (
    Case,
    Hints,
    Mistake,
    as_number,
    as_tensor,
    check_function,
    check_prediction,
    failed,
    passed,
    unanswered,
)
from . import call_answer as _call

__all__ = [
    "check_convert_block",
    "check_silent_transposes",
    "check_roofline",
    "check_hidden_pairs",
    "check_stored_tensors",
    "ROOFLINE_BANDWIDTH",
    "HINTS",
]

#: The memory bandwidth (bytes/s) the roofline exercise assumes.
ROOFLINE_BANDWIDTH = 20e9

_CFG = GPTConfig(vocab_size=61, block_size=16, n_layer=2, n_head=2, n_embd=8, name="exercise")

#: GPT-2 small's four Conv1D weights as stored in the file, (in, out).
_GPT2_SHAPES = {
    "attn.c_attn.weight": (768, 2304),
    "attn.c_proj.weight": (768, 768),
    "mlp.c_fc.weight": (768, 3072),
    "mlp.c_proj.weight": (3072, 768),
}

HINTS = {
    "convert one block": Hints(
        "convert one block",
        "the names already match the book's; only the layout of some tensors differs",
        "GPT-2's Conv1D keeps a projection as (in, out), nn.Linear as (out, in): every 2-D "
        "weight of the block needs it, even one whose shape looks right already",
        "a transpose swaps rows and columns (Tensor.t() or .T); reshape/view keep the numbers "
        "in their order and only cut them differently, which is not the same",
        solution="convert block",
    ),
    "silent transposes": Hints(
        "silent transposes",
        "look at the four shapes in the file (the table of section 1)",
        "a forgotten transpose passes a shape check only when (in, out) and (out, in) are the "
        "same shape",
        solution="silent transposes",
    ),
    "roofline": Hints(
        "roofline",
        "at batch 1, each token needs every weight read from memory once",
        "how long does reading every weight once take at that bandwidth? That bounds the time "
        "per token; count bytes, not parameters, and the tied embedding once",
        solution="roofline",
    ),
    "pair the hidden states": Hints(
        "pair the hidden states",
        "both lists start with the embedding output; check what the LAST entry of each is",
        "transformers applies the final LayerNorm to its last hidden state; the book keeps "
        "the block's output and has the normalised one elsewhere in its output (section 3)",
        solution="hidden pairs",
    ),
}


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
    ``Block.state_dict()`` (same names; the four Conv1D weights transposed).

    Recognised: no transpose at all (shapes refuse it), only the non-square ones transposed (the
    square ``attn.c_proj`` loads silently), reshape/view taken for a transpose, names given a
    ``transformer.h.<i>.`` prefix, a tensor dropped."""
    name = "convert one block"
    hints = HINTS[name]
    if unanswered(fn, name, hints):
        return False
    if not callable(fn):
        return failed(name, "the answer must be a function fn(stored) -> dict", hints)
    block, stored = _block_in_gpt2_layout(3)
    out, err = _call(fn, {k: v.clone() for k, v in stored.items()})
    if err:
        return failed(name, err, hints)
    if not isinstance(out, dict):
        return failed(name, f"expected a dict, got {type(out).__name__}", hints)
    if any(k.startswith("transformer.") or k.startswith("h.") for k in out):
        return failed(
            name, "the names of one block have no 'transformer.h.<i>.' prefix: keep them", hints
        )
    missing = sorted(set(stored) - set(out))
    if missing:
        return failed(name, f"tensors are missing: {missing}; keep every tensor", hints)
    for k in CONV1D_WEIGHTS:
        t, s = out[k], stored[k]
        if isinstance(t, torch.Tensor) and t.shape == s.shape[::-1] and t.shape != s.shape:
            if torch.equal(t, s.reshape(t.shape)):
                return failed(
                    name,
                    f"{k} was reshaped, not transposed: the shape is right but the numbers are "
                    "in the wrong places",
                    hints,
                )
    target = Block(_CFG).eval()
    try:
        target.load_state_dict(out)
    except Exception as err:  # wrong shapes, unexpected keys
        if all(torch.equal(out[k], stored[k]) for k in CONV1D_WEIGHTS):
            return failed(
                name,
                "nothing was transposed: the (in, out) weights do not fit nn.Linear's (out, in)",
                hints,
            )
        return failed(name, f"load_state_dict refused it: {str(err)[:160]}", hints)
    x = torch.randn(1, 5, _CFG.n_embd, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        same = torch.allclose(target(x)[0], block(x)[0], atol=1e-5)
    if not same:
        square = "attn.c_proj.weight"
        if torch.equal(out[square], stored[square]):
            return failed(
                name,
                f"{square} is square: untransposed it loads without an error, and the block "
                "computes something else",
                hints,
            )
        return failed(name, "it loads, but the block computes something else than GPT-2's", hints)
    return passed(name)


def check_silent_transposes(answer: set[str] | None) -> bool:
    """Which of GPT-2 small's four Conv1D weights would *load without error* if one forgot to
    transpose them (names without the ``transformer.h.<i>.`` prefix)?

    Recognised: all four (only a square matrix passes a shape check), none, a non-square weight
    named with its shape, names that are not Conv1D weights."""
    name = "silent transposes"
    hints = HINTS[name]
    if unanswered(answer, name, hints):
        return False
    if isinstance(answer, (list, tuple, frozenset, set)) and not all(
        isinstance(a, str) for a in answer
    ):
        return failed(name, "answer a set of names (strings)", hints)
    if isinstance(answer, (str, list, tuple, frozenset)):
        answer = set([answer] if isinstance(answer, str) else answer)
    if not isinstance(answer, set):
        return failed(name, f"answer a set of names, got {type(answer).__name__}", hints)
    unknown = sorted(a for a in answer if a not in CONV1D_WEIGHTS)
    if unknown:
        return failed(name, f"not Conv1D weight names: {unknown}; see CONV1D_WEIGHTS", hints)
    if answer == {"attn.c_proj.weight"}:
        return passed(name)
    if not answer:
        return failed(
            name, "one of them does load: a forgotten transpose of a square matrix fits", hints
        )
    if answer == set(CONV1D_WEIGHTS):
        return failed(
            name,
            "not all four: a (d_in, d_out) matrix with d_in != d_out untransposed has the wrong "
            "shape, and load_state_dict refuses it",
            hints,
        )
    wrong = sorted(a for a in answer if _GPT2_SHAPES[a][0] != _GPT2_SHAPES[a][1])
    if wrong:
        shapes = ", ".join(f"{a} is {_GPT2_SHAPES[a]}" for a in wrong)
        return failed(
            name, f"{shapes} in the file: not square, so the shape check catches it", hints
        )
    return failed(name, "one square weight is missing from your set", hints)


def check_roofline(answer: float | None) -> bool:
    """Most tokens/s GPT-2 small (124,439,808 parameters, float32) can decode at batch 1 if every
    weight is read from memory once per token at ``ROOFLINE_BANDWIDTH`` bytes/s.

    Recognised: bf16's 2 bytes, bits for bytes, parameters for bytes, the tied head counted twice,
    seconds per token instead of tokens per second."""
    name = "roofline"
    hints = HINTS[name]
    if unanswered(answer, name, hints):
        return False
    answer, bad = as_number(answer, "a number of tokens per second")
    if bad:
        return failed(name, bad, hints)
    params = 124_439_808
    expected = ROOFLINE_BANDWIDTH / (params * 4)
    wrong = [
        (ROOFLINE_BANDWIDTH / (params * 2), "that is bf16 (2 bytes per weight); float32 takes 4"),
        (ROOFLINE_BANDWIDTH / (params * 32), "mixed bits and bytes: a float32 is 4 bytes"),
        (ROOFLINE_BANDWIDTH * 8 / (params * 4), "mixed bits and bytes: a float32 is 4 bytes"),
        (
            ROOFLINE_BANDWIDTH / params,
            "that counts parameters, not bytes: each float32 parameter is 4 bytes to read",
        ),
        (
            ROOFLINE_BANDWIDTH / ((params + 50257 * 768) * 4),
            "lm_head is wte (tied): it is not a second matrix to read",
        ),
        (1 / expected, "that is seconds per token; the question asks for tokens per second"),
    ]
    if abs(answer / expected - 1) < 0.02:
        return passed(name)
    wrong.append((ROOFLINE_BANDWIDTH / 1e9 * 2**30 / (params * 4),
                  "that takes 20 GB/s as 20 GiB/s: a GB is 10^9 bytes, a GiB 2^30"))  # fmt: skip
    for value, why in wrong:
        if abs(answer / value - 1) < 0.02:
            return failed(name, why, hints)
    return failed(name, f"got {answer:.3g} tokens/s", hints)


def _hidden_cases() -> list[Case]:
    """The reference list as transformers gives it, then the same with 0.5 added after block 1 (a
    real difference the function must report, at index 1)."""
    torch.manual_seed(1)
    model = GPT(_CFG).eval()
    ids = torch.randint(0, _CFG.vocab_size, (1, 6), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model.run(ids, output_hidden_states=True)
        ref = [h.clone() for h in out.hidden_states[:-1]]
        ref.append(model.transformer.ln_f(out.hidden_states[-1]))  # as transformers does
    moved = [h.clone() for h in ref]
    moved[1][0, 0, 0] += 0.5
    return [
        Case((ref, out, model), "transformers' hidden states"),
        Case((moved, out, model), "the same with 0.5 added after block 1"),
    ]


def _diffs(ref: list, ours: list) -> list[float]:
    return [float((a - b).abs().max()) for a, b in zip(ref, ours, strict=False)]


def _pairs_right(ref: list, out: GPTOutput, model: GPT) -> list[float]:
    return _diffs(ref, [*out.hidden_states[:-1], out.final_hidden])


_PAIR_MISTAKES = [
    Mistake(lambda r, o, m: _diffs(r, o.hidden_states), "only the last pair differs: transformers' "
            "last hidden state has the final LayerNorm applied, the book's last hidden state does "
            "not"),
    Mistake(lambda r, o, m: _diffs(r, [*o.hidden_states[1:-1], o.final_hidden, o.final_hidden]),
            "off by one: both lists start with the embedding output"),
    Mistake(lambda r, o, m: [0.0] * len(r), "a difference of 0.5 after block 1 was not reported: "
            "the function must compare the tensors it is given, not return fixed numbers"),
]  # fmt: skip


def _same_diffs(got: list[float], want: list[float]) -> bool:
    return len(got) == len(want) and all(abs(a - b) <= 1e-5 for a, b in zip(got, want, strict=True))


def _pairs_differ(case: Case, got: list[float], want: list[float]) -> str:
    at = f"for {case.show()}"
    if len(got) != len(want):
        return f"{at}: expected {len(want)} numbers (n_layer + 1), got {len(got)}"
    return (
        f"{at}: expected {len(want)} differences, {sum(w > 1e-5 for w in want)} of them above "
        f"0, got up to {max(got):.3g} (pair the same tensors: both lists start with the embedding "
        "output)"
    )


def check_hidden_pairs(fn: Callable[[list, GPTOutput, GPT], list] | None) -> bool:
    """``fn(ref_hidden, out, model)`` -> the ``n_layer + 1`` max abs differences between a
    Hugging Face ``hidden_states`` list and the book's :class:`GPTOutput` (from
    ``model.run(ids, output_hidden_states=True)``), pairing what is really the same tensor; judged
    on every case of ``_hidden_cases()``.

    Recognised (only when matched on both cases): the last entry paired before the final
    LayerNorm, an off-by-one pairing, a function that does not compare anything (fixed numbers);
    a wrong count is said as it is."""
    name = "pair the hidden states"
    if not callable(fn):
        return check_function(
            fn, HINTS[name], [], _pairs_right, signature="fn(ref_hidden, out, model)"
        )

    def answer(ref: list, out: GPTOutput, model: GPT) -> Any:
        with torch.no_grad():
            return fn(ref, out, model)

    return check_function(
        answer, HINTS[name], _hidden_cases(), _pairs_right, _PAIR_MISTAKES, normalise=_numbers,
        same=_same_diffs, signature="fn(ref_hidden, out, model)", differ=_pairs_differ,
    )  # fmt: skip


def _numbers(got: Any) -> tuple[list[float], str]:
    """A list of numbers from a list / tuple of numbers (any numeric type), a 1-D array or tensor."""
    if isinstance(got, (list, tuple)):
        values = []
        for v in got:
            x, bad = as_number(v, "a list of numbers, one per hidden state")
            if bad:
                return [], bad
            values.append(float(x))
        return values, ""
    t, bad = as_tensor(got, what="a list of numbers, one per hidden state")
    if bad or t.dim() != 1:
        return [], bad or "expected a list of numbers, one per hidden state"
    return t.tolist(), ""


def check_stored_tensors(answer: Any, actual: int) -> bool:
    """*Predict, then run*: how many tensors does the book model's ``model.safetensors`` (in the
    Hugging Face GPT-2 layout) hold? ``actual`` is what the notebook counts. Exact."""
    return check_prediction(
        answer,
        actual,
        "tensors in the checkpoint file",
        explain=(
            "two embedding tables (wte, wpe), twelve tensors per block (two LayerNorms with a "
            "gain and a shift each, and four projections with a weight and a bias each), and the "
            "final LayerNorm's two; the output layer is wte itself (tied), so it is not stored"
        ),
    )
