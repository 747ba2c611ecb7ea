"""Figures for notebook 07: the autoregressive loop and its KV cache."""

from __future__ import annotations

import statistics
import textwrap
import time
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from ..loop import MiB, StepRecord, kv_cache_bytes_per_token
from ..model import GPT, GPTConfig
from .logits import visible_token

__all__ = [
    "step_figure",
    "kv_memory_figure",
    "kv_timing_figure",
    "context_times",
    "part_times",
    "context_timing_figure",
]


def step_figure(
    prompt: str,
    records: Sequence[StepRecord],
    decode: Callable[[list[int]], str],
) -> Figure:
    """One step of the loop: the text so far (generated part after ``|``), and the step's candidates.

    ``records``: the steps done so far (from :func:`nexttoken.loop.next_step`); the last one's top
    candidates are drawn as bars, the chosen token in red. With no records, only the prompt shows.
    """
    fig = plt.figure(figsize=(10, 4.2))
    generated = decode([r.token for r in records]) if records else ""
    text = prompt + "|" + generated
    wrapped = "\n".join(textwrap.fill(line, 100) for line in text.splitlines()[-6:])
    fig.text(0.02, 0.97, f"after {len(records)} step(s):", fontsize=9, weight="bold", va="top")
    fig.text(0.02, 0.9, wrapped, family="monospace", fontsize=9, va="top")
    ax = fig.add_axes((0.08, 0.12, 0.88, 0.48))
    if records:
        r = records[-1]
        names = [visible_token(decode([i])) for i in r.top_ids]
        colors = ["tab:red" if i == r.token else "tab:blue" for i in r.top_ids]
        ax.bar(range(len(names)), r.top_probs, color=colors)
        ax.set_xticks(range(len(names)), names)
        ax.set_ylim(0, min(1.05, 1.25 * max(r.top_probs)))
        ax.set_ylabel("probability")
        ax.set_title(
            f"step {r.step}: chose {visible_token(decode([r.token]))!r} "
            f"(p = {r.prob:.3f}, rank {r.rank}) among the candidates",
            fontsize=10,
        )
    else:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "press 'next token'", ha="center", va="center", transform=ax.transAxes)
    plt.close(fig)
    return fig


def kv_memory_figure(configs: Sequence[GPTConfig], dtype: str = "fp16") -> Figure:
    """KV cache memory per token (MiB, log scale) for each config: ``2 x n_layer x n_embd x bytes``."""
    names = [c.name or f"{c.n_layer}x{c.n_embd}" for c in configs]
    mib = [kv_cache_bytes_per_token(c, dtype) / MiB for c in configs]
    fig, ax = plt.subplots(figsize=(8, 3.4))
    bars = ax.barh(range(len(names)), mib, color="tab:purple")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(f"KV cache per token, MiB ({dtype})")
    ax.set_title("memory the cache needs for each token of context: 2 × n_layer × n_embd × bytes")
    for b, v in zip(bars, mib, strict=True):
        label = f"{v:.3g} MiB" if v >= 0.01 else f"{v * 1024:.3g} KiB"
        ax.text(v * 1.1, b.get_y() + b.get_height() / 2, label, va="center", fontsize=8)
    ax.set_xlim(min(mib) / 2, max(mib) * 6)
    fig.tight_layout()
    plt.close(fig)
    return fig


def kv_timing_figure(
    positions: Sequence[int],
    without_cache: Sequence[float],
    with_cache: Sequence[float],
    *,
    title: str = "",
) -> Figure:
    """Milliseconds per generated token against the context length, without and with the cache."""
    if not len(positions) == len(without_cache) == len(with_cache):
        raise ValueError("positions and both timing lists must have the same length")
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.plot(
        positions,
        [1e3 * t for t in without_cache],
        label="recompute the whole context",
        color="tab:orange",
    )
    ax.plot(
        positions,
        [1e3 * t for t in with_cache],
        label="KV cache (one new token per step)",
        color="tab:green",
    )
    ax.set_xlabel("context length when the token is generated")
    ax.set_ylabel("ms per token")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title(title or "time per generated token")
    fig.tight_layout()
    plt.close(fig)
    return fig


def _lengths(model: GPT, ids: torch.Tensor, lengths: Sequence[int]) -> list[int]:
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a nexttoken GPT, got {type(model).__name__}")
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.size(0) != 1:
        raise ValueError("ids must be a tensor of shape (1, N)")
    top = min(ids.size(1), model.config.block_size)
    out = [int(n) for n in lengths]
    if not out or min(out) < 1 or max(out) > top:
        raise ValueError(f"lengths must be in [1, {top}], got {list(lengths)!r}")
    return out


def _rounds(rounds: int) -> int:
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    return rounds


def _timed(fn: Callable[..., object], *args: object, **kwargs: object) -> tuple[float, float]:
    """Seconds one call ``fn(*args, **kwargs)`` takes: ``(wall clock, this thread's CPU time)``.

    The wall clock also counts the time the process waited for a CPU while other programs ran;
    the thread's CPU time counts only the time it computed (with one torch thread, all of it).
    """
    w0, c0 = time.perf_counter(), time.thread_time()
    fn(*args, **kwargs)
    return time.perf_counter() - w0, time.thread_time() - c0


def _interleaved(n: int, rounds: int) -> list[int]:
    """Every index once per round, up then down: load on the machine spreads over all lengths."""
    order: list[int] = []
    for r in range(rounds):
        order += list(range(n)) if r % 2 == 0 else list(range(n - 1, -1, -1))
    return order


@torch.inference_mode()
def context_times(
    model: GPT, ids: torch.Tensor, lengths: Sequence[int], *, rounds: int = 5
) -> dict[str, dict[str, list[list[float]]]]:
    """Seconds for ONE generation step at each context length, without and with the KV cache.

    ``ids`` ``(1, N)``; for each ``L`` in ``lengths`` (``1 <= L <= min(N, block_size)``):

    - ``"recompute"``: the step without a cache, ``model.run(ids[:, :L], last_only=True)``;
    - ``"cache"``: the step with a cache that already holds the first ``L - 1`` tokens: only token
      ``L`` goes through the model.

    The measurement is *interleaved*: each of the ``rounds`` rounds visits every length once
    (alternately up and down), so a burst of other work on the machine disturbs one measurement
    at many lengths, instead of a stretch of neighbouring lengths as when the steps of one
    generation are timed in order. Each call is timed with two clocks.

    Returns ``times[clock][kind][i]``: the ``rounds`` measurements at ``lengths[i]``, for ``clock``
    ``"wall"`` (elapsed time) or ``"cpu"`` (this thread's CPU time) and ``kind`` ``"recompute"`` or
    ``"cache"``.
    """
    lengths = _lengths(model, ids, lengths)
    rounds = _rounds(rounds)
    model.eval()
    cache = model.new_cache(1, max(lengths))
    if max(lengths) > 1:
        model.run(ids[:, : max(lengths) - 1], cache=cache)  # keys and values of all but the last
    times = {c: {k: [[] for _ in lengths] for k in ("recompute", "cache")} for c in ("wall", "cpu")}
    model.run(ids[:, :1], last_only=True)  # warm-up
    for i in _interleaved(len(lengths), rounds):
        n = lengths[i]
        measured = {"recompute": _timed(model.run, ids[:, :n], last_only=True)}
        cache.length = n - 1  # the cache holds tokens 0 .. n-2 (the same ids: the same keys)
        measured["cache"] = _timed(model.run, ids[:, n - 1 : n], cache=cache, last_only=True)
        for kind, (wall, cpu) in measured.items():
            times["wall"][kind][i].append(wall)
            times["cpu"][kind][i].append(cpu)
    return times


@torch.inference_mode()
def part_times(
    model: GPT, ids: torch.Tensor, lengths: Sequence[int], *, rounds: int = 5
) -> dict[str, list[float]]:
    """The no-cache step at each context length, split into its parts (CPU time, fastest round).

    Times, on the model's first block and its real input of length ``L``, each kind of work of one
    block and multiplies it by ``n_layer``: ``"linear layers"`` (the four matrix products W_QKV,
    W_O, W_fc, W_proj), ``"attention"`` (``softmax(QK^T / sqrt(d_head)) V`` with the causal mask)
    and ``"GELU + LayerNorm"``; plus ``"logits"``, the final LayerNorm and projection of the last
    position. Returns ``{part: [seconds at each length]}``: the least CPU time over the interleaved
    rounds. A switch of kernel at some length would show as a jump in one part.
    """
    lengths = _lengths(model, ids, lengths)
    rounds = _rounds(rounds)
    model.eval()
    block, n_layer = model.transformer.h[0], model.config.n_layer
    attn, mlp = block.attn, block.mlp
    x_all = model.run(ids[:, : max(lengths)], output_hidden_states=True).hidden_states[0]
    best = {
        p: [float("inf")] * len(lengths)
        for p in ("linear layers", "attention", "GELU + LayerNorm", "logits")
    }
    sdpa = F.scaled_dot_product_attention
    for i in _interleaved(len(lengths), rounds):
        x = x_all[:, : lengths[i]].contiguous()  # (1, L, d)
        h = block.ln_1(x)
        q, k, v = (attn.split_heads(t) for t in attn.c_attn(h).split(x.size(-1), dim=2))
        y = attn.merge_heads(sdpa(q, k, v, is_causal=True))
        hidden = mlp.c_fc(h)  # (1, L, d_ff)
        linear = (
            _timed(attn.c_attn, h)[1]
            + _timed(attn.c_proj, y)[1]
            + _timed(mlp.c_fc, h)[1]
            + _timed(mlp.c_proj, hidden)[1]
        )
        secs = {
            "linear layers": n_layer * linear,
            "attention": n_layer * _timed(sdpa, q, k, v, is_causal=True)[1],
            "GELU + LayerNorm": n_layer
            * (_timed(F.gelu, hidden, approximate="tanh")[1] + 2 * _timed(block.ln_1, x)[1]),
            "logits": _timed(lambda t: model.lm_head(model.transformer.ln_f(t)), x[:, -1:])[1],
        }
        for part, t in secs.items():
            best[part][i] = min(best[part][i], t)
    return best


def context_timing_figure(
    lengths: Sequence[int],
    times: dict[str, dict[str, list[list[float]]]],
    parts: dict[str, list[float]] | None = None,
    *,
    title: str = "",
) -> Figure:
    """Milliseconds per step against the context length, from :func:`context_times`.

    Left: CPU time (median over the rounds, solid) and wall-clock time (median dashed, min-max
    band), without and with the cache. Right, with ``parts`` (:func:`part_times`): the no-cache step
    split into its parts.
    """
    n = len(lengths)
    for clock in ("wall", "cpu"):
        if any(len(times[clock][k]) != n for k in ("recompute", "cache")):
            raise ValueError("lengths and the timing lists must have the same length")
    fig, axes = plt.subplots(1, 2 if parts else 1, figsize=(12 if parts else 8, 3.8), squeeze=False)
    ax = axes[0][0]
    styles = {
        "recompute": ("recompute the context", "tab:orange"),
        "cache": ("KV cache", "tab:green"),
    }
    for kind, (label, color) in styles.items():
        wall = [[1e3 * t for t in ts] for ts in times["wall"][kind]]
        cpu = [statistics.median(1e3 * t for t in ts) for ts in times["cpu"][kind]]
        ax.fill_between(
            lengths, [min(m) for m in wall], [max(m) for m in wall], color=color, alpha=0.15
        )
        ax.plot(lengths, [statistics.median(m) for m in wall], "--", color=color, lw=1,
                label=f"{label}: wall clock (median, band min-max)")  # fmt: skip
        ax.plot(lengths, cpu, "o-", ms=3, color=color, label=f"{label}: CPU time (median)")
    ax.set_xlabel("context length when the token is generated")
    ax.set_ylabel("ms per token")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or "time per generated token")
    if parts:
        ax2 = axes[0][1]
        for name, secs in parts.items():
            ax2.plot(lengths, [1e3 * t for t in secs], "o-", ms=3, label=name)
        ax2.set_xlabel("context length")
        ax2.set_ylabel("ms of CPU time per step (fastest round)")
        ax2.set_ylim(bottom=0)
        ax2.legend(loc="upper left", fontsize=8)
        ax2.set_title("the no-cache step, part by part (all layers)")
    fig.tight_layout()
    plt.close(fig)
    return fig
