"""The roofline: how fast an operation can go on a machine, from two measured numbers.

A machine reads memory at ``bandwidth`` bytes/s and computes at most ``peak`` FLOP/s. An operation
that does ``F`` floating-point operations while reading ``Q`` bytes has an **arithmetic
intensity** ``I = F / Q`` FLOP/byte, and cannot run faster than ``min(peak, bandwidth * I)``:
the roof. Below ``peak / bandwidth`` (the **machine balance**) the memory is the limit
(memory-bound), above it the arithmetic (compute-bound). A point measured well below its roof
is limited by neither: by the routine (the *kernel*) that does the work.

Everything here is arithmetic on shapes and measured seconds; the measuring is
``benchmarks/roofline.py`` (written to ``benchmarks/results_roofline.json``) and the drawing
:func:`nexttoken.viz.roofline_figure`. GFLOP means 10^9 operations, GB 10^9 bytes.
"""

from __future__ import annotations

from .model import GPTConfig

__all__ = [
    "linear_flops",
    "linear_bytes",
    "decode_linears",
    "step_flops",
    "step_bytes",
    "attention_flops",
    "attention_bytes",
    "roof",
    "machine_balance",
    "point",
    "decode_step_point",
    "batching_points",
    "measured_points",
    "machine_roof",
]


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def linear_flops(rows: int, in_features: int, out_features: int) -> int:
    """FLOPs of ``(rows, in) @ (in, out)``: one multiply and one add per weight and row."""
    return 2 * rows * in_features * out_features


def linear_bytes(
    rows: int, in_features: int, out_features: int, weight_bytes: float = 4, act_bytes: int = 4
) -> float:
    """Bytes a product ``(rows, in) @ (in, out)`` must move at least: every weight once
    (``weight_bytes`` each: 4 in fp32, 1 in int8), its input rows read and its output rows
    written (``act_bytes`` each)."""
    return weight_bytes * in_features * out_features + act_bytes * rows * (
        in_features + out_features
    )


def decode_linears(config: GPTConfig) -> list[tuple[int, int]]:
    """The ``(in, out)`` shapes of the weight products of one decoding step, in order: per block
    the attention's q/k/v ``(d, 3d)`` and output ``(d, d)``, the MLP's ``(d, 4d)`` and
    ``(4d, d)``; then the output projection ``(d, V)``."""
    d = config.n_embd
    block = [(d, 3 * d), (d, d), (d, 4 * d), (4 * d, d)]
    return block * config.n_layer + [(d, config.vocab_size)]


def step_flops(config: GPTConfig, batch: int) -> int:
    """FLOPs of one decoding step's weight products for ``batch`` sequences (one new token each)."""
    _positive_int("batch", batch)
    return sum(linear_flops(batch, i, o) for i, o in decode_linears(config))


def step_bytes(config: GPTConfig, batch: int, weight_bytes: float = 4) -> float:
    """Bytes one decoding step's weight products move for ``batch`` sequences (every weight once,
    whatever ``batch``; the rows' inputs and outputs in fp32)."""
    _positive_int("batch", batch)
    return sum(linear_bytes(batch, i, o, weight_bytes) for i, o in decode_linears(config))


def attention_flops(config: GPTConfig, context: int, batch: int = 1) -> int:
    """FLOPs of one decoding step's attention over ``context`` cached positions: per block and
    sequence, scores ``q . k`` (2 x context x d) and the weighted sum of values (the same)."""
    _positive_int("context", context)
    return 4 * batch * config.n_layer * context * config.n_embd


def attention_bytes(config: GPTConfig, context: int, batch: int = 1, cache_bytes: int = 4) -> int:
    """Bytes that attention reads: every cached key and value once (``cache_bytes`` each), per
    block and sequence -- each sequence its own cache, so the intensity does not grow with
    ``batch``."""
    _positive_int("context", context)
    return 2 * batch * config.n_layer * context * config.n_embd * cache_bytes


def roof(intensity: float, bandwidth_gb_s: float, peak_gflops: float) -> float:
    """The most GFLOP/s an operation of ``intensity`` FLOP/byte can reach:
    ``min(peak, bandwidth x intensity)``."""
    if intensity <= 0 or bandwidth_gb_s <= 0 or peak_gflops <= 0:
        raise ValueError(
            f"intensity, bandwidth and peak must be > 0, got {intensity}, {bandwidth_gb_s}, "
            f"{peak_gflops}"
        )
    return min(peak_gflops, bandwidth_gb_s * intensity)


def machine_balance(bandwidth_gb_s: float, peak_gflops: float) -> float:
    """FLOP/byte at which the two roofs meet: ``peak / bandwidth``."""
    return peak_gflops / bandwidth_gb_s


def point(label: str, flops: float, nbytes: float, seconds: float) -> dict:
    """A measured operation for the roofline: ``{"label", "intensity" (FLOP/byte), "gflops"}``."""
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    return {"label": label, "intensity": flops / nbytes, "gflops": flops / seconds / 1e9}


def decode_step_point(
    config: GPTConfig, batch: int, seconds: float, label: str | None = None, weight_bytes=4
) -> dict:
    """The point of one decoding step of ``batch`` sequences whose weight products took
    ``seconds`` (or a whole step: its other work is small, so the point is then slightly low)."""
    return point(
        label or f"decode, B = {batch}",
        step_flops(config, batch),
        step_bytes(config, batch, weight_bytes),
        seconds,
    )


def batching_points(config: GPTConfig, rows: list[dict], threads: int = 1) -> list[dict]:
    """Points of whole batched decoding steps from ``benchmarks/results_batching.json``'s
    ``batching`` rows (``tokens_per_s`` at each ``batch``, one thread count)."""
    return [
        decode_step_point(config, r["batch"], r["batch"] / r["tokens_per_s"])
        for r in rows
        if r["threads"] == threads
    ]


def measured_points(results: dict) -> list[dict]:
    """Every operation of ``benchmarks/results_roofline.json`` as a roofline point, in its
    order: ``{"label", "intensity", "gflops", "kind"}`` (kind: decode, prefill, attention, int8)."""
    return [
        {
            "label": op["label"],
            "intensity": op["flops"] / op["bytes"],
            "gflops": op["flops"] / op["seconds"] / 1e9,
            "kind": op["kind"],
        }
        for op in results["operations"]
    ]


def machine_roof(results: dict, threads: int | str = 1) -> dict:
    """This machine's roof from ``benchmarks/results_roofline.json`` for ``threads``:
    ``{"threads", "bandwidth_GB_per_s", "peak_GFLOP_per_s", "balance" (FLOP/byte)}``.

    ``threads``: a measured thread count (bandwidth: the best read over the array sizes), or
    ``"all"``: up to every logical CPU, so the best of every measured count (a program may
    always use fewer threads; on a busy machine two threads can read slower than one)."""
    counts = sorted(results["peak"]["GFLOP_per_s"], key=int)
    if threads == "all":
        keys = counts
    elif str(threads) in counts and not isinstance(threads, bool):
        keys = [str(threads)]
    else:
        raise ValueError(f"threads must be one of {counts} or 'all', got {threads!r}")
    bw = max(max(results["bandwidth"]["read_GB_per_s"][k]) for k in keys)
    pk = max(results["peak"]["GFLOP_per_s"][k] for k in keys)
    return {
        "threads": int(keys[-1]),
        "bandwidth_GB_per_s": bw,
        "peak_GFLOP_per_s": pk,
        "balance": machine_balance(bw, pk),
    }
