"""Exercise checkers: each ``check_*`` function prints a clear pass/fail line with a hint and
returns True or False. One submodule per notebook; tests make sure every checker *rejects* typical
wrong answers, not only that it accepts the right one.
"""

from __future__ import annotations

from typing import Any

__all__ = ["report", "NOT_ANSWERED"]

NOT_ANSWERED = "not answered yet"


def report(ok: bool, name: str, hint: str = "", detail: str = "") -> bool:
    """Print ``PASS name`` or ``FAIL name: detail. Hint: hint`` and return ``ok``."""
    if ok:
        print(f"PASS {name}")
    else:
        msg = f"FAIL {name}"
        if detail:
            msg += f": {detail}"
        if hint:
            msg += f". Hint: {hint}"
        print(msg)
    return bool(ok)


def unanswered(answer: Any, name: str, hint: str) -> bool:
    """True (and a 'not answered yet' line) when ``answer`` is still the placeholder ``None``."""
    if answer is None or answer is Ellipsis:
        print(f"TODO {name}: {NOT_ANSWERED}. Hint: {hint}")
        return True
    return False
