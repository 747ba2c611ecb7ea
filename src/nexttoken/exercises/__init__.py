"""Exercise checkers: each ``check_*`` function prints one clear line and returns True or False.

One submodule per notebook. A checker does not only say *wrong*: it recognises the common wrong
answers for its exercise and names the misconception behind each ("the mask is transposed: every
token sees the future"), and its hints are *staged*: the first failed try gets a nudge, later tries
a stronger hint, and no hint prints the answer (the solutions notebooks have it).

    PASS causal mask
    FAIL causal mask: the mask is transposed: token 0 can see every later token. Hint 1/3: ...

The building blocks, for the checkers of every notebook:

- :class:`Hints` — the staged hints of one exercise; ``hints.next()`` gives the next stage.
- :func:`passed`, :func:`failed` — print the PASS / FAIL line and return ``True`` / ``False``.
- :func:`unanswered` — the ``TODO`` line while the answer is still ``None`` / ``...``.
- :func:`check_prediction` — the *predict, then run* exercises: compare a number the reader wrote
  down before running a cell with the value the book computes.

Tests (``tests/test_exercises_*.py``) feed every checker its right answer (it must pass) and each
recognised wrong answer (it must fail and name that misconception): a checker that accepts a wrong
answer is a bug.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "Hints",
    "NOT_ANSWERED",
    "call_answer",
    "check_prediction",
    "failed",
    "passed",
    "report",
    "reset_hints",
    "unanswered",
]

NOT_ANSWERED = "not answered yet"

# How many times each exercise has been failed in this kernel, so that hints get stronger. Kept per
# exercise name; `reset_hints()` clears it (tests call it between cases).
_FAILED_TRIES: dict[str, int] = {}


class Hints:
    """The staged hints of one exercise, from a nudge to a strong hint (never the answer).

    ``Hints("causal mask", "a nudge", "a stronger hint", "the strongest hint").next()`` returns
    ``"Hint 1/3: a nudge"`` on the first failed try of that exercise in this kernel, ``"Hint 2/3:
    ..."`` on the second, and stays on the last stage after that.
    """

    def __init__(self, name: str, *stages: str) -> None:
        if not stages or not all(isinstance(s, str) and s for s in stages):
            raise ValueError("Hints needs at least one non-empty hint string")
        self.name = name
        self.stages: tuple[str, ...] = stages

    def stage(self) -> int:
        """The 1-based stage the next failure will show."""
        return min(_FAILED_TRIES.get(self.name, 0) + 1, len(self.stages))

    def next(self) -> str:
        """Count one failed try and return the hint for it."""
        k = self.stage()
        _FAILED_TRIES[self.name] = _FAILED_TRIES.get(self.name, 0) + 1
        return f"Hint {k}/{len(self.stages)}: {self.stages[k - 1]}"


def reset_hints(name: str | None = None) -> None:
    """Forget the failed tries of one exercise (or of all): hints start again at the nudge."""
    if name is None:
        _FAILED_TRIES.clear()
    else:
        _FAILED_TRIES.pop(name, None)


def passed(name: str) -> bool:
    """Print ``PASS name`` and return True."""
    print(f"PASS {name}")
    return True


def failed(name: str, misconception: str, hints: Hints | Sequence[str] | str = ()) -> bool:
    """Print ``FAIL name: misconception. Hint k/n: ...`` and return False.

    ``misconception`` says what is wrong with *this* answer (the diagnosis); ``hints`` are the
    exercise's staged hints (a :class:`Hints`, or a plain string / list of strings, which are staged
    under ``name``).
    """
    if isinstance(hints, str):
        hints = Hints(name, hints) if hints else ()
    elif not isinstance(hints, Hints):
        hints = Hints(name, *hints) if hints else ()
    msg = f"FAIL {name}: {misconception}" if misconception else f"FAIL {name}"
    if hints:
        msg += f". {hints.next()}"
    print(msg)
    return False


def report(ok: bool, name: str, hint: Hints | Sequence[str] | str = "", detail: str = "") -> bool:
    """``passed(name)`` if ``ok`` else ``failed(name, detail, hint)``."""
    return passed(name) if ok else failed(name, detail, hint)


def call_answer(fn: Any, *args: Any) -> tuple[Any, str]:
    """``(fn(*args), "")``, or ``(None, "it raised ...")``: the reader's code may raise anything,
    and a checker reports it as a failed try instead of crashing the cell."""
    try:
        return fn(*args), ""
    except Exception as err:
        return None, f"it raised {type(err).__name__}: {err}"


def unanswered(answer: Any, name: str, hint: Hints | str = "") -> bool:
    """True (and a ``TODO`` line) when ``answer`` is still the placeholder ``None`` or ``...``.

    The TODO line shows the first (gentlest) hint stage without counting a failed try.
    """
    if answer is None or answer is Ellipsis:
        first = hint.stages[0] if isinstance(hint, Hints) else hint
        print(f"TODO {name}: {NOT_ANSWERED}." + (f" Hint: {first}" if first else ""))
        return True
    return False


def check_prediction(
    answer: Any,
    actual: float,
    name: str,
    *,
    rel_tol: float = 0.0,
    abs_tol: float = 0.0,
    explain: str = "",
) -> bool:
    """A *predict, then run* exercise: was the number written down before running close enough?

    ``actual`` is the value the notebook computes *after* the reader's prediction cell. The check
    passes when ``answer`` is within ``rel_tol`` / ``abs_tol`` of it; on a miss it prints how far off
    the prediction was and ``explain`` (why the value is what it is), so the surprise teaches.
    """
    if unanswered(answer, name):
        return False
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return failed(name, f"a prediction is a number, got {type(answer).__name__}")
    if not math.isfinite(float(answer)):
        return failed(name, f"a prediction must be a finite number, got {answer}")
    if math.isclose(float(answer), float(actual), rel_tol=rel_tol, abs_tol=abs_tol):
        print(f"PASS {name}: you predicted {answer:g}, the book computes {actual:g}")
        return True
    msg = f"FAIL {name}: you predicted {answer:g}, the book computes {actual:g}"
    print(msg + (f". Why: {explain}" if explain else ""))
    return False
