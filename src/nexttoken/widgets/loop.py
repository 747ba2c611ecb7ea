"""Widget for notebook 07: a "next token" button that runs the loop one step at a time."""

from __future__ import annotations

import ipywidgets as widgets
import tiktoken
import torch

from ..loop import StepRecord, next_step
from ..model import GPT
from ..viz.loop import step_figure
from . import show_figure

__all__ = ["next_token_widget"]


def next_token_widget(
    model: GPT,
    encoding: tiktoken.Encoding,
    prompt: str,
    *,
    temperature: float = 0.8,
    seed: int = 0,
) -> widgets.VBox:
    """Buttons "next token" (one step of the loop, appended) and "reset" above a step figure.

    Each click runs :func:`nexttoken.loop.next_step` on the text so far and redraws
    :func:`nexttoken.viz.step_figure`; the draws come from a generator seeded with ``seed``, so
    the same clicks give the same text. CSS classes: ``nt-widget nt-loop``, ``nt-loop-next``,
    ``nt-loop-reset``, ``nt-loop-figure``.
    """
    prompt_ids = encoding.encode(prompt)
    state: dict = {}
    out = widgets.Output()
    out.add_class("nt-loop-figure")
    nxt = widgets.Button(description="next token", button_style="primary")
    nxt.add_class("nt-loop-next")
    reset = widgets.Button(description="reset")
    reset.add_class("nt-loop-reset")

    def redraw() -> None:
        show_figure(out, step_figure(prompt, state["records"], encoding.decode))

    def on_reset(_b: object = None) -> None:
        state["records"] = []
        state["ids"] = list(prompt_ids)
        state["gen"] = torch.Generator().manual_seed(seed)
        redraw()

    def on_next(_b: object = None) -> None:
        records: list[StepRecord] = state["records"]
        rec = next_step(
            model,
            state["ids"],
            step=len(records) + 1,
            temperature=temperature,
            generator=state["gen"],
        )
        records.append(rec)
        state["ids"].append(rec.token)  # the loop: append the chosen token
        redraw()

    nxt.on_click(on_next)
    reset.on_click(on_reset)
    on_reset()
    box = widgets.VBox([widgets.HBox([nxt, reset]), out])
    box.add_class("nt-widget")
    box.add_class("nt-loop")
    box.loop_state = state  # for tests and curious readers: the records and ids so far
    return box
