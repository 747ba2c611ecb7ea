"""Re-execute the book's notebooks in place, deterministically (``make notebooks``).

Each notebook runs top to bottom in a fresh kernel from its own folder. Then what would change from
run to run is removed: timing metadata, the widget state that nbclient stores with random ids (the
widget views' ids are renumbered), and the kernel's version string. Outputs are otherwise kept as
produced, so ``pytest --nbval`` can compare a new run against them.

    python -m nexttoken.execute notebooks/*.ipynb notebooks/solutions/*.ipynb
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

__all__ = ["execute_notebook", "clean_notebook", "main"]


def clean_notebook(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """Drop run-specific metadata and renumber widget ids so reruns produce the same file."""
    nb.metadata.pop("widgets", None)
    nb.metadata.get("language_info", {}).pop("version", None)
    counter = 0
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("ExecuteTime", None)
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            if view is not None:
                counter += 1
                digest = hashlib.sha256(f"{name}:{counter}".encode()).hexdigest()
                view["model_id"] = digest[:32]
    return nb


def execute_notebook(path: Path, timeout: int = 600) -> float:
    """Run ``path`` in place; returns the wall time in seconds."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    clean_notebook(nb, path.name)
    tmp = path.with_suffix(".ipynb.tmp")
    nbformat.write(nb, tmp)
    tmp.replace(path)  # only a notebook that ran to the end replaces the committed one
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.notebooks:
        if not path.exists():
            print(f"no such notebook: {path}", file=sys.stderr)
            return 2
        seconds = execute_notebook(path)
        print(f"{path}: {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
