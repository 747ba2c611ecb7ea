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

from collections.abc import Callable, Sequence

import torch

from .model import GPT
from .sampling import check_sampling_args, sample

__all__ = ["generate", "as_ids", "check_max_new_tokens"]


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
    """Raise TypeError/ValueError unless ``max_new_tokens`` is an int >= 0."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise TypeError(f"max_new_tokens must be an int, got {type(max_new_tokens).__name__}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")


def generate(
    model: GPT,
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
    - ``stop_token``: stop once every row has produced it (rows that finished early are padded with
      it). The stop token is included in the output.
    - ``on_token``: called with each step's new ids ``(B,)`` (used to stream text).

    The model is put in eval mode for the loop and restored afterwards. The loop runs under
    ``torch.inference_mode()``; the returned tensor is an ordinary one, usable anywhere.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a nexttoken GPT, got {type(model).__name__}")
    cfg = model.config
    idx = as_ids(ids, cfg.vocab_size).to(model.lm_head.weight.device)
    check_max_new_tokens(max_new_tokens)
    check_sampling_args(cfg.vocab_size, temperature, top_k, top_p)
    if stop_token is not None and not (
        isinstance(stop_token, int) and 0 <= stop_token < cfg.vocab_size
    ):
        raise ValueError(f"stop_token must be a token id in [0, {cfg.vocab_size - 1}] or None")

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
