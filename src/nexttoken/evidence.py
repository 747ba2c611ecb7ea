"""What the book cites from files outside the notebooks, read from those files.

A notebook that says "the tests check this with N hypothesis examples" prints N from the test file
itself (:func:`hypothesis_examples`), so the sentence cannot drift from the test.
"""

from __future__ import annotations

import ast
from pathlib import Path

__all__ = ["repository_file", "hypothesis_examples"]


def repository_file(relative: str | Path) -> Path:
    """A file of the book's repository (``tests/...``), found next to the package's ``src/`` or
    above the current directory. Raises ``FileNotFoundError`` naming where it looked."""
    if not isinstance(relative, str | Path) or Path(relative).is_absolute():
        raise ValueError(f"relative must be a path relative to the repository, got {relative!r}")
    cwd = Path.cwd().resolve()
    roots = [Path(__file__).resolve().parents[2], cwd, *cwd.parents]
    for root in roots:
        if (root / relative).is_file():
            return root / relative
    raise FileNotFoundError(
        f"{relative} not found next to the package nor above {cwd} (it is in the book's repository)"
    )


def hypothesis_examples(test_file: str | Path) -> dict[str, int | None]:
    """Each ``test_*`` function of ``test_file`` (a path, or relative to the repository) and its
    ``@settings(max_examples=N)``: N, or None for a test with fixed cases. In file order."""
    path = Path(test_file)
    if not path.is_file():
        path = repository_file(test_file)
    tree = ast.parse(path.read_text(), filename=str(path))
    out: dict[str, int | None] = {}
    for f in tree.body:
        if isinstance(f, ast.FunctionDef) and f.name.startswith("test_"):
            n = [
                kw.value.value
                for d in f.decorator_list
                if isinstance(d, ast.Call)
                for kw in d.keywords
                if kw.arg == "max_examples" and isinstance(kw.value, ast.Constant)
            ]
            out[f.name] = n[0] if n else None
    return out
