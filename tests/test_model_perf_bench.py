"""The decode benchmark runs end to end (a smoke test on a tiny model; no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "decode.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("decode_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_smoke(tmp_path, capsys):
    bench = load_bench()
    out = tmp_path / "r.json"
    args = ["--small", "--repeats", "1", "--new-tokens", "3", "--prompt-tokens", "4"]
    res = bench.main([*args, "--context", "16", "--no-book", "--json", str(out)])
    assert res["decode"]["identical_tokens"] is True  # same weights, greedy: same tokens
    assert json.loads(out.read_text())["setup"]["new_tokens"] == 3
    for key in ("roofline", "context", "bf16", "profile_step_shares"):
        assert key in res
    assert "ratio nexttoken / transformers" in capsys.readouterr().out


def test_benchmark_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        load_bench().main(["--repeats", "0"])
