"""python -m nexttoken: generate (happy path, streaming, --show-probs) and bad arguments."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nexttoken.cli import main


def _run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_streams_a_deterministic_continuation(capsys):
    code, out, err = _run(capsys, "generate", "To be", "--max-new-tokens", "8", "--seed", "0")
    assert code == 0 and err == ""
    assert out.startswith("To be") and len(out) > len("To be\n")
    code2, out2, _ = _run(capsys, "generate", "To be", "--max-new-tokens", "8", "--seed", "0")
    assert out2 == out


def test_greedy_and_filters(capsys):
    code, out, _ = _run(capsys, "generate", "ROMEO:", "--max-new-tokens", "4", "--temperature", "0")
    assert code == 0 and out.startswith("ROMEO:")
    code, out, _ = _run(
        capsys, "generate", "ROMEO:", "--max-new-tokens", "4", "--top-k", "5", "--top-p", "0.9"
    )
    assert code == 0


def test_show_probs_prints_each_step(capsys):
    code, out, _ = _run(
        capsys, "generate", "To be", "--max-new-tokens", "3", "--show-probs", "--seed", "1"
    )
    assert code == 0
    assert out.count("[step ") == 3
    assert "->" in out


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "x", "--temperature", "-1"],
        ["generate", "x", "--top-k", "abc"],
        ["generate", "x", "--top-k", "0"],
        ["generate", "x", "--top-p", "1.5"],
        ["generate", "x", "--max-new-tokens", "-3"],
        ["generate", ""],
        ["generate"],
        ["fly"],
        [],
        ["train"],
        ["train", "--out", "/tmp/x", "--steps", "0"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, args):
    code, out, err = _run(capsys, *args)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_module_entry_point_bad_argument_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "nexttoken", "generate", "x", "--top-k", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
