"""Training a GPT on token ids: the loss, the batches, the schedule and the loop.

The loss is the cross-entropy of the next token: at every position the model's logits ``(B, N, V)``
become a softmax, and the loss is ``-log p(true next token)``, averaged (in nats per token). Over a
text, ``exp(loss)`` is the *perplexity*, and ``loss x tokens / characters`` is the loss in nats per
character, which compares across encodings.

The loop (:func:`train_model`) is the standard one: AdamW, a linear warm-up then a cosine decay of
the learning rate, gradient clipping, and a held-out evaluation every ``eval_every`` steps. Batches
are drawn from a generator seeded by ``(seed, step)``, so a run is reproducible and a resumed run
sees exactly the batches the uninterrupted one would have.

A run never writes garbage: a loss or a gradient norm that is not finite (a learning rate far too
high, say) stops it with a ``FloatingPointError`` *before* the optimizer step, and nothing is
saved after it, so ``out_dir`` keeps the last good checkpoint. Hyper-parameters are checked when a
:class:`TrainConfig` is built, and :func:`estimate_train_memory` says how much memory a run needs.

The same loop trains the book's :class:`~nexttoken.model.GPT` and its Llama-family twin
(:class:`nexttoken.llama.Llama`, notebook 14): both map ids ``(B, N)`` to logits ``(B, N, V)``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .checkpoint import load_model, save_model
from .model import GPT, GPTConfig

__all__ = [
    "TrainConfig",
    "cross_entropy",
    "get_batch",
    "lr_at",
    "evaluate",
    "encode_documents",
    "train_model",
    "token_losses",
    "estimate_train_memory",
    "available_memory",
    "read_log",
    "LOG_JSON",
    "LOG_CSV",
]

#: The largest seed: batches use the seed ``seed * 1_000_003 + step``, which must fit torch's 64 bits.
MAX_SEED = 2**40

LOG_JSON = "training_log.json"
LOG_CSV = "training_log.csv"
OPTIMIZER_FILE = "optimizer.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a training run (the model's own are in its ``GPTConfig``)."""

    steps: int = 2000
    batch_size: int = 16
    lr: float = 2e-3
    min_lr: float = 2e-4
    warmup: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TrainConfig.{name} must be an int >= 1, got {v!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"TrainConfig.warmup must be an int >= 0, got {self.warmup!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"TrainConfig.seed must be an int, got {self.seed!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(
                f"TrainConfig.seed must be in [0, {MAX_SEED}] (2**40), got {self.seed}"
            )
        for name in ("lr", "min_lr", "weight_decay", "beta1", "beta2", "grad_clip"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"TrainConfig.{name} must be a number, got {v!r}")
            if not math.isfinite(v):
                raise ValueError(f"TrainConfig.{name} must be finite, got {v}")
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise ValueError(f"need lr > 0 and 0 <= min_lr <= lr, got {self.lr}, {self.min_lr}")
        if self.grad_clip <= 0:
            raise ValueError(f"TrainConfig.grad_clip must be > 0, got {self.grad_clip}")
        if self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be in [0, 1), got {getattr(self, name)}")


def estimate_train_memory(config: GPTConfig, batch_size: int) -> int:
    """About how many bytes one training step of ``config`` at ``batch_size`` needs (an upper
    estimate, measured within 30% on the book model).

    Weights, gradients and AdamW's two moments: 16 bytes per parameter (fp32). Activations kept for
    the backward pass, per token: about ``16 d`` numbers in each block (LayerNorms, q/k/v, the
    MLP's ``4d`` before and after GELU...), ``2 H N`` for the attention scores and weights, and
    ``3 V`` for the logits and their softmax: ``4 B N (L (16 d + 2 H N) + 3 V)`` bytes.

    A Llama's config (:class:`nexttoken.llama.LlamaConfig`) is estimated the same way, with its
    own parameter count and about ``8 d + 4 d_ff`` numbers per token and block (the gated MLP keeps
    its gate, its up projection, the SiLU and their product).
    """
    if not (isinstance(config, GPTConfig) or _is_llama_config(config)):
        raise TypeError(f"config must be a GPTConfig or LlamaConfig, got {type(config).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if _is_llama_config(config):
        return _estimate_llama_memory(config, batch_size)
    c = config
    params = c.vocab_size * c.n_embd + c.block_size * c.n_embd + c.n_embd * 2
    params += c.n_layer * (12 * c.n_embd * c.n_embd + 13 * c.n_embd)
    per_token = c.n_layer * (16 * c.n_embd + 2 * c.n_head * c.block_size) + 3 * c.vocab_size
    return 16 * params + 4 * batch_size * c.block_size * per_token


def _llama_module():
    """``nexttoken.llama``, or None while the package has no Llama."""
    try:
        from . import llama
    except ImportError:
        return None
    return llama


def _is_llama_config(config: object) -> bool:
    llama = _llama_module()
    return llama is not None and isinstance(config, llama.LlamaConfig)


def _is_trainable(model: object) -> bool:
    """True for a book GPT or a :class:`nexttoken.llama.Llama`."""
    if isinstance(model, GPT):
        return True
    llama = _llama_module()
    return llama is not None and isinstance(model, llama.Llama)


def _estimate_llama_memory(c, batch_size: int) -> int:
    d, d_kv, d_ff = c.n_embd, c.n_kv_head * (c.n_embd // c.n_head), c.intermediate_size
    params = c.vocab_size * d * (1 if c.tie_embeddings else 2) + d
    params += c.n_layer * (2 * d * d + 2 * d * d_kv + 3 * d * d_ff + 2 * d)
    per_token = c.n_layer * (8 * d + 4 * d_ff + 2 * c.n_head * c.block_size) + 3 * c.vocab_size
    return 16 * params + 4 * batch_size * c.block_size * per_token


def available_memory() -> int | None:
    """Bytes of memory this process can still use (Linux ``MemAvailable``, bounded by a cgroup
    limit if one is set), the machine's physical memory elsewhere, or None if unknown."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit.isdigit() and used.isdigit():
            found.append(int(limit) - int(used))
    except OSError:
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            return None
    return max(0, min(found))


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean ``-log softmax(logits)[target]`` in nats: logits ``(B, N, V)``, targets ``(B, N)``."""
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(
            f"logits must be (B, N, V) and targets (B, N); got {tuple(logits.shape)} "
            f"and {tuple(targets.shape)}"
        )
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def encode_documents(texts, encoding) -> torch.Tensor:
    """One long ``(T,)`` id tensor: each text preceded by ``<|endoftext|>`` (a document boundary).

    ``encoding`` is a ``tiktoken.Encoding`` with an ``eot_token``.
    """
    ids: list[int] = []
    for text in texts:
        ids.append(encoding.eot_token)
        ids.extend(encoding.encode_ordinary(text))
    return torch.tensor(ids, dtype=torch.long)


def get_batch(
    data: torch.Tensor, batch_size: int, block_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of ``data`` ``(T,)``: inputs ``x`` and next-token targets ``y``, both ``(B, N)``."""
    if data.dim() != 1 or data.numel() < block_size + 1:
        raise ValueError(f"data must be 1-D with more than block_size={block_size} tokens")
    starts = torch.randint(0, data.numel() - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size)
    x = data[starts[:, None] + offsets]
    y = data[starts[:, None] + offsets + 1]
    return x, y


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate at ``step``: linear warm-up over ``cfg.warmup`` steps, then a cosine decay from
    ``cfg.lr`` down to ``cfg.min_lr`` at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    span = max(1, cfg.steps - 1 - cfg.warmup)
    t = min(1.0, (step - cfg.warmup) / span)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * t))


@torch.inference_mode()
def evaluate(
    model: GPT,
    ids: torch.Tensor,
    block_size: int | None = None,
    batch_size: int = 16,
    stride: int | None = None,
):
    """Mean loss (nats per token) of predicting ``ids[1:]`` from what precedes, in windows.

    ``ids`` ``(T,)`` is read in windows of ``block_size`` inputs that advance by ``stride``
    (default: ``block_size``, non-overlapping windows). Each window scores only the targets that no
    earlier window scored, so every id after the first is a target exactly once; with a smaller
    stride, every target past the first window sees at least ``block_size - stride`` tokens of
    context. Returns ``(mean_nats_per_token, n_targets)``.
    """
    block_size = block_size or model.config.block_size
    stride = stride or block_size
    if not 1 <= stride <= block_size:
        raise ValueError(f"stride must be in [1, block_size={block_size}], got {stride}")
    last = ids.numel() - 1  # number of targets
    windows = []  # (begin, end, number of targets scored at the window's end)
    prev_end = 0
    for begin in range(0, last, stride):
        end = min(begin + block_size, last)
        windows.append((begin, end, end - prev_end))
        prev_end = end
        if end == last:
            break
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        full = [w for w in windows if w[1] - w[0] == block_size]
        rest = [w for w in windows if w[1] - w[0] != block_size]
        for i in range(0, len(full), batch_size):
            chunk = full[i : i + batch_size]
            idx = torch.tensor([w[0] for w in chunk])[:, None] + torch.arange(block_size)
            losses = F.cross_entropy(
                model(ids[idx]).transpose(1, 2), ids[idx + 1], reduction="none"
            )  # (B, N)
            for row, (_, _, n) in zip(losses, chunk, strict=True):
                total += float(row[-n:].sum())
                count += n
        for begin, end, n in rest:
            logits = model(ids[begin:end][None])[0]
            losses = F.cross_entropy(logits, ids[begin + 1 : end + 1], reduction="none")
            total += float(losses[-n:].sum())
            count += n
    finally:
        model.train(was_training)
    return total / count, count


def _optimizer(model: GPT, cfg: TrainConfig) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def _load_state(model, path: Path) -> None:
    """Load the weights a run saved (:func:`~nexttoken.checkpoint.save_model`) into ``model``
    (resuming a run)."""
    model.load_state_dict(load_model(path).state_dict())


def _write_log(out_dir: Path, log: dict) -> None:
    tmp = out_dir / (LOG_JSON + ".tmp")
    tmp.write_text(json.dumps(log, indent=1) + "\n")
    os.replace(tmp, out_dir / LOG_JSON)
    rows = log["evals"]
    tmp = out_dir / (LOG_CSV + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["step", "train_loss", "held_loss", "lr", "elapsed_s"])
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out_dir / LOG_CSV)


def train_model(
    model: GPT,  # or a nexttoken.llama.Llama
    train_ids: torch.Tensor,
    held_ids: torch.Tensor,
    cfg: TrainConfig,
    *,
    out_dir: str | os.PathLike | None = None,
    checkpoint_name: str = "model.safetensors",
    resume: bool = False,
    progress: bool = True,
    on_eval: Callable[[dict, GPT], None] | None = None,
    extra_log: dict | None = None,
) -> dict:
    """Train ``model`` in place on ``train_ids`` ``(T,)``; evaluate on ``held_ids`` ``(T_held,)``.

    Every ``cfg.eval_every`` steps (and at the last step) the held-out loss is measured, recorded
    and passed to ``on_eval(row, model)``; with ``out_dir``, the model (safetensors), the optimizer
    state (``optimizer.pt``, for resuming) and the log (``training_log.json`` / ``.csv``) are
    written there. ``resume=True`` continues from what ``out_dir`` holds; resuming a run that has
    already done more than ``cfg.steps`` steps is a ``ValueError``, and one that has done exactly
    ``cfg.steps`` returns its log unchanged. Returns the log:
    ``{"config", "train_config", "losses" (one per step), "evals" (rows), ...}``.

    Everything is checked before the first step (``TypeError`` / ``ValueError``; an ``out_dir``
    that is a file or cannot be created is an ``OSError`` naming it). A loss or gradient norm that
    is not finite raises ``FloatingPointError`` before the weights change; nothing is written
    after it, so ``out_dir`` keeps the last good checkpoint.
    """
    if not _is_trainable(model):
        raise TypeError(f"model must be a nexttoken GPT or Llama, got {type(model).__name__}")
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    block = model.config.block_size
    for name, ids, least in (("train_ids", train_ids, block + 1), ("held_ids", held_ids, 2)):
        _check_ids(name, ids, least, model.config.vocab_size)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        if out.exists() and not out.is_dir():
            raise FileExistsError(f"out_dir {out} exists and is not a folder")
        if not resume:
            out.mkdir(parents=True, exist_ok=True)  # fails now, not after the first step
    log = {
        "config": dataclasses.asdict(model.config),
        "train_config": dataclasses.asdict(cfg),
        "train_tokens": int(train_ids.numel()),
        "held_tokens": int(held_ids.numel()),
        "losses": [],
        "evals": [],
        "elapsed_s": 0.0,
        **(extra_log or {}),
    }
    start = 0
    if resume:
        if out is None or not (out / LOG_JSON).exists():
            raise FileNotFoundError("resume=True needs an out_dir holding a previous run")
        log = read_log(out)
        start = len(log["losses"])
        if start > cfg.steps:
            raise ValueError(
                f"the run in {out} has already done {start} steps, more than steps={cfg.steps}: "
                f"nothing to resume; ask for more steps than {start}"
            )
        if start == cfg.steps:
            return log
        for f in (checkpoint_name, OPTIMIZER_FILE):
            if not (out / f).is_file():
                raise FileNotFoundError(f"cannot resume: {out / f} is missing")
    opt = _optimizer(model, cfg)
    if resume:
        _load_state(model, out / checkpoint_name)
        opt.load_state_dict(torch.load(out / OPTIMIZER_FILE, weights_only=True))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc="training", unit="step")
    t0 = time.perf_counter() - log["elapsed_s"]
    model.train()
    for step in range(start, cfg.steps):
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        x, y = get_batch(train_ids, cfg.batch_size, block, g)
        lr = lr_at(step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = cross_entropy(model(x), y)
        if not math.isfinite(loss.item()):
            _diverged(f"the training loss is {loss.item()}", step, out, log)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if not math.isfinite(float(norm)):
            _diverged(f"the gradient norm is {float(norm)}", step, out, log)
        opt.step()
        log["losses"].append(round(loss.item(), 4))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss):.3f}")
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            held, _ = evaluate(model, held_ids, block)
            recent = log["losses"][-cfg.eval_every :]
            row = {
                "step": step + 1,
                "train_loss": round(sum(recent) / len(recent), 4),
                "held_loss": round(held, 4),
                "lr": lr,
                "elapsed_s": round(time.perf_counter() - t0, 1),
            }
            log["evals"].append(row)
            log["elapsed_s"] = row["elapsed_s"]
            if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
                _diverged("a weight is not finite", step, out, log)
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                save_model(model, out / checkpoint_name)  # GPT or Llama, atomically
                tmp = out / (OPTIMIZER_FILE + ".tmp")
                torch.save(opt.state_dict(), tmp)
                os.replace(tmp, out / OPTIMIZER_FILE)
                _write_log(out, log)
            if on_eval is not None:
                on_eval(row, model)
            model.train()
    if bar is not None:
        bar.close()
    model.eval()
    return log


def _check_ids(name: str, ids: object, least: int, vocab_size: int) -> None:
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.dtype != torch.long:
        raise TypeError(f"{name} must be a 1-D torch.long tensor of token ids")
    if ids.numel() < least:
        raise ValueError(f"{name} must hold at least {least} tokens, got {ids.numel()}")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(
            f"{name} holds token id {lo if lo < 0 else hi}, outside the model's vocabulary "
            f"[0, {vocab_size - 1}]"
        )


def read_log(out_dir: str | os.PathLike) -> dict:
    """The training log a run saved in ``out_dir`` (``training_log.json``)."""
    path = Path(out_dir) / LOG_JSON
    try:
        log = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); cannot resume from it") from None
    if not isinstance(log, dict) or not isinstance(log.get("losses"), list):
        raise ValueError(f"{path} is not a training log (no 'losses' list); cannot resume")
    return log


def _diverged(what: str, step: int, out: Path | None, log: dict) -> None:
    if out is not None and log["evals"]:
        kept = f"the last good checkpoint (step {log['evals'][-1]['step']}) is kept in {out}"
    elif out is not None:
        kept = f"no checkpoint was written yet in {out}"
    else:
        kept = "nothing was saved"
    raise FloatingPointError(
        f"step {step + 1}: {what}: training diverged (try a lower learning rate); "
        f"stopped without saving anything more; {kept}"
    )


@torch.inference_mode()
def token_losses(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    """The loss of each prediction in one window: ids ``(N,)`` -> ``(N - 1,)`` nats, where entry
    ``i`` is ``-log p(ids[i + 1] | ids[: i + 1])``. ``N`` must not exceed the context length."""
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.numel() < 2:
        raise ValueError("ids must be a 1-D tensor of at least 2 token ids")
    logits = model(ids[:-1][None])[0]
    return F.cross_entropy(logits, ids[1:], reduction="none")
