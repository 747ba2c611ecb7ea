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
- :func:`quantize` ``(model, "int8")`` does it through a real int8 x int8 kernel
  (:class:`RowInt8Linear`): the same int8 weights, and each *row* of activations (one position of
  one sequence) rounded to 7-bit integers with its own scale ``t = max |x| / 63``. The products are
  summed in integers (exact, so in any order), then ``y = t * (s_j * acc) + b``, element by element.
  A row's output of such a layer therefore depends on that row alone, bit for bit: not on the other
  sequences in the batch, nor on how many positions share the pass. The attention, the one place
  where positions meet, is summed in float64 and rounded to fp32 (:class:`Float64Attention`), so
  that its last-bit differences between a cached and an uncached, a batched and a lone pass do not
  reach the 7-bit rounding. Cached or not, batched or alone, served or verified by a speculative
  pass: the same tokens. ``"bf16"`` is the 2-byte copy of notebook 09. The embedding tables stay
  as they are: a step reads one row of each.

Both return a new model (the original is untouched) that :func:`nexttoken.generate.generate` and
:func:`nexttoken.book.held_out_metrics` accept unchanged. The tied output projection becomes its own
int8 matrix (the fp32 embedding is still used for the input lookup).

*The kernel.* :class:`RowInt8Linear` calls fbgemm (torch's x86 int8 library) through
``torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32`` with a fixed input scale of 1
and zero point 64: the activations it receives are already integers in ``[-63, 63]``, so its own
rounding is exact and it returns ``s_j * acc`` in fp32. torch's ``quantize_dynamic`` (what this
module used before) rounds a whole tensor with *one* scale, so a row's tokens depended on its batch
neighbours. 7 bits, not 8: fbgemm multiplies unsigned 8-bit activations by signed 8-bit weights in
pairs summed in 16 bits, which saturates on CPUs without VNNI above 7 bits -- with 7, the integer
sums are exact on every x86 CPU. torch announces that its quantized-tensor API moves to torchao;
only the weight packing (once, in :func:`quantize`) touches it. torchao 0.18's CPU int8 paths
(``Int8DynamicActivationInt8WeightConfig``, ``Int8WeightOnlyConfig``) and
``torch._weight_int8pack_mm`` were slower than fp32 for one row on this book's CPU, and
``torch._int_mm`` (exact integers too) 2.5x slower than fbgemm (benchmarks/RESULTS.md), so fbgemm
stays until they are not.
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from .model import GPT, CausalSelfAttention

__all__ = [
    "quantize_int8",
    "dequantize",
    "Int8Linear",
    "int8_weights",
    "RowInt8Linear",
    "quantize_rows",
    "Float64Attention",
    "use_float64_attention",
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


#: Activations are rounded to integers in ``[-ACT_LEVELS, ACT_LEVELS]`` (7 bits, see the module doc).
ACT_LEVELS = 63
_ZERO_POINT = 64  # fbgemm's unsigned activations: x_int + 64 is in [1, 127]


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row 7-bit activations: ``(M, in)`` float -> ``(x_int (M, in), scale (M, 1))``.

    ``x_int`` holds integers in ``[-63, 63]`` (as fp32) and ``scale * x_int`` approximates ``x``.
    Each row's scale is ``max |x_row| / 63``, computed from that row alone."""
    scale = torch.linalg.vector_norm(x, float("inf"), dim=-1, keepdim=True)  # max |x|, per row
    scale = scale.clamp_(min=1e-30).div_(ACT_LEVELS)
    return torch.div(x, scale).round_(), scale


def _pack(w_int8: torch.Tensor, scale: torch.Tensor):
    """fbgemm's packed form of per-channel int8 weights ``(out, in)`` (no bias: added after)."""
    engine = torch.backends.quantized.engine
    if engine not in ("x86", "fbgemm"):
        raise ValueError(
            f"int8 needs torch's x86 or fbgemm quantized engine; torch.backends.quantized.engine "
            f"is {engine!r}"
        )
    zero = torch.zeros(scale.numel(), dtype=torch.long)
    with warnings.catch_warnings():  # torch announces the quantized-tensor API's move to torchao
        warnings.simplefilter("ignore")
        q = torch._make_per_channel_quantized_tensor(w_int8, scale.double(), zero, 0)
        return torch.ops.quantized.linear_prepack(q, None)


class RowInt8Linear(nn.Module):
    """A linear layer computed in int8 x int8 with a scale per activation row and per weight row.

    ``(..., in) -> (..., out)``. Row ``i`` of the output is ``t_i * (s_j * sum_k x_int[i, k] *
    W_int8[j, k]) + b_j``: integer products summed exactly, then elementwise fp32 -- it depends on
    row ``i`` of the input alone. Buffers ``weight_int8 (out, in)``, ``weight_scale (out,)`` and
    ``bias (out,)`` (or None) are the whole state (what a checkpoint stores); the packed copy the
    kernel reads is rebuilt from them."""

    def __init__(
        self, weight_int8: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None
    ) -> None:
        super().__init__()
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("weight_scale", weight_scale)
        self.register_buffer("bias", bias)
        self.out_features, self.in_features = weight_int8.shape
        self._packed = _pack(weight_int8, weight_scale)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> RowInt8Linear:
        """The int8 copy of an ``nn.Linear`` (per-output-channel weights, :func:`quantize_int8`)."""
        w_int8, scale = quantize_int8(linear.weight.detach().float().cpu())
        bias = None if linear.bias is None else linear.bias.detach().float().cpu().clone()
        return cls(w_int8, scale, bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._packed = _pack(self.weight_int8, self.weight_scale)  # new weights: repack

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features).float()
        x_int, t = quantize_rows(x2)
        y = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
            x_int.contiguous(), 1.0, _ZERO_POINT, self._packed
        )
        y.mul_(t)
        if self.bias is not None:
            y.add_(self.bias)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            "int8 weights x per-row 7-bit activations"
        )


class _Float64Cache:
    """A KV cache (plain or paged) seen in float64: it stores the fp32 keys and values it always
    stored (exactly: they came from fp32) and hands them back as float64."""

    def __init__(self, cache) -> None:
        self.cache = cache

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        k, v = self.cache.update(layer, k.float(), v.float())
        return k.double(), v.double()

    def __getattr__(self, name: str):  # anything else (e.g. a paged view's attend): the cache's
        if name == "cache":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.cache, name)


class Float64Attention(CausalSelfAttention):
    """:class:`~nexttoken.model.CausalSelfAttention` computed in float64, its output rounded to fp32.

    The int8 model's attention. An fp32 attention over 1 query and over ``T`` queries (or over a
    padded or paged batch) sums in different orders and differs in the last bits; an int8 layer
    then rounds that input to 7 bits, and a last-bit change sitting on a rounding boundary moves a
    whole step (measured: 0.11 on a GPT-2-shaped model's logits, cached against uncached). In
    float64 the orders still differ, by about 1e-16 relative, and rounding to fp32 erases that
    unless a value lies within 1e-16 of an fp32 rounding boundary (about 2e-8 of them). The
    weights it returns (``need_weights``) are fp32 too."""

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return super().split_heads(x).double()

    @staticmethod
    def merge_heads(x: torch.Tensor) -> torch.Tensor:
        return CausalSelfAttention.merge_heads(x).float()

    def forward(self, x, cache=None, layer=0, need_weights=False, mask=None):
        wrapped = None if cache is None else _Float64Cache(cache)
        y, weights = super().forward(x, wrapped, layer, need_weights, mask)
        return y, None if weights is None else weights.float()


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
    """A faster copy of ``model``, in eval mode: ``"int8"`` (every ``nn.Linear`` a
    :class:`RowInt8Linear`: per-channel int8 weights, per-row int8 activations, fbgemm/x86, CPU
    only; attention in float64 (:class:`Float64Attention`); a row's tokens do not depend on its
    batch) or ``"bf16"`` (every weight in bfloat16)."""
    _check_model(model)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if method == "bf16":
        return copy.deepcopy(model).to(torch.bfloat16).eval()
    if model.device.type != "cpu":
        raise ValueError("quantize(model, 'int8') runs on the CPU: move the model with .cpu()")
    q = copy.deepcopy(model).float().eval()
    _swap_linears(q, RowInt8Linear.from_linear)
    use_float64_attention(q)
    return q


def use_float64_attention(model: GPT) -> None:
    """Make every attention layer of ``model`` a :class:`Float64Attention`, in place (same state)."""
    for m in model.modules():
        if type(m) is CausalSelfAttention:
            m.__class__ = Float64Attention


def weight_bytes(model: nn.Module) -> int:
    """Bytes a decoding step reads for the weights: every matrix and vector once, and one row of
    each embedding table (int8 weights count 1 byte, plus their scales)."""
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            total += m.weight.size(1) * m.weight.element_size()
        elif isinstance(m, (Int8Linear, RowInt8Linear)):
            scale = m.scale if isinstance(m, Int8Linear) else m.weight_scale
            total += m.weight_int8.numel() + scale.numel() * scale.element_size()
            total += 0 if m.bias is None else m.bias.numel() * m.bias.element_size()
        elif isinstance(m, torch.ao.nn.quantized.dynamic.Linear):  # torch's int8 linear
            w, b = m.weight(), m.bias()
            total += w.numel() + w.size(0) * 4  # int8 weights + one fp32 scale a row
            total += 0 if b is None else b.numel() * b.element_size()
        elif isinstance(m, (nn.Linear, nn.LayerNorm)):
            total += sum(p.numel() * p.element_size() for p in m.parameters(recurse=False))
    return total
