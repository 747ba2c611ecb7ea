"""Widget for notebook 10: add requests and step a continuous-batching engine by hand."""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets

from ..model import GPT
from ..serve import Engine
from ..viz.serving import engine_figure
from . import show_figure

__all__ = ["engine_widget"]


def engine_widget(
    model: GPT,
    prompts: Sequence[Sequence[int]],
    *,
    max_batch: int = 3,
    num_blocks: int = 12,
    block_tokens: int = 8,
    new_tokens: int = 10,
) -> widgets.VBox:
    """Buttons "add request", "step", "run to the end" and "reset", a slider for the next request's
    ``max_new_tokens``, above :func:`nexttoken.viz.serving.engine_figure`.

    "add request" queues the next prompt of ``prompts`` (cycling) with greedy decoding; "step" runs
    :meth:`nexttoken.serve.Engine.step` once, so slots and blocks fill and free as requests join
    and leave. CSS classes: ``nt-widget nt-serving``, ``nt-serving-add``, ``nt-serving-step``,
    ``nt-serving-run``, ``nt-serving-reset``, ``nt-serving-new-tokens``, ``nt-serving-figure``.
    """
    prompts = [list(p) for p in prompts]
    state: dict = {}
    out = widgets.Output()
    out.add_class("nt-serving-figure")
    n_new = widgets.IntSlider(
        value=new_tokens, min=1, max=4 * block_tokens, description="new tokens"
    )
    add = widgets.Button(description="add request", button_style="primary")
    step = widgets.Button(description="step")
    run = widgets.Button(description="run to the end")
    reset = widgets.Button(description="reset")
    for w, name in ((n_new, "new-tokens"), (add, "add"), (step, "step"), (run, "run")):
        w.add_class(f"nt-serving-{name}")
    reset.add_class("nt-serving-reset")

    def redraw() -> None:
        show_figure(out, engine_figure(state["engine"]))

    def on_reset(_b: object = None) -> None:
        state["engine"] = Engine(
            model, max_batch=max_batch, num_blocks=num_blocks, block_tokens=block_tokens
        )
        state["next"] = 0
        redraw()

    def on_add(_b: object = None) -> None:
        prompt = prompts[state["next"] % len(prompts)]
        state["next"] += 1
        state["engine"].add_request(prompt, n_new.value, temperature=0)
        redraw()

    def on_step(_b: object = None) -> None:
        if state["engine"].has_work():
            state["engine"].step()
        redraw()

    def on_run(_b: object = None) -> None:
        state["engine"].run()
        redraw()

    add.on_click(on_add)
    step.on_click(on_step)
    run.on_click(on_run)
    reset.on_click(on_reset)
    on_reset()
    box = widgets.VBox([widgets.HBox([add, n_new, step, run, reset]), out])
    box.add_class("nt-widget")
    box.add_class("nt-serving")
    box.serving_state = state  # for tests and curious readers: the engine
    return box
