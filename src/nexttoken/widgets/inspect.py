"""Widget for notebook 13: pick a prompt and a position, see the logit lens (the top tokens after
each layer) and the direct logit attribution of the model's choice there."""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import tiktoken
import torch
from matplotlib.figure import Figure

from ..inspect import direct_logit_attribution, logit_lens, trace
from ..model import GPT
from ..viz.inspect import layer_labels, lens_attribution_figure
from . import show_figure

__all__ = ["lens_attribution", "inspect_widget"]


def _token(encoding: tiktoken.Encoding, t: int) -> str:
    return encoding.decode([t])


def lens_attribution(
    model: GPT, encoding: tiktoken.Encoding, text: str, position: int, *, k: int = 5
) -> Figure:
    """The widget's picture for ``text`` at ``position`` (0-based, a token of the prompt): the top
    ``k`` tokens and their probabilities after the embedding and after each block (the logit lens),
    and the direct logit attribution of the token the model ranks first there. The title says the
    prompt, the position, its token and that choice."""
    ids = encoding.encode(text)
    if not ids:
        raise ValueError("text must hold at least one token")
    if isinstance(position, bool) or not isinstance(position, int):
        raise TypeError(f"position must be an int in [0, {len(ids) - 1}], got {position!r}")
    if not 0 <= position < len(ids):
        raise ValueError(f"position must be in [0, {len(ids) - 1}], got {position}")
    tr = trace(model, torch.tensor([ids]))
    probs = torch.softmax(logit_lens(model, tr)[:, 0, position].double(), dim=-1)  # (L + 1, V)
    top = probs.topk(k, dim=-1)
    table = [
        [(_token(encoding, int(t)), float(p)) for p, t in zip(ps, ts, strict=True)]
        for ps, ts in zip(top.values, top.indices, strict=True)
    ]
    choice = int(tr.logits[0, position].argmax())
    parts = direct_logit_attribution(model, tr, position, choice)
    title = (
        f"{text!r}, position {position} ({_token(encoding, ids[position])!r}): "
        f"the model's choice {_token(encoding, choice)!r}"
    )
    return lens_attribution_figure(table, layer_labels(model.config.n_layer), parts, title)


def inspect_widget(
    model: GPT,
    encoding: tiktoken.Encoding,
    prompts: Sequence[str],
    *,
    position: int = 3,
    k: int = 5,
) -> widgets.VBox:
    """A dropdown of ``prompts`` and a position slider above :func:`lens_attribution`'s picture.

    The slider's range follows the prompt's length (a position past the end of a shorter prompt
    moves to its last token). CSS classes: ``nt-widget nt-inspect`` (box), ``nt-inspect-prompt``,
    ``nt-inspect-position``, ``nt-inspect-figure``.
    """
    prompts = list(prompts)
    if not prompts or not all(isinstance(p, str) and encoding.encode(p) for p in prompts):
        raise ValueError("prompts must be a non-empty list of texts of at least one token each")
    n0 = len(encoding.encode(prompts[0]))
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < n0:
        raise ValueError(f"position must be an int in [0, {n0 - 1}] (the first prompt's tokens)")
    prompt = widgets.Dropdown(options=prompts, value=prompts[0], description="prompt")
    pos = widgets.IntSlider(value=position, min=0, max=n0 - 1, description="position")
    out = widgets.Output()
    prompt.add_class("nt-inspect-prompt")
    pos.add_class("nt-inspect-position")
    out.add_class("nt-inspect-figure")
    busy = {"on": False}

    def redraw(_change: object = None) -> None:
        if not busy["on"]:
            show_figure(out, lens_attribution(model, encoding, prompt.value, pos.value, k=k))

    def new_prompt(_change: object) -> None:
        busy["on"] = True  # the slider may move to fit: draw once, after
        try:
            pos.max = len(encoding.encode(prompt.value)) - 1
        finally:
            busy["on"] = False
        redraw()

    prompt.observe(new_prompt, names="value")
    pos.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox([prompt, pos]), out])
    box.add_class("nt-widget")
    box.add_class("nt-inspect")
    return box
