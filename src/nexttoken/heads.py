"""Attention heads with jobs: previous-token heads and induction heads.

An *induction head* completes a pattern seen earlier in the context: at a token ``A`` whose earlier
occurrence was followed by ``B``, it attends to that ``B`` and copies it (``... A B ... A -> B``).
It needs a *previous-token head* in an earlier layer (each position attends to the one before it),
whose output tells the induction head's keys "the token before me was ``A``". Both jobs are
measured on repeated random tokens, where nothing but copying can predict the second copy:

- :func:`repeated_random_tokens`: ``n_seqs`` random sequences, each followed by itself;
- :func:`induction_scores` / :func:`previous_token_scores`: per head ``(L, H)``, the mean attention
  to the token after the previous occurrence of the current token / to the previous position;
- :func:`copy_losses`: a model's loss on a passage, and on the same passage repeated right after it;
- :func:`grow_induction_head`: a small attention-only model (:class:`AttentionOnlyGPT`) trained on
  repeated random sequences, with the phase change in its history: the loss on the repeat falls
  as an induction head's score rises.

Attention patterns are read by :func:`nexttoken.inspect.trace` (forward hooks, the model's code
untouched).
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from .inspect import trace
from .model import GPT, CausalSelfAttention, GPTConfig

__all__ = [
    "repeated_random_tokens",
    "attention_patterns",
    "induction_scores",
    "previous_token_scores",
    "copy_losses",
    "best_head",
    "AttentionOnlyBlock",
    "AttentionOnlyGPT",
    "GROW_DEFAULTS",
    "grow_induction_head",
    "phase_change_step",
]


def _check_count(name: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {least}, got {type(value).__name__}")
    if value < least:
        raise ValueError(f"{name} must be an int >= {least}, got {value}")
    return value


def repeated_random_tokens(
    *, vocab_size: int, seq_len: int, n_seqs: int, seed: int
) -> torch.Tensor:
    """``n_seqs`` rows of ``seq_len`` random tokens followed by the same tokens again.

    Returns a long tensor ``(n_seqs, 2 * seq_len)`` with ``row[i + seq_len] == row[i]``. There is no
    leading end-of-text (BOS) token: position 0 holds a random token. Within a row the
    ``seq_len`` tokens are distinct (drawn without replacement from ``[0, vocab_size)``), so every
    token of the second copy has exactly one earlier occurrence, ``seq_len`` positions back; this
    needs ``vocab_size >= seq_len``. The draw is integer arithmetic on a seeded
    ``torch.Generator``: the same tokens on every machine.
    """
    _check_count("seq_len", seq_len, 2)
    _check_count("n_seqs", n_seqs, 1)
    _check_count("vocab_size", vocab_size, 1)
    _check_count("seed", seed, 0)
    if vocab_size < seq_len:
        raise ValueError(
            f"vocab_size ({vocab_size}) must be >= seq_len ({seq_len}): the tokens of a sequence "
            f"are distinct; use seq_len in [2, {vocab_size}]"
        )
    g = torch.Generator().manual_seed(seed)
    first = torch.stack([torch.randperm(vocab_size, generator=g)[:seq_len] for _ in range(n_seqs)])
    return torch.cat([first, first], dim=1)


def _check_model(model: object) -> GPT:
    if not isinstance(model, GPT):
        raise TypeError(
            f"model must be a nexttoken.model.GPT (the book model, or an AttentionOnlyGPT), "
            f"got {type(model).__name__}"
        )
    return model


def _repeated_for(model: GPT, seq_len: int, n_seqs: int, seed: int) -> torch.Tensor:
    """Repeated random tokens ``(n_seqs, 2 * seq_len)`` that fit ``model``'s context and vocabulary."""
    _check_model(model)
    _check_count("seq_len", seq_len, 2)
    most = min(model.config.block_size // 2, model.config.vocab_size)
    if seq_len > most:
        raise ValueError(
            f"seq_len must be in [2, {most}] for this model: two copies must fit its context "
            f"(block_size={model.config.block_size}) and a copy's tokens are distinct "
            f"(vocab_size={model.config.vocab_size}); got {seq_len}"
        )
    return repeated_random_tokens(
        vocab_size=model.config.vocab_size, seq_len=seq_len, n_seqs=n_seqs, seed=seed
    )


def attention_patterns(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    """Every head's attention weights on ``ids`` ``(B, N)``: a float64 tensor ``(L, B, H, N, N)``,
    read by :func:`nexttoken.inspect.trace` (``blocks.{l}.attn.hook_pattern``)."""
    _check_model(model)
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.config.n_layer)]
    t = trace(model, ids, names=names)
    return torch.stack([t[name].double() for name in names])


def _diagonal_mean(patterns: torch.Tensor, offset: int, first_query: int) -> torch.Tensor:
    """Mean over rows and queries ``i >= first_query`` of ``patterns[..., i, i - offset]``: ``(L, H)``."""
    diag = patterns.diagonal(offset=-offset, dim1=-2, dim2=-1)  # (L, B, H, N - offset)
    return diag[..., first_query - offset :].mean(dim=(1, 3))


def induction_scores(model: GPT, *, seq_len: int, n_seqs: int, seed: int) -> torch.Tensor:
    """How much each head acts as an induction head: ``(L, H)`` float64 values in ``[0, 1]``.

    On :func:`repeated_random_tokens` (``n_seqs`` rows, no leading BOS), the mean attention from
    each position ``i`` of the second copy (``seq_len <= i < 2 * seq_len``) to the token *after* the
    previous occurrence of the current token, position ``i - seq_len + 1``. A perfect induction
    head scores 1; a head spreading its attention evenly scores about ``1 / i``.
    """
    ids = _repeated_for(model, seq_len, n_seqs, seed)
    return _diagonal_mean(attention_patterns(model, ids), seq_len - 1, seq_len)


def previous_token_scores(model: GPT, *, seq_len: int, n_seqs: int, seed: int) -> torch.Tensor:
    """How much each head attends to the previous position: ``(L, H)`` float64 values in ``[0, 1]``.

    The mean attention from position ``i`` to ``i - 1``, over every ``1 <= i < 2 * seq_len`` of the
    same :func:`repeated_random_tokens` that :func:`induction_scores` reads.
    """
    ids = _repeated_for(model, seq_len, n_seqs, seed)
    return _diagonal_mean(attention_patterns(model, ids), 1, 1)


def best_head(scores: torch.Tensor) -> tuple[str, float]:
    """The top head of an ``(L, H)`` score table, as ``("L1H3", score)`` (layers, heads from 0)."""
    flat = int(scores.flatten().argmax())
    layer, head = divmod(flat, scores.size(1))
    return f"L{layer}H{head}", float(scores[layer, head])


def copy_losses(model: GPT, ids: torch.Tensor) -> tuple[float, float]:
    """Loss on a passage, then on the same passage right after it: ``(first, second)`` nats/token.

    ``ids``: the passage, ``(n,)`` or a batch ``(B, n)`` with ``n >= 2``; the model reads each row
    twice in a row, ``2 n`` tokens. Each copy is scored on its tokens 2..n (the ``n - 1`` tokens
    that have a predecessor in the same copy), so the two numbers average the same targets; a model
    that copies from its context predicts the second copy far better. Float64 means.
    """
    _check_model(model)
    if not isinstance(ids, torch.Tensor):
        ids = torch.as_tensor(ids)
    rows = ids.view(1, -1) if ids.dim() == 1 else ids
    if rows.dim() != 2 or rows.size(1) < 2:
        raise ValueError(
            f"ids must be a passage (n,) or (B, n) with n >= 2, got {tuple(ids.shape)}"
        )
    n = rows.size(1)
    full = torch.cat([rows, rows], dim=1)  # (B, 2n); model.run checks the ids and the context
    with torch.no_grad():
        logp = F.log_softmax(model(full).double(), dim=-1)
    nll = -logp[:, :-1].gather(-1, full[:, 1:, None]).squeeze(-1)  # (B, 2n - 1): target t+1
    return float(nll[:, : n - 1].mean()), float(nll[:, n:].mean())


class AttentionOnlyBlock(nn.Module):
    """A decoder block without its MLP: ``x + attn(ln_1(x))``. Same call as :class:`Block`."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.attn = CausalSelfAttention(config)

    def forward(self, x, cache=None, layer=0, need_weights=False, mask=None):
        a, weights = self.attn(self.ln_1(x), cache, layer, need_weights, mask)
        return x + a, weights


class AttentionOnlyGPT(GPT):
    """:class:`GPT` with every MLP removed: attention, residuals, LayerNorms, tied embedding.

    Everything else (``run``, ``generate``, the KV cache) is ``GPT``'s own. The smallest model
    that can grow an induction head: two layers, one to read the previous token, one to copy.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__(config)
        self.transformer.h = nn.ModuleList(
            [AttentionOnlyBlock(config) for _ in range(config.n_layer)]
        )
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2's scaled init, as in GPT
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))


GROW_DEFAULTS = dict(
    n_layer=2,
    n_head=4,
    n_embd=64,
    vocab_size=64,
    n_ctx=32,
    batch_size=32,
    lr=3e-3,
    eval_every=10,
    init_std=0.02,
    data="periodic",
)


def _training_batch(
    g: torch.Generator, batch: int, n_ctx: int, vocab: int, data="periodic"
) -> torch.Tensor:
    if data == "iid":
        w = torch.randint(0, vocab, (batch, n_ctx), generator=g)
        n = torch.randint(2, n_ctx // 2 + 1, (batch, 1), generator=g)
        j = torch.arange(n_ctx).expand(batch, n_ctx)
        src = torch.where(j < n, j, torch.where(j < 2 * n, j - n, j - n))
        return w.gather(1, src)
    """Rows of ``n_ctx`` tokens: a random segment of length ``n`` in ``[2, n_ctx // 2]``, itself
    again, then fresh tokens (no token repeats except the segment's copy). ``(batch, n_ctx)``."""
    perm = torch.rand(batch, vocab, generator=g, dtype=torch.float64).argsort(dim=1)
    n = torch.randint(2, n_ctx // 2 + 1, (batch, 1), generator=g)
    j = torch.arange(n_ctx).expand(batch, n_ctx)
    src = j % n if data == "periodic" else torch.where(j < n, j, torch.where(j < 2 * n, j - n, j))
    return perm.gather(1, src)


def grow_induction_head(
    *, steps: int = 300, seed: int = 0, **options
) -> tuple[AttentionOnlyGPT, list[dict]]:
    """Train a small :class:`AttentionOnlyGPT` where copying pays, and record how its heads grow.

    Data: :func:`_training_batch` (random segments repeated at random lengths, so only a head that
    matches content, not a fixed offset, can predict the repeat). float64, AdamW at a constant
    ``lr``, one seeded generator for the init and the data. ``options`` override
    :data:`GROW_DEFAULTS`.

    Returns ``(model, history)``: ``history`` holds one dict per evaluation (step 0, then every
    ``eval_every`` steps): ``step``, ``loss_first`` / ``loss_second`` (:func:`copy_losses` on 64
    fixed repeated random rows of ``n_ctx // 2`` tokens), ``induction`` / ``induction_head`` and
    ``previous`` / ``previous_head`` (the best head of :func:`induction_scores` /
    :func:`previous_token_scores` on the same rows), and ``seconds`` since the start.
    """
    cfg = dict(GROW_DEFAULTS)
    unknown = set(options) - set(cfg)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}; allowed: {sorted(cfg)}")
    cfg.update(options)
    _check_count("steps", steps, 0)
    _check_count("seed", seed, 0)
    torch.manual_seed(seed)
    config = GPTConfig(
        vocab_size=cfg["vocab_size"],
        block_size=cfg["n_ctx"],
        n_layer=cfg["n_layer"],
        n_head=cfg["n_head"],
        n_embd=cfg["n_embd"],
        name="induction",
    )
    model = AttentionOnlyGPT(config).double()
    with torch.no_grad():
        for blk in model.transformer.h:
            blk.attn.c_attn.weight.normal_(0.0, cfg["init_std"])
            blk.attn.c_proj.weight.normal_(0.0, cfg["init_std"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    half = cfg["n_ctx"] // 2
    probe = dict(seq_len=half, n_seqs=64, seed=seed + 1)
    eval_ids = repeated_random_tokens(vocab_size=cfg["vocab_size"], **probe)[:, :half]
    history: list[dict] = []
    start = time.perf_counter()

    def record(step: int) -> None:
        model.eval()
        first, second = copy_losses(model, eval_ids)
        ind_head, ind = best_head(induction_scores(model, **probe))
        prev_head, prev = best_head(previous_token_scores(model, **probe))
        history.append(
            dict(
                step=step,
                loss_first=first,
                loss_second=second,
                induction=ind,
                induction_head=ind_head,
                previous=prev,
                previous_head=prev_head,
                seconds=time.perf_counter() - start,
            )
        )
        model.train()

    record(0)
    for step in range(1, steps + 1):
        x = _training_batch(g, cfg["batch_size"], cfg["n_ctx"], cfg["vocab_size"], cfg["data"])
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg["eval_every"] == 0 or step == steps:
            record(step)
    model.eval()
    return model, history


def phase_change_step(history: list[dict]) -> int | None:
    """The first recorded step where the loss on the second copy is below half the first copy's."""
    for row in history:
        if row["loss_second"] < 0.5 * row["loss_first"]:
            return row["step"]
    return None
