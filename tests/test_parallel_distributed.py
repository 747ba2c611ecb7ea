"""Tensor and pipeline parallelism over real gloo processes, against one process (notebook 12).

Each test launches ``python -m nexttoken.parallel`` in a subprocess, which starts the ranks itself
(sockets are blocked only inside this pytest process; the ranks talk over 127.0.0.1). One launch
checks the book model and a random GPT-2-shaped model, each in float32 and float64.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CONFIGS = "book,gpt2-shaped"


def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nexttoken.parallel", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def report(*args: str) -> dict:
    proc = run(
        *args,
        "--config",
        CONFIGS,
        "--dtype",
        "float32,float64",
        "--repeat",
        "0",
        "--tokens",
        "8",
        "--new-tokens",
        "4",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


#: float32 tolerance of a tensor-parallel split (T > 1), absolute: see check_equal.
TP_FLOAT32_ATOL = 3e-5


def check_equal(rep: dict, tp: int, pp: int) -> None:
    """The logits equal one process's: bit for bit when no product changes shape, else within
    the rounding bound (3e-5 in float32, 1e-10 in float64).

    Without tensor parallelism and without micro-batches no product is split: a pipeline stage runs
    the very same fused products (biases inside, as nn.Linear adds them) on the very same shapes as
    the single process, so the logits are identical (max_abs_diff 0.0, float32 and float64).
    Micro-batches change the products' row count (B / m rows instead of B), and a BLAS may pick
    another kernel, with another order of sums, for another row count: measured, PP = 2 with 4
    micro-batches is bit-identical on an AVX-512 CPU but not under the simulated AVX2 CPU of
    `make other-cpus` (MKL_ENABLE_INSTRUCTIONS=AVX2). So micro-batched runs get the rounding bound.

    With T > 1 the float32 tolerance is an absolute 3e-5 on the book model (1e-5 on the GPT-2-shaped
    one, whose logits stay under 3), together with a relative yardstick that can fail: the split's
    logits must be no further from the exact (float64) logits than 1.5 times one process's are.
    Why not 1e-5 on the book model: a row-parallel product
    (W_O, W_proj) sums d/T (or 4d/T) terms on each rank and the all-reduce then adds the T partial
    sums, so each output is rounded in another order than the single product. Both are float32
    roundings of the same exact value, each about as far from it as the other: the single-process
    book model's own logits are 1.3e-5 to 2.0e-5 from its float64 logits (5 inputs of 2 x 16
    tokens), and TP = 2 or 4 differs from it by 1.1e-5 to 1.9e-5 (simulated, partial sums in rank
    order; over gloo 1.3e-5 at 2 x 16 tokens, 1.7e-5 to 1.9e-5 at 8 x 128). Where the bias goes
    does not help: in rank 0's product, in the last rank's, split T ways or added after the
    all-reduce all measured 1.1e-5 to 1.9e-5. 3e-5 is that worst case with margin. In float64 the
    same splits agree to about 3e-14 (< 1e-10): the cut itself is exact.
    """
    assert (rep["tp"], rep["pp"]) == (tp, pp)
    assert len(rep["checks"]) == 4
    for c in rep["checks"]:
        name = f"{c['config']} {c['dtype']}"
        if tp == 1 and rep["n_micro"] == 1:  # the same products on the same shapes: bit for bit
            assert c["max_abs_diff"] == 0.0, name
        elif c["dtype"] == "float64":  # the split is exact: only rounding differs
            assert c["max_abs_diff"] < 1e-10, name
        else:  # float32: the all-reduce (or a micro-batch's kernel) rounds in another order
            assert c["max_abs_diff"] <= TP_FLOAT32_ATOL, name
            # ... and the split is as exact as one process: measured 0.89 to 1.07 times its
            # distance from the float64 logits (book model 1.35e-5 vs 1.52e-5)
            assert c["parallel_error"] <= 1.5 * c["one_process_error"], name
            if c["config"] == "gpt2-shaped":  # logits up to 3: the 1e-5 holds (2.6e-6)
                assert c["max_abs_diff"] <= 1e-5, name
        assert c["greedy_equal"], name  # generate runs under inference_mode: all-reduces work there
        # the gloo trap reported for older torch (all_gather under inference_mode) does not bite
        # torch 2.13; the shards only ever all-gather under no_grad anyway
        assert c["all_gather_under_inference_mode"], name
        assert c["bytes_equal"], name
        for r in c["bytes"]:
            for row in r["rows"]:
                assert row["counted"] == row["formula"], (name, r["rank"], row)


@pytest.mark.parametrize("tp", [2, 4])
def test_tensor_parallel_equals_one_process(tp):
    rep = report("--tp", str(tp), *(["--dtensor"] if tp == 2 else []))
    check_equal(rep, tp, 1)
    for c in rep["checks"]:
        if tp == 2 and c["dtype"] == "float32":  # PyTorch's own DTensor split, against one
            # process: it shares the bias 1/T per rank (ours: all on rank 0), same rounding bound
            assert c["dtensor_max_abs_diff"] <= TP_FLOAT32_ATOL
        # each rank's KV cache holds its heads only: 1/T of the full cache
        assert c["cache_bytes_per_rank"] == [c["cache_bytes_full"] // tp] * tp
        rows = c["bytes"][0]["rows"]
        assert all(row["calls"]["all_reduce"] == 2 * 4 or c["config"] != "book" for row in rows)


def test_pipeline_parallel_equals_one_process():
    rep = report("--pp", "2", "--n-micro", "2", "--batch", "4")
    check_equal(rep, 1, 2)
    c = rep["checks"][0]
    assert c["stages"] == [[0, 2], [2, 4]]
    # the timeline: 2 stages x 2 micro-batches, stage 1 starts micro-batch j after stage 0 ends it
    tl = {(s, j): (t0, t1) for s, j, t0, t1 in c["timeline"]}
    assert set(tl) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert tl[(1, 0)][0] >= tl[(0, 0)][1] and tl[(1, 1)][0] >= tl[(0, 1)][1]


def test_tensor_times_pipeline_equals_one_process():
    rep = report("--tp", "2", "--pp", "2", "--n-micro", "2", "--batch", "4")
    check_equal(rep, 2, 2)
    for c in rep["checks"]:
        senders = [r for r in c["bytes"] if any(row["counted"]["send"] for row in r["rows"])]
        assert [r["rank"] for r in senders] == [0, 1]  # stage 0's two tensor-parallel ranks


def test_a_failed_rank_makes_the_others_fail_not_hang():
    proc = run("--tp", "2", "--config", "book", "--fail-rank", "1", "--timeout", "30")
    assert proc.returncode == 1
    assert "rank 1 failed first" in proc.stderr
    assert "injected failure on rank 1" in proc.stderr
    assert "killed" not in proc.stderr  # rank 0 failed by itself (its peer closed), no hang
    assert "rank 0: exit code 1: rank 0: another rank died" in proc.stderr


def test_a_silent_rank_makes_the_others_time_out():
    proc = run("--tp", "2", "--config", "book", "--stall-rank", "1", "--timeout", "3")
    assert proc.returncode == 1
    assert "rank 0: exit code 1: rank 0: no answer from another rank within the 3 s" in proc.stderr
    assert "rank 1: killed (hung)" in proc.stderr
    assert "rank 1 hung; the others timed out waiting for it" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tp", "3"], "n_head=4 is not divisible by tp=3"),
        (["--pp", "5"], "pp=5 stages > n_layer=4 blocks"),
        (["--pp", "2", "--n-micro", "3", "--batch", "4"], "not divisible by --n-micro 3"),
        (["--config", "nope"], "unknown config 'nope'"),
        (["--config", "gpt2-shaped", "--tp", "5"], "n_head=12 is not divisible by tp=5"),
    ],
)
def test_a_split_that_cannot_work_is_a_clear_error(args, message, capsys):
    from nexttoken.parallel.__main__ import parse_args

    with pytest.raises(SystemExit) as e:  # before any process starts
        parse_args(args)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
