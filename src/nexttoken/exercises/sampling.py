"""Exercises of notebook 06 (choosing the next token)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..sampling import top_k_filter, top_p_filter
from . import report, unanswered

__all__ = ["check_top_k", "check_top_p", "check_chi_square"]


def _call(fn: Callable, *args: Any) -> tuple[Any, str]:
    try:
        return fn(*args), ""
    except Exception as err:  # the reader's code may raise anything
        return None, f"it raised {type(err).__name__}: {err}"


def _same_mask(out: Any, want: torch.Tensor) -> bool:
    if not isinstance(out, torch.Tensor) or out.shape != want.shape:
        return False
    keep_out, keep_want = torch.isfinite(out), torch.isfinite(want)
    return bool((keep_out == keep_want).all()) and torch.equal(out[keep_out], want[keep_want])


_LOGITS = torch.tensor([0.5, 3.0, -1.0, 2.0, 1.0, 2.5, -2.0, 0.0])


def check_top_k(fn: Callable[[torch.Tensor, int], torch.Tensor] | None) -> bool:
    """``fn(logits, k)``: keep the ``k`` largest logits unchanged, the others ``-inf``."""
    name = "top-k filter"
    hint = "torch.topk(logits, k).values[..., -1:] is the k-th largest; mask what is below it"
    if unanswered(fn, name, hint):
        return False
    if not callable(fn):
        return report(False, name, hint, "answer must be a function fn(logits, k)")
    for k in (1, 3, 8):
        out, err = _call(fn, _LOGITS.clone(), k)
        if err:
            return report(False, name, hint, err)
        if not _same_mask(out, top_k_filter(_LOGITS, k)):
            kept = int(torch.isfinite(out).sum()) if isinstance(out, torch.Tensor) else None
            return report(
                False,
                name,
                hint,
                f"k={k}: expected the {k} largest logits kept (unchanged) and the rest -inf"
                + (f"; {kept} kept" if kept is not None else ""),
            )
    batch = torch.stack([_LOGITS, -_LOGITS])
    out, err = _call(fn, batch.clone(), 2)
    if err or not _same_mask(out, top_k_filter(batch, 2)):
        return report(False, name, hint, "on a (2, V) batch, filter each row on its own (dim=-1)")
    return report(True, name)


def check_top_p(fn: Callable[[torch.Tensor, float], torch.Tensor] | None) -> bool:
    """``fn(logits, p)``: keep the smallest set of top tokens whose probability reaches ``p``."""
    name = "top-p filter"
    hint = (
        "sort descending, cumsum the softmax; drop a token when the tokens ranked ABOVE it "
        "already reach p (cumulative - prob >= p), so the top token is always kept"
    )
    if unanswered(fn, name, hint):
        return False
    if not callable(fn):
        return report(False, name, hint, "answer must be a function fn(logits, p)")
    peaked = torch.tensor([5.0, 1.0, 0.5, 0.0, -1.0])
    for logits, p in ((peaked, 0.3), (_LOGITS, 0.5), (_LOGITS, 0.9), (_LOGITS, 1.0)):
        out, err = _call(fn, logits.clone(), p)
        if err:
            return report(False, name, hint, err)
        want = top_p_filter(logits, p)
        if isinstance(out, torch.Tensor) and out.shape == logits.shape:
            if not bool(torch.isfinite(out[logits.argmax()])):
                return report(False, name, hint, f"p={p}: the most likely token was dropped")
        if not _same_mask(out, want):
            return report(
                False,
                name,
                hint,
                f"p={p}: expected {int(torch.isfinite(want).sum())} tokens kept, unchanged",
            )
    return report(True, name)


def check_chi_square(fn: Callable[[torch.Tensor, torch.Tensor], float] | None) -> bool:
    """``fn(observed_counts, probs)``: Pearson's statistic ``sum (O - E)^2 / E`` with ``E = n p``."""
    name = "chi-square statistic"
    hint = "E = observed.sum() * probs; return ((observed - E) ** 2 / E).sum() (divide by E, not O)"
    if unanswered(fn, name, hint):
        return False
    if not callable(fn):
        return report(False, name, hint, "answer must be a function fn(observed, probs)")
    cases = [
        (torch.tensor([48.0, 30.0, 22.0]), torch.tensor([0.5, 0.3, 0.2])),
        (torch.tensor([10.0, 70.0, 20.0, 100.0]), torch.tensor([0.1, 0.3, 0.1, 0.5])),
    ]
    for obs, p in cases:
        out, err = _call(fn, obs.clone(), p.clone())
        if err:
            return report(False, name, hint, err)
        e = obs.sum() * p
        want = float(((obs - e) ** 2 / e).sum())
        try:
            val = float(out)
        except (TypeError, ValueError):
            return report(False, name, hint, f"expected one number, got {out!r}")
        if not math.isclose(val, want, rel_tol=1e-4):
            return report(False, name, hint, f"expected {want:.4f}, got {val:.4f}")
    return report(True, name)
