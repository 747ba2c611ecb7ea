"""8-bit weights: fewer bytes per weight, so fewer bytes read per token.

At batch 1 a decoding step reads every weight once (notebook 09: memory-bound), so storing a weight
in 1 byte instead of 4 can make a step up to 4x cheaper, at a measured cost in quality.

*Weight-only int8, per output channel* (the few visible lines of :func:`quantize_int8`): each row
``W[j]`` of a ``(out, in)`` matrix gets its own scale ``s_j = max_i |W[j, i]| / 127``; the stored
weight is ``round(W / s)``, an int8 in ``[-127, 127]``; the model uses ``s * W_int8``
(:func:`dequantize`). Each weight is off by at most ``s_j / 2``.

- :func:`int8_weights` swaps every ``nn.Linear`` of a GPT for an :class:`Int8Linear` holding int8
  weights and scales. It *dequantizes* at every call: it shows the rounding's effect on the model
  exactly, but it is not faster (the arithmetic is still fp32).
- :func:`quantize` ``(model, "int8")`` does the same through a real engine: torch's dynamic
  quantization of ``nn.Linear`` (fbgemm / x86 backend), per-channel int8 weights, activations
  quantized to int8 on the fly, an int8 x int8 matrix kernel. ``"bf16"`` is the 2-byte copy of
  notebook 09. The embedding tables stay as they are: a step reads one row of each.

Both return a new model (the original is untouched) that :func:`nexttoken.generate.generate` and
:func:`nexttoken.book.held_out_metrics` accept unchanged. The tied output projection becomes its own
int8 matrix (the fp32 embedding is still used for the input lookup).
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from .model import GPT

__all__ = [
    "quantize_int8",
    "dequantize",
    "Int8Linear",
    "int8_weights",
    "quantize",
    "METHODS",
    "weight_bytes",
]

#: What :func:`quantize` can do.
METHODS = ("int8", "bf16")


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel int8 weights: ``(out, in)`` float -> ``(W_int8 (out, in), scale (out,))``."""
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127  # one scale per row (output channel)
    w_int8 = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return w_int8, scale


def dequantize(w_int8: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``scale * W_int8``: the float matrix the int8 weights stand for, ``(out, in)``."""
    return w_int8.to(scale.dtype) * scale[:, None]


class Int8Linear(nn.Module):
    """A linear layer with int8 weights and fp32 scales, dequantized at every call (for teaching)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w_int8, scale = quantize_int8(linear.weight.detach().float())
        self.register_buffer("weight_int8", w_int8)
        self.register_buffer("scale", scale)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        self.register_buffer("bias", bias)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight ``(out, in)``."""
        return dequantize(self.weight_int8, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


def _check_model(model: object) -> None:
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a nexttoken GPT, got {type(model).__name__}")
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise ValueError("model has no nn.Linear left to quantize (already quantized?)")


def _swap_linears(module: nn.Module, make) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, make(child))
        else:
            _swap_linears(child, make)


def int8_weights(model: GPT) -> GPT:
    """A copy of ``model`` whose every ``nn.Linear`` is an :class:`Int8Linear` (eval mode)."""
    _check_model(model)
    q = copy.deepcopy(model).float().eval()
    _swap_linears(q, Int8Linear)
    return q


def quantize(model: GPT, method: str = "int8") -> GPT:
    """A faster copy of ``model``: ``"int8"`` (torch dynamic quantization, per-channel int8 weights,
    fbgemm/x86 kernels, CPU only) or ``"bf16"`` (every weight in bfloat16). Eval mode."""
    _check_model(model)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if method == "bf16":
        return copy.deepcopy(model).to(torch.bfloat16).eval()
    if model.device.type != "cpu":
        raise ValueError("quantize(model, 'int8') runs on the CPU: move the model with .cpu()")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        q = quantize_dynamic(
            copy.deepcopy(model).float().eval(),
            {nn.Linear: per_channel_dynamic_qconfig},
            dtype=torch.qint8,
        )
    return q.eval()


def weight_bytes(model: nn.Module) -> int:
    """Bytes a decoding step reads for the weights: every matrix and vector once, and one row of
    each embedding table (int8 weights count 1 byte, plus their scales)."""
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            total += m.weight.size(1) * m.weight.element_size()
        elif isinstance(m, Int8Linear):
            total += m.weight_int8.numel() + m.scale.numel() * m.scale.element_size()
            total += 0 if m.bias is None else m.bias.numel() * m.bias.element_size()
        elif isinstance(m, torch.ao.nn.quantized.dynamic.Linear):  # torch's int8 linear
            w, b = m.weight(), m.bias()
            total += w.numel() + w.size(0) * 4  # int8 weights + one fp32 scale a row
            total += 0 if b is None else b.numel() * b.element_size()
        elif isinstance(m, (nn.Linear, nn.LayerNorm)):
            total += sum(p.numel() * p.element_size() for p in m.parameters(recurse=False))
    return total
