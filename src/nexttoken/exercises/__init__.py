"""Exercise checkers: each ``check_*`` function prints one clear line and returns True or False.

One submodule per notebook. A checker does not only say *wrong*: it recognises the common wrong
answers for its exercise and names the misconception behind each ("the mask is transposed: every
token sees the future"), and its hints are *staged*: the first failed try gets a nudge, later tries
a stronger hint, and no hint prints the answer: the last one says how to see it
(``solution(key)``, or the solutions notebook).

    PASS causal mask
    FAIL causal mask: the mask is transposed: token 0 can see every later token. Hint 1/3: ...

The building blocks, for the checkers of every notebook:

- :class:`Hints` — the staged hints of one exercise; ``hints.next()`` gives the next stage.
- :func:`passed`, :func:`failed` — print the PASS / FAIL line and return ``True`` / ``False``.
- :func:`unanswered` — the ``TODO`` line while the answer is still ``None`` / ``...``.
- :func:`check_prediction` — the *predict, then run* exercises: compare a number the reader wrote
  down before running a cell with the value the book computes.
- :func:`as_number`, :func:`as_count`, :func:`as_tensor` — an answer in any numeric form (Python,
  numpy or torch; scalars, 0-d tensors, lists, arrays) turned into one form before it is judged.
- :func:`check_function` — a function answer judged on several cases: a misconception is named
  only when the answer matches it on all of them.
- :func:`solution` — the worked answer of one exercise, printed only when asked for.

The machinery lives in ``_judge.py``, the worked answers in ``_solutions.py``.

Tests (``tests/test_exercises_*.py``) feed every checker its right answer (it must pass) and each
recognised wrong answer (it must fail and name that misconception): a checker that accepts a wrong
answer is a bug.
"""

from __future__ import annotations

from . import _judge
from ._judge import *  # noqa: F403 - the shared machinery, listed once in _judge.__all__
from ._solutions import SOLUTIONS, solution

__all__ = [*_judge.__all__, "SOLUTIONS", "solution"]
