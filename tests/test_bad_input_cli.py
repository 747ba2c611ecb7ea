"""Bad input to ``python -m nexttoken``: a one-line error and exit code 2, before any work.

Most rows call ``main()`` in this process (fast); the few where the process itself is the point (a
closed or full stdout) run ``python -m nexttoken`` in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from nexttoken.cli import main
from nexttoken.train import LOG_JSON


def _run(capsys, args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _file(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    return str(f)


def _run_dir(tmp_path, steps_done):
    (tmp_path / LOG_JSON).write_text(json.dumps({"losses": [5.0] * steps_done, "evals": []}))
    return str(tmp_path)


GEN = ["generate", "To be"]

ERRORS = [
    (lambda p: GEN + ["--max-new-tokens", "100000000000000"], "max_new_tokens must be >= 0 and <="),
    (lambda p: GEN + ["--max-new-tokens", "1000001"], "max_new_tokens must be >= 0 and <="),
    (lambda p: GEN + ["--seed", "1e23"], "--seed: expected an integer, got '1e23'"),
    (lambda p: GEN + ["--seed", str(10**23)], "--seed: expected an integer in [0, 2**64 - 1]"),
    (lambda p: GEN + ["--seed", "-1"], "--seed: expected an integer >= 0"),
    (lambda p: GEN + ["--temperature", "nan"], "temperature must be a finite number >= 0"),
    (lambda p: GEN + ["--temperature", "inf"], "temperature must be a finite number >= 0"),
    (lambda p: GEN + ["--temperature", "x"], "--temperature: expected a number, got 'x'"),
    (lambda p: GEN + ["--top-p", "0"], "top_p must be in (0, 1]"),
    (lambda p: GEN + ["--top-p", "nan"], "top_p must be in (0, 1]"),
    (lambda p: GEN + ["--top-k", "4097"], "top_k must be in [1, 4096]"),
    (lambda p: GEN + ["--n-probs", "0"], "--n-probs: expected an integer >= 1"),
    (lambda p: ["generate", "", "--max-new-tokens", "1"], "the prompt is empty"),
    (lambda p: ["generate", "a\ud800b"], "lone surrogate"),
    (lambda p: ["train", "--out", _file(p), "--steps", "1"], "exists and is not a folder"),
    (
        lambda p: ["train", "--out", _run_dir(p, 2), "--steps", "3"],
        "already holds a training run (training_log.json); pass --resume",
    ),
    (
        lambda p: ["train", "--out", _run_dir(p, 2), "--steps", "1", "--resume"],
        "has already done 2 steps, more than --steps 1",
    ),
    (lambda p: ["train", "--out", str(p / "none"), "--resume"], "holds no run to resume"),
    (
        lambda p: ["train", "--out", str(p / "r"), "--config", "gpt3-175b"],
        "needs about 10.2 TB of memory",
    ),
    (
        lambda p: ["train", "--out", str(p / "r"), "--batch-size", "100000"],
        "with --batch-size 100000 needs about 3.8 TB of memory",
    ),
    (lambda p: ["train", "--out", str(p / "r"), "--lr", "inf"], "TrainConfig.lr must be finite"),
    (lambda p: ["train", "--out", str(p / "r"), "--lr", "nan"], "TrainConfig.lr must be finite"),
    (lambda p: ["train", "--out", str(p / "r"), "--lr", "-1"], "need lr > 0"),
    (lambda p: ["train", "--out", str(p / "r"), "--min-lr", "1"], "0 <= min_lr <= lr"),
    (lambda p: ["train", "--out", str(p / "r"), "--seed", str(2**41)], "--seed: expected an"),
    (lambda p: ["train", "--out", str(p / "r"), "--config", "gpt5"], "gpt5"),
    (lambda p: ["train", "--out", str(p / "r"), "--steps", "0"], "expected an integer >= 1"),
]


@pytest.mark.parametrize("make_args, match", ERRORS)
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, make_args, match):
    code, out, err = _run(capsys, make_args(tmp_path))
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert match in err
    assert not (tmp_path / "r").exists()  # nothing was created: the check came first


def test_a_finished_resume_says_so_and_exits_0(capsys, tmp_path):
    code, out, err = _run(
        capsys, ["train", "--out", _run_dir(tmp_path, 2), "--steps", "2", "--resume"]
    )
    assert code == 0
    assert "nothing to do" in err and "already done all 2 steps" in err


@pytest.mark.parametrize(
    "extra",
    [["--temperature", "1e-50"], ["--top-p", "1e-300"], ["--temperature", "1e-38", "--show-probs"]],
)
def test_tiny_temperature_and_top_p_give_the_greedy_text(capsys, extra):
    common = ["generate", "To be", "--max-new-tokens", "4"]
    code, greedy, _ = _run(capsys, common + ["--temperature", "0"])
    assert code == 0
    code, out, err = _run(capsys, common + extra)
    assert code == 0 and err == ""
    if "--show-probs" not in extra:
        assert out == greedy


def test_a_diverging_run_exits_1_and_keeps_the_last_good_checkpoint(capsys, tmp_path, monkeypatch):
    import nexttoken.book
    from nexttoken.checkpoint import load_model

    g = torch.Generator().manual_seed(0)
    data = (
        torch.randint(0, 4096, (2000,), generator=g),
        torch.randint(0, 4096, (300,), generator=g),
    )
    monkeypatch.setattr(nexttoken.book, "book_datasets", lambda: data)
    args = ["train", "--out", str(tmp_path / "r"), "--steps", "6", "--eval-every", "1"]
    args += ["--batch-size", "1", "--lr", "1e30", "--min-lr", "0", "--warmup", "0", "--no-progress"]
    code, out, err = _run(capsys, args)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: step ") and "training diverged" in last
    ckpt = tmp_path / "r" / "model.safetensors"
    if ckpt.exists():  # whatever was saved is finite
        assert all(bool(torch.isfinite(p).all()) for p in load_model(ckpt).parameters())


# --- the process itself: a closed or full stdout ----------------------------------------------


def _module(args, **kwargs):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "nexttoken", *args],
        capture_output=False,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        env=env,
        **kwargs,
    )


def test_closed_stdout_is_a_one_line_error():
    proc = _module(["generate", "To be", "--max-new-tokens", "2"], preexec_fn=lambda: os.close(1))
    assert proc.returncode == 2
    assert proc.stderr == "error: stdout is closed: there is nowhere to write the text\n"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_full_stdout_is_a_one_line_error():
    with open("/dev/full", "w") as full:
        proc = _module(["generate", "To be", "--max-new-tokens", "2"], stdout=full)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: cannot write to stdout: [Errno 28]")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
