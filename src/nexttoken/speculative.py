"""Speculative decoding: a small draft model proposes ``k`` tokens, the big model checks them in one pass.

At batch 1 a decoding step reads every weight of the model to produce one token (notebook 09: it is
memory-bound). A pass over ``k + 1`` tokens reads the same weights once, so if a cheap *draft* model
can guess the next few tokens, the *target* model can verify all of them for about the price of one
step (Leviathan et al. 2023, "Fast Inference from Transformers via Speculative Decoding"; Chen et
al. 2023, "Accelerating Large Language Model Decoding with Speculative Sampling").

One round, with ``n`` tokens so far:

1. the draft proposes ``x_1 .. x_k``, one cheap step each, drawing ``x_i`` from its distribution
   ``q_i`` (the same temperature / top-k / top-p rule as the target's, :mod:`nexttoken.sampling`);
2. the target runs once over ``[last token, x_1 .. x_k]`` (``k + 1`` positions) and so gives its
   distributions ``p_1 .. p_{k+1}`` for every position at once;
3. the proposals are checked left to right. **Greedy**: keep ``x_i`` while it is the target's argmax;
   at the first mismatch emit the target's argmax instead. **Sampling**: keep ``x_i`` with
   probability ``min(1, p_i(x_i) / q_i(x_i))``; at the first rejection draw from the *residual*
   ``norm(max(0, p_i - q_i))``. If all ``k`` are kept, the ``p_{k+1}`` of the same pass gives one more
   token for free.

Every round emits between 1 and ``k + 1`` tokens. Greedy output is token for token the target's own
``generate`` (each kept token *is* the target's argmax), and sampled output has exactly the target's
distribution (the accept/residual rule: ``P(x) = q(x) min(1, p/q) + (1 - sum_y min(p, q))
norm(max(0, p - q))(x) = min(p, q) + max(0, p - q) = p(x)``).

The KV caches are rolled back after a rejection: a :class:`~nexttoken.model.KVCache` writes each new
key/value at ``length``, so setting ``length`` back forgets the rejected positions (their slots are
overwritten by the next pass). Only a single sequence (``B = 1``) is supported: rows of a batch
accept different numbers of tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .generate import _check_stop_token, as_ids, check_max_new_tokens
from .model import Decoder, KVCache
from .sampling import check_generator, check_sampling_args, filtered_probs, greedy

__all__ = [
    "speculative_generate",
    "SpeculativeStats",
    "Round",
    "accept_or_resample",
    "residual",
    "rollback",
    "expected_tokens_per_round",
    "predicted_tokens_per_s",
]


@dataclass
class Round:
    """What one round did (for the step-through widget): ``position`` of the first proposed token,
    the draft's ``proposed`` ids, how many were ``accepted``, the token the target added itself
    (``corrected``: the replacement of the first rejected proposal, or the bonus token when all were
    kept) and the target's own greedy choice at each of the ``k + 1`` positions (``target_argmax``)."""

    position: int
    proposed: list[int]
    accepted: int
    corrected: int
    target_argmax: list[int]

    @property
    def bonus(self) -> bool:
        """True when every proposal was kept (``corrected`` is then the free extra token)."""
        return self.accepted == len(self.proposed)


@dataclass
class SpeculativeStats:
    """Counts of one :func:`speculative_generate` call.

    ``proposed``: draft tokens proposed; ``accepted``: of those, kept; ``target_passes``: forward
    passes of the target (one per round); ``draft_passes``: of the draft; ``new_tokens``: tokens
    added to the prompt; ``rounds``: per-round details.
    """

    proposed: int = 0
    accepted: int = 0
    target_passes: int = 0
    draft_passes: int = 0
    new_tokens: int = 0
    rounds: list[Round] = field(default_factory=list, repr=False)

    @property
    def acceptance_rate(self) -> float:
        """Fraction of proposed tokens kept (0.0 if none was proposed)."""
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def alpha(self) -> float:
        """Per-proposal acceptance probability as Leviathan et al. model it (each proposal kept
        independently with probability alpha): kept / (kept + rejected), counting only the
        proposals that were checked (those after a rejection never are). 1.0 if none was rejected."""
        rejected = sum(not r.bonus for r in self.rounds)
        return self.accepted / (self.accepted + rejected) if self.accepted + rejected else 1.0

    @property
    def tokens_per_pass(self) -> float:
        """New tokens per target pass (plain decoding: 1.0)."""
        return self.new_tokens / self.target_passes if self.target_passes else 0.0


def expected_tokens_per_round(alpha: float, k: int) -> float:
    """Tokens one round emits on average if each proposal is kept with probability ``alpha``
    independently: ``1 + alpha + ... + alpha^k = (1 - alpha^(k+1)) / (1 - alpha)`` (Leviathan et al.
    2023, eq. 1)."""
    alpha = _number("alpha", alpha)
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    _count("k", k)
    return float(k + 1) if alpha == 1 else (1 - alpha ** (k + 1)) / (1 - alpha)


def predicted_tokens_per_s(
    draft_step_s: float, verify_s: float, k: int, tokens_per_round: float, overhead_s: float = 0.0
) -> float:
    """The cost model: a round costs ``k`` draft steps, one target pass over ``k + 1`` tokens
    (``verify_s``) and a little bookkeeping (``overhead_s``), and emits ``tokens_per_round``
    tokens (:func:`expected_tokens_per_round`, or measured). Plain decoding is ``1 / step``;
    speculative decoding wins when ``tokens_per_round * step > k * draft_step + verify``.

    Times in seconds: ``verify_s > 0``, ``draft_step_s`` and ``overhead_s >= 0``; ``k`` an int
    ``>= 0``; ``tokens_per_round`` in ``[1, k + 1]`` (a round emits at least the target's token)."""
    _count("k", k)
    verify_s = _number("verify_s", verify_s)
    if not verify_s > 0:
        raise ValueError(f"verify_s must be > 0 (seconds), got {verify_s}")
    for name, value in (("draft_step_s", draft_step_s), ("overhead_s", overhead_s)):
        if not _number(name, value) >= 0:
            raise ValueError(f"{name} must be >= 0 (seconds), got {value}")
    if not 1 <= _number("tokens_per_round", tokens_per_round) <= k + 1:
        raise ValueError(f"tokens_per_round must be in [1, {k + 1}], got {tokens_per_round}")
    return tokens_per_round / (k * draft_step_s + verify_s + overhead_s)


def _number(name: str, value: object) -> float:
    """``value`` as a finite float, or a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return float(value)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _distribution(name: str, t: object) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.dim() != 1 or not t.is_floating_point():
        raise TypeError(f"{name} must be a 1-D float tensor (a distribution over the vocabulary)")
    return t


def rollback(cache: KVCache, length: int) -> None:
    """Forget every position of ``cache`` from ``length`` on (their slots get overwritten later)."""
    if not isinstance(cache, KVCache):
        raise TypeError(f"cache must be a nexttoken KVCache, got {type(cache).__name__}")
    if isinstance(length, bool) or not isinstance(length, int):
        raise TypeError(f"length must be an int, got {type(length).__name__}")
    if not 0 <= length <= cache.length:
        raise ValueError(f"can only roll back to a length in [0, {cache.length}], got {length}")
    cache.length = length


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``norm(max(0, p - q))``: what to draw from after a rejection, ``(V,)``.

    If ``p - q`` has no positive mass (only possible by rounding when ``p == q``), returns ``p``.
    """
    _check_pair(p, q)
    r = (p - q).clamp(min=0)
    total = r.sum()
    return r / total if float(total) > 0 else p


def accept_or_resample(
    x: int,
    p: torch.Tensor,
    q: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[bool, int]:
    """The rule of Leviathan et al. 2023 / Chen et al. 2023 for one proposal ``x ~ q``.

    ``p``, ``q``: the target's and the draft's distributions ``(V,)`` at this position. Keeps ``x``
    with probability ``min(1, p(x) / q(x))``; otherwise draws a replacement from
    :func:`residual`. Returns ``(kept, token)``.
    """
    _check_pair(p, q)
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"x must be a token id (an int), got {type(x).__name__}")
    if not 0 <= x < p.numel():
        raise ValueError(f"x must be a token id in [0, {p.numel() - 1}], got {x}")
    check_generator(generator)
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    if u * float(q[x]) < float(p[x]):  # u < p(x)/q(x), without dividing
        return True, x
    return False, int(torch.multinomial(residual(p, q), 1, generator=generator))


def _check_pair(p: object, q: object) -> None:
    _distribution("p", p)
    _distribution("q", q)
    if p.shape != q.shape:
        raise ValueError(
            f"p and q must have the same shape (one probability per token), got "
            f"{tuple(p.shape)} and {tuple(q.shape)}"
        )


def _check_models(target: object, draft: object) -> None:
    for name, m in (("target", target), ("draft", draft)):
        if not isinstance(m, Decoder):
            raise TypeError(f"{name} must be a nexttoken GPT or Llama, got {type(m).__name__}")
    if target.config.vocab_size != draft.config.vocab_size:
        raise ValueError(
            f"target and draft must share one encoding: vocab sizes {target.config.vocab_size} "
            f"and {draft.config.vocab_size} differ"
        )
    if draft.device != target.device:
        raise ValueError(
            f"the draft is on {draft.device}, the target on {target.device}: both models must be "
            f"on one device"
        )


def speculative_generate(
    target: Decoder,
    draft: Decoder,
    ids: torch.Tensor | Sequence[int],
    max_new_tokens: int,
    *,
    k: int = 4,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    stop_token: int | None = None,
    on_round: Callable[[Round], None] | None = None,
) -> tuple[torch.Tensor, SpeculativeStats]:
    """Continue ``ids`` by ``max_new_tokens`` tokens of ``target``, drafted ``k`` at a time by ``draft``.

    Arguments as in :func:`nexttoken.generate.generate` (``temperature=0`` is greedy). ``ids``: one
    sequence, ``(N,)``, ``(1, N)`` or a list of ints; ``N + max_new_tokens`` must fit both models'
    ``block_size`` (both caches are kept for the whole call). ``k``: proposals per round, an int
    ``>= 1``. ``on_round``: called with each :class:`Round`.

    Returns ``(ids, stats)``: ``(1, N + new)`` ids and a :class:`SpeculativeStats`. Greedy output is
    the target's own ``generate`` output, token for token; sampled output follows the target's
    distribution (same temperature, top-k, top-p).
    """
    _check_models(target, draft)
    cfg = target.config
    device = target.device
    idx = as_ids(ids, cfg.vocab_size).to(device)
    if idx.size(0) != 1:
        raise ValueError(
            f"speculative decoding takes one sequence (batch size 1), got {idx.size(0)} rows: "
            "rows of a batch would accept different numbers of tokens"
        )
    check_max_new_tokens(max_new_tokens)
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k (draft tokens per round) must be an int >= 1, got {k!r}")
    if k < 1:
        raise ValueError(f"k (draft tokens per round) must be an int >= 1, got {k!r}")
    check_sampling_args(cfg.vocab_size, temperature, top_k, top_p)
    check_generator(generator)
    stop = _check_stop_token(stop_token, cfg.vocab_size)
    if on_round is not None and not callable(on_round):
        raise TypeError(f"on_round must be a function or None, got {type(on_round).__name__}")
    N = idx.size(1)
    limit = min(cfg.block_size, draft.config.block_size)
    if N + max_new_tokens > limit:
        raise ValueError(
            f"prompt ({N} tokens) + max_new_tokens ({max_new_tokens}) must fit the context of both "
            f"models ({limit} tokens): speculative decoding keeps both KV caches for the whole call"
        )

    stats = SpeculativeStats()
    modes = (target.training, draft.training)
    target.eval()
    draft.eval()
    try:
        with torch.inference_mode():
            out = _decode(target, draft, idx, max_new_tokens, k, temperature, top_k, top_p,
                          generator, stop, on_round, stats)  # fmt: skip
    finally:
        target.train(modes[0])
        draft.train(modes[1])
    return out.clone(), stats


def _decode(target, draft, idx, max_new_tokens, k, temperature, top_k, top_p, generator, stop,
            on_round, stats):  # fmt: skip
    """The loop of :func:`speculative_generate` (arguments already checked)."""
    N = idx.size(1)
    total = N + max_new_tokens
    buf = torch.empty(1, total, dtype=torch.long, device=idx.device)
    buf[:, :N] = idx
    if max_new_tokens == 0:
        return buf
    is_greedy = temperature == 0
    t_cache, d_cache = target.new_cache(1, total), draft.new_cache(1, total)
    n = N  # tokens in buf; both caches hold at most n - 1 of them (the last one is fed next)
    while n < total:
        kk = min(k, total - n - 1)  # a round emits up to kk + 1 tokens: never more than asked
        proposed, q_rows = [], []
        for j in range(kk):  # 1. the draft proposes, one cheap step each
            # first step: what its cache has not seen yet; then its own last proposal
            new = buf[:, d_cache.length : n] if j == 0 else buf.new_tensor([proposed[-1:]])
            logits = draft.run(new, cache=d_cache, last_only=True).logits[0, -1]
            stats.draft_passes += 1
            if is_greedy:
                proposed.append(int(greedy(logits)))
            else:
                q = filtered_probs(logits, temperature, top_k, top_p)
                proposed.append(int(torch.multinomial(q, 1, generator=generator)))
                q_rows.append(q)
        # 2. the target scores the last token and every proposal in one pass
        fed = torch.cat([buf[:, t_cache.length : n], buf.new_tensor([proposed])], dim=1)
        logits = target.run(fed, cache=t_cache).logits[0, -(kk + 1) :]  # (kk + 1, V)
        stats.target_passes += 1
        target_argmax = greedy(logits).tolist()
        # 3. keep the longest acceptable prefix, then one token from the target itself
        accepted, corrected = kk, None
        for i, x in enumerate(proposed):
            if is_greedy:
                kept, tok = x == target_argmax[i], target_argmax[i]
            else:
                p = filtered_probs(logits[i], temperature, top_k, top_p)
                kept, tok = accept_or_resample(x, p, q_rows[i], generator)
            if not kept:
                accepted, corrected = i, tok
                break
        if corrected is None:  # every proposal kept: the last position's token comes free
            if is_greedy:
                corrected = target_argmax[kk]
            else:
                p = filtered_probs(logits[kk], temperature, top_k, top_p)
                corrected = int(torch.multinomial(p, 1, generator=generator))
        new_tokens = proposed[:accepted] + [corrected]
        stats.proposed += kk
        stats.accepted += accepted
        stats.rounds.append(Round(n, proposed, accepted, corrected, target_argmax))
        if on_round is not None:
            on_round(stats.rounds[-1])
        if stop is not None and stop in new_tokens:  # generate stops after the stop token
            new_tokens = new_tokens[: new_tokens.index(stop) + 1]
        buf[0, n : n + len(new_tokens)] = buf.new_tensor(new_tokens)
        n += len(new_tokens)
        stats.new_tokens = n - N
        if stop is not None and new_tokens[-1] == stop:
            break
        # roll both caches back to the tokens that were kept (all but the newest, fed next round)
        rollback(t_cache, min(t_cache.length, n - 1))
        rollback(d_cache, min(d_cache.length, n - 1))
    return buf[:, :n]
