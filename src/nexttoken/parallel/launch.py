"""Start ``world_size`` processes the way ``torchrun`` does, and fail fast when one of them fails.

Each rank is a fresh ``python -m nexttoken.parallel ...`` process with ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` set, and a *file* rendezvous (``NEXTTOKEN_INIT_METHOD=file://...``): no port to pick,
so the launcher itself opens no socket (gloo then connects the ranks over 127.0.0.1). Under
``torchrun`` the same worker code reads ``env://`` instead.

If a rank exits with an error, the others must fail on their own (gloo closes their connections, or
their collective times out); the launcher waits ``grace`` seconds for that, kills any rank still alive
(and says so), and raises :class:`LaunchError` with each rank's exit code and last lines of output.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

__all__ = ["LaunchError", "RankResult", "launch"]


class LaunchError(RuntimeError):
    """A distributed run failed; ``results`` holds every rank's exit code and output."""

    def __init__(self, message: str, results: list[RankResult]) -> None:
        super().__init__(message)
        self.results = results


@dataclass
class RankResult:
    """One rank's exit code, output, and whether the launcher had to kill it (a hang)."""

    rank: int
    returncode: int
    stdout: str
    stderr: str
    killed: bool


def launch(
    args: list[str], world_size: int, *, timeout: float = 120.0, grace: float = 30.0
) -> list[RankResult]:
    """Run ``python -m nexttoken.parallel *args`` as ``world_size`` ranks; return their results.

    Raises :class:`LaunchError` if any rank fails, naming the first rank that failed; raises it
    too if the whole run takes longer than ``timeout`` seconds.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    with tempfile.TemporaryDirectory(prefix="nexttoken-parallel-") as tmp:
        env = dict(os.environ)
        env.update(
            WORLD_SIZE=str(world_size),
            NEXTTOKEN_INIT_METHOD="file://" + os.path.join(tmp, "rendezvous"),
            OMP_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
        )
        procs, files = [], []
        for rank in range(world_size):
            out = open(os.path.join(tmp, f"rank{rank}.out"), "w+")  # noqa: SIM115 - closed below
            err = open(os.path.join(tmp, f"rank{rank}.err"), "w+")  # noqa: SIM115
            files.append((out, err))
            env_r = dict(env, RANK=str(rank), LOCAL_RANK=str(rank))
            cmd = [sys.executable, "-m", "nexttoken.parallel", *args]
            procs.append(subprocess.Popen(cmd, env=env_r, stdout=out, stderr=err))
        start = time.monotonic()
        first_failure: float | None = None
        killed = [False] * world_size
        while any(p.poll() is None for p in procs):
            now = time.monotonic()
            if first_failure is None and any(p.returncode not in (None, 0) for p in procs):
                first_failure = now
            late = first_failure is not None and now - first_failure > grace
            if late or now - start > timeout:
                for r, p in enumerate(procs):
                    if p.poll() is None:
                        p.kill()
                        p.wait()
                        killed[r] = True
                break
            time.sleep(0.05)
        results = []
        for r, (p, (out, err)) in enumerate(zip(procs, files, strict=True)):
            out.seek(0)
            err.seek(0)
            results.append(RankResult(r, p.returncode, out.read(), err.read(), killed[r]))
            out.close()
            err.close()
    failed = [r for r in results if r.returncode != 0 and not r.killed]
    if failed or any(killed):
        # the root cause: a rank whose error is its own, not a peer's crash or a timeout
        own = [r.rank for r in failed if not _is_peer_error(r.stderr)]
        hung = [r.rank for r in results if r.killed]
        if own:
            culprit = f"rank {own[0]} failed first"
        elif hung and failed:
            culprit = f"rank {hung[0]} hung; the others timed out waiting for it"
        elif failed:
            culprit = f"rank {failed[0].rank} failed"
        else:
            culprit = f"timed out after {timeout:g} s"
        lines = []
        for r in results:
            state = "killed (hung)" if r.killed else f"exit code {r.returncode}"
            tail = (r.stderr.strip().splitlines() or [""])[-1][:300]
            lines.append(f"  rank {r.rank}: {state}: {tail}")
        raise LaunchError(f"distributed run failed ({culprit}):\n" + "\n".join(lines), results)
    return results


def _is_peer_error(stderr: str) -> bool:
    """True when a rank failed because another did (gloo's closed connection or timeout)."""
    text = stderr.lower()
    return "another rank died" in text or "no answer from another rank" in text
