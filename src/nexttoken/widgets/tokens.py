"""Widget for notebook 01: type text, pick an encoding, see the tokens as chips with their ids."""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
from matplotlib.figure import Figure

from ..tokenizer import get_encoding
from ..viz.tokens import token_chips, token_pieces
from . import figure_widget

__all__ = ["chips_for", "tokens_widget"]


def chips_for(text: str, encoding: str, max_chars: int = 60) -> Figure:
    """:func:`nexttoken.viz.tokens.token_chips` of ``text`` under the encoding called ``encoding``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    enc = get_encoding(encoding)
    ids = enc.encode(text, disallowed_special=())
    title = f"{encoding}: {len(ids)} tokens for {len(text)} characters (vocabulary {enc.n_vocab:,})"
    return token_chips(token_pieces(enc, ids), ids, title=title, max_chars=max_chars)


def tokens_widget(
    text: str = "Le chat mange une souris. The cat eats a mouse.",
    encodings: Sequence[str] = ("gpt2", "cl100k_base", "o200k_base", "book"),
) -> widgets.VBox:
    """A text box and an encoding dropdown above the chips of the text.

    CSS classes: ``nt-tokens`` (box), ``nt-tokens-text``, ``nt-tokens-encoding``,
    ``nt-tokens-figure``.
    """
    box = widgets.Text(value=text, description="text", continuous_update=False)
    box.layout.width = "480px"
    drop = widgets.Dropdown(options=list(encodings), value=encodings[0], description="encoding")
    return figure_widget(chips_for, {"text": box, "encoding": drop}, "nt-tokens")
