"""The book's widgets and their controls, as the browser tests drive them.

Each control is found by its CSS class (``<widget class>-<keyword>``, see
:func:`nexttoken.widgets.figure_widget`), changed once, and ``expect(value)`` (``value``: what the
control shows afterwards, as text) must appear in the title of the new picture, which the widget's
PNG carries in its ``Title`` chunk (:func:`nexttoken.widgets.figure_output`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Control", "Widget", "WIDGETS"]


@dataclass(frozen=True)
class Control:
    name: str  # the keyword it sets; its CSS class is f"{widget.css}-{name}"
    kind: str  # "slider" (one keyboard step), "dropdown" (next option), "text", "button"
    expect: Callable[[str], str] | None = None  # text the new picture's title must contain
    text: str = ""  # what to type into a text box
    back_to_start: bool = False  # a reset button: the picture must be the first one again
    redraws: bool = True  # False: it sets what the next action uses; only its readout changes


@dataclass(frozen=True)
class Widget:
    notebook: str
    css: str
    controls: tuple[Control, ...]

    @property
    def slug(self) -> str:  # "03_attention": the screenshots' names
        return f"{self.notebook[:2]}_{self.css.removeprefix('nt-')}"


def _int(v: str) -> int:
    return round(float(v))


WIDGETS = (
    Widget(
        "00_the_pipeline.ipynb",
        "nt-pipeline",
        (
            Control("prompt", "text", lambda v: f"after {v!r}", text="ROMEO:"),
            Control("k", "slider", lambda v: f"top {_int(v)} next tokens"),
        ),
    ),
    Widget(
        "01_text_to_tokens.ipynb",
        "nt-tokens",
        (
            Control(
                "text", "text", lambda v: f"for {len(v)} characters", text="To be, or not to be"
            ),
            Control("encoding", "dropdown", lambda v: f"{v}: "),
        ),
    ),
    Widget(
        "02_tokens_to_vectors.ipynb",
        "nt-embeddings",
        (Control("token", "dropdown", lambda v: f"token {v!r}"),),
    ),
    Widget(
        "03_self_attention.ipynb",
        "nt-attention",
        (
            Control("layer", "slider", lambda v: f"layer {_int(v)},"),
            Control("head", "slider", lambda v: f"head {_int(v)}"),
        ),
    ),
    Widget(
        "04_the_decoder_block.ipynb", "nt-sizes", (Control("name", "dropdown", lambda v: f"{v}: "),)
    ),
    Widget(
        "05_logits_and_softmax.ipynb",
        "nt-temperature",
        (Control("temperature", "slider", lambda v: f"T = {float(v):.2f}"),),
    ),
    Widget(
        "06_choosing_the_next_token.ipynb",
        "nt-sampling",
        (
            Control("temperature", "slider", lambda v: f"T = {float(v):g},"),
            Control("top_k", "slider", lambda v: f"top_k = {_int(v)},"),
            Control("top_p", "slider", lambda v: f"top_p = {float(v):g}:"),
            Control("seed", "slider", lambda v: f"seed {_int(v)}"),
        ),
    ),
    Widget(
        "07_the_autoregressive_loop.ipynb",
        "nt-loop",
        (
            Control("next", "button", lambda v: "step 1: chose"),
            Control("reset", "button", back_to_start=True),
        ),
    ),
    Widget(
        "08_training_the_book_model.ipynb",
        "nt-token-loss",
        (Control("passage", "dropdown", lambda v: v),),
    ),
    Widget(
        "09_a_real_gpt2.ipynb",
        "nt-gpt2-parity",
        (Control("highlight", "dropdown", lambda v: f"(thick line: {v})"),),
    ),
    Widget(
        "10_many_requests_at_once.ipynb",
        "nt-serving",
        (
            Control("add", "button", lambda v: "1 waiting"),
            Control("new_tokens", "slider", redraws=False),
            Control("step", "button", lambda v: "step 1:"),
            Control("run", "button", lambda v: "0 of 3 slots busy, 0 waiting"),
            Control("reset", "button", back_to_start=True),
        ),
    ),
    Widget(
        "11_faster_tokens.ipynb",
        "nt-speculative",
        (
            # the second round of "I pray you, sir," (k = 4) starts at position 9
            Control("next", "button", lambda v: "position 9:"),
            Control("prev", "button", back_to_start=True),
        ),
    ),
    Widget(
        "13_why_this_token.ipynb",
        "nt-inspect",
        (
            # the second prompt; the slider then moves from position 3 to 4
            Control("prompt", "dropdown", lambda v: f"{v!r}, position 3 ("),
            Control("position", "slider", lambda v: f"position {_int(v)} ("),
        ),
    ),
    Widget(
        "14_todays_decoders.ipynb",
        "nt-rope",
        (
            Control("position", "slider", lambda v: f"RoPE at position {_int(v)}:"),
            Control("theta", "dropdown", lambda v: f"(base {v})"),
        ),
    ),
)
