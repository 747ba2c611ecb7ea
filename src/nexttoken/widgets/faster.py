"""Widget for notebook 11: step through speculative decoding, one round at a time."""

from __future__ import annotations

import ipywidgets as widgets
import tiktoken

from ..model import GPT
from ..speculative import Round, speculative_generate
from ..viz.faster import round_figure
from . import show_figure

__all__ = ["speculative_widget"]


def speculative_widget(
    target: GPT,
    draft: GPT,
    encoding: tiktoken.Encoding,
    prompt: str,
    *,
    k: int = 4,
    max_new_tokens: int = 30,
) -> widgets.VBox:
    """Buttons "next round" / "previous round" above the figure of one round (the draft's
    proposals, the target's verdicts, the accepted prefix, the corrected token) and the text so far.

    The rounds are those of one greedy :func:`~nexttoken.speculative.speculative_generate` call,
    computed once, so the widget always shows the same story. CSS classes: ``nt-widget
    nt-speculative``, ``nt-speculative-next``, ``nt-speculative-prev``, ``nt-speculative-figure``,
    ``nt-speculative-text``.
    """
    rounds: list[Round] = []
    ids = encoding.encode(prompt)
    out_ids, stats = speculative_generate(
        target, draft, ids, max_new_tokens, k=k, temperature=0, on_round=rounds.append
    )
    out_ids = out_ids[0].tolist()
    state = {"i": 0}
    out = widgets.Output()
    out.add_class("nt-speculative-figure")
    text = widgets.HTML()
    text.add_class("nt-speculative-text")
    nxt = widgets.Button(description="next round", button_style="primary")
    nxt.add_class("nt-speculative-next")
    prev = widgets.Button(description="previous round")
    prev.add_class("nt-speculative-prev")
    decode = lambda t: encoding.decode([t])  # noqa: E731

    def redraw() -> None:
        r = rounds[state["i"]]
        show_figure(out, round_figure(r, decode))
        done = r.position + r.accepted + 1  # tokens in the text after this round
        kept = sum(x.accepted + 1 for x in rounds[: state["i"] + 1])
        text.value = (
            f"<b>round {state['i'] + 1} of {len(rounds)}</b>: {kept} new tokens after "
            f"{state['i'] + 1} target passes<br><pre>{_escape(encoding.decode(out_ids[:done]))}</pre>"
        )
        nxt.disabled = state["i"] == len(rounds) - 1
        prev.disabled = state["i"] == 0

    def step(delta: int) -> None:
        state["i"] = max(0, min(len(rounds) - 1, state["i"] + delta))
        redraw()

    nxt.on_click(lambda _b: step(1))
    prev.on_click(lambda _b: step(-1))
    redraw()
    box = widgets.VBox([widgets.HBox([prev, nxt]), text, out])
    box.add_class("nt-widget")
    box.add_class("nt-speculative")
    box.speculative_state = {"rounds": rounds, "stats": stats, "state": state}  # for tests
    return box


def _escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
