"""The autoregressive loop: predict a token, append it, repeat.

``generate`` runs the whole pipeline ``max_new_tokens`` times. With ``use_cache=True`` (the default)
the keys and values of earlier tokens are kept in a :class:`~nexttoken.model.KVCache`, so each step
feeds the model only the newest token; with ``use_cache=False`` each step recomputes the whole
context. In a causal decoder both give *identical* tokens, because appending a token never changes
the representations of the tokens before it.

At the context limit (``block_size``) the model keeps the last ``block_size`` tokens, a sliding
window, as GPT-2 implementations do. Positions then shift by one at every step, so cached keys
(which carry their old positions) are no longer valid: past the limit, each step recomputes the
window. Outputs are still identical with and without the cache.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

import torch

from .model import Decoder
from .sampling import check_generator, check_sampling_args, sample

__all__ = ["generate", "as_ids", "check_max_new_tokens", "MAX_NEW_TOKENS"]

#: The most tokens one call may add: a million steps already take hours on a CPU, and the output
#: buffer is allocated up front. Call again with the result as the prompt to go further.
MAX_NEW_TOKENS = 1_000_000


def as_ids(ids: torch.Tensor | Sequence[int], vocab_size: int | None = None) -> torch.Tensor:
    """A ``(B, N)`` long tensor from a list of ints, a 1-D ``(N,)`` or a 2-D ``(B, N)`` tensor."""
    if isinstance(ids, torch.Tensor):
        t = ids
    elif isinstance(ids, (list, tuple)):
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise TypeError("ids must be a list of ints (token ids)")
        t = torch.tensor(list(ids), dtype=torch.long)
    else:
        raise TypeError(f"ids must be a torch.Tensor or a list of ints, got {type(ids).__name__}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"ids must be an integer tensor (torch.long), got dtype {t.dtype}")
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2:
        raise ValueError(f"ids must have shape (N,) or (B, N), got {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError("the prompt is empty: give at least one token id")
    if vocab_size is not None:
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= vocab_size:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"token id {bad} is out of range: ids must be in [0, {vocab_size - 1}]"
            )
    return t.long()


def check_max_new_tokens(max_new_tokens: object) -> None:
    """Raise TypeError/ValueError unless ``max_new_tokens`` is an int in ``[0, MAX_NEW_TOKENS]``."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise TypeError(f"max_new_tokens must be an int, got {type(max_new_tokens).__name__}")
    if not 0 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(
            f"max_new_tokens must be >= 0 and <= {MAX_NEW_TOKENS:_} (MAX_NEW_TOKENS), got "
            f"{max_new_tokens}; for more, call again with the result as the prompt"
        )


def _check_stop_token(stop_token: object, vocab_size: int) -> int | None:
    """``stop_token`` as a plain int (NumPy and torch integers accepted), or None."""
    if stop_token is None:
        return None
    if isinstance(stop_token, bool) or (
        isinstance(stop_token, torch.Tensor) and stop_token.dtype == torch.bool
    ):
        raise TypeError(f"stop_token must be a token id (an int) or None, got {stop_token!r}")
    try:
        token = operator.index(stop_token)
    except TypeError:
        raise TypeError(
            f"stop_token must be a token id (an int) or None, got {type(stop_token).__name__}"
        ) from None
    if not 0 <= token < vocab_size:
        raise ValueError(f"stop_token must be a token id in [0, {vocab_size - 1}], got {token}")
    return token


def generate(
    model: Decoder,
    ids: torch.Tensor | Sequence[int],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    stop_token: int | None = None,
    on_token: Callable[[torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Continue ``ids`` by ``max_new_tokens`` tokens; returns ``(B, N + new)`` ids.

    - ``ids``: the prompt, ``(B, N)`` (or ``(N,)`` / a list of ints, treated as ``B = 1``).
    - ``temperature=0`` is greedy decoding; otherwise sampling from the softmax at that temperature,
      after optional ``top_k`` / ``top_p`` filtering, drawing from ``generator``.
    - ``generator``: a ``torch.Generator`` or None (checked before any work, also when greedy).
    - ``max_new_tokens``: an int in ``[0, MAX_NEW_TOKENS]``.
    - ``stop_token``: stop once every row has produced it (rows that finished early are padded with
      it). The stop token is included in the output. An int id (a NumPy or torch integer is fine;
      a bool is refused).
    - ``on_token``: called with each step's new ids ``(B,)`` (used to stream text).

    Every argument is checked before the first forward pass (``ValueError`` / ``TypeError``).

    The model is put in eval mode for the loop and restored afterwards. The loop runs under
    ``torch.inference_mode()``; the returned tensor is an ordinary one, usable anywhere.
    """
    if not isinstance(model, Decoder):
        raise TypeError(f"model must be a nexttoken GPT or Llama, got {type(model).__name__}")
    cfg = model.config
    idx = as_ids(ids, cfg.vocab_size).to(model.device)
    check_max_new_tokens(max_new_tokens)
    check_sampling_args(cfg.vocab_size, temperature, top_k, top_p)
    check_generator(generator)
    stop_token = _check_stop_token(stop_token, cfg.vocab_size)
    if on_token is not None and not callable(on_token):
        raise TypeError(
            f"on_token must be a function called with each step's ids, or None; "
            f"got {type(on_token).__name__}"
        )
    if not isinstance(use_cache, bool):
        raise TypeError(f"use_cache must be True or False, got {use_cache!r}")

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            B, N = idx.shape
            # one buffer for prompt + new tokens, written in place (no re-concatenation per step);
            # the model reads a view of its last block_size tokens
            buf = torch.empty(B, N + max_new_tokens, dtype=torch.long, device=idx.device)
            buf[:, :N] = idx
            finished = torch.zeros(B, dtype=torch.bool, device=idx.device)
            # the cache only needs room for what this call will feed it (at most block_size)
            cache_len = min(cfg.block_size, N + max_new_tokens)
            cache = model.new_cache(B, cache_len) if use_cache and max_new_tokens else None
            n_total = N
            for _ in range(max_new_tokens):
                if cache is not None and n_total <= cfg.block_size:
                    new = buf[:, cache.length : n_total]  # only what the cache has not seen
                    logits = model.run(new, cache=cache, last_only=True).logits[:, -1, :]
                else:  # no cache, or past the context limit: recompute the window
                    context = buf[:, max(0, n_total - cfg.block_size) : n_total]
                    logits = model.run(context, last_only=True).logits[:, -1, :]
                nxt = sample(logits, temperature, top_k, top_p, generator)  # (B,)
                if stop_token is not None:
                    nxt = torch.where(finished, torch.full_like(nxt, stop_token), nxt)
                    finished |= nxt == stop_token
                buf[:, n_total] = nxt
                n_total += 1
                if on_token is not None:
                    on_token(nxt)
                if stop_token is not None and bool(finished.all()):
                    break
            out = buf[:, :n_total]
    finally:
        model.train(was_training)
    return out.clone()  # a normal tensor again (inference tensors cannot enter autograd)
