"""The committed benchmark results, loaded by name: one function for notebooks 09-12 and figures.

Each benchmark script under ``benchmarks/`` writes one JSON file there; a notebook that cites a
measured number reads it with :func:`load_results` (the same numbers on every CPU, because they
were measured once and committed), never by pasting the path-finding code.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["RESULTS", "load_results", "results_path"]

# name -> (file under benchmarks/, the script that writes it)
RESULTS: dict[str, tuple[str, str]] = {
    "decode": ("results.json", "benchmarks/decode.py"),
    "batching": ("results_batching.json", "benchmarks/batching.py"),
    "faster": ("results_faster.json", "benchmarks/faster.py"),
    "parallel": ("parallel_results.json", "benchmarks/parallel.py"),
    "roofline": ("results_roofline.json", "benchmarks/roofline.py"),
    "serving_peer": ("results_serving_peer.json", "benchmarks/serving_peer.py"),
}


def _benchmark_dirs() -> list[Path]:
    """Where ``benchmarks/`` may be: next to the package's ``src/``, then above the current directory."""
    here = Path(__file__).resolve().parents[2] / "benchmarks"
    cwd = Path.cwd().resolve()
    return [here] + [p / "benchmarks" for p in (cwd, *cwd.parents)]


def results_path(name: str) -> Path:
    """The path of benchmark result ``name`` (one of :data:`RESULTS`).

    Raises ``ValueError`` for an unknown name and ``FileNotFoundError`` (naming the script that
    writes the file) when no ``benchmarks/`` folder holds it.
    """
    if not isinstance(name, str) or name not in RESULTS:
        raise ValueError(f"unknown benchmark result {name!r}; known: {', '.join(RESULTS)}")
    filename, script = RESULTS[name]
    for folder in _benchmark_dirs():
        if (folder / filename).is_file():
            return folder / filename
    raise FileNotFoundError(
        f"benchmarks/{filename} not found (looked next to the package and above {Path.cwd()}); "
        f"`python {script}` writes it"
    )


def load_results(name: str) -> dict:
    """The committed results of benchmark ``name`` as a dict (the JSON file, parsed).

    ``name``: ``"decode"`` (benchmarks/results.json), ``"batching"`` (results_batching.json),
    ``"faster"`` (results_faster.json), ``"parallel"`` (parallel_results.json), ``"roofline"``
    (results_roofline.json) or ``"serving_peer"`` (results_serving_peer.json).
    """
    return json.loads(results_path(name).read_text())
