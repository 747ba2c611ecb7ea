"""The Llama benchmark runs end to end (a smoke test on tiny sizes; no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "llama_bench.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("llama_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_benchmark_smoke(tmp_path):
    bench = load_bench()
    out = tmp_path / "r.json"
    res = bench.main(["--quick", "--repeats", "1", "--json", str(out)])
    assert json.loads(out.read_text())["quick"] is True
    decode = res["decode"]
    assert decode["identical_tokens"] is True  # same weights, greedy: same tokens
    assert decode["logits_max_abs_diff"] < 1e-4
    assert decode["config"]["weights"] == "save_pretrained + load_llama"
    assert res["decode_overhead"]["identical_tokens"] is True
    assert res["decode_overhead"]["config"]["n_embd"] == 64
    assert {r["n_kv_head"] for r in res["gqa"]["rows"]} == {4, 1}
    mha = [r for r in res["gqa"]["rows"] if r["n_kv_head"] == 4]
    assert all(r["step_speedup_vs_mha"] == 1.0 for r in mha)
    for row in res["online_softmax"]:
        assert row["online_max_abs_diff_vs_sdpa"] <= 1e-5
        assert row["plain_largest_bytes"] == row["score_matrix_bytes"]  # the (H, N, N) scores
        assert row["online_peak_bytes"] < row["plain_peak_bytes"] or row["N"] < 64
    assert res["machine"]["torch"] and "load_average_1min_at_start" in res["machine"]


def test_quick_writes_no_file_by_default(tmp_path, monkeypatch):
    bench = load_bench()
    monkeypatch.setattr(bench, "HERE", tmp_path)
    bench.main(["--quick", "--repeats", "1", "--parts", "online"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--parts", "speed"], ["--parts", ","]])
def test_benchmark_rejects_bad_arguments(argv):
    with pytest.raises(SystemExit):
        load_bench().main(argv)
