"""Widget for notebook 02: pick a token, see its embedding vector and its nearest tokens."""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
from matplotlib.figure import Figure

from ..viz.embeddings import cosine_neighbours, token_vector_figure
from ..viz.tokens import token_pieces
from . import figure_widget

__all__ = ["token_vector", "embeddings_widget"]


def token_vector(model, enc, token: str, k: int = 8) -> Figure:
    """The figure of ``token``'s row of ``model``'s embedding table (``n_head x d_head`` image)
    and its ``k`` cosine-nearest tokens. ``token`` must encode to exactly one token of ``enc``."""
    ids = enc.encode(token, disallowed_special=())
    if len(ids) != 1:
        raise ValueError(
            f"token must be a single token of the encoding, {token!r} gives {len(ids)}"
        )
    table = model.transformer.wte.weight.detach()
    near = cosine_neighbours(table, ids[0], k)
    labels = token_pieces(enc, [i for i, _ in near])
    cfg = model.config
    return token_vector_figure(
        table[ids[0]],
        [(lab, s) for lab, (_, s) in zip(labels, near, strict=True)],
        cfg.n_head,
        cfg.d_head,
        title=f"token {token!r} (id {ids[0]}): {cfg.n_embd} numbers",
    )


def embeddings_widget(model, enc, tokens: Sequence[str], k: int = 8) -> widgets.VBox:
    """A dropdown of single-token strings -> :func:`token_vector`.

    CSS classes: ``nt-embeddings`` (box), ``nt-embeddings-token``, ``nt-embeddings-figure``.
    """
    drop = widgets.Dropdown(options=list(tokens), value=tokens[0], description="token")
    return figure_widget(
        token_vector, {"token": drop}, "nt-embeddings", fixed={"model": model, "enc": enc, "k": k}
    )
