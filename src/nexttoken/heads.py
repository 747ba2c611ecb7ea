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
- :func:`grow_induction_head`: a small attention-only model (:class:`AttentionOnlyGPT`) that grows
  a previous-token head, then an induction head composing with it, with the phase change in its
  history: the loss on the repeat falls as the induction head's score rises.

Attention patterns are read by :func:`nexttoken.inspect.trace` (forward hooks, the model's code
untouched).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from .checkpoint import read_config, save_model, sha256_file
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
    "GROWN_RECIPE",
    "echo_table",
    "echo_batch",
    "copy_batch",
    "grow_induction_head",
    "phase_change_step",
    "save_grown",
    "load_grown",
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
        if self.lm_head.weight.device.type != "meta":  # the new blocks, initialised as GPT's
            self.apply(self._init_weights)
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight"):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))


GROWN_RECIPE = dict(
    steps=3000,
    previous_steps=300,
    seed=0,
    n_layer=2,
    n_head=1,
    n_embd=64,
    vocab_size=32,
    n_ctx=32,
    batch_size=32,
    lr=3e-3,
    echo=0.5,
    quiet=0.05,
    eval_every=50,
)
"""The recipe of the committed grown model (:func:`load_grown`); :func:`grow_induction_head`'s
defaults. ``steps`` counts both stages; the first ``previous_steps`` grow the previous-token head."""


def echo_table(vocab_size: int) -> torch.Tensor:
    """The fixed permutation of ``range(vocab_size)`` that :func:`echo_batch`'s rule follows
    (``torch.randperm`` seeded 0): long ``(vocab_size,)``."""
    return torch.randperm(vocab_size, generator=torch.Generator().manual_seed(0))


def echo_batch(
    g: torch.Generator, *, batch_size: int, n_ctx: int, vocab_size: int, echo: float
) -> torch.Tensor:
    """Rows ``(batch_size, n_ctx)`` where reading the *previous* token pays: random tokens, except
    that each token from position 2 on is, with probability ``echo``, fixed by the token two places
    back through a fixed random table (:func:`echo_table`, ``A B -> table[A]``). At the position of
    ``B``, the next token depends on the token before it: a previous-token head predicts it.

    Integer draws from ``g`` only: the same rows on every machine.
    """
    table = echo_table(vocab_size)
    w = torch.randint(0, vocab_size, (batch_size, n_ctx), generator=g)
    echoes = torch.rand(batch_size, n_ctx, generator=g) < echo
    for t in range(2, n_ctx):
        w[:, t] = torch.where(echoes[:, t], table[w[:, t - 2]], w[:, t])
    return w


def copy_batch(g: torch.Generator, *, batch_size: int, n_ctx: int, vocab_size: int) -> torch.Tensor:
    """Rows ``(batch_size, n_ctx)`` where copying pays: random tokens whose first ``n`` come again
    right after themselves (``n`` drawn in ``[2, n_ctx // 2]`` for each row), then the row goes on.
    Only a head that finds the earlier occurrence of the current token and reads what came next (an
    induction head) predicts the repeat; ``n`` varies, so no head that looks a fixed distance back
    can. Integer draws from ``g`` only: the same rows on every machine.
    """
    w = torch.randint(0, vocab_size, (batch_size, n_ctx), generator=g)
    n = torch.randint(2, n_ctx // 2 + 1, (batch_size, 1), generator=g)
    j = torch.arange(n_ctx).expand(batch_size, n_ctx)
    return w.gather(1, torch.where(j < n, j, j - n))  # w[:n], w[:n] again, then w[n:]


def grow_induction_head(
    *, steps: int = GROWN_RECIPE["steps"], seed: int = GROWN_RECIPE["seed"], **options
) -> tuple[AttentionOnlyGPT, list[dict]]:
    """Grow a previous-token head, then an induction head that composes with it, in a small
    :class:`AttentionOnlyGPT` (float64, GPT-2's initialisation, AdamW at a constant ``lr``, no
    weight decay, one seeded generator for the data). ``options`` override the rest of
    :data:`GROWN_RECIPE`.

    1. Steps ``1 .. previous_steps``: :func:`echo_batch` rows. Layer 0 learns to read the previous
       token (its head's output then dominates the residual stream: 15 times the norm of the token's
       own embedding at step 300, as notebook 13 measures).
    2. Layer 0 and the embeddings are frozen, and layer 0's output projection is scaled by
       ``quiet``; steps ``previous_steps + 1 .. steps``: :func:`copy_batch` rows, and layer 1 learns
       to copy. Scaled down, the previous-token head still says "the token before me was ``A``",
       but no longer drowns each position's own token, which an induction head must read and copy.
       (Trained jointly, or without the scaling, this model finds other copiers first: see
       ``benchmarks/RESULTS.md``, "Heads with jobs".)

    Returns ``(model, history)``, one dict per evaluation (step 0, then every ``eval_every`` steps,
    and the last step), all measured on 64 fixed rows of :func:`repeated_random_tokens`
    (``n_ctx // 2`` tokens, seed ``seed + 1``): ``step``; ``loss_first`` / ``loss_second``
    (:func:`copy_losses`); ``induction`` / ``induction_head`` and ``previous`` / ``previous_head``:
    the best head of :func:`induction_scores` / :func:`previous_token_scores` (``"L1H0"``) and its
    score.
    """
    cfg = {k: v for k, v in GROWN_RECIPE.items() if k not in ("steps", "seed")}
    unknown = set(options) - set(cfg)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}; allowed: {sorted(cfg)}")
    cfg.update(options)
    _check_count("steps", steps, 0)
    _check_count("seed", seed, 0)
    _check_count("eval_every", cfg["eval_every"], 1)
    _check_count("previous_steps", cfg["previous_steps"], 0)
    quiet = cfg["quiet"]
    if isinstance(quiet, bool) or not isinstance(quiet, (int, float)) or not 0 < quiet <= 1:
        raise ValueError(f"quiet must be a number in (0, 1], got {quiet!r}")
    if cfg["n_layer"] != 2:
        raise ValueError(f"n_layer must be 2 (layer 0 reads, layer 1 copies), got {cfg['n_layer']}")
    config = GPTConfig(
        vocab_size=cfg["vocab_size"],
        block_size=cfg["n_ctx"],
        n_layer=cfg["n_layer"],
        n_head=cfg["n_head"],
        n_embd=cfg["n_embd"],
        name="induction",
    )
    with torch.random.fork_rng(devices=[]):  # the init draws from a seeded global generator
        torch.manual_seed(seed)
        model = AttentionOnlyGPT(config).to(torch.float64)
    g = torch.Generator().manual_seed(seed)
    probe = dict(seq_len=cfg["n_ctx"] // 2, n_seqs=64, seed=seed + 1)
    first_copies = _repeated_for(model, **probe)[:, : probe["seq_len"]]
    shape = dict(batch_size=cfg["batch_size"], n_ctx=cfg["n_ctx"], vocab_size=cfg["vocab_size"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.0)
    history = [_measure(model, 0, first_copies, probe)]
    for step in range(1, steps + 1):
        if step == cfg["previous_steps"] + 1:  # stage 2: freeze layer 0, turn it down
            opt = _second_stage(model, quiet, cfg["lr"])
        if step <= cfg["previous_steps"]:
            x = echo_batch(g, echo=cfg["echo"], **shape)
        else:
            x = copy_batch(g, **shape)
        model.train()
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg["eval_every"] == 0 or step == steps:
            history.append(_measure(model, step, first_copies, probe))
    for p in model.parameters():
        p.requires_grad_(True)
    return model.eval(), history


def _second_stage(model: AttentionOnlyGPT, quiet: float, lr: float) -> torch.optim.Optimizer:
    """Freeze the embeddings and layer 0, scale layer 0's output projection by ``quiet``; a fresh
    AdamW over what is left (layer 1, the final LayerNorm)."""
    tr = model.transformer
    with torch.no_grad():
        tr.h[0].attn.c_proj.weight.mul_(quiet)
        tr.h[0].attn.c_proj.bias.mul_(quiet)
    for module in (tr.wte, tr.wpe, tr.h[0]):  # wte is also the (tied) unembedding
        for p in module.parameters():
            p.requires_grad_(False)
    return torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0
    )


def _measure(model: GPT, step: int, first_copies: torch.Tensor, probe: dict) -> dict:
    """One row of :func:`grow_induction_head`'s history."""
    model.eval()
    first, second = copy_losses(model, first_copies)
    ind_head, ind = best_head(induction_scores(model, **probe))
    prev_head, prev = best_head(previous_token_scores(model, **probe))
    return dict(
        step=step,
        loss_first=first,
        loss_second=second,
        induction=ind,
        induction_head=ind_head,
        previous=prev,
        previous_head=prev_head,
    )


def phase_change_step(history: list[dict], threshold: float = 0.5) -> int | None:
    """The first recorded step where the best induction score reaches ``threshold``, or None."""
    for row in history:
        if row["induction"] >= threshold:
            return row["step"]
    return None


GROWN_MODEL = "induction_model.safetensors"
GROWN_LOG = "induction_history.json"


def save_grown(
    model: AttentionOnlyGPT, history: list[dict], recipe: dict, directory: str | os.PathLike
) -> Path:
    """Write a grown model and its history: ``induction_model.safetensors`` (float64 weights,
    config in the metadata) and ``induction_history.json`` (the recipe, the command, the weights'
    sha256 and size, the history). Returns the JSON's path."""
    directory = Path(directory)
    weights = save_model(model, directory / GROWN_MODEL, {"architecture": "attention-only"})
    log = {
        "recipe": recipe,
        "command": "python -m nexttoken.heads --out src/nexttoken/assets",
        "file": GROWN_MODEL,
        "size_bytes": weights.stat().st_size,
        "sha256": sha256_file(weights),
        "history": history,
    }
    path = directory / GROWN_LOG
    path.write_text(json.dumps(log, indent=1) + "\n")
    return path


def load_grown(directory: str | os.PathLike | None = None, *, verify: bool = True):
    """The committed grown model (eval mode, float64) and its history, ``(model, history)``.

    ``history`` is the list :func:`grow_induction_head` returned when the asset was made (by
    ``python -m nexttoken.heads --out src/nexttoken/assets``). With ``verify`` the weights' sha256
    must equal the one in ``induction_history.json``.
    """
    from .book import assets_dir

    directory = assets_dir() if directory is None else Path(directory)
    if not (directory / GROWN_LOG).exists():
        raise FileNotFoundError(
            f"no grown model in {directory} (no {GROWN_LOG}): make one with "
            f"python -m nexttoken.heads --out {directory}"
        )
    log = json.loads((directory / GROWN_LOG).read_text())
    path = directory / log["file"]
    if verify and sha256_file(path) != log["sha256"]:
        raise ValueError(
            f"sha256 mismatch for {path.name}: got {sha256_file(path)}, expected {log['sha256']}"
        )
    with torch.device("meta"):  # no init: every weight comes from the file
        model = AttentionOnlyGPT(read_config(path))
    tensors = load_file(path)
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"]
    model.load_state_dict(tensors, assign=True)
    model.lm_head.weight = model.transformer.wte.weight  # re-tie after assign
    return model.eval(), log["history"]


def main(argv: list[str] | None = None) -> int:
    """``python -m nexttoken.heads --out DIR``: grow the induction head with :data:`GROWN_RECIPE`
    and write :func:`save_grown`'s two files to ``DIR``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m nexttoken.heads", description=main.__doc__)
    parser.add_argument("--out", required=True, help="folder for the two files")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, history = grow_induction_head(**GROWN_RECIPE)
    path = save_grown(model, history, GROWN_RECIPE, args.out)
    last = history[-1]
    print(
        f"wrote {path}: step {last['step']}, induction {last['induction']:.3f} "
        f"({last['induction_head']}), previous {last['previous']:.3f} ({last['previous_head']}), "
        f"phase change at step {phase_change_step(history)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
