"""nexttoken.results: the committed benchmark results, loaded by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nexttoken import results
from nexttoken.results import RESULTS, load_results, results_path

ROOT = Path(__file__).resolve().parents[1]


def test_names_map_to_the_agreed_files():
    assert {k: v[0] for k, v in RESULTS.items()} == {
        "decode": "results.json",
        "batching": "results_batching.json",
        "faster": "results_faster.json",
        "parallel": "parallel_results.json",
        "roofline": "results_roofline.json",
        "serving_peer": "results_serving_peer.json",
    }


@pytest.mark.parametrize(
    "name", ["decode", "batching", "faster", "parallel", "roofline", "serving_peer"]
)
def test_loads_the_committed_file(name):
    path = ROOT / "benchmarks" / RESULTS[name][0]
    assert results_path(name) == path
    assert load_results(name) == json.loads(path.read_text())


@pytest.mark.parametrize("bad", ["Decode", "results", "", None, 3])
def test_unknown_name_lists_the_known_ones(bad):
    with pytest.raises(
        ValueError, match="known: decode, batching, faster, parallel, roofline, serving_peer"
    ):
        load_results(bad)


def test_missing_file_names_the_script(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "__file__", str(tmp_path / "src" / "nexttoken" / "results.py"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"`python benchmarks/faster.py` writes it"):
        load_results("faster")


def test_found_from_the_current_directory(tmp_path, monkeypatch):
    """An installed package (not next to benchmarks/) finds the folder above the working directory."""
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "results_faster.json").write_text('{"x": 1}')
    (tmp_path / "notebooks").mkdir()
    monkeypatch.setattr(results, "__file__", str(tmp_path / "site" / "nexttoken" / "results.py"))
    monkeypatch.chdir(tmp_path / "notebooks")
    assert load_results("faster") == {"x": 1}
