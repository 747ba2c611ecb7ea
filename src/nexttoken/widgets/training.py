"""Widget for notebook 08: choose a passage, see how surprised the model is by every token."""

from __future__ import annotations

import functools

import ipywidgets as widgets
import torch

from ..model import GPT
from ..train import token_losses
from ..viz.training import token_loss_figure
from . import figure_widget

__all__ = ["token_loss_widget"]


def token_loss_widget(model: GPT, encoding, passages: dict[str, str]) -> widgets.VBox:
    """A dropdown of ``passages`` (name -> text); redraws :func:`nexttoken.viz.token_loss_figure`
    with the loss of each token of the chosen passage under ``model``.

    CSS classes: ``nt-token-loss`` (box), ``nt-token-loss-passage`` (dropdown),
    ``nt-token-loss-figure`` (output).
    """
    if not passages:
        raise ValueError("passages must name at least one text")

    @functools.cache
    def figure(passage: str):
        ids = encoding.encode_ordinary(passages[passage])[: model.config.block_size]
        ids = torch.tensor([encoding.eot_token] + ids)
        losses = token_losses(model, ids)
        pieces = [encoding.decode([int(i)]) for i in ids[1:]]
        return token_loss_figure(pieces, losses, title=passage)

    dropdown = widgets.Dropdown(options=list(passages), description="passage")
    return figure_widget(figure, {"passage": dropdown}, "nt-token-loss")
