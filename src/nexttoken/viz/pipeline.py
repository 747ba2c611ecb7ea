"""The book's map: the source notes' flowchart, redrawn correctly.

The notes' own flowchart stops at "probabilities (via softmax)" and says the loop "recomputes the
contextual representations". This one separates logits (scores) from softmax (probabilities), draws
the loop back to the token list (the new token is appended; earlier vectors stay as they are), and
reads the sizes from GPT-3 175B's configuration instead of typing them.
"""

from __future__ import annotations

from collections.abc import Iterable

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ..configs import get_config
from ..tokenizer import visible_token

__all__ = ["STAGES", "pipeline_figure", "NOTEBOOK_STAGES", "walkthrough_figure"]

#: Stage keys in pipeline order, with the notebook that teaches each.
STAGES: dict[str, str] = {
    "text": "00",
    "tokens": "01",
    "vectors": "02",
    "decoder": "03-04",
    "logits": "05",
    "softmax": "05",
    "choice": "06",
    "loop": "07",
}

#: Which stages each notebook highlights.
NOTEBOOK_STAGES: dict[str, tuple[str, ...]] = {
    "00": (),
    "01": ("text", "tokens"),
    "02": ("vectors",),
    "03": ("decoder",),
    "04": ("decoder",),
    "05": ("logits", "softmax"),
    "06": ("choice",),
    "07": ("loop",),
    "08": ("decoder", "logits", "softmax"),
    "09": ("tokens", "vectors", "decoder", "logits"),
}


def _labels(model: str) -> dict[str, tuple[str, str]]:
    cfg = get_config(model)
    d, V, L = cfg.n_embd, cfg.vocab_size, cfg.n_layer
    return {
        "text": ("Text", '"Le chat mange\nune souris"'),
        "tokens": ("Tokens", f"N integer ids\n(vocabulary {V:,})"),
        "vectors": ("Vectors", f"embedding + position\nN x {d:,}"),
        "decoder": (f"Decoder x {L}", f"attention, MLP (GELU),\nLayerNorm: N x {d:,}"),
        "logits": ("Logits", f"last vector x W_E^T\n{V:,} scores\n(not probabilities)"),
        "softmax": ("Softmax", f"{V:,} probabilities\nsumming to 1"),
        "choice": ("Choice", "greedy, sampling,\ntop-k, top-p"),
    }


def pipeline_figure(
    highlight: str | Iterable[str] | None = None, *, model: str = "gpt3-175b"
) -> Figure:
    """The generation pipeline as a flowchart, with ``highlight`` stage(s) coloured.

    ``highlight``: a stage key from :data:`STAGES`, a notebook number from
    :data:`NOTEBOOK_STAGES` (``"03"``), an iterable of stage keys, or None (nothing highlighted).
    Sizes come from the configuration called ``model`` (GPT-3 175B by default).
    """
    if highlight is None:
        marked: set[str] = set()
    elif isinstance(highlight, str):
        if highlight in NOTEBOOK_STAGES:
            marked = set(NOTEBOOK_STAGES[highlight])
        elif highlight in STAGES:
            marked = {highlight}
        else:
            raise ValueError(
                f"unknown stage {highlight!r}; use one of {', '.join(STAGES)} "
                f"or a notebook number {', '.join(NOTEBOOK_STAGES)}"
            )
    else:
        marked = set(highlight)
        unknown = marked - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}; use: {', '.join(STAGES)}")

    labels = _labels(model)
    keys = list(labels)
    fig, ax = plt.subplots(figsize=(14, 3.4))
    ax.set_xlim(0, len(keys))
    ax.set_ylim(-1.5, 1.15)
    ax.axis("off")
    w, h = 0.82, 1.45
    centres = {}
    for i, key in enumerate(keys):
        x0, y0 = i + (1 - w) / 2, -0.45
        on = key in marked
        face = "#ffd166" if on else ("#eef3f8" if marked else "#dbe9f6")
        edge = "#c1121f" if on else "#4a5a6a"
        ax.add_patch(
            FancyBboxPatch(
                (x0, y0),
                w,
                h,
                boxstyle="round,pad=0.02,rounding_size=0.08",
                facecolor=face,
                edgecolor=edge,
                linewidth=2.5 if on else 1.2,
            )
        )
        title, body = labels[key]
        ax.text(i + 0.5, y0 + h - 0.22, title, ha="center", va="center", weight="bold", size=11)
        ax.text(i + 0.5, y0 + h / 2 - 0.2, body, ha="center", va="center", size=8.5)
        ax.text(i + 0.5, y0 - 0.12, f"notebook {STAGES[key]}", ha="center", size=7.5, color="#555")
        centres[key] = i + 0.5
        if i:
            ax.add_patch(
                FancyArrowPatch(
                    (i - (1 - w) / 2 - 0.005, 0.28),
                    (i + (1 - w) / 2 + 0.005, 0.28),
                    arrowstyle="-|>",
                    mutation_scale=14,
                    color="#333",
                )
            )
    loop_on = "loop" in marked
    ax.add_patch(
        FancyArrowPatch(
            (centres["choice"], -0.7),
            (centres["tokens"], -0.7),
            connectionstyle="arc3,rad=-0.06",
            arrowstyle="-|>",
            mutation_scale=16,
            color="#c1121f" if loop_on else "#333",
            linewidth=2.5 if loop_on else 1.3,
        )
    )
    ax.text(
        (centres["choice"] + centres["tokens"]) / 2,
        -1.42,
        "append the chosen token and repeat (notebook 07): earlier tokens' vectors do not change",
        ha="center",
        size=9,
        weight="bold" if loop_on else "normal",
        color="#c1121f" if loop_on else "#333",
    )
    cfg = get_config(model)
    ax.set_title(
        f"How a GPT-style decoder produces the next token (sizes of {cfg.name}: "
        f"d_model = {cfg.n_embd:,}, vocabulary = {cfg.vocab_size:,})",
        size=11,
    )
    fig.tight_layout()
    plt.close(fig)
    return fig


def walkthrough_figure(
    pieces: list[str],
    top: list[tuple[str, float]],
    chosen: str,
    *,
    d_model: int,
    vocab_size: int,
    title: str = "",
) -> Figure:
    """One step of the pipeline on a concrete prompt.

    ``pieces``: the prompt's tokens as text; ``top``: the most likely next tokens with their
    probabilities (highest first); ``chosen``: the token picked. ``d_model`` and ``vocab_size``
    label the shapes. Returns a Figure: the token chips, the shapes they become, and the bars.
    """
    if not pieces:
        raise ValueError("pieces must hold at least one token")
    if not top:
        raise ValueError("top must hold at least one (token, probability) pair")
    n = len(pieces)
    fig, (ax_tok, ax_bar) = plt.subplots(
        1, 2, figsize=(12, 3.6), gridspec_kw={"width_ratios": [1.5, 1]}
    )
    ax_tok.axis("off")
    ax_tok.set_xlim(0, 1)
    ax_tok.set_ylim(0, 1)
    x = 0.01
    shown = pieces[-10:]
    if len(pieces) > 10:
        ax_tok.text(x, 0.83, "\u2026", size=11, va="center")
        x += 0.03
    for piece in shown:
        label = visible_token(piece)
        width = 0.0135 * max(len(label), 1) + 0.03
        ax_tok.text(
            x,
            0.83,
            label,
            size=10,
            va="center",
            family="monospace",
            bbox=dict(boxstyle="round,pad=0.3", facecolor="#dbe9f6", edgecolor="#4a5a6a"),
        )
        x += width + 0.012
    ax_tok.text(0.01, 0.62, f"{n} tokens", size=10, color="#333")
    ax_tok.text(0.01, 0.47, f"\u2192 vectors: {n} \u00d7 {d_model:,}", size=10)
    ax_tok.text(0.01, 0.34, f"\u2192 decoder: {n} \u00d7 {d_model:,} (contextual)", size=10)
    ax_tok.text(
        0.01, 0.21, f"\u2192 last vector \u2192 {vocab_size:,} logits \u2192 softmax", size=10
    )
    ax_tok.text(
        0.01, 0.06, f"\u2192 chosen next token: {visible_token(chosen)!r}", size=11, weight="bold"
    )
    labels = [visible_token(t) for t, _ in top][::-1]
    probs = [p for _, p in top][::-1]
    colors = ["#c1121f" if t == visible_token(chosen) else "#4a7fb5" for t in labels]
    ax_bar.barh(range(len(top)), probs, color=colors)
    ax_bar.set_yticks(range(len(top)), labels, family="monospace")
    ax_bar.set_xlabel("probability of the next token")
    ax_bar.set_title(f"top {len(top)} next tokens", size=10)
    ax_bar.set_xlim(0, max(1e-9, max(probs)) * 1.15)
    for i, p in enumerate(probs):
        ax_bar.text(p, i, f" {p:.3f}", va="center", size=8)
    fig.suptitle(title or "One step of the pipeline", size=11)
    fig.tight_layout()
    plt.close(fig)
    return fig
