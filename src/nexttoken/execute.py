"""Re-execute the book's notebooks in place, deterministically (``make notebooks``).

Each notebook runs top to bottom in a fresh kernel from its own folder. Then what would change from
run to run is removed or made stable: timing metadata and the kernel's version string are dropped,
stream outputs split by flush timing are merged, and the widget state that nbclient records (with
random model ids) is kept for the widgets that the notebook shows, renumbered with ids derived from the notebook's name and the order in which its
outputs reach them. A notebook opened without a kernel (JupyterLab, nbviewer, Jupyter Book) then
shows every widget's first view, picture included. Outputs are otherwise kept as produced, so
``pytest --nbval`` can compare a new run against them.

    python -m nexttoken.execute notebooks/*.ipynb notebooks/solutions/*.ipynb
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

__all__ = ["execute_notebook", "clean_notebook", "coalesce_streams", "stable_widget_state", "main"]

VIEW_MIME = "application/vnd.jupyter.widget-view+json"
STATE_MIME = "application/vnd.jupyter.widget-state+json"
REF = "IPY_MODEL_"


def _references(value: Any) -> Iterator[str]:
    """Model ids that ``value`` (a widget's state, or part of it) refers to, in a stable order:
    ``"IPY_MODEL_<id>"`` strings (children, layout, style) and the views an Output widget holds."""
    if isinstance(value, str):
        if value.startswith(REF):
            yield value[len(REF) :]
    elif isinstance(value, dict):
        view = value.get(VIEW_MIME)
        if isinstance(view, dict) and "model_id" in view:
            yield view["model_id"]
        for key in sorted(value):
            if key != VIEW_MIME:
                yield from _references(value[key])
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _references(item)


def _renamed(value: Any, ids: dict[str, str]) -> Any:
    """``value`` with every model id replaced by ``ids[old]``."""
    if isinstance(value, str):
        if value.startswith(REF):
            return REF + ids[value[len(REF) :]]
        return value
    if isinstance(value, dict):
        out = {k: _renamed(v, ids) for k, v in value.items()}
        view = out.get(VIEW_MIME)
        if isinstance(view, dict) and "model_id" in view:
            out[VIEW_MIME] = {**view, "model_id": ids[view["model_id"]]}
        return out
    if isinstance(value, list | tuple):
        return [_renamed(v, ids) for v in value]
    return value


def _view_outputs(nb: nbformat.NotebookNode) -> Iterator[dict]:
    for cell in nb.cells:
        if cell.cell_type == "code":
            for out in cell.get("outputs", []):
                view = out.get("data", {}).get(VIEW_MIME)
                if view is not None:
                    yield view


def stable_widget_state(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """Keep the state of the widgets ``nb`` shows, under ids that do not change from run to run.

    The models reachable from the cells' widget views (the view, its children, their layouts and
    styles, the figures an Output holds) are numbered in the order a reader meets them; model
    ``k`` gets the id ``sha256(f"{name}:{k}")[:32]``. Models no output reaches (widgets made and
    dropped by the code) are removed. Without views, the state is removed altogether. Running
    this on its own result changes nothing.
    """
    meta = nb.metadata.get("widgets", {}).get(STATE_MIME, {})
    state: dict[str, dict] = dict(meta.get("state", {}))
    views = list(_view_outputs(nb))
    ids: dict[str, str] = {}

    def visit(model_id: str) -> None:
        if model_id in ids:
            return
        if model_id not in state:
            raise ValueError(
                f"{name}: widget {model_id} is shown but its state was not recorded "
                "(re-execute the notebook with `make notebooks`, which records it)"
            )
        ids[model_id] = hashlib.sha256(f"{name}:{len(ids) + 1}".encode()).hexdigest()[:32]
        for ref in _references(state[model_id]["state"]):
            visit(ref)

    for view in views:
        visit(view["model_id"])
    for view in views:
        view["model_id"] = ids[view["model_id"]]
    if not ids:
        nb.metadata.pop("widgets", None)
        return nb
    nb.metadata["widgets"] = {
        STATE_MIME: {
            "state": {ids[old]: _renamed(state[old], ids) for old in ids},
            "version_major": meta.get("version_major", 2),
            "version_minor": meta.get("version_minor", 0),
        }
    }
    return nb


def coalesce_streams(outputs: list) -> list:
    """Merge consecutive stream outputs of the same stream: how a cell's prints are split into
    messages depends on flush timing (measured: one run gave one stdout output, another two)."""
    merged: list = []
    for out in outputs:
        last = merged[-1] if merged else None
        if (
            out.get("output_type") == "stream"
            and last is not None
            and last.get("output_type") == "stream"
            and last.get("name") == out.get("name")
        ):
            last["text"] = "".join(last["text"]) + "".join(out["text"])
        else:
            merged.append(out)
    return merged


def clean_notebook(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """Drop run-specific metadata, merge split stream outputs (:func:`coalesce_streams`) and give
    the saved widget state stable ids (see :func:`stable_widget_state`), so reruns produce the
    same file."""
    nb.metadata.get("language_info", {}).pop("version", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("ExecuteTime", None)
        if cell.cell_type == "code":
            cell.outputs = coalesce_streams(cell.get("outputs", []))
    return stable_widget_state(nb, name)


def execute_notebook(path: Path, timeout: int = 600) -> float:
    """Run ``path`` in place; returns the wall time in seconds."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)  # only this run's widgets are saved
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
        store_widget_state=True,
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
