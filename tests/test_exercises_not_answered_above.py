"""No exercise of notebooks 01, 02, 04, 07 and 08 is answered by the notebook above it (issue 25).

For each exercise the test reads the checker call in the notebook's exercise cell, computes the
answer that call expects (its arguments, else the checker's defaults), and looks for it in every cell
above the exercise: the sources and the text outputs. A number the notebook prints before asking for
it, or the code the exercise asks for, is an answer handed over.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from nexttoken.configs import get_config
from nexttoken.exercises import decoder, embeddings, loop, tokens, training
from nexttoken.exercises._solutions import SOLUTIONS
from nexttoken.sizes import parameter_breakdown
from nexttoken.tokenizer import get_encoding

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _count(n: int) -> tuple[str, ...]:
    return f"{n:,}", str(n)


def _mlp(config: str) -> tuple[str, ...]:
    d = get_config(config).n_embd
    return _count(8 * d * d + 5 * d)


def _table_bytes(config: str, dtype: str) -> tuple[str, ...]:
    cfg = get_config(config)
    return _count(cfg.vocab_size * cfg.n_embd * {"fp32": 4, "fp16": 2, "int8": 1}[dtype])


def _uniform(vocab_size: int) -> tuple[str, ...]:
    return f"{math.log(vocab_size):.2f}", f"{math.log(vocab_size):.3f}"


# notebook, checker, the answer's printed forms from the checker's arguments
EXERCISES: list[tuple[str, Callable, Callable[..., tuple[str, ...]]]] = [
    ("01_text_to_tokens", tokens.check_vocab_size, lambda encoding: _count(get_encoding(encoding).n_vocab)),
    ("02_tokens_to_vectors", embeddings.check_embedding_bytes, _table_bytes),
    ("04_the_decoder_block", decoder.check_mlp_params, _mlp),
    ("04_the_decoder_block", decoder.check_total_params,
     lambda config: _count(sum(parameter_breakdown(config).values()))),
    ("08_training_the_book_model", training.check_uniform_loss, _uniform),
    ("07_the_autoregressive_loop", loop.check_window, lambda: SOLUTIONS["window"].secrets),
]  # fmt: skip


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _text(cell: dict) -> str:
    """A cell's source and its text outputs (stream, text/plain, text/markdown)."""
    parts = ["".join(cell["source"])]
    for out in cell.get("outputs", []):
        parts.append("".join(out.get("text", "")))
        for mime in ("text/plain", "text/markdown"):
            parts.append("".join(out.get("data", {}).get(mime, "")))
    return "\n".join(parts)


def _expected_call(cell: dict, check: Callable) -> dict:
    """The arguments (after ``answer``) of the ``check(...)`` call in the exercise cell, with the
    checker's defaults filled in."""
    tree = ast.parse("".join(cell["source"]))
    calls = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) == check.__name__
    ]
    assert len(calls) == 1, f"one call of {check.__name__} expected"
    env = {"get_config": get_config}
    args = [eval(ast.unparse(a), env) for a in calls[0].args[1:]]  # noqa: S307 (our notebook)
    kwargs = {k.arg: eval(ast.unparse(k.value), env) for k in calls[0].keywords}  # noqa: S307
    bound = inspect.signature(check).bind(None, *args, **kwargs)
    bound.apply_defaults()
    return dict(list(bound.arguments.items())[1:])


def handed_over(path: Path, check: Callable, forms: Callable[..., tuple[str, ...]]) -> list[str]:
    """``where: form`` for each form of the exercise's answer found above its exercise cell."""
    cells = _cells(path)
    at = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and check.__name__ + "(" in "".join(c["source"])]  # fmt: skip
    assert len(at) == 1, f"{path.name}: one exercise cell calling {check.__name__} expected"
    header = at[0] - 1
    assert "".join(cells[header]["source"]).lstrip().startswith(("### Exercise", "## Exercises"))
    wanted = forms(**_expected_call(cells[at[0]], check))
    return [
        f"cell {i}: {form}"
        for i, cell in enumerate(cells[:header])
        for form in wanted
        if form in _text(cell)
    ]


@pytest.mark.parametrize(
    ("notebook", "check", "forms"),
    EXERCISES,
    ids=[f"{n[:2]}-{c.__name__}" for n, c, _ in EXERCISES],
)
def test_no_exercise_is_answered_above_it(notebook, check, forms):
    assert handed_over(NOTEBOOKS / f"{notebook}.ipynb", check, forms) == []


def test_the_search_finds_a_printed_answer(tmp_path):
    """The search itself works: the same exercise asked about the printed model is caught."""
    cells = _cells(NOTEBOOKS / "04_the_decoder_block.ipynb")
    for cell in cells:
        src = "".join(cell["source"])
        if "check_mlp_params(" in src and cell["cell_type"] == "code":
            cell["source"] = src.replace('config="gpt2-xl"', 'config="gpt3-175b"')
    path = tmp_path / "04.ipynb"
    path.write_text(json.dumps({"cells": cells}), encoding="utf-8")
    assert handed_over(path, decoder.check_mlp_params, _mlp) != []
