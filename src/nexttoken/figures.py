"""Regenerate the book's key figures under ``figures/`` (``make figures``).

Every figure in ``figures/`` is made here, by the same pure plot functions the notebooks call.
Each entry of :data:`FIGURES` is a file name and a function returning a ``Figure``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure

from .notebook import setup
from .viz import pipeline_figure

__all__ = ["FIGURES", "make_figures"]


def _book_next_token(prompt: str = "To be, or not to"):
    """The book model's logits ``(V,)`` after ``prompt`` and the text of every token id."""
    import torch

    from .book import load_book_encoding, load_book_model

    model, enc = load_book_model(), load_book_encoding()
    with torch.no_grad():
        logits = model(torch.tensor([enc.encode(prompt)]))[0, -1]
    return logits, [enc.decode([i]) for i in range(logits.numel())]


def _softmax_temperature() -> Figure:
    from .viz import temperature_figure

    return temperature_figure(*_book_next_token(), temperature=0.7)


def _top_k_top_p() -> Figure:
    from .sampling import softmax
    from .viz import filter_figure

    logits, labels = _book_next_token()
    return filter_figure(softmax(logits), labels, top_k=5, top_p=0.3)


def _kv_cache_memory() -> Figure:
    from .configs import get_config
    from .viz import kv_memory_figure

    names = ("book", "gpt2", "gpt2-xl", "gpt3-6.7b", "gpt3-175b")
    return kv_memory_figure([get_config(n) for n in names], dtype="fp16")


def _tokens_chips() -> Figure:
    from .tokenizer import get_encoding
    from .viz import token_chips, token_pieces

    enc = get_encoding("gpt2")
    ids = enc.encode("Le chat mange une souris. The cat eats a mouse.")
    return token_chips(token_pieces(enc, ids), ids, title="gpt2: the running examples as tokens")


def _vector_96x128() -> Figure:
    import torch

    from .configs import get_config
    from .viz import vector_image

    cfg = get_config("gpt3-175b")
    v = torch.randn(cfg.n_embd, generator=torch.Generator().manual_seed(0)) * 0.02
    title = "A random 12,288-number vector (not GPT-3's weights) as 96 x 128"
    return vector_image(v, cfg.n_head, cfg.d_head, title=title)


def _attention_heatmap(text: str = "Le chat mange une souris", layer: int = 1, head: int = 0):
    import torch

    from .book import load_book_encoding, load_book_model
    from .viz import attention_heatmap, token_pieces

    model, enc = load_book_model(), load_book_encoding()
    ids = torch.tensor([enc.encode(text)])
    with torch.no_grad():
        w = model.run(ids, output_attentions=True).attentions[layer][0, head]
    title = f"book model, layer {layer}, head {head}: {text!r}"
    return attention_heatmap(w, token_pieces(enc, ids[0].tolist()), title=title)


def _gpt3_parameter_breakdown() -> Figure:
    from .viz import parameter_breakdown_figure

    return parameter_breakdown_figure("gpt3-175b")


def _book_training_curve() -> Figure:
    import math

    from .book import load_training_log
    from .viz.training import loss_curve_figure

    title = "the book model: training and held-out loss"
    return loss_curve_figure(load_training_log(), baseline=math.log(4096), title=title)


def _gpt2_decode_speed() -> Figure:
    import json

    from .viz import speed_figure

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "results.json"
    res = json.loads(path.read_text())
    rates = {
        "nexttoken, KV cache": res["decode"]["nexttoken_tokens_per_s"],
        "transformers generate": res["decode"]["transformers_tokens_per_s"],
        "roofline (copy bandwidth)": res["roofline"]["roofline_tokens_per_s"],
    }
    return speed_figure(rates)


def _serving_timeline() -> Figure:
    from .book import load_book_encoding, load_book_model
    from .viz.serving import DEMO_LINES, DEMO_NEW_TOKENS, run_schedulers, timeline_figure

    enc = load_book_encoding()
    work = [(enc.encode(t), n) for t, n in zip(DEMO_LINES, DEMO_NEW_TOKENS, strict=True)]
    engines = run_schedulers(load_book_model(), work, max_batch=4)
    return timeline_figure({k: [h["slots"] for h in e.history] for k, e in engines.items()}, 4)


def _serving_throughput() -> Figure:
    import json

    from .viz.serving import throughput_figure

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "results_batching.json"
    return throughput_figure(json.loads(path.read_text())["batching"])


def _roofline() -> Figure:
    from .results import load_results
    from .roofline import measured_points
    from .viz import roofline_figure

    res = load_results("roofline")
    return roofline_figure(res, measured_points(res))


def _serving_paging() -> Figure:
    from .viz.serving import chat_lengths, paging_figure

    return paging_figure(chat_lengths(), max_len=1024, block_tokens=[16, 64])


def _tensor_parallel_block() -> Figure:
    from .viz.parallel import block_split_figure

    return block_split_figure(2)


def _speculative_acceptance() -> Figure:
    import json

    from .viz.faster import acceptance_figure

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "results_faster.json"
    return acceptance_figure(json.loads(path.read_text())["speculative"])


def _speculative_tradeoff() -> Figure:
    import json

    from .book import load_book_draft_model
    from .quantize import weight_bytes
    from .viz.faster import tradeoff_figure, tradeoff_rows

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "results_faster.json"
    res = json.loads(path.read_text())
    drafts = {
        "book+draft": weight_bytes(load_book_draft_model()),
        "book+int8": res["weights"]["book"]["int8"]["weight_bytes_per_token"],
    }
    title = "the book model: bytes read per token, speed, held-out loss"
    return tradeoff_figure(tradeoff_rows(res, "book", drafts), title=title)


def _induction_phase_change() -> Figure:
    from .heads import load_grown
    from .viz.inspect import grown_history_figure

    return grown_history_figure(load_grown()[1])


def _book_vs_llama_loss() -> Figure:
    from .book import load_llama_training_log, load_training_log
    from .viz.modern import loss_curves_figure

    logs = {"GPT (book model)": load_training_log(), "Llama twin": load_llama_training_log()}
    title = "The book model and its Llama-family twin: same size, data, batches and schedule"
    return loss_curves_figure(logs, title=title)


FIGURES: dict[str, Callable[[], Figure]] = {
    "pipeline.png": lambda: pipeline_figure(),
    "tokens_chips.png": _tokens_chips,  # notebook 01
    "vector_96x128.png": _vector_96x128,  # notebook 02
    "attention_heatmap.png": _attention_heatmap,  # notebook 03
    "gpt3_parameter_breakdown.png": _gpt3_parameter_breakdown,  # notebook 04
    "softmax_temperature.png": _softmax_temperature,  # notebook 05
    "top_k_top_p.png": _top_k_top_p,  # notebook 06
    "kv_cache_memory.png": _kv_cache_memory,  # notebook 07
    "book_training_curve.png": _book_training_curve,  # notebook 08
    "gpt2_decode_speed.png": _gpt2_decode_speed,  # notebook 09 (benchmarks/results.json)
    "serving_batching_throughput.png": _serving_throughput,  # notebook 10 (results_batching.json)
    "roofline.png": _roofline,  # notebook 10 (results_roofline.json)
    "serving_paging_waste.png": _serving_paging,  # notebook 10
    "serving_continuous_batching.png": _serving_timeline,  # notebook 10
    "speculative_acceptance.png": _speculative_acceptance,  # notebook 11 (results_faster.json)
    "speculative_tradeoff.png": _speculative_tradeoff,  # notebook 11 (results_faster.json)
    "tensor_parallel_block.png": _tensor_parallel_block,  # notebook 12
    "induction_phase_change.png": _induction_phase_change,  # notebook 13 (the committed history)
    "book_vs_llama_loss.png": _book_vs_llama_loss,  # notebook 14 (the two training logs)
}


def make_figures(outdir: str | Path = "figures", only: list[str] | None = None) -> list[Path]:
    """Write the figures of :data:`FIGURES` (all, or the names in ``only``) to ``outdir``.

    Returns the paths written. PNG metadata carries no software version or date, so the same code
    writes the same bytes.
    """
    unknown = sorted(set(only or []) - set(FIGURES))
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown}; known: {', '.join(FIGURES)}")
    setup()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in FIGURES.items():
        if only is not None and name not in only:
            continue
        path = outdir / name
        make().savefig(path, dpi=100, metadata={"Software": None})
        written.append(path)
        print(path)
    return written


if __name__ == "__main__":
    make_figures(sys.argv[1] if len(sys.argv) > 1 else "figures")
