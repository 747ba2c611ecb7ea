"""Looking inside the model while it works: every activation, the logit lens, attribution, patching.

Everything here *observes* a :class:`~nexttoken.model.GPT` through PyTorch forward hooks
(``register_forward_hook`` / ``register_forward_pre_hook`` on the modules that already exist:
each block, its ``attn``, ``attn.c_attn``, ``attn.c_proj``, ``ln_2``, ``mlp``, ``mlp.c_proj``, the
token embedding and ``ln_f``); none of it carries a second copy of the forward pass, and the
model's own output is unchanged, bit for bit. The int8 model of :mod:`nexttoken.quantize` keeps
those module names, so it is traced the same way.

Names follow TransformerLens's, so a reader can move over to the field's tool (notebook 13 checks
the two agree on every name below):

- ``hook_embed``, ``hook_pos_embed`` ``(B, N, d)``: token and position embeddings;
- ``blocks.{l}.hook_resid_pre`` ``(B, N, d)``: the residual stream entering block ``l``;
- ``blocks.{l}.attn.hook_q`` / ``hook_k`` / ``hook_v`` ``(B, N, H, d_head)``;
- ``blocks.{l}.attn.hook_pattern`` ``(B, H, N, N)``: attention weights (rows sum to 1). The fused
  kernel the model calls never forms them, so the hook on ``attn.c_attn`` computes them from that
  pass's queries and keys with :func:`nexttoken.attention.attention_weights` (bit for bit the
  weights that ``model.run(..., output_attentions=True)`` computes from the same queries and keys);
- ``blocks.{l}.attn.hook_z`` ``(B, N, H, d_head)``: each head's weighted sum of values (the input of
  the output projection ``attn.c_proj``);
- ``blocks.{l}.hook_attn_out``, ``blocks.{l}.hook_resid_mid``, ``blocks.{l}.mlp.hook_post``
  ``(B, N, 4d)`` (after GELU), ``blocks.{l}.hook_mlp_out``, ``blocks.{l}.hook_resid_post``;
- ``ln_final.hook_scale`` ``(B, N, 1)`` and ``ln_final.hook_normalized`` ``(B, N, d)``: the final
  LayerNorm's ``sqrt(var + eps)`` and ``(x - mean) / scale`` (before its gain and bias, as in
  TransformerLens).

The logits are ``Trace.logits`` ``(B, N, V)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .attention import attention_weights
from .model import GPT, GPTConfig

__all__ = [
    "Trace",
    "trace",
    "hook_names",
    "LAYER_HOOKS",
    "ATTENTION_ONLY_HOOKS",
    "PATCHABLE",
    "trace_nbytes",
    "logit_lens",
    "direct_logit_attribution",
    "patch",
    "patch_sweep",
    "logit_diff",
    "Divergence",
    "first_divergence",
    "max_differences",
    "hooked_transformer_config",
    "hooked_transformer_state_dict",
    "induction_scores",  # noqa: F822 (from nexttoken.heads, on first use)
    "previous_token_scores",  # noqa: F822
]

#: The hooks of block ``l``, in the order the forward pass meets them (``blocks.{l}.`` + kind).
LAYER_HOOKS = (
    "hook_resid_pre",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "hook_resid_mid",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
)

#: The hooks of a block without an MLP (:class:`nexttoken.heads.AttentionOnlyBlock`).
ATTENTION_ONLY_HOOKS = tuple(k for k in LAYER_HOOKS if "mlp" not in k and k != "hook_resid_mid")

#: Per-layer hooks :func:`patch` can overwrite (``hook_resid_mid`` is read inside the block, where
#: no hook can replace the residual that the MLP's output is added to).
PATCHABLE = tuple(k for k in LAYER_HOOKS if k != "hook_resid_mid") + ("hook_embed",)

_PER_HEAD = ("attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z", "attn.hook_pattern")


def _kinds(model: GPT) -> tuple[str, ...]:
    """The per-block hook kinds of ``model`` (blocks without an MLP have fewer)."""
    has_mlp = all(hasattr(block, "mlp") for block in model.transformer.h)
    return LAYER_HOOKS if has_mlp else ATTENTION_ONLY_HOOKS


def hook_names(model_or_config: GPT | GPTConfig) -> list[str]:
    """Every name :func:`trace` records, in forward order, for a model (or a GPT of this config)."""
    if isinstance(model_or_config, GPT):
        config, kinds = model_or_config.config, _kinds(model_or_config)
    else:
        config, kinds = model_or_config, LAYER_HOOKS
    return _names(config, kinds)


def _names(config: GPTConfig, kinds: tuple[str, ...]) -> list[str]:
    names = ["hook_embed", "hook_pos_embed"]
    for layer in range(config.n_layer):
        names += [f"blocks.{layer}.{kind}" for kind in kinds]
    return names + ["ln_final.hook_scale", "ln_final.hook_normalized"]


def _valid_names_text(config: GPTConfig, kinds: tuple[str, ...]) -> str:
    listed = ", ".join(f"blocks.{{l}}.{k}" for k in kinds)
    return (
        f"hook_embed, hook_pos_embed, {listed} (l in 0..{config.n_layer - 1}), "
        f"ln_final.hook_scale, ln_final.hook_normalized"
    )


def _check_names(config: GPTConfig, names: object, kinds: tuple[str, ...]) -> list[str]:
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"hook names must be a str or a list of str, got {names!r}")
    valid = set(_names(config, kinds))
    for n in names:
        if n not in valid:
            raise ValueError(
                f"unknown hook name {n!r}; valid names: {_valid_names_text(config, kinds)}"
            )
    return list(names)


@dataclass
class Trace:
    """The activations of one forward pass, by TransformerLens name (see the module docstring).

    ``trace[name]`` is a tensor (see :func:`hook_names` for the names and their shapes);
    ``logits`` ``(B, N, V)`` is the model's output, unchanged; ``ids`` ``(B, N)`` what it read.
    """

    ids: torch.Tensor
    logits: torch.Tensor
    config: GPTConfig
    activations: dict[str, torch.Tensor] = field(repr=False)
    layer_kinds: tuple[str, ...] = field(default=LAYER_HOOKS, repr=False)

    def __repr__(self) -> str:
        B, N, V = self.logits.shape
        return (
            f"Trace({len(self.activations)} activations of {self.config.name or 'a GPT'} on "
            f"ids {(B, N)}, logits {(B, N, V)}, {self.nbytes:,} bytes)"
        )

    def names(self) -> list[str]:
        """The recorded names, in the order the forward pass met them."""
        return list(self.activations)

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.activations:
            if isinstance(name, str) and name in _names(self.config, self.layer_kinds):
                raise ValueError(
                    f"{name!r} was not recorded by this trace (names=...); recorded: "
                    f"{', '.join(self.activations)}"
                )
            raise ValueError(
                f"unknown hook name {name!r}; valid names: "
                f"{_valid_names_text(self.config, self.layer_kinds)}"
            )
        return self.activations[name]

    def __contains__(self, name: object) -> bool:
        return name in self.activations

    @property
    def nbytes(self) -> int:
        """Bytes of the recorded activations and logits, each name counted as its own tensor
        (``blocks.{l}.hook_resid_post`` and ``blocks.{l+1}.hook_resid_pre`` are in fact one tensor;
        the q, k, v views share one; so the memory held is somewhat less). For a full trace this
        equals :func:`trace_nbytes`."""
        tensors = list(self.activations.values()) + [self.logits]
        return sum(t.numel() * t.element_size() for t in tensors)


def trace_nbytes(
    config: GPTConfig, batch: int, n_tokens: int, bytes_per_number: int = 4, *, mlp: bool = True
) -> int:
    """Bytes of a full :class:`Trace` of ``batch`` sequences of ``n_tokens``, from the shapes alone.

    Per layer: 9 tensors ``(B, N, d)`` (resid_pre, q, k, v, z, attn_out, resid_mid, mlp_out,
    resid_post), one ``(B, N, 4d)`` (mlp post) and the pattern ``(B, H, N, N)``; then the two
    embeddings and ``hook_normalized`` ``(B, N, d)``, ``hook_scale`` ``(B, N, 1)`` and the logits
    ``(B, N, V)``. ``mlp=False``: blocks without an MLP (7 tensors ``(B, N, d)`` and the pattern).
    """
    B, N, d = batch, n_tokens, config.n_embd
    per_layer = 9 * B * N * d + B * N * config.d_ff if mlp else 7 * B * N * d
    per_layer += B * config.n_head * N * N
    numbers = config.n_layer * per_layer + 3 * B * N * d + B * N + B * N * config.vocab_size
    return numbers * bytes_per_number


def _check_model(model: object, name: str = "model") -> GPT:
    if not isinstance(model, GPT):
        raise TypeError(f"{name} must be a nexttoken GPT, got {type(model).__name__}")
    return model


def _heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """``(B, N, d) -> (B, N, H, d_head)`` (a view)."""
    B, N, d = x.shape
    return x.view(B, N, n_head, d // n_head)


Edit = Callable[[torch.Tensor], torch.Tensor]


def _install(
    model: GPT, record: dict[str, torch.Tensor], want: set[str], edits: dict[str, Edit]
) -> list:
    """Register the hooks that fill ``record`` with the names in ``want`` and apply ``edits``
    (name -> function of the activation returning its replacement). Returns the handles."""
    handles = []
    tr = model.transformer
    H = model.config.n_head

    def keep(name: str, value: torch.Tensor) -> torch.Tensor:
        if name in edits:
            value = edits[name](value)
        if name in want:
            record[name] = value.detach()
        return value

    def on_embed(module, args, out):
        return keep("hook_embed", out)

    handles.append(tr.wte.register_forward_hook(on_embed))
    for layer, block in enumerate(tr.h):
        p = f"blocks.{layer}."
        attn = block.attn
        mlp = getattr(block, "mlp", None)  # None: an attention-only block
        v_now: dict[str, torch.Tensor] = {}  # this pass's values, for a patched pattern

        def on_resid_pre(module, args, p=p):
            x = keep(p + "hook_resid_pre", args[0])
            return (x,) + tuple(args[1:])

        def on_qkv(module, args, out, p=p, attn=attn, v_now=v_now):
            d = out.size(-1) // 3
            if any(p + "attn.hook_" + s in edits for s in "qkv"):
                out = out.clone()
            q, k, v = (_heads(t, H) for t in out.split(d, dim=-1))
            for name, t in (("q", q), ("k", k), ("v", v)):
                if p + "attn.hook_" + name in edits:
                    t.copy_(edits[p + "attn.hook_" + name](t))
                if p + "attn.hook_" + name in want:
                    record[p + "attn.hook_" + name] = t.detach()
            v_now["v"] = v
            if p + "attn.hook_pattern" in want:  # in the attention's own precision (float64: int8)
                qh = attn.split_heads(q.flatten(2))
                kh = attn.split_heads(k.flatten(2))
                record[p + "attn.hook_pattern"] = attention_weights(qh, kh).to(out.dtype).detach()
            return out

        def on_z(module, args, p=p, attn=attn, v_now=v_now):
            z = args[0]
            if p + "attn.hook_pattern" in edits:  # z = (the patched pattern) @ this pass's values
                v = attn.split_heads(v_now["v"].flatten(2))
                pattern = edits[p + "attn.hook_pattern"](None).to(v.dtype)
                z = attn.merge_heads(pattern @ v).to(z.dtype)
            zh = keep(p + "attn.hook_z", _heads(z, H))
            return (zh.flatten(2),) + tuple(args[1:])

        def on_attn_out(module, args, out, p=p):
            return (keep(p + "hook_attn_out", out[0]),) + tuple(out[1:])

        def on_resid_mid(module, args, p=p):
            keep(p + "hook_resid_mid", args[0])

        def on_mlp_post(module, args, p=p):
            return (keep(p + "mlp.hook_post", args[0]),) + tuple(args[1:])

        def on_mlp_out(module, args, out, p=p):
            return keep(p + "hook_mlp_out", out)

        def on_resid_post(module, args, out, p=p):
            return (keep(p + "hook_resid_post", out[0]),) + tuple(out[1:])

        handles += [
            block.register_forward_pre_hook(on_resid_pre),
            attn.c_attn.register_forward_hook(on_qkv),
            attn.c_proj.register_forward_pre_hook(on_z),
            attn.register_forward_hook(on_attn_out),
            block.register_forward_hook(on_resid_post),
        ]
        if mlp is not None:
            handles += [
                block.ln_2.register_forward_pre_hook(on_resid_mid),
                mlp.c_proj.register_forward_pre_hook(on_mlp_post),
                mlp.register_forward_hook(on_mlp_out),
            ]

    ln_f = tr.ln_f

    def on_ln_final(module, args):
        if {"ln_final.hook_scale", "ln_final.hook_normalized"} & want:
            x = args[0]
            xc = x - x.mean(-1, keepdim=True)
            scale = (xc.pow(2).mean(-1, keepdim=True) + ln_f.eps).sqrt()
            if "ln_final.hook_scale" in want:
                record["ln_final.hook_scale"] = scale.detach()
            if "ln_final.hook_normalized" in want:
                record["ln_final.hook_normalized"] = (xc / scale).detach()

    handles.append(ln_f.register_forward_pre_hook(on_ln_final))
    return handles


def _run(
    model: GPT, ids: torch.Tensor, want: set[str], edits: dict[str, Edit]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    record: dict[str, torch.Tensor] = {}
    handles = _install(model, record, want, edits)
    try:
        with torch.no_grad():
            logits = model(ids)
    finally:
        for h in handles:
            h.remove()
    if "hook_pos_embed" in want:  # added by the model as a slice of wpe, not through a module
        B, N = ids.shape
        pos = model.transformer.wpe.weight[:N].detach()
        record["hook_pos_embed"] = pos.unsqueeze(0).expand(B, N, pos.size(-1))
    return logits, record


def _check_ids(model: GPT, ids: object, name: str = "ids") -> torch.Tensor:
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, N), got {type(ids).__name__}")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor (torch.long), got dtype {ids.dtype}")
    if ids.dim() != 2:
        raise ValueError(f"{name} must have shape (B, N), got {tuple(ids.shape)}")
    model.check_ids(ids)
    return ids


def trace(model: GPT, ids: torch.Tensor, *, names: list[str] | None = None) -> Trace:
    """One forward pass of ``model`` on ids ``(B, N)``, recording every activation by name.

    ``names`` (default: all of :func:`hook_names`) limits what is kept. The model's logits are
    ``Trace.logits``, the same tensor ``model(ids)`` returns, bit for bit: the hooks read, they
    change nothing.
    """
    _check_model(model)
    _check_ids(model, ids)
    kinds = _kinds(model)
    all_names = _names(model.config, kinds)
    want = set(all_names if names is None else _check_names(model.config, names, kinds))
    logits, record = _run(model, ids, want, {})
    ordered = {n: record[n] for n in all_names if n in record}
    return Trace(ids, logits, model.config, ordered, kinds)


def logit_lens(model: GPT, trace: Trace) -> torch.Tensor:
    """Each layer's residual stream read as if it were the last: ``(L + 1, B, N, V)`` logits.

    Entry ``i < L`` is ``lm_head(ln_f(blocks.{i}.hook_resid_pre))``; entry ``L`` reads
    ``blocks.{L-1}.hook_resid_post``, the very tensor the model's ``ln_f`` read, through the same
    modules: it equals ``trace.logits`` exactly.
    """
    _check_model(model)
    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be a Trace (from inspect.trace), got {type(trace).__name__}")
    L = model.config.n_layer
    resid = [trace[f"blocks.{i}.hook_resid_pre"] for i in range(L)]
    resid.append(trace[f"blocks.{L - 1}.hook_resid_post"])
    with torch.no_grad():
        return torch.stack([model.lm_head(model.transformer.ln_f(r)) for r in resid])


def _check_index(name: str, value: object, size: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int in [0, {size - 1}], got {value!r}")
    if not 0 <= value < size:
        raise ValueError(f"{name} must be in [0, {size - 1}], got {value}")
    return value


#: The tolerance within which :func:`direct_logit_attribution`'s parts must sum to the logit.
ATTRIBUTION_ATOL = 1e-4


def direct_logit_attribution(
    model: GPT, trace: Trace, position: int, token: int, *, batch: int = 0
) -> dict[str, float]:
    """The logit of ``token`` at ``position`` (of row ``batch``), split into what wrote it.

    The residual stream at the end is a sum: embeddings + every head's output + each attention
    layer's output bias + every MLP's output. The logit is ``W_U[token] · ln_f(x)``, and
    ``ln_f(x) = (x - mean(x)) / scale * w + b`` is linear in ``x`` *once its scale is fixed*.
    Freezing the scale at the value this pass computed (``ln_final.hook_scale``) makes the logit
    an exact sum, one part per writer: ``part = W_U[token] · ((c - mean(c)) / scale * w)``. A part
    says how much that writer's vector pushed this logit in *this* pass; it is not what the logit
    would lose without it (removing a part would change the scale too).

    Keys: ``"embed"`` (token + position), ``"L{l}H{h}"`` (head ``h``'s ``z`` through its slice of
    the output projection), ``"L{l}.attn_bias"``, ``"L{l}.mlp"`` (with its bias), and ``"bias"``
    (the final LayerNorm's bias, ``W_U[token] · b``); no ``"L{l}.mlp"`` for a block without MLP. The values sum to ``trace.logits[batch,
    position, token]`` (checked here to :data:`ATTRIBUTION_ATOL`; computed in float64).
    """
    _check_model(model)
    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be a Trace (from inspect.trace), got {type(trace).__name__}")
    B, N, V = trace.logits.shape
    b = _check_index("batch", batch, B)
    p = _check_index("position", position, N)
    t = _check_index("token", token, V)
    cfg = model.config
    H, dh = cfg.n_head, cfg.d_head
    ln_f = model.transformer.ln_f
    for m in (model.lm_head, *(blk.attn.c_proj for blk in model.transformer.h)):
        if not isinstance(getattr(m, "weight", None), torch.Tensor):
            raise TypeError(f"direct_logit_attribution needs float weights; {m} has none")
    u = model.lm_head.weight[t].detach().double()
    w, beta = ln_f.weight.detach().double(), ln_f.bias.detach().double()
    scale = trace["ln_final.hook_scale"][b, p, 0].double()

    def part(c: torch.Tensor) -> float:
        c = c.double()
        return float(((c - c.mean()) / scale * w) @ u)

    out = {"embed": part(trace["hook_embed"][b, p] + trace["hook_pos_embed"][b, p].double())}
    for layer, block in enumerate(model.transformer.h):
        z = trace[f"blocks.{layer}.attn.hook_z"][b, p].double()  # (H, d_head)
        W_O = block.attn.c_proj.weight.detach().double()  # (d, H * d_head)
        for h in range(H):
            out[f"L{layer}H{h}"] = part(W_O[:, h * dh : (h + 1) * dh] @ z[h])
        out[f"L{layer}.attn_bias"] = part(block.attn.c_proj.bias.detach())
        if hasattr(block, "mlp"):
            out[f"L{layer}.mlp"] = part(trace[f"blocks.{layer}.hook_mlp_out"][b, p])
    out["bias"] = float(beta @ u)
    logit = float(trace.logits[b, p, t])
    total = math.fsum(out.values())
    if abs(total - logit) > ATTRIBUTION_ATOL:
        raise AssertionError(
            f"the parts sum to {total:.6f}, the logit is {logit:.6f} (more than "
            f"{ATTRIBUTION_ATOL} apart): was the trace made by this model?"
        )
    return out


# ---------------------------------------------------------------------------------------------
# Activation patching


def _patch_edit(clean: torch.Tensor, kind: str, position: int | None, head: int | None) -> Edit:
    """The function that replaces an activation of the corrupted run by the clean one (at
    ``position`` / ``head`` only, when given)."""
    pos_dim, head_dim = (2, 1) if kind == "attn.hook_pattern" else (1, 2)

    def edit(corrupt: torch.Tensor | None) -> torch.Tensor:
        if position is None and head is None:
            return clean
        index: list = [slice(None)] * clean.dim()
        if position is not None:
            index[pos_dim] = position
        if head is not None:
            index[head_dim] = head
        if corrupt is None:
            raise ValueError("internal: a partial patch needs the corrupted run's activation")
        new = corrupt.clone()
        new[tuple(index)] = clean[tuple(index)]
        return new

    return edit


def _check_patch_args(
    model: GPT, clean_ids: object, corrupt_ids: object, kind: str, position, head
) -> None:
    _check_ids(model, clean_ids, "clean_ids")
    _check_ids(model, corrupt_ids, "corrupt_ids")
    if clean_ids.shape != corrupt_ids.shape:
        raise ValueError(
            f"clean_ids and corrupt_ids must have the same shape (B, N), got "
            f"{tuple(clean_ids.shape)} and {tuple(corrupt_ids.shape)}"
        )
    if position is not None:
        _check_index("position", position, clean_ids.size(1))
    if head is not None:
        if kind not in _PER_HEAD:
            raise ValueError(
                f"head= applies to per-head hooks only ({', '.join(_PER_HEAD)}), not {kind!r}"
            )
        _check_index("head", head, model.config.n_head)


def _patchable(model: GPT) -> list[str]:
    """The per-layer kinds :func:`patch` can overwrite in ``model``."""
    return [k for k in _kinds(model) if k in PATCHABLE]


def _split_hook(model: GPT, hook: object) -> tuple[int | None, str]:
    config, kinds = model.config, _patchable(model)
    allowed = [f"blocks.{{l}}.{k}" for k in kinds] + ["hook_embed"]
    if not isinstance(hook, str):
        raise TypeError(f"hook must be a str, got {type(hook).__name__}")
    if hook == "hook_embed":
        return None, hook
    parts = hook.split(".", 2)
    if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit() and parts[2] in kinds:
        layer = int(parts[1])
        if layer < config.n_layer:
            return layer, parts[2]
    raise ValueError(
        f"cannot patch {hook!r}; patchable names: {', '.join(allowed)} "
        f"(l in 0..{config.n_layer - 1})"
    )


def patch(
    model: GPT,
    clean_ids: torch.Tensor,
    corrupt_ids: torch.Tensor,
    *,
    hook: str,
    position: int | None = None,
    head: int | None = None,
    clean: Trace | None = None,
) -> torch.Tensor:
    """Activation patching: the logits ``(B, N, V)`` of the run on ``corrupt_ids`` in which the
    activation ``hook`` is taken from the run on ``clean_ids`` -- all of it, or only at
    ``position`` (and only head ``head`` for q, k, v, z and pattern).

    ``hook``: ``hook_embed`` or ``blocks.{l}.{kind}`` for a kind of :data:`PATCHABLE`. A patched
    ``attn.hook_pattern`` makes that layer's ``z`` the (partly) clean pattern times the corrupted
    run's values, written out rather than through the fused kernel (so positions it does not touch
    move in the last bits). ``clean``: a :class:`Trace` of the clean run that holds ``hook`` (so
    that many patches share one clean pass, as :func:`patch_sweep` does); computed when not given.
    """
    _check_model(model)
    _, kind = _split_hook(model, hook)
    _check_patch_args(model, clean_ids, corrupt_ids, kind, position, head)
    if clean is None:
        clean = trace(model, clean_ids, names=[hook])
    elif not isinstance(clean, Trace) or not torch.equal(clean.ids, clean_ids):
        raise ValueError("clean must be the Trace of clean_ids (inspect.trace(model, clean_ids))")
    return _patched_logits(model, corrupt_ids, hook, kind, clean[hook], position, head)


def _patched_logits(model, corrupt_ids, hook, kind, clean_value, position, head) -> torch.Tensor:
    edit = _patch_edit(clean_value, kind, position, head)
    if kind == "attn.hook_pattern" and (position is not None or head is not None):
        # a partial pattern patch starts from the corrupted run's own pattern (computed in the
        # same pass, from its queries and keys) -- record it first, then edit it
        want = {hook}

        def edit_from_record(_):
            return edit(record[hook])

        record: dict[str, torch.Tensor] = {}
        handles = _install(model, record, want, {hook: edit_from_record})
        try:
            with torch.no_grad():
                return model(corrupt_ids)
        finally:
            for h in handles:
                h.remove()
    logits, _ = _run(model, corrupt_ids, set(), {hook: edit})
    return logits


def logit_diff(
    good_token: int, bad_token: int, position: int = -1
) -> Callable[[torch.Tensor], float]:
    """A metric for :func:`patch_sweep`: ``logit[good] - logit[bad]`` at ``position``, averaged over
    the batch, from logits ``(B, N, V)``."""

    def metric(logits: torch.Tensor) -> float:
        row = logits[:, position].double()
        return float((row[:, good_token] - row[:, bad_token]).mean())

    return metric


def patch_sweep(
    model: GPT,
    clean_ids: torch.Tensor,
    corrupt_ids: torch.Tensor,
    *,
    hook_kind: str = "hook_resid_pre",
    metric: Callable[[torch.Tensor], float] | None = None,
    head: int | None = None,
    reuse_clean: bool = True,
) -> torch.Tensor:
    """Patch ``blocks.{l}.{hook_kind}`` at one position at a time: ``(L, N)`` values of ``metric``
    (a function of the patched logits ``(B, N, V)``).

    The default metric is :func:`logit_diff` of the clean run's top token against the corrupted
    run's at the last position (of the first row; a high value: that patch restores the clean
    answer). One clean
    trace serves every cell (``reuse_clean=False`` recomputes it per cell, for the benchmark):
    ``L * N`` patched passes, plus one clean pass and one corrupted pass.
    """
    _check_model(model)
    if not isinstance(hook_kind, str) or hook_kind not in _patchable(model):
        allowed = _patchable(model)
        raise ValueError(f"unknown hook_kind {hook_kind!r}; one of: {', '.join(allowed)}")
    _check_patch_args(model, clean_ids, corrupt_ids, hook_kind, None, head)
    L, N = model.config.n_layer, clean_ids.size(1)
    hooks = [f"blocks.{layer}.{hook_kind}" for layer in range(L)]
    clean = trace(model, clean_ids, names=hooks)
    if metric is None:
        with torch.no_grad():
            corrupt_logits = model(corrupt_ids)
        good = int(clean.logits[0, -1].argmax())
        metric = logit_diff(good, int(corrupt_logits[0, -1].argmax()))
    elif not callable(metric):
        raise TypeError(f"metric must be a function of the logits (B, N, V), got {metric!r}")
    out = torch.empty(L, N, dtype=torch.float64)
    for layer, hook in enumerate(hooks):
        for p in range(N):
            if reuse_clean:
                value = clean[hook]
            else:  # the slow way: the clean pass again for every cell
                value = trace(model, clean_ids, names=[hook])[hook]
            logits = _patched_logits(model, corrupt_ids, hook, hook_kind, value, p, head)
            out[layer, p] = metric(logits)
    return out


# ---------------------------------------------------------------------------------------------
# First divergence


def _layer_of(name: str) -> int | None:
    return int(name.split(".")[1]) if name.startswith("blocks.") else None


def _position_dim(name: str) -> int:
    return 2 if name.endswith("hook_pattern") else 1


def max_differences(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    """``{name: max |a[name] - b[name]|}`` (in float64) for every name of ``a``, in ``a``'s order.

    The parity table: pass two dicts of activations (a :class:`Trace`'s ``activations`` and
    another tool's cache, converted to tensors) with the same names and shapes.
    """
    if not isinstance(a, dict) or not isinstance(b, dict):
        raise TypeError("max_differences takes two dicts of tensors (name -> tensor)")
    missing = [n for n in a if n not in b]
    if missing:
        raise ValueError(f"names missing from the second dict: {', '.join(missing)}")
    out = {}
    for name, x in a.items():
        y = b[name]
        if tuple(x.shape) != tuple(y.shape):
            raise ValueError(f"{name}: shapes differ, {tuple(x.shape)} vs {tuple(y.shape)}")
        out[name] = float((x.double() - y.double()).abs().max()) if x.numel() else 0.0
    return out


@dataclass
class Divergence:
    """Where two runs first differ by more than ``atol``.

    ``name``: the first hook name (in forward order) with a difference above ``atol`` (None if
    none); ``layer`` its block (None outside the blocks); ``position``: the first token position
    where it is exceeded there; ``max_diff``: the largest difference at that name. ``sizes``:
    ``(name, max |a - b|)`` for every name in forward order, then ``"logits"`` -- how the
    difference grows along the pass.
    """

    name: str | None
    layer: int | None
    position: int | None
    max_diff: float
    atol: float
    sizes: list[tuple[str, float]]

    def __repr__(self) -> str:
        if self.name is None:
            return f"Divergence(none above atol={self.atol:g}; logits {self.sizes[-1][1]:.1e})"
        return (
            f"Divergence(name={self.name!r}, layer={self.layer}, position={self.position}, "
            f"max_diff={self.max_diff:.1e}, atol={self.atol:g}; logits {self.sizes[-1][1]:.1e})"
        )

    @property
    def diverged(self) -> bool:
        """True when some activation differs by more than ``atol``."""
        return self.name is not None

    def table(self) -> str:
        """The sizes along the way, one line each, the first divergence marked."""
        width = max(len(n) for n, _ in self.sizes)
        lines = [f"{'activation':<{width}}  max |a - b|"]
        for n, v in self.sizes:
            mark = "  <- first above atol" if n == self.name else ""
            lines.append(f"{n:<{width}}  {v:.2e}{mark}")
        return "\n".join(lines)


def first_divergence(
    model_a: GPT,
    model_b: GPT,
    ids: torch.Tensor,
    *,
    atol: float,
    batch_with: torch.Tensor | None = None,
) -> Divergence:
    """Run both models on ``ids`` ``(B, N)`` and name the first activation, layer and position where
    they differ by more than ``atol``, with the largest difference at every name along the way.

    ``model_b`` may be ``model_a`` itself with ``batch_with`` ``(B2, N)``: model_b then reads ids
    batched with those other rows, and only the rows of ``ids`` are compared (batched vs alone).
    """
    _check_model(model_a, "model_a")
    _check_model(model_b, "model_b")
    if model_a.config != model_b.config or _kinds(model_a) != _kinds(model_b):
        raise ValueError(
            f"the models must have the same shapes; model_a is {model_a.config}, "
            f"model_b is {model_b.config}"
        )
    if isinstance(atol, bool) or not isinstance(atol, (int, float)):
        raise TypeError(f"atol must be a number > 0, got {atol!r}")
    if not (math.isfinite(atol) and atol > 0):
        raise ValueError(f"atol must be a finite number > 0, got {atol}")
    _check_ids(model_a, ids)
    ids_b = ids
    if batch_with is not None:
        _check_ids(model_b, batch_with, "batch_with")
        if batch_with.size(1) != ids.size(1):
            raise ValueError(
                f"batch_with must have as many tokens per row as ids ({ids.size(1)}), "
                f"got shape {tuple(batch_with.shape)}"
            )
        ids_b = torch.cat([ids, batch_with.to(ids.dtype)])
    ta, tb = trace(model_a, ids), trace(model_b, ids_b)
    B = ids.size(0)
    a = dict(ta.activations, logits=ta.logits)
    b = {n: t[:B] for n, t in tb.activations.items()} | {"logits": tb.logits[:B]}
    sizes = list(max_differences(a, b).items())
    for name, size in sizes:
        if size > atol:
            diff = (a[name].double() - b[name].double()).abs()
            dim = _position_dim(name)
            per_pos = diff.transpose(0, dim).reshape(diff.size(dim), -1).amax(1)
            position = int(torch.nonzero(per_pos > atol)[0, 0])
            return Divergence(name, _layer_of(name), position, size, float(atol), sizes)
    return Divergence(None, None, None, 0.0, float(atol), sizes)


# ---------------------------------------------------------------------------------------------
# TransformerLens's layout (the reference; the book's code does not import it)


def hooked_transformer_config(model: GPT) -> dict:
    """The book model's shape as TransformerLens config fields (``TransformerBridgeConfig`` in
    TransformerLens 4; ``HookedTransformerConfig`` before it): a GPT-2 block (LayerNorm, GELU with
    the tanh approximation, learned positions), no BOS token prepended."""
    c = _check_model(model).config
    return dict(
        d_model=c.n_embd,
        n_layers=c.n_layer,
        n_heads=c.n_head,
        d_head=c.d_head,
        d_mlp=c.d_ff,
        n_ctx=c.block_size,
        d_vocab=c.vocab_size,
        act_fn="gelu_new",
        normalization_type="LN",
        positional_embedding_type="standard",
        eps=c.layer_norm_eps,
        attn_only=False,
        default_prepend_bos=False,
        architecture="TransformerLensNative",
    )


def hooked_transformer_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The book model's weights in HookedTransformer's layout (per-head, ``x @ W``):
    ``embed.W_E`` ``(V, d)``, ``pos_embed.W_pos`` ``(n_ctx, d)``, ``blocks.{l}.attn.W_Q/W_K/W_V``
    ``(H, d, d_head)``, ``b_Q/b_K/b_V`` ``(H, d_head)``, ``W_O`` ``(H, d_head, d)``, ``b_O``,
    ``ln1.w/b``, ``ln2.w/b``, ``mlp.W_in`` ``(d, 4d)``, ``b_in``, ``W_out`` ``(4d, d)``, ``b_out``,
    ``ln_final.w/b``, ``unembed.W_U`` ``(d, V)``, ``unembed.b_U`` (zeros: GPT-2 has none).

    The book's ``nn.Linear`` computes ``x @ W.T``: its weight ``(out, in)`` is transposed, and the
    rows of ``c_attn`` (queries, keys, values side by side, head after head) are cut per head.
    """
    _check_model(model)
    for m in model.modules():
        if type(m).__name__ in ("Int8Linear", "RowInt8Linear"):
            raise TypeError("hooked_transformer_state_dict needs a float model, not an int8 copy")
    c = model.config
    H, dh, d = c.n_head, c.d_head, c.n_embd
    tr = model.transformer
    sd = {"embed.W_E": tr.wte.weight, "pos_embed.W_pos": tr.wpe.weight}
    for layer, block in enumerate(tr.h):
        p = f"blocks.{layer}."
        W, bias = block.attn.c_attn.weight, block.attn.c_attn.bias  # (3d, d), (3d,)
        for i, name in enumerate("QKV"):
            sd[p + f"attn.W_{name}"] = W[i * d : (i + 1) * d].view(H, dh, d).transpose(1, 2)
            sd[p + f"attn.b_{name}"] = bias[i * d : (i + 1) * d].view(H, dh)
        sd[p + "attn.W_O"] = block.attn.c_proj.weight.T.reshape(H, dh, d)
        sd[p + "attn.b_O"] = block.attn.c_proj.bias
        sd[p + "ln1.w"], sd[p + "ln1.b"] = block.ln_1.weight, block.ln_1.bias
        sd[p + "ln2.w"], sd[p + "ln2.b"] = block.ln_2.weight, block.ln_2.bias
        sd[p + "mlp.W_in"], sd[p + "mlp.b_in"] = block.mlp.c_fc.weight.T, block.mlp.c_fc.bias
        sd[p + "mlp.W_out"] = block.mlp.c_proj.weight.T
        sd[p + "mlp.b_out"] = block.mlp.c_proj.bias
    sd["ln_final.w"], sd["ln_final.b"] = tr.ln_f.weight, tr.ln_f.bias
    sd["unembed.W_U"] = model.lm_head.weight.T
    sd["unembed.b_U"] = torch.zeros(c.vocab_size, dtype=tr.wte.weight.dtype)
    return {k: v.detach().float().contiguous().clone() for k, v in sd.items()}


def __getattr__(name: str):
    """``induction_scores`` and ``previous_token_scores`` live in :mod:`nexttoken.heads` (imported
    on first use: that module uses this one)."""
    if name in ("induction_scores", "previous_token_scores"):
        from . import heads

        return getattr(heads, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
