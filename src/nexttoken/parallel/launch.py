"""Start ``world_size`` processes the way ``torchrun`` does, and fail fast when one of them fails.

Each rank is a fresh ``python -m nexttoken.parallel ...`` process with ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` set, and a *file* rendezvous (``NEXTTOKEN_INIT_METHOD=file://...``): no port to pick,
so the launcher itself opens no socket (gloo then connects the ranks over 127.0.0.1). Under
``torchrun`` the same worker code reads ``env://`` instead.

The launcher watches every rank (every 20 ms) and names the one at fault:

- a rank that **exits with an error or is killed** (any rank: the launcher sees its exit code, it
  does not wait for the others to notice) ends the run: the others get ``fail_grace`` seconds to
  fail on their own (gloo closes their connections), then are stopped; the first rank to fail with
  an error of its own (not "another rank died") is named, with its last line or its signal;
- a rank that **stops answering** (alive, silent) makes the others' collectives time out after
  ``--timeout`` seconds; they exit saying so, the launcher waits ``grace`` seconds more for the rest
  to do the same, and names the ranks still alive then: the stalled ones, not their victims;
- ``timeout`` bounds the whole run.

Killing the launcher (SIGTERM, SIGINT / Ctrl-C) stops every rank and removes the temporary folder
(:class:`LaunchInterrupted`). The ranks run in their own session (a Ctrl-C in the terminal reaches
the launcher only, which stops them) and, on Linux, die with the launcher even if it is killed
with SIGKILL (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

__all__ = ["LaunchError", "LaunchInterrupted", "RankResult", "launch", "usable_cpus"]

#: Seconds between two looks at the ranks.
POLL_S = 0.02


class LaunchError(RuntimeError):
    """A distributed run failed; ``results`` holds every rank's exit code and output."""

    def __init__(self, message: str, results: list[RankResult]) -> None:
        super().__init__(message)
        self.results = results


class LaunchInterrupted(LaunchError):
    """The launcher got SIGTERM or SIGINT; every rank was stopped and the folder removed."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message, [])
        self.signum = signum


@dataclass
class RankResult:
    """One rank's exit code, output, and whether the launcher had to kill it.

    ``killed``: the launcher stopped it; ``why``: ``"hung"`` (still alive when the others had timed
    out waiting), ``"stopped"`` (alive after another rank failed) or ``"timeout"`` (alive when the
    whole run's time was up); ``exit_s``: seconds from the start to its exit (None if killed).
    """

    rank: int
    returncode: int
    stdout: str
    stderr: str
    killed: bool
    why: str | None = None
    exit_s: float | None = None


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _check_seconds(**values: float) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name} must be a number of seconds, got {type(v).__name__}")
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a finite number of seconds > 0, got {v!r}")


#: The signals that stop the launcher (and, through it, every rank).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _child_setup():
    """A ``preexec_fn`` for each rank: unblock :data:`STOP_SIGNALS` (blocked in the launcher while
    it starts a rank, so that no rank is started and then forgotten) and, on Linux, SIGKILL the
    rank when the launcher dies, even by SIGKILL (``PR_SET_PDEATHSIG``)."""
    prctl = None
    if sys.platform.startswith("linux"):
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def setup() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        if prctl is not None:
            prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the launcher died before prctl took effect
                os._exit(1)

    return setup


@contextlib.contextmanager
def _held_signals():
    """Hold :data:`STOP_SIGNALS` inside the block (delivered when it ends), where available."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


class _Interrupt(BaseException):
    def __init__(self, signum: int) -> None:
        self.signum = signum


@contextlib.contextmanager
def _signals_raise():
    """SIGTERM and SIGINT raise :class:`_Interrupt` inside the block (main thread only); a second
    signal during the clean-up is ignored, so the clean-up cannot itself be cut short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        raise _Interrupt(signum)

    saved = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def _stop(procs: list[subprocess.Popen]) -> list[int]:
    """SIGKILL every rank still running and reap it; the ranks that were still running."""
    alive = [r for r, p in enumerate(procs) if p.poll() is None]
    for r in alive:
        with contextlib.suppress(ProcessLookupError):
            procs[r].kill()
    for p in procs:
        p.wait()
    return alive


def launch(
    args: list[str],
    world_size: int,
    *,
    timeout: float = 120.0,
    grace: float = 30.0,
    fail_grace: float = 2.0,
) -> list[RankResult]:
    """Run ``python -m nexttoken.parallel *args`` as ``world_size`` ranks; return their results.

    Raises :class:`LaunchError` if any rank fails, naming the rank at fault (see the module's
    docstring); raises it too if the whole run takes longer than ``timeout`` seconds. Raises
    :class:`LaunchInterrupted` on SIGTERM / SIGINT, after stopping every rank.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    _check_seconds(timeout=timeout, grace=grace, fail_grace=fail_grace)
    procs: list[subprocess.Popen] = []
    where = {"folder": None, "stopped": []}
    try:
        with _signals_raise(), tempfile.TemporaryDirectory(prefix="nexttoken-parallel-") as tmp:
            where["folder"] = tmp
            try:
                results = _run(args, world_size, tmp, procs, timeout, grace, fail_grace)
            finally:
                where["stopped"] = _stop(procs)
    except _Interrupt as e:
        n = len(where["stopped"])
        raise LaunchInterrupted(
            f"stopped by {signal.Signals(e.signum).name}: ended {n} rank{'s' * (n != 1)} and "
            f"removed {where['folder']}",
            e.signum,
        ) from None
    _raise_if_failed(results, timeout)
    return results


def _run(args, world_size, tmp, procs, timeout, grace, fail_grace) -> list[RankResult]:
    """Start the ranks (appending to ``procs``), watch them, and read their results."""
    env = dict(os.environ)
    env.update(
        WORLD_SIZE=str(world_size),
        NEXTTOKEN_INIT_METHOD="file://" + os.path.join(tmp, "rendezvous"),
        NEXTTOKEN_READY_DIR=tmp,  # each rank marks itself started there (check._wait_for_peers)
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    paths = [
        (os.path.join(tmp, f"rank{r}.out"), os.path.join(tmp, f"rank{r}.err"))
        for r in range(world_size)
    ]
    setup = _child_setup()
    cmd = [sys.executable, "-m", "nexttoken.parallel", *args]
    for rank, (out, err) in enumerate(paths):
        env_r = dict(env, RANK=str(rank), LOCAL_RANK=str(rank))
        with open(out, "w") as fo, open(err, "w") as fe, _held_signals():
            p = subprocess.Popen(
                cmd, env=env_r, stdout=fo, stderr=fe, start_new_session=True, preexec_fn=setup
            )
            procs.append(p)
    errs = [e for _, e in paths]
    exit_s, why = _watch(procs, errs, timeout, grace, fail_grace)
    return [
        RankResult(r, p.returncode, _read(out), _read(err), why[r] is not None, why[r], exit_s[r])
        for r, (p, (out, err)) in enumerate(zip(procs, paths, strict=True))
    ]


def _watch(procs, errs, timeout, grace, fail_grace) -> tuple[list, list]:
    """Wait for the ranks: ``(exit_s, why)`` per rank (see :class:`RankResult`).

    The first failure sets a deadline: ``grace`` seconds if that rank timed out waiting for another
    (the others should time out too; those still alive then are hung), else ``fail_grace``.
    """
    n = len(procs)
    exit_s: list[float | None] = [None] * n
    why: list[str | None] = [None] * n
    start = time.monotonic()
    deadline, failed = start + timeout, False
    while None in exit_s:
        now = time.monotonic()
        for r, p in enumerate(procs):
            if exit_s[r] is None and p.poll() is not None:
                exit_s[r] = now - start
                if p.returncode != 0 and not failed:  # the first failure sets the clock
                    failed = True
                    waiting = _is_timeout(_read(errs[r]))
                    deadline = min(deadline, now + (grace if waiting else fail_grace))
        if None in exit_s and now > deadline:
            reason = (
                "timeout" if not failed else "hung" if _timed_out_first(procs, errs) else "stopped"
            )
            for r, p in enumerate(procs):
                if p.poll() is None:
                    p.kill()
                    p.wait()
                    why[r] = reason
                elif exit_s[r] is None:  # exited just now, by itself
                    exit_s[r] = time.monotonic() - start
            break
        time.sleep(POLL_S)
    return exit_s, why


def _timed_out_first(procs, errs) -> bool:
    """Whether the ranks that failed all did so waiting for another, one at least by timing out
    (so the ranks still alive are the hung ones)."""
    ended = [_read(errs[r]) for r, p in enumerate(procs) if p.returncode not in (None, 0)]
    return any(map(_is_timeout, ended)) and all(map(_is_peer_error, ended))


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _raise_if_failed(results: list[RankResult], timeout: float) -> None:
    failed = [r for r in results if r.returncode != 0 and not r.killed]
    if not failed and not any(r.killed for r in results):
        return
    failed.sort(key=lambda r: (r.exit_s or 0.0, r.rank))
    own = [r for r in failed if not _is_peer_error(r.stderr)]
    hung = [r.rank for r in results if r.why == "hung"]
    if own:
        first = own[0]
        if first.returncode < 0:
            culprit = f"rank {first.rank} was killed by signal {_signal_name(first.returncode)}"
        else:
            culprit = f"rank {first.rank} failed first"
    elif hung:
        who = f"rank {hung[0]}" if len(hung) == 1 else "ranks " + ", ".join(map(str, hung))
        culprit = (
            f"{who} hung; the others timed out waiting for {'it' if len(hung) == 1 else 'them'}"
        )
    elif failed:
        culprit = f"rank {failed[0].rank} failed"
    else:
        culprit = f"timed out after {timeout:g} s (--launch-timeout); every rank was still running"
    first_bad = own[0].rank if own else (failed[0].rank if failed else None)
    lines = []
    for r in results:
        if r.why == "hung":
            state = "killed (hung)"
        elif r.why == "stopped":
            state = f"stopped by the launcher after rank {first_bad} failed"
        elif r.why == "timeout":
            state = f"killed (still running after {timeout:g} s)"
        elif r.returncode < 0:
            state = f"killed by signal {_signal_name(r.returncode)}"
        else:
            state = f"exit code {r.returncode}"
        tail = (r.stderr.strip().splitlines() or [""])[-1][:300]
        lines.append(f"  rank {r.rank}: {state}" + (f": {tail}" if tail else ""))
    raise LaunchError(f"distributed run failed ({culprit}):\n" + "\n".join(lines), results)


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return str(-returncode)


def _is_peer_error(stderr: str) -> bool:
    """True when a rank failed because another did (gloo's closed connection or timeout)."""
    return "another rank died" in stderr.lower() or _is_timeout(stderr)


def _is_timeout(stderr: str) -> bool:
    """True when a rank gave up waiting for another (a collective, or the rendezvous)."""
    text = stderr.lower()
    return "no answer from another rank" in text or "did not all join the rendezvous" in text
