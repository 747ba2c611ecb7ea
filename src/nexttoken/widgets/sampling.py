"""Widget for notebook 06: temperature, top-k and top-p -> the distribution and a continuation."""

from __future__ import annotations

import ipywidgets as widgets
import tiktoken
import torch
from matplotlib.figure import Figure

from ..generate import generate
from ..model import GPT
from ..sampling import filtered_probs
from ..viz.sampling import distribution_text_figure
from . import figure_widget

__all__ = ["sampling_figure", "sampling_widget"]


@torch.inference_mode()
def sampling_figure(
    model: GPT,
    encoding: tiktoken.Encoding,
    prompt: str,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    max_new_tokens: int = 40,
) -> Figure:
    """The next-token distribution after ``prompt`` under the settings, and one seeded continuation.

    ``top_k = 0`` and ``top_p = 1.0`` mean "no filter"; ``temperature = 0`` is greedy.
    """
    k = None if top_k == 0 else int(top_k)
    p = None if top_p >= 1.0 else float(top_p)
    ids = torch.tensor([encoding.encode(prompt)])
    logits = model.run(ids[:, -model.config.block_size :], last_only=True).logits[0, -1]
    probs = filtered_probs(logits, temperature, k, p)
    gen = torch.Generator().manual_seed(seed)
    out = generate(
        model, ids, max_new_tokens, temperature=temperature, top_k=k, top_p=p, generator=gen
    )
    text = prompt + "|" + encoding.decode(out[0, ids.size(1) :].tolist())
    labels = [encoding.decode([i]) for i in range(model.config.vocab_size)]
    title = (
        f"T = {temperature:g}, top_k = {k}, top_p = {'None' if p is None else f'{p:g}'}: "
        f"{int((probs > 0).sum()):,} tokens possible; seed {seed}"
    )
    return distribution_text_figure(probs, labels, text, title=title)


def sampling_widget(
    model: GPT, encoding: tiktoken.Encoding, prompt: str, *, max_new_tokens: int = 40
) -> widgets.VBox:
    """Sliders for temperature, top-k (0 = off), top-p (1 = off) and the seed.

    CSS classes: ``nt-sampling`` and ``nt-sampling-<control>``.
    """
    controls = {
        "temperature": widgets.FloatSlider(
            value=1.0,
            min=0.0,
            max=2.0,
            step=0.05,
            description="temperature",
            continuous_update=False,
        ),
        "top_k": widgets.IntSlider(
            value=0, min=0, max=100, description="top-k", continuous_update=False
        ),
        "top_p": widgets.FloatSlider(
            value=1.0, min=0.05, max=1.0, step=0.05, description="top-p", continuous_update=False
        ),
        "seed": widgets.IntSlider(
            value=0, min=0, max=20, description="seed", continuous_update=False
        ),
    }
    return figure_widget(
        sampling_figure,
        controls,
        "nt-sampling",
        fixed={
            "model": model,
            "encoding": encoding,
            "prompt": prompt,
            "max_new_tokens": max_new_tokens,
        },
    )
