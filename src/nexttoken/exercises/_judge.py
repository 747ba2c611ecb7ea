"""The machinery every checker shares: staged hints, the PASS / FAIL line, calling the reader's
function safely, turning an answer into a number or a tensor before judging it, and judging a
function answer on several cases at once.

Normalisation first, judgement second: ``np.int64(37)``, ``torch.tensor(37)`` and ``37.0`` are the
same count; a float32 tensor that differs from the float64 reference by rounding is the same
probability. Strings, bools and ``None`` are never numbers.

A misconception is named only when the answer matches that mistake on *every* case (the cases are
chosen so that the recognised mistakes give different results); otherwise the line says what was
expected and what came back.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Case",
    "Hints",
    "Mistake",
    "NOT_ANSWERED",
    "RaisedError",
    "as_count",
    "as_number",
    "as_tensor",
    "call_answer",
    "check_function",
    "check_prediction",
    "failed",
    "fmt",
    "one_line",
    "passed",
    "report",
    "reset_hints",
    "unanswered",
]

NOT_ANSWERED = "not answered yet"

# How many times each exercise has been failed in this kernel, so that hints get stronger. Kept per
# hint name; `reset_hints()` clears it (tests call it between cases), a PASS clears its exercise.
_FAILED_TRIES: dict[str, int] = {}
# The hint name a checker's FAIL lines counted under, so that its PASS (printed under the checker's
# own name, which may differ: "what 'cat' can see" / "visible words") resets the right counter.
_HINT_OF: dict[str, str] = {}

# Errors in the reader's own code, not in their reasoning: a typo costs no hint stage.
TYPO_ERRORS = (NameError, SyntaxError, ImportError)

_MAX_LINE = 160


def _solution_pointer(key: str) -> str:
    return (
        f"Still stuck? `from nexttoken.exercises import solution; solution({key!r})` prints the "
        "worked answer"
    )


class Hints:
    """The staged hints of one exercise, from a nudge to a strong hint (never the answer).

    ``Hints("causal mask", "a nudge", "a stronger hint", solution="mask").next()`` returns ``"Hint
    1/2: a nudge"`` on the first failed try of that exercise in this kernel, ``"Hint 2/2: ..."`` on
    the second, and stays on the last stage after that. With ``solution=key`` the last stage ends
    with how to see the worked answer (``solution(key)``), an explicit step: no stage contains it.
    """

    def __init__(self, name: str, *stages: str, solution: str = "") -> None:
        if not stages or not all(isinstance(s, str) and s for s in stages):
            raise ValueError("Hints needs at least one non-empty hint string")
        self.name = name
        self.solution = solution
        if solution:
            last = stages[-1].rstrip()
            last = last if last.endswith((".", "?", ")")) else last + "."
            stages = (*stages[:-1], f"{last} {_solution_pointer(solution)}")
        self.stages: tuple[str, ...] = stages

    def stage(self) -> int:
        """The 1-based stage the next failure will show."""
        return min(_FAILED_TRIES.get(self.name, 0) + 1, len(self.stages))

    def next(self, *, count: bool = True) -> str:
        """Count one failed try (unless ``count`` is False) and return the hint for it."""
        k = self.stage()
        if count:
            _FAILED_TRIES[self.name] = _FAILED_TRIES.get(self.name, 0) + 1
        return f"Hint {k}/{len(self.stages)}: {self.stages[k - 1]}"


def reset_hints(name: str | None = None) -> None:
    """Forget the failed tries of one exercise (or of all): hints start again at the nudge."""
    if name is None:
        _FAILED_TRIES.clear()
        _HINT_OF.clear()
    else:
        _FAILED_TRIES.pop(name, None)
        _FAILED_TRIES.pop(_HINT_OF.pop(name, name), None)


class RaisedError(str):
    """The one line that says what the reader's function raised; ``typo`` is True for an error in
    the reader's own code (a NameError, a SyntaxError...), which costs no hint stage."""

    typo: bool = False

    def __new__(cls, text: str, typo: bool = False) -> RaisedError:
        self = super().__new__(cls, text)
        self.typo = typo
        return self

    def prefixed(self, prefix: str) -> RaisedError:
        """The same error, after ``prefix`` (say, which case raised it)."""
        return RaisedError(f"{prefix}{self}", self.typo)


def one_line(text: str, limit: int = _MAX_LINE) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def passed(name: str) -> bool:
    """Print ``PASS name`` and return True; the exercise's hints start again at the nudge."""
    print(f"PASS {name}")
    reset_hints(name)
    return True


def failed(name: str, misconception: str, hints: Hints | Sequence[str] | str = ()) -> bool:
    """Print ``FAIL name: misconception. Hint k/n: ...`` and return False.

    ``misconception`` says what is wrong with *this* answer (the diagnosis); ``hints`` are the
    exercise's staged hints (a :class:`Hints`, or a plain string / list of strings, which are staged
    under ``name``). A :class:`RaisedError` from a typo shows the current stage without counting it.
    """
    if isinstance(hints, str):
        hints = Hints(name, hints) if hints else ()
    elif not isinstance(hints, Hints):
        hints = Hints(name, *hints) if hints else ()
    typo = bool(getattr(misconception, "typo", False))
    msg = f"FAIL {name}: {misconception}" if misconception else f"FAIL {name}"
    if typo:
        msg += " (an error in your code: fix it and run the cell again)"
    if hints:
        _HINT_OF[name] = hints.name
        msg += f". {hints.next(count=not typo)}"
    print(msg)
    return False


def report(ok: bool, name: str, hint: Hints | Sequence[str] | str = "", detail: str = "") -> bool:
    """``passed(name)`` if ``ok`` else ``failed(name, detail, hint)``."""
    return passed(name) if ok else failed(name, detail, hint)


def call_answer(fn: Any, *args: Any) -> tuple[Any, str]:
    """``(fn(*args), "")``, or ``(None, RaisedError("it raised ..."))``: the reader's code may raise
    anything, and a checker reports it in one line as a failed try instead of crashing the cell."""
    try:
        return fn(*args), ""
    except Exception as err:  # noqa: BLE001 (the reader's code may raise anything)
        text = one_line(f"it raised {type(err).__name__}: {err}")
        return None, RaisedError(text, typo=isinstance(err, TYPO_ERRORS))


def unanswered(answer: Any, name: str, hint: Hints | str = "") -> bool:
    """True (and a ``TODO`` line) when ``answer`` is still the placeholder ``None`` or ``...``.

    The TODO line shows the first (gentlest) hint stage without counting a failed try.
    """
    if answer is None or answer is Ellipsis:
        first = hint.stages[0] if isinstance(hint, Hints) else hint
        print(f"TODO {name}: {NOT_ANSWERED}." + (f" Hint: {first}" if first else ""))
        return True
    return False


# ---------------------------------------------------------------------------------------------
# Normalisation: an answer in any reasonable form -> a Python number or a float64 tensor
# ---------------------------------------------------------------------------------------------


def _type_name(x: Any) -> str:
    if x is None:
        return "None"
    mod = type(x).__module__.split(".")[0]
    short = {"numpy": "np", "torch": "torch"}.get(mod, "")
    return f"{short}.{type(x).__name__}" if short else type(x).__name__


def _is_bool(x: Any) -> bool:
    if isinstance(x, bool):
        return True
    dtype = getattr(x, "dtype", None)
    return dtype is not None and str(dtype) in ("bool", "torch.bool")


def as_number(x: Any, what: str = "a number") -> tuple[float | int | None, str]:
    """``(value, "")`` for a Python / numpy / torch scalar or a one-element array or tensor (ints
    stay ints), else ``(None, message)``. Strings, bools, None, nan and inf are not numbers."""
    if x is None or isinstance(x, (str, bytes)) or _is_bool(x):
        return None, f"expected {what}, got {_type_name(x)} {one_line(repr(x), 40)}"
    if hasattr(x, "numel") and hasattr(x, "detach"):  # a torch tensor
        if x.numel() != 1:
            return None, f"expected {what}, got a tensor of shape {tuple(x.shape)}"
        if x.is_complex():
            return None, f"expected {what}, got a complex tensor"
        x = x.detach().reshape(()).item()
    elif hasattr(x, "shape") and hasattr(x, "dtype"):  # a numpy array or scalar
        if getattr(x, "size", 1) != 1:
            return None, f"expected {what}, got an array of shape {tuple(x.shape)}"
        if x.dtype.kind not in "iuf":
            return None, f"expected {what}, got an array of {x.dtype}"
        x = x.reshape(()).item()
    if isinstance(x, bool) or not isinstance(x, (numbers.Integral, numbers.Real)):
        return None, f"expected {what}, got {_type_name(x)} {one_line(repr(x), 40)}"
    if isinstance(x, numbers.Integral):
        return int(x), ""
    v = float(x)
    if not math.isfinite(v):
        return None, f"expected {what}, got {v} (a finite number is needed)"
    return v, ""


def as_count(x: Any, what: str = "a whole number") -> tuple[int | None, str]:
    """``(int, "")`` for a whole number in any numeric form (``np.int64(3)``, ``3.0``,
    ``torch.tensor(3)``), else ``(None, message)``; a fraction says it is one."""
    v, err = as_number(x, what)
    if err:
        return None, err
    if isinstance(v, float):
        if not v.is_integer():
            return None, f"expected {what}, got the fraction {v:g}"
        return int(v), ""
    return v, ""


def as_tensor(
    x: Any, shape: tuple[int, ...] | None = None, what: str = "a tensor"
) -> tuple[Any, str]:
    """``(float64 torch tensor, "")`` from a tensor of any numeric dtype, a numpy array or nested
    lists / tuples of numbers; ``shape`` (if given) is checked. Else ``(None, message)``."""
    import numpy as np
    import torch

    if x is None or isinstance(x, (str, bytes, bool, numbers.Number)):
        return None, f"expected {what}, got {_type_name(x)} {one_line(repr(x), 40)}"
    try:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu()
        elif isinstance(x, np.ndarray):
            if x.dtype.kind not in "biuf":
                return None, f"expected {what} of numbers, got an array of {x.dtype}"
            t = torch.from_numpy(np.ascontiguousarray(x))
        elif isinstance(x, (list, tuple)):
            t = torch.as_tensor(np.asarray(x, dtype=np.float64))
        else:
            return None, f"expected {what}, got {_type_name(x)}"
    except (TypeError, ValueError, RuntimeError) as err:
        return None, f"expected {what} of numbers, got {one_line(str(err), 60)}"
    if t.is_complex():
        return None, f"expected {what} of real numbers, got {t.dtype}"
    if shape is not None and tuple(t.shape) != tuple(shape):
        return None, f"expected {what} of shape {tuple(shape)}, got shape {tuple(t.shape)}"
    return t.to(torch.float64), ""


def fmt(x: Any) -> str:
    """A number or value as a short string (``0.5``, ``1,024``, ``[1, 2]``)."""
    if isinstance(x, bool):
        return repr(x)
    if isinstance(x, int):
        return f"{x:,}" if abs(x) >= 10_000 else str(x)
    if isinstance(x, float):
        return f"{x:.6g}"
    return one_line(repr(x), 80)


# ---------------------------------------------------------------------------------------------
# Judging a function answer on several cases
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One call of the reader's function: ``args``, how to show them (``label``), and, if the
    chapter's own correct formula is singular there, what to say when it raises (``singular``)."""

    args: tuple
    label: str = ""
    singular: str = ""

    def show(self) -> str:
        return self.label or ", ".join(fmt(a) for a in self.args)


@dataclass(frozen=True)
class Mistake:
    """A recognised wrong answer: the formula it computes and what is wrong with it."""

    formula: Callable[..., Any]
    why: str
    tags: tuple[str, ...] = field(default=())


def check_function(
    fn: Any,
    hints: Hints,
    cases: Sequence[Case],
    right: Callable[..., Any],
    mistakes: Sequence[Mistake] = (),
    *,
    normalise: Callable[[Any], tuple[Any, str]] = as_number,
    same: Callable[[Any, Any], bool] | None = None,
    signature: str = "fn(...)",
    name: str | None = None,
    show: Callable[[Any], str] = fmt,
    differ: Callable[[Case, Any, Any], str] | None = None,
) -> bool:
    """Judge ``fn`` on every case: PASS when it agrees with ``right`` on all of them; a named
    misconception only when it agrees with that mistake on ALL of them; otherwise "for <case>:
    expected <right>, got <answer>" at the first case that differs.

    ``normalise(out) -> (value, error)`` turns what ``fn`` returned into something ``same`` can
    compare (numbers by default, ``math.isclose`` with ``rel_tol=1e-6``). ``differ(case, got,
    want)`` writes the line for a plain wrong answer (by default "expected X, got Y"; a checker
    whose expected value would give the answer away writes its own). A case whose ``singular``
    text is set may raise ZeroDivisionError or a math domain error there (the reader's formula may
    be 0/0 at that point): the other cases are judged, and the line names the singular point (or
    the mistake the other cases match).
    """
    name = name or hints.name
    same = same or (lambda a, b: math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12))
    if unanswered(fn, name, hints):
        return False
    if not callable(fn):
        return failed(
            name, f"the answer must be a function {signature}, got {_type_name(fn)}", hints
        )
    got: list[Any] = []
    singular = ""
    for case in cases:
        out, err = call_answer(fn, *case.args)
        if err and case.singular and err.startswith(_SINGULAR_ERRORS):
            singular = singular or f"for {case.show()}: {case.singular}"
            got.append(_SINGULAR)
            continue
        if err:
            return failed(name, err.prefixed(f"for {case.show()}: "), hints)
        value, bad = normalise(out)
        if bad:
            return failed(name, f"for {case.show()}: {bad}", hints)
        got.append(value)

    def agrees(formula: Callable[..., Any]) -> bool:
        for g, c in zip(got, cases, strict=True):
            if g is _SINGULAR:
                continue
            try:
                if not same(g, formula(*c.args)):
                    return False
            except (ArithmeticError, ValueError, TypeError, RuntimeError):  # 1/0 in a mistake
                return False
        return True

    if agrees(right):
        return failed(name, singular, hints) if singular else passed(name)
    for mistake in mistakes:
        if agrees(mistake.formula):
            return failed(name, mistake.why, hints)
    for g, c in zip(got, cases, strict=True):
        if g is _SINGULAR:
            continue
        want = right(*c.args)
        if not same(g, want):
            if differ is not None:
                return failed(name, differ(c, g, want), hints)
            return failed(name, f"for {c.show()}: expected {show(want)}, got {show(g)}", hints)
    return failed(name, singular, hints)


_SINGULAR = object()
# what a formula raises at its singular point: 1 / 0, log(0), 0 ** -1
_SINGULAR_ERRORS = ("it raised ZeroDivisionError", "it raised ValueError: math domain error")


def check_prediction(
    answer: Any,
    actual: float,
    name: str,
    *,
    rel_tol: float = 0.0,
    abs_tol: float = 0.0,
    explain: str = "",
    known: dict[float, str] | None = None,
) -> bool:
    """A *predict, then run* exercise: was the number written down before running close enough?

    ``actual`` is the value the notebook computes *after* the reader's prediction cell. The check
    passes when ``answer`` is within ``rel_tol`` / ``abs_tol`` of it; on a miss it prints how far off
    the prediction was and ``explain`` (why the value is what it is), so the surprise teaches.
    ``known`` maps the predictions of recognised mistakes (distinct from ``actual``) to their
    diagnosis, printed before the explanation.
    """
    if unanswered(answer, name):
        return False
    value, err = as_number(answer, "a prediction (a number)")
    if err:
        return failed(name, err)
    actual = float(actual)
    if math.isclose(float(value), actual, rel_tol=rel_tol, abs_tol=abs_tol):
        print(f"PASS {name}: you predicted {value:g}, the book computes {actual:g}")
        return True
    msg = f"FAIL {name}: you predicted {value:g}, the book computes {actual:g}"
    for wrong, why in (known or {}).items():
        if wrong != actual and math.isclose(float(value), float(wrong), rel_tol=1e-9):
            msg += f": {why}"
            break
    print(msg + (f". Why: {explain}" if explain else ""))
    return False
