"""GPT-3 175B on a node of 8 GPUs, on paper, every number computed.

The memory comes from the shard itself: :func:`~nexttoken.parallel.tensor.shard_for_rank` builds rank
0's tensor-parallel shard of the model on the meta device (shapes, no memory) and its parameters
are counted; the KV cache is that shard's cache. The times are lower bounds from two bandwidths:

- **HBM**: decoding one token at batch 1 reads every weight of the shard once (and the cache), so a
  GPU needs at least ``bytes / HBM bandwidth`` per token;
- **NVLink**: each of the ``2 n_layer`` all-reduces moves ``B d`` numbers per token; a ring
  all-reduce sends ``2 (T - 1) / T`` of that from every GPU.

The hardware figures are the vendor's data-sheet numbers (cited in :data:`HARDWARE`); the measured
latency to compare with is :data:`MEASURED`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import GPTConfig
from ..sizes import _config, meta_model
from .comm import ring_allreduce_wire_bytes, tp_allreduce_bytes
from .tensor import shard_for_rank

__all__ = ["Hardware", "HARDWARE", "MEASURED", "tp_plan", "pp_vs_tp_across_nodes"]


@dataclass(frozen=True)
class Hardware:
    """One GPU of a node: memory, memory bandwidth, and the GPU-to-GPU links (bytes, bytes/s)."""

    name: str
    hbm_bytes: float
    hbm_bandwidth: float
    link_bandwidth: float  # per direction, per GPU, inside the node
    link: str
    source: str


HARDWARE: dict[str, Hardware] = {
    "a100-80gb": Hardware(
        "A100 80GB SXM",
        80e9,
        2.039e12,
        300e9,
        "NVLink 3: 600 GB/s per GPU, both directions together",
        "NVIDIA A100 Tensor Core GPU data sheet (2021)",
    ),
    "h200": Hardware(
        "H200 SXM",
        141e9,
        4.8e12,
        450e9,
        "NVLink 4: 900 GB/s per GPU, both directions together",
        "NVIDIA H200 Tensor Core GPU data sheet (2024)",
    ),
}

#: Between nodes: one 200 Gb/s InfiniBand HDR adapter per GPU (25 GB/s per direction), the usual
#: DGX A100 layout (NVIDIA DGX A100 user guide: 8 single-port ConnectX-6 for the compute fabric).
INTER_NODE_BANDWIDTH = 25e9

#: A published latency for a GPT-3-size model on one 8-GPU node (Bekman et al., "Incredibly Fast
#: BLOOM Inference with DeepSpeed and Accelerate", Hugging Face blog, 16 September 2022,
#: https://huggingface.co/blog/bloom-inference-pytorch-scripts): BLOOM-176B, 8 x A100 80GB,
#: greedy generation of 100 tokens with a KV cache, a few-token prompt.
MEASURED: dict[str, dict] = {
    "ds-inference fp16 (tensor parallel, TP = 8)": {"batch": 1, "ms_per_token": 44.02},
    "accelerate bf16 (layers spread over the GPUs, one at a time)": {
        "batch": 1,
        "ms_per_token": 230.38,
    },
}
MEASURED_SOURCE = (
    "Bekman et al., Incredibly Fast BLOOM Inference with DeepSpeed and Accelerate, "
    "Hugging Face blog, 2022-09-16 (BLOOM-176B on 8 x A100 80GB)"
)


def tp_plan(
    config: GPTConfig | str = "gpt3-175b",
    tp: int = 8,
    hardware: str = "a100-80gb",
    *,
    batch: int = 1,
    context: int | None = None,
    bytes_per_number: int = 2,
) -> dict[str, float]:
    """What one of ``tp`` GPUs holds and moves to decode one token (fp16 by default).

    Returns bytes (``weights``, ``kv_cache`` at ``context`` tokens for ``batch`` sequences,
    ``allreduce_payload`` and ``allreduce_wire`` per generated token) and lower-bound seconds per
    token (``t_hbm``: weights + cache read once; ``t_link``: the wire bytes over NVLink).
    """
    cfg = _config(config)
    if hardware not in HARDWARE:
        raise ValueError(f"unknown hardware {hardware!r}; known: {', '.join(HARDWARE)}")
    hw = HARDWARE[hardware]
    context = cfg.block_size if context is None else context
    shard = shard_for_rank(meta_model(cfg), 0, tp)  # rank 0's real shard, on the meta device
    weights = shard.num_parameters() * bytes_per_number
    n_head_local = cfg.n_head // tp
    kv = 2 * cfg.n_layer * batch * n_head_local * context * cfg.d_head * bytes_per_number
    payload = tp_allreduce_bytes(cfg.n_layer, batch, 1, cfg.n_embd, bytes_per_number)
    wire = ring_allreduce_wire_bytes(payload, tp) if tp > 1 else 0.0
    return {
        "tp": tp,
        "weights": weights,
        "kv_cache": kv,
        "hbm": hw.hbm_bytes,
        "fits": weights + kv <= hw.hbm_bytes,
        "allreduces_per_token": 2 * cfg.n_layer if tp > 1 else 0,
        "allreduce_payload": payload if tp > 1 else 0,
        "allreduce_wire": wire,
        "t_hbm": (weights + kv) / hw.hbm_bandwidth,
        "t_link": wire / hw.link_bandwidth,
    }


def pp_vs_tp_across_nodes(
    config: GPTConfig | str = "gpt3-175b",
    *,
    tokens: int = 1,
    batch: int = 1,
    bytes_per_number: int = 2,
) -> dict[str, float]:
    """Bytes that must cross the slow link between 2 nodes of 8 GPUs, per forward pass of ``tokens``.

    - ``tp16``: tensor parallelism over all 16 GPUs: every one of the ``2 n_layer`` all-reduces
      spans both nodes (the ring has 2 inter-node hops; each GPU sends ``2 (16 - 1) / 16`` of the
      payload, and the ring's slowest link is the inter-node one);
    - ``tp8_pp2``: tensor parallelism inside each node, 2 pipeline stages: only the activation at
      the one stage boundary crosses, ``B N d`` numbers, once.
    """
    cfg = _config(config)
    payload = tp_allreduce_bytes(cfg.n_layer, batch, tokens, cfg.n_embd, bytes_per_number)
    tp16 = ring_allreduce_wire_bytes(payload, 16)
    pp = batch * tokens * cfg.n_embd * bytes_per_number
    return {
        "tp16_bytes": tp16,
        "tp16_messages": 2 * cfg.n_layer,
        "tp8_pp2_bytes": pp,
        "tp8_pp2_messages": 1,
        "tp16_seconds": tp16 / INTER_NODE_BANDWIDTH,
        "tp8_pp2_seconds": pp / INTER_NODE_BANDWIDTH,
    }
