"""Communication, counted and predicted.

:func:`count_comm` wraps ``torch.distributed``'s point-to-point and collective calls for the time of a
``with`` block and records what this rank hands to each (op, bytes): the code under test calls
``dist.all_reduce`` / ``dist.send`` / ``dist.isend`` as usual and never knows it is watched. The
formulas say what the counts must be:

- tensor parallelism: each block does two all-reduces of the ``(B, N, d)`` activation, so a forward
  pass all-reduces ``2 * n_layer * B * N * d`` numbers (:func:`tp_allreduce_bytes`). A ring
  all-reduce over ``T`` ranks sends ``2 (T - 1) / T`` times that payload from every rank
  (:func:`ring_allreduce_wire_bytes`), the figure the link bandwidth divides.
- pipeline parallelism (GPipe): each stage boundary carries the ``(B/m, N, d)`` activation of each
  of ``m`` micro-batches, so ``B * N * d`` numbers per boundary per forward pass
  (:func:`pp_send_bytes`), sent by the ranks of the stage before it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

__all__ = [
    "CommLog",
    "count_comm",
    "tp_allreduce_bytes",
    "pp_send_bytes",
    "ring_allreduce_wire_bytes",
]

_WRAPPED = ("all_reduce", "send", "isend", "broadcast", "all_gather")


@dataclass
class CommLog:
    """What one rank handed to ``torch.distributed``: ``calls`` is a list of ``(op, nbytes)``."""

    calls: list[tuple[str, int]] = field(default_factory=list)

    def bytes(self, op: str | None = None) -> int:
        """Total bytes of op ``op`` (all ops when None)."""
        return sum(n for o, n in self.calls if op is None or o == op)

    def count(self, op: str | None = None) -> int:
        """Number of calls of op ``op`` (all ops when None)."""
        return sum(1 for o, _ in self.calls if op is None or o == op)


def _nbytes(t) -> int:
    if isinstance(t, torch.Tensor):
        return t.numel() * t.element_size()
    return sum(_nbytes(x) for x in t)  # all_gather's output list is not what this rank sends


@contextlib.contextmanager
def count_comm() -> Iterator[CommLog]:
    """Record every all-reduce / send / isend / broadcast / all-gather made inside the block.

    ``isend`` is recorded as ``"send"`` (both are point-to-point sends).
    """
    log = CommLog()
    saved = {name: getattr(dist, name) for name in _WRAPPED}

    def wrap(name, fn):
        def counted(*args, **kwargs):
            # the tensor this rank contributes: first arg, except all_gather's (output, input)
            t = args[1] if name == "all_gather" else args[0]
            log.calls.append(("send" if name == "isend" else name, _nbytes(t)))
            return fn(*args, **kwargs)

        return counted

    try:
        for name, fn in saved.items():
            setattr(dist, name, wrap(name, fn))
        yield log
    finally:
        for name, fn in saved.items():
            setattr(dist, name, fn)


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")


def tp_allreduce_bytes(n_layer: int, B: int, N: int, d: int, bytes_per_number: int = 4) -> int:
    """Payload one rank all-reduces in one tensor-parallel forward pass: ``2 n_layer B N d`` numbers."""
    _check_positive(n_layer=n_layer, B=B, N=N, d=d, bytes_per_number=bytes_per_number)
    return 2 * n_layer * B * N * d * bytes_per_number


def pp_send_bytes(pp: int, B: int, N: int, d: int, bytes_per_number: int = 4) -> int:
    """Activations sent across the ``pp - 1`` stage boundaries in one forward pass: ``B N d`` each.

    (Per micro-batch ``B/m * N * d``; ``m`` micro-batches make ``B N d`` per boundary.)
    """
    _check_positive(pp=pp, B=B, N=N, d=d, bytes_per_number=bytes_per_number)
    return (pp - 1) * B * N * d * bytes_per_number


def ring_allreduce_wire_bytes(payload: int, T: int) -> float:
    """Bytes each rank sends on the wire to ring-all-reduce ``payload`` bytes over ``T`` ranks.

    A reduce-scatter then an all-gather, each ``T - 1`` steps of ``payload / T``:
    ``2 (T - 1) / T * payload`` (Patarasuk and Yuan 2009; what NCCL's ring does).
    """
    _check_positive(payload=payload, T=T)
    return 2 * (T - 1) / T * payload
