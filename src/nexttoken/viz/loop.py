"""Figures for notebook 07: the autoregressive loop and its KV cache."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ..loop import MiB, StepRecord, kv_cache_bytes_per_token
from ..model import GPTConfig
from .logits import visible_token

__all__ = ["step_figure", "kv_memory_figure", "kv_timing_figure"]


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
