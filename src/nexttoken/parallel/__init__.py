"""Beyond one machine: tensor and pipeline parallelism over ``torch.distributed`` (notebook 12).

- :func:`tensor_parallel` — Megatron-style (Shoeybi et al. 2019): each block's attention split by
  heads (QKV column-parallel, output projection row-parallel, one all-reduce) and its MLP column-
  then row-parallel (one all-reduce); embedding and output layer replicated (see ``tensor``).
- :func:`pipeline_parallel` — GPipe (Huang et al. 2019): blocks in stages, micro-batches passed with
  send/recv, a measured timeline; :func:`pipeline_generate` decodes through the stages.
- :func:`count_comm` and the formulas of ``comm``; :mod:`.paper` — GPT-3 175B on 8 GPUs, on paper.
- ``python -m nexttoken.parallel --tp T --pp P --config NAME`` — runs a split against one process
  (gloo on CPU; the same code runs with NCCL on GPUs) and prints a JSON report.
"""

from __future__ import annotations

from .comm import CommLog, count_comm, pp_send_bytes, ring_allreduce_wire_bytes, tp_allreduce_bytes
from .launch import LaunchError, launch
from .pipeline import PipelineStage, bubble, pipeline_generate, pipeline_parallel, stage_bounds
from .shard import ShardBlock, ShardCache, check_split
from .tensor import ParallelGPT, tensor_parallel

__all__ = [
    "CommLog",
    "LaunchError",
    "ParallelGPT",
    "PipelineStage",
    "ShardBlock",
    "ShardCache",
    "bubble",
    "check_split",
    "count_comm",
    "launch",
    "pipeline_generate",
    "pipeline_parallel",
    "pp_send_bytes",
    "ring_allreduce_wire_bytes",
    "stage_bounds",
    "tensor_parallel",
    "tp_allreduce_bytes",
]
