"""Figures for notebook 01 (text to tokens): coloured token chips, vocabulary sizes, token counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from ..tokenizer import visible_token

__all__ = [
    "CHIP_COLORS",
    "token_label",
    "token_pieces",
    "token_chips",
    "vocab_sizes_figure",
    "token_counts_figure",
]

#: Pastel colours cycled over consecutive tokens (neighbours always differ).
CHIP_COLORS = ("#ffd6a5", "#caffbf", "#9bf6ff", "#bdb2ff", "#ffc6ff", "#fdffb6", "#ffadad")


def token_label(piece: bytes | str) -> str:
    """A printable label for one token's bytes: a space shows as ``␣``, a newline as ``↵``,
    a tab as ``⇥``; bytes that are not whole UTF-8 characters show as ``\\xc3``."""
    if isinstance(piece, str):
        text = piece
    elif isinstance(piece, (bytes, bytearray)):
        text = bytes(piece).decode("utf-8", errors="backslashreplace")
    else:
        raise TypeError(f"piece must be bytes or str, got {type(piece).__name__}")
    text = visible_token(text)
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def token_pieces(enc, ids: Sequence[int]) -> list[str]:
    """Labels (see :func:`token_label`) of each token id under the tiktoken encoding ``enc``."""
    return [token_label(enc.decode_single_token_bytes(int(i))) for i in ids]


def token_chips(
    labels: Sequence[str],
    ids: Sequence[int],
    *,
    title: str = "",
    max_chars: int = 60,
) -> Figure:
    """Tokens as coloured chips, each with its label above and its id below, wrapped into lines.

    ``labels`` and ``ids`` have one entry per token (``len(labels) == len(ids)``). Lines wrap after
    about ``max_chars`` characters of labels.
    """
    if len(labels) != len(ids):
        raise ValueError(
            f"labels and ids must have the same length, got {len(labels)} and {len(ids)}"
        )
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    # lay out chips: width in "character units", wrapping lines
    widths = [max(len(lab), len(str(i)), 1) + 1.2 for lab, i in zip(labels, ids, strict=True)]
    pos, x, line = [], 0.0, 0
    for w in widths:
        if x > 0 and x + w > max_chars:
            x, line = 0.0, line + 1
        pos.append((x, line))
        x += w + 0.4
    n_lines = line + 1
    width = max(max_chars, 10) * 0.13 + 0.4
    fig, ax = plt.subplots(figsize=(width, 0.75 * n_lines + (0.5 if title else 0.2)))
    ax.set_xlim(-0.2, max_chars + 0.2)
    ax.set_ylim(n_lines * 2.0 - 0.1, -0.1)
    ax.axis("off")
    for k, ((x, row), w, lab, tid) in enumerate(zip(pos, widths, labels, ids, strict=True)):
        y = row * 2.0
        ax.add_patch(
            FancyBboxPatch(
                (x, y + 0.1),
                w,
                1.7,
                boxstyle="round,pad=0,rounding_size=0.3",
                facecolor=CHIP_COLORS[k % len(CHIP_COLORS)],
                edgecolor="#555",
                linewidth=0.8,
            )
        )
        ax.text(
            x + w / 2, y + 0.65, lab, ha="center", va="center", family="DejaVu Sans Mono", size=10
        )
        ax.text(x + w / 2, y + 1.4, str(tid), ha="center", va="center", size=7, color="#333")
    if title:
        ax.set_title(title, size=10, loc="left")
    fig.tight_layout(pad=0.2)
    plt.close(fig)
    return fig


def vocab_sizes_figure(sizes: Mapping[str, int], *, title: str = "Vocabulary size") -> Figure:
    """Horizontal bars of vocabulary sizes, e.g. ``{"gpt2 (GPT-2, GPT-3)": 50257, ...}``."""
    if not sizes:
        raise ValueError("sizes must not be empty")
    names = list(sizes)
    values = [sizes[n] for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1))
    bars = ax.barh(names[::-1], values[::-1], color="#4c78a8")
    for bar, v in zip(bars, values[::-1], strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:,}", va="center", size=9)
    ax.set_xlim(0, max(values) * 1.25)
    ax.set_xlabel("tokens in the vocabulary (n_vocab)")
    ax.set_title(title)
    fig.tight_layout()
    plt.close(fig)
    return fig


def token_counts_figure(
    counts: Mapping[str, Mapping[str, int]], *, title: str = "Tokens per sentence"
) -> Figure:
    """Grouped bars: ``counts[encoding][sentence] -> number of tokens``."""
    if not counts:
        raise ValueError("counts must not be empty")
    encs = list(counts)
    sentences = list(next(iter(counts.values())))
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    width = 0.8 / len(sentences)
    colors = ("#e45756", "#4c78a8", "#72b7b2", "#f58518")
    for j, s in enumerate(sentences):
        xs = [i + (j - (len(sentences) - 1) / 2) * width for i in range(len(encs))]
        vals = [counts[e][s] for e in encs]
        bars = ax.bar(xs, vals, width, label=s, color=colors[j % len(colors)])
        for bar, v in zip(bars, vals, strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, v, str(v), ha="center", va="bottom", size=8)
    ax.set_xticks(range(len(encs)), encs)
    ax.set_ylabel("tokens")
    ax.set_ylim(0, max(max(c.values()) for c in counts.values()) * 1.25)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title)
    fig.tight_layout()
    plt.close(fig)
    return fig
