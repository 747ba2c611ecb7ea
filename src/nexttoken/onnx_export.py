"""The book model as one ONNX graph, for the live website (ONNX Runtime Web runs it in the page).

:func:`export_onnx` writes a graph with a KV cache in it, so that the page can both read a whole
prompt and then add one token at a time:

- inputs: ``ids`` int64 ``(1, N)`` (the new tokens) and ``past`` float32 ``(L, 2, H, P, d_head)``
  (keys and values of the ``P`` tokens read before, ``P = 0`` for a fresh prompt);
- outputs: ``logits`` ``(V,)`` of the last new token, ``present`` ``(L, 2, H, P + N, d_head)``
  (``past`` with the new tokens' keys and values appended: the next call's ``past``) and
  ``attentions`` ``(L, H, N, P + N)``, every layer's and head's attention weights (what the book's
  attention maps draw).

``P + N`` must not exceed ``block_size`` (the positions embedded are ``P .. P + N - 1``); past the
context the page recomputes the last ``block_size`` tokens with ``P = 0``, the sliding window of
:func:`nexttoken.generate.generate`. The graph uses the model's own modules (LayerNorm, the
projections, :func:`nexttoken.model.attention`, the MLP), written out as
:class:`nexttoken.model.CausalSelfAttention` does when asked for the weights. The output projection
reads the token embedding (tied weights): the file stores that matrix once.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .model import GPT, attention

__all__ = ["export_onnx", "OnnxStep", "INPUT_NAMES", "OUTPUT_NAMES", "OPSET"]

INPUT_NAMES = ["ids", "past"]
OUTPUT_NAMES = ["logits", "present", "attentions"]
#: The ONNX opset written (ONNX Runtime Web 1.31 runs it).
OPSET = 18


class OnnxStep(nn.Module):
    """One forward pass over new tokens with the keys and values of earlier ones (see module doc)."""

    def __init__(self, model: GPT) -> None:
        super().__init__()
        if not isinstance(model, GPT):
            raise TypeError(f"model must be a nexttoken GPT, got {type(model).__name__}")
        self.model = model
        self.zero_bias = torch.zeros(model.config.vocab_size)

    def forward(
        self, ids: torch.Tensor, past: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``ids`` ``(1, N)``, ``past`` ``(L, 2, H, P, d_head)`` -> logits ``(V,)``, present
        ``(L, 2, H, P + N, d_head)``, attentions ``(L, H, N, P + N)``."""
        t = self.model.transformer
        n_past, n_new = past.shape[3], ids.shape[1]
        positions = torch.arange(n_new, device=ids.device) + n_past  # (N,)
        x = t.wte(ids) + t.wpe(positions)  # (1, N, d)
        keys = torch.arange(n_past + n_new, device=ids.device)  # (T,)
        mask = keys[None, :] <= positions[:, None]  # (N, T): True = may attend
        presents, weights = [], []
        for i, block in enumerate(t.h):
            attn = block.attn
            q, k, v = attn.c_attn(block.ln_1(x)).split(x.size(-1), dim=2)
            q, k, v = attn.split_heads(q), attn.split_heads(k), attn.split_heads(v)  # (1, H, N, dh)
            k = torch.cat([past[i, 0].unsqueeze(0), k], dim=2)  # (1, H, T, dh)
            v = torch.cat([past[i, 1].unsqueeze(0), v], dim=2)
            y, w = attention(q, k, v, mask)
            x = x + attn.c_proj(attn.merge_heads(y))
            x = x + block.mlp(block.ln_2(x))
            presents.append(torch.stack([k[0], v[0]]))  # (2, H, T, dh)
            weights.append(w[0])  # (H, N, T)
        last = t.ln_f(x[:, -1])  # (1, d)
        # the tied output projection as one Gemm against wte (V, d) itself: no transposed copy in
        # the file, and ONNX Runtime prepacks it (a MatMul with wte on the left is ~20x slower)
        logits = F.linear(last, t.wte.weight, self.zero_bias)  # (1, V)
        return logits[0], torch.stack(presents), torch.stack(weights)


def export_onnx(model: GPT, path: str | os.PathLike) -> Path:
    """Write ``model`` as the ONNX graph of :class:`OnnxStep` to ``path``; returns the path.

    The file is written next to ``path`` first and moved into place once complete, so a failed
    export leaves nothing half-written. Weights are stored inside the file (no external data).
    """
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a nexttoken GPT, got {type(model).__name__}")
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"path must end in .onnx, got {str(path)!r}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder {path.parent} does not exist")
    cfg = model.config
    was_training = model.training
    model.eval()
    step = OnnxStep(model)
    ids = torch.zeros(1, 3, dtype=torch.long)
    past = torch.zeros(cfg.n_layer, 2, cfg.n_head, 2, cfg.d_head)
    tmp = path.with_name(path.name + ".part")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the one constant the trace records, sqrt(d_head), is fixed for the model: fine
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            # the TorchScript exporter (torch is pinned): 3 s and one self-contained file, where
            # the dynamo exporter takes ~30 s and writes the weights to a second file
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            torch.onnx.export(
                step,
                (ids, past),
                str(tmp),
                input_names=INPUT_NAMES,
                output_names=OUTPUT_NAMES,
                dynamic_axes={"ids": {1: "n_new"}, "past": {3: "n_past"}},
                opset_version=OPSET,
                dynamo=False,
            )
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
        model.train(was_training)
    return path
