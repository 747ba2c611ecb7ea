"""Figures for notebook 06: choosing the next token.

Top-k and top-p masks over the candidates, empirical draws against the target distribution,
a filtered distribution with a sampled continuation, and repeated n-grams highlighted in a text.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from .logits import visible_token

__all__ = [
    "filter_figure",
    "draws_figure",
    "distribution_text_figure",
    "repeated_ngrams",
    "repetition_figure",
]


def _sorted_top(probs: torch.Tensor, n: int) -> tuple[list[int], list[float]]:
    if not isinstance(probs, torch.Tensor) or probs.dim() != 1:
        raise ValueError("probs must be a 1-D tensor (V,)")
    top = torch.topk(probs.detach().float(), min(n, probs.numel()))
    return [int(i) for i in top.indices], [float(p) for p in top.values]


def filter_figure(
    probs: torch.Tensor,
    labels: Sequence[str],
    *,
    top_k: int = 5,
    top_p: float = 0.9,
    n: int = 20,
) -> Figure:
    """Two panels over the ``n`` most likely tokens of ``probs`` ``(V,)``, sorted.

    Left, top-k: the first ``top_k`` bars kept (coloured), the rest masked (grey). Right, top-p:
    the cumulative probability drawn as a line, a dashed line at ``p``; a token is kept while the
    tokens ranked above it sum to less than ``p`` (so the token that crosses ``p`` is kept).
    """
    if len(labels) != probs.numel():
        raise ValueError(
            f"labels must have one entry per token ({probs.numel()}), got {len(labels)}"
        )
    ids, ps = _sorted_top(probs, n)
    names = [visible_token(labels[i]) for i in ids]
    total = float(probs.sum())
    cum, run = [], 0.0
    for p in ps:
        run += p
        cum.append(run / total)
    full = torch.sort(probs.detach().float().flatten(), descending=True).values / total
    n_keep = {"k": min(top_k, full.numel()), "p": int(((full.cumsum(0) - full) < top_p).sum())}
    keep_k = [i < top_k for i in range(len(ps))]
    keep_p = [(c - p / total) < top_p for c, p in zip(cum, ps, strict=True)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, keep, title, kept in (
        (axes[0], keep_k, f"top-k, k = {top_k}: keep the {top_k} most likely", n_keep["k"]),
        (axes[1], keep_p, f"top-p, p = {top_p}: smallest set with mass ≥ p", n_keep["p"]),
    ):
        colors = ["tab:blue" if kp else "lightgray" for kp in keep]
        ax.bar(
            range(len(ps)),
            ps,
            color=colors,
            edgecolor=["none" if kp else "gray" for kp in keep],
            hatch=None,
        )
        ax.set_xticks(range(len(ps)), names, rotation=60, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 1.05 if ax is axes[1] else min(1.05, 1.25 * max(ps)))
        ax.text(
            0.98,
            0.95,
            f"{kept:,} of {full.numel():,} kept",
            transform=ax.transAxes,
            ha="right",
            va="top",
        )
    axes[0].set_ylabel("probability")
    axes[1].set_ylabel("probability; cumulative")
    ax = axes[1]
    ax.plot(range(len(ps)), cum, "o-", color="tab:orange", markersize=3, label="cumulative")
    ax.axhline(top_p, ls="--", color="tab:red", label=f"p = {top_p}")
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def draws_figure(
    labels: Sequence[str],
    expected: Sequence[float],
    observed: Sequence[int],
    *,
    title: str = "",
) -> Figure:
    """Observed counts of each token next to the expected counts ``n * p`` (``n = sum(observed)``)."""
    if not len(labels) == len(expected) == len(observed):
        raise ValueError("labels, expected and observed must have the same length")
    n = sum(int(o) for o in observed)
    exp_counts = [n * float(p) for p in expected]
    x = list(range(len(labels)))
    fig, ax = plt.subplots(figsize=(9, 3.4))
    w = 0.4
    ax.bar([i - w / 2 for i in x], exp_counts, w, color="tab:gray", label="expected n·p")
    ax.bar(
        [i + w / 2 for i in x], [int(o) for o in observed], w, color="tab:green", label="observed"
    )
    ax.set_xticks(x, [visible_token(s) for s in labels], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(f"count out of {n:,} draws")
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    plt.close(fig)
    return fig


def distribution_text_figure(
    probs: torch.Tensor,
    labels: Sequence[str],
    text: str,
    *,
    title: str = "",
    n: int = 15,
) -> Figure:
    """The ``n`` most likely tokens of ``probs`` ``(V,)`` as bars, and ``text`` printed below them.

    The text is part of the figure, so it travels with it as one image (the widget of notebook 06
    shows the filtered distribution and a continuation sampled from it).
    """
    ids, ps = _sorted_top(probs, n)
    kept = sum(1 for p in probs.tolist() if p > 0)
    fig = plt.figure(figsize=(10, 5))
    ax = fig.add_axes((0.08, 0.45, 0.9, 0.45))
    ax.bar(range(len(ps)), ps, color=["tab:blue" if p > 0 else "lightgray" for p in ps])
    ax.set_xticks(
        range(len(ps)), [visible_token(labels[i]) for i in ids], rotation=45, ha="right", fontsize=8
    )
    ax.set_ylim(0, min(1.05, 1.25 * max(ps)))
    ax.set_ylabel("probability")
    ax.set_title(title or f"distribution sampled from ({kept:,} tokens possible)", fontsize=10)
    wrapped = "\n".join(textwrap.fill(line, 110) if line else "" for line in text.splitlines()[:12])
    fig.text(0.02, 0.28, wrapped, family="monospace", fontsize=8, va="top")
    plt.close(fig)
    return fig


def repeated_ngrams(ids: Sequence[int], n: int = 4) -> list[bool]:
    """For each position, True if it is part of an ``n``-gram that occurs earlier in ``ids`` too.

    A repetition loop (greedy decoding's failure) shows up as long runs of True.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    ids = list(ids)
    mark = [False] * len(ids)
    seen: set[tuple[int, ...]] = set()
    for i in range(len(ids) - n + 1):
        gram = tuple(ids[i : i + n])
        if gram in seen:
            for j in range(i, i + n):
                mark[j] = True
        seen.add(gram)
    return mark


def _mono_char_width(fontsize: float) -> float:
    """Width in inches of one monospace character as the Agg renderer draws it (hinting included)."""
    fig = plt.figure()
    probe = fig.text(0, 0, "x" * 50, family="monospace", fontsize=fontsize)
    width = probe.get_window_extent(fig.canvas.get_renderer()).width / 50 / fig.dpi
    plt.close(fig)
    return width


def repetition_figure(
    rows: Sequence[tuple[str, Sequence[str], Sequence[bool]]],
    *,
    width: int = 90,
) -> Figure:
    """Texts as token chips, repeated tokens highlighted in red.

    ``rows``: ``(name, token_texts, repeated)`` per text (``repeated`` from :func:`repeated_ngrams`).
    Tokens flow left to right and wrap after ``width`` characters.
    """
    layout = []  # (row_name, [(line, col, text, repeated)])
    total_lines = 0
    for name, toks, rep in rows:
        if len(toks) != len(rep):
            raise ValueError("each row needs one repeated flag per token")
        cells, line, col = [], 0, 0
        for t, r in zip(toks, rep, strict=True):
            s = t.replace("\n", "↵")
            if col + len(s) > width and col > 0:
                line, col = line + 1, 0
            cells.append((line, col, s, r))
            col += len(s)
        layout.append((name, cells, line + 1))
        total_lines += line + 2
    char_w, line_h = _mono_char_width(9), 0.26
    fig = plt.figure(figsize=(width * char_w + 0.4, total_lines * line_h + 0.4))
    fig.add_axes((0, 0, 1, 1)).set_axis_off()  # inline backends skip figures without axes
    H = total_lines * line_h + 0.4
    W = width * char_w + 0.4
    y = H - 0.3
    for name, cells, n_lines in layout:
        fig.text(0.2 / W, y / H, name, fontsize=9, weight="bold", va="center")
        y -= line_h
        for line, col, s, r in cells:
            fig.text(
                (0.2 + col * char_w) / W,
                (y - line * line_h) / H,
                s,
                family="monospace",
                fontsize=9,
                va="center",
                color="darkred" if r else "black",
                bbox=dict(
                    boxstyle="square,pad=0.05", fc="#ffd0d0" if r else "#eef2ff", ec="white", lw=1.0
                ),
            )
        y -= n_lines * line_h
    plt.close(fig)
    return fig
