"""Logits to probabilities to one chosen token.

The model's last layer gives *logits* ``(..., V)``: real-valued scores, not probabilities. This
module turns them into a probability distribution (a numerically stable softmax, optionally with a
temperature), filters it (top-k, top-p) and picks a token — greedily, or by a draw from an explicit
``torch.Generator`` so that a seed makes every draw reproducible.

All functions work on the last dimension and accept any leading shape, e.g. ``(B, V)``.

**The rules for awkward values** (each function checks them and raises ``ValueError`` /
``TypeError`` naming the problem, so nothing is silently sampled or argmaxed from garbage):

- *Logits* must be a floating-point tensor without NaN and without ``+inf``. ``-inf`` is allowed and
  means "this token is impossible" (it is what :func:`top_k_filter` / :func:`top_p_filter` write),
  but every row must keep at least one finite logit.
- *Temperature*: ``0`` means greedy; any finite value ``> 0`` is honoured, however small. The
  probabilities are first computed as ``exp(s / T - max(s / T))`` in the logits' own dtype (so valid
  input gives exactly the numbers it always gave). When ``s / T`` overflows that dtype — a tiny
  temperature such as ``1e-50``, or ``T = 1e-4`` on a float16 model, whose largest number is 65504 —
  the same softmax is computed as ``exp((s - max s) / T)`` in float64 instead, which cannot
  overflow: every exponent is ``<= 0``. So a tiny temperature gives the limit it should: all the
  probability on the top logit (shared equally by exact ties). No floor, no silent change to greedy.
- *top_p*: any value in ``(0, 1]``; the most likely token is always kept, so a tiny ``p`` such as
  ``1e-300`` (which is 0 in float32) keeps exactly that one token.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "softmax",
    "greedy",
    "top_k_filter",
    "top_p_filter",
    "filtered_probs",
    "sample",
    "check_sampling_args",
    "check_generator",
]


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    if logits.dim() == 0 or logits.size(-1) == 0:
        raise ValueError(f"logits must have a non-empty last dimension, got {tuple(logits.shape)}")
    if bool(torch.isnan(logits).any()):
        raise ValueError("logits contain NaN: a NaN score has no meaning; refusing to use it")
    if bool(torch.isposinf(logits).any()):
        raise ValueError(
            "logits contain +inf: a score must be finite (or -inf for an impossible token)"
        )
    if bool(torch.isneginf(logits).all(dim=-1).any()):
        raise ValueError("every logit of a row is -inf: no token is possible, nothing to choose")


def check_generator(generator: object) -> None:
    """Raise TypeError unless ``generator`` is None or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            "generator must be a torch.Generator or None, e.g. "
            f"torch.Generator().manual_seed(0); got {type(generator).__name__}"
        )


def check_sampling_args(
    vocab_size: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> None:
    """Raise ValueError/TypeError unless the sampling settings are allowed for ``vocab_size``."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a number, got {type(temperature).__name__}")
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(
            f"temperature must be a finite number >= 0 (0 = greedy), got {temperature}"
        )
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            raise TypeError(f"top_k must be an int or None, got {type(top_k).__name__}")
        if not 1 <= top_k <= vocab_size:
            raise ValueError(
                f"top_k must be in [1, {vocab_size}] (the vocabulary size), got {top_k}"
            )
    if top_p is not None:
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float)):
            raise TypeError(f"top_p must be a number or None, got {type(top_p).__name__}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def softmax(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Probabilities from logits: ``exp((s - max s) / T) / sum(...)`` over the last dimension.

    Subtracting the maximum changes nothing mathematically (softmax is shift-invariant) but keeps
    ``exp`` from overflowing. ``temperature`` must be > 0: below 1 it sharpens, above 1 it flattens.
    Entries of ``-inf`` (filtered out) get probability 0.
    """
    _check_logits(logits)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a number, got {type(temperature).__name__}")
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(
            f"softmax needs temperature > 0, got {temperature} (temperature 0 means greedy())"
        )
    return _softmax(_scaled(logits, temperature)).to(logits.dtype)


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits / temperature``, or, where that overflows the dtype, ``(s - max s) / T`` in float64.

    Both have the same softmax. The first is what valid input has always used (so its numbers and
    seeded draws do not change); the second cannot overflow (every value is ``<= 0``).
    """
    if temperature == 1:
        return logits
    z = logits / temperature
    # logits were checked: a NaN, +inf or all -inf row maximum here means the division overflowed
    if not bool(torch.isfinite(z.amax(dim=-1)).all()):
        s = logits.double()
        z = (s - s.amax(dim=-1, keepdim=True)) / temperature
    return z


def _softmax(z: torch.Tensor) -> torch.Tensor:
    """Stable softmax over the last dimension, in ``z``'s dtype (float64 stays float64)."""
    z = z - z.amax(dim=-1, keepdim=True)
    e = torch.exp(z)
    return e / e.sum(dim=-1, keepdim=True)


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """The highest-scoring token: ``argmax`` over the last dimension, shape ``logits.shape[:-1]``.

    Ties go to the lowest id (as ``torch.argmax``). Logits with NaN or ``+inf`` are refused.
    """
    _check_logits(logits)
    return logits.argmax(dim=-1)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` highest logits, set the others to ``-inf``.

    Ties at the k-th value are all kept (so slightly more than ``k`` tokens may survive).
    """
    _check_logits(logits)
    check_sampling_args(logits.size(-1), top_k=k)
    return _top_k(logits, k)


def _top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of top tokens whose probabilities sum to >= ``p``.

    The most likely token is always kept (also when ``p`` is too small for the dtype to hold, such
    as ``1e-300``). Probabilities are those of ``softmax(logits)``; apply the temperature to the
    logits first if you want it to shape the nucleus.
    """
    _check_logits(logits)
    check_sampling_args(logits.size(-1), top_p=p)
    return _top_p(logits, p)


def _top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    # stable: equal logits stay in token-id order, so the token argmax names (the first of equal
    # maxima) is the one always kept, on every CPU (the website's sampler breaks ties the same way)
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)
    probs = _softmax(sorted_logits)
    cumulative = probs.cumsum(dim=-1)
    # drop a token when the tokens ranked above it already reach p; never drop the top one
    drop_sorted = (cumulative - probs) >= p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def filtered_probs(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """The distribution actually sampled from: temperature, then top-k, then top-p, then softmax.

    ``temperature=0`` gives the greedy choice as a one-hot distribution. Returned in the logits'
    dtype; a temperature too small for that dtype is handled as the module docstring says.
    """
    _check_logits(logits)
    check_sampling_args(logits.size(-1), temperature, top_k, top_p)
    return _filtered_probs(logits, temperature, top_k, top_p)


def _filtered_probs(logits, temperature, top_k, top_p) -> torch.Tensor:
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.size(-1)).to(logits.dtype)
    z = _scaled(logits, temperature)
    if top_k is not None:
        z = _top_k(z, top_k)
    if top_p is not None:
        z = _top_p(z, top_p)
    return _softmax(z).to(logits.dtype)


def sample(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Choose one token per row of ``logits`` ``(..., V)``; returns ids of shape ``logits.shape[:-1]``.

    ``temperature=0`` is greedy (no randomness). Otherwise one draw from :func:`filtered_probs` with
    ``torch.multinomial`` and the given ``generator`` (pass a seeded one for reproducible draws).
    ``generator`` must be a ``torch.Generator`` or None, also when ``temperature=0``.
    """
    _check_logits(logits)
    check_sampling_args(logits.size(-1), temperature, top_k, top_p)
    check_generator(generator)
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = _filtered_probs(logits, temperature, top_k, top_p)
    flat = probs.reshape(-1, probs.size(-1))
    ids = torch.multinomial(flat, 1, generator=generator)
    return ids.reshape(probs.shape[:-1])
