"""The simulated-CPU runs of `make other-cpus` really run on other kernels.

`make other-cpus` sets NEXTTOKEN_SIMULATED_CPU together with the variables that force torch's
kernels down (ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS, ONEDNN_MAX_CPU_ISA). Should a torch
release stop honouring them, the simulation would silently test the native CPU again; these tests
catch that. Outside the simulation they check that the variables do change results at all, in a
subprocess, so that the policy in CONTRIBUTING.md stays grounded in a measurement.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

SIMULATED = os.environ.get("NEXTTOKEN_SIMULATED_CPU")

# ATen's capability levels, lowest first; a CPU never runs above what it supports.
_LEVELS = ["DEFAULT", "AVX2", "AVX512"]


@pytest.mark.skipif(SIMULATED is None, reason="only inside `make other-cpus`")
def test_aten_kernels_are_forced_down():
    wanted = os.environ["ATEN_CPU_CAPABILITY"].upper()
    got = torch.backends.cpu.get_cpu_capability()
    assert got in _LEVELS, got
    assert _LEVELS.index(got) <= _LEVELS.index(wanted), f"asked for {wanted}, torch runs {got}"


_PROBE = """
import hashlib, torch
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
a, b = torch.randn(64, 300, generator=g), torch.randn(300, 257, generator=g)
x = torch.randn(4096, generator=g) * 8
h = lambda t: hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16]
print(torch.backends.cpu.get_cpu_capability(), h(a @ b), h(torch.softmax(x, 0)))
"""


def _probe(**env: str) -> list[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ATEN_", "MKL_", "ONEDNN_"))}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", _PROBE], env=full, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.skipif(SIMULATED is not None, reason="measures the native CPU against the simulation")
def test_the_simulation_changes_results_on_a_fast_cpu():
    native = _probe()
    if native[0] != "AVX512":
        pytest.skip(f"this CPU runs {native[0]} kernels already: nothing faster to force down")
    forced = _probe(ATEN_CPU_CAPABILITY="default", MKL_ENABLE_INSTRUCTIONS="SSE4_2")
    assert forced[0] == "DEFAULT"
    assert forced[1] != native[1], "MKL_ENABLE_INSTRUCTIONS no longer changes matmul results"
    assert forced[2] != native[2], "ATEN_CPU_CAPABILITY no longer changes softmax results"
