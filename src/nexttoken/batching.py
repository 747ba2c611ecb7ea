"""Many prompts decoded together: one forward pass per step for the whole batch.

At batch 1 a decoding step reads every weight to produce one token (memory-bound, notebook 09).
Stacking ``B`` prompts into one ``(B, N)`` batch reads the weights once for ``B`` tokens. Prompts
have different lengths, so the batch is *ragged*; three things make it exact:

1. **Left padding.** Prompt ``b`` of length ``L_b`` is padded on the left with ``pad_b = L_max - L_b``
   filler tokens, so that every row's *last* token sits in the same column and every row's next
   token is appended in the same column: one ``(B, 1)`` input per step, one shared KV cache.
2. **Positions.** Row ``b``'s real tokens get positions ``0, 1, ...`` (not ``pad_b, pad_b + 1, ...``):
   the position embedding must see what it sees when the prompt runs alone.
3. **The attention mask.** No query may attend to a padding key (``-inf`` before the softmax, so its
   weight is exactly 0), on top of the causal rule. A padding query attends to itself only, so its
   (unused) vector stays finite and a 0 weight times it stays 0.

With these, each row computes what :func:`nexttoken.generate.generate` computes for that prompt
alone, up to the last bits of floating-point rounding (a product of ``B`` rows may be summed in a
different order than a product of one row), so greedy decoding gives the same tokens — the tests
check it on random prompts and batch sizes. :func:`padded_batch` exposes the three pieces so the
notebook can show what goes wrong without each one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .generate import _check_stop_token, check_max_new_tokens
from .model import GPT, Decoder, DecoderConfig
from .paged import _check_device, _check_int, _check_positive_int, check_memory
from .sampling import check_generator, check_sampling_args, sample

__all__ = [
    "PaddedBatch",
    "padded_batch",
    "check_prompts",
    "check_prompt",
    "generate_batch",
    "column_major_weights",
    "batch_memory",
]


@dataclass
class PaddedBatch:
    """A ragged list of prompts as one left-padded batch.

    - ``ids``: ``(B, L_max)`` long, prompt ``b`` in the last ``L_b`` columns, ``pad_id`` before it;
    - ``pad``: ``(B,)`` long, the number of padding columns of each row;
    - ``positions``: ``(B, L_max)`` long, ``0 .. L_b - 1`` on the real tokens (0 on padding);
    - ``valid``: ``(B, L_max)`` bool, True on real tokens.
    """

    ids: torch.Tensor
    pad: torch.Tensor
    positions: torch.Tensor
    valid: torch.Tensor

    def mask(self) -> torch.Tensor:
        """The prefill attention mask ``(B, 1, L, L)``: causal, no padding key, and each padding
        query sees itself (so no row of the softmax is empty)."""
        L = self.ids.size(1)
        causal = torch.ones(L, L, dtype=torch.bool, device=self.ids.device).tril()
        eye = torch.eye(L, dtype=torch.bool, device=self.ids.device)
        return ((causal & self.valid[:, None, :]) | eye)[:, None]


def check_prompts(prompts: object, vocab_size: int | None) -> list[list[int]]:
    """``prompts`` as a list of non-empty lists of ints in ``[0, vocab_size)`` (``vocab_size``
    None: any id ``>= 0``), or a clear error."""
    if vocab_size is not None:
        _check_positive_int("vocab_size", vocab_size)
    if isinstance(prompts, torch.Tensor) or not isinstance(prompts, (list, tuple)):
        raise TypeError(
            f"prompts must be a list of prompts (each a list of token ids), got "
            f"{type(prompts).__name__}"
        )
    if not prompts:
        raise ValueError("prompts is empty: give at least one prompt")
    return [check_prompt(p, vocab_size, f"prompt {i}") for i, p in enumerate(prompts)]


def check_prompt(prompt: object, vocab_size: int | None, name: str = "prompt") -> list[int]:
    """One prompt (a list of ints or a 1-D integer tensor) as a non-empty list of ids in
    ``[0, vocab_size)`` (``vocab_size`` None: any id ``>= 0``), or an error naming ``name``."""
    p = prompt
    if isinstance(p, torch.Tensor):
        if p.dim() != 1 or p.is_floating_point() or p.dtype == torch.bool:
            raise TypeError(f"{name} must be a 1-D integer tensor or a list of ints")
        p = p.tolist()
    if not isinstance(p, (list, tuple)) or not all(
        isinstance(t, int) and not isinstance(t, bool) for t in p
    ):
        raise TypeError(f"{name} must be a list of token ids (ints), got {type(p).__name__}")
    if not p:
        raise ValueError(f"{name} is empty: every prompt needs at least one token")
    bad = [t for t in p if t < 0 or (vocab_size is not None and t >= vocab_size)]
    if bad:
        allowed = ">= 0" if vocab_size is None else f"in [0, {vocab_size - 1}]"
        raise ValueError(f"{name}: token id {bad[0]} is out of range: ids must be {allowed}")
    return list(p)


def padded_batch(prompts: Sequence[Sequence[int]], *, pad_id: int = 0, device=None) -> PaddedBatch:
    """Left-pad ``prompts`` (non-empty lists of ids ``>= 0``, of any lengths) into a
    :class:`PaddedBatch`; ``pad_id`` (an id ``>= 0``) fills the padding columns."""
    prompts = check_prompts(prompts, None)
    _check_int("pad_id", pad_id, 0)
    device = _check_device(device)
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    L = int(lengths.max())
    ids = torch.full((len(prompts), L), pad_id, dtype=torch.long, device=device)
    for b, p in enumerate(prompts):
        ids[b, L - len(p) :] = torch.tensor(p, dtype=torch.long, device=device)
    pad = L - lengths
    cols = torch.arange(L, device=device)
    valid = cols[None, :] >= pad[:, None]
    positions = (cols[None, :] - pad[:, None]).clamp(min=0)
    return PaddedBatch(ids, pad, positions, valid)


def generate_batch(
    model: Decoder,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    stop_token: int | None = None,
) -> list[list[int]]:
    """Continue every prompt by up to ``max_new_tokens`` tokens, all in one batch.

    ``prompts``: a list of ``B`` prompts, each a list of token ids, of any lengths. Returns ``B``
    lists: each prompt followed by its continuation, which ends after its own ``stop_token`` (kept,
    as :func:`~nexttoken.generate.generate` keeps it) or after ``max_new_tokens`` tokens. Sampling
    settings are those of ``generate``; ``temperature=0`` is greedy and gives, row by row, the tokens
    ``generate(model, prompt, max_new_tokens, temperature=0)`` gives.

    The longest prompt plus ``max_new_tokens`` must fit the context (``block_size``): the batch has
    no sliding window. One KV cache ``(B, H, L_max + max_new_tokens, d_head)`` per layer; each step
    feeds ``(B, 1)`` new ids. Rows that stopped keep being computed (their tokens are dropped) until
    every row has stopped: this is *static* batching; :mod:`nexttoken.serve` refills the slot instead.
    """
    if not isinstance(model, Decoder):
        raise TypeError(f"model must be a nexttoken GPT or Llama, got {type(model).__name__}")
    cfg = model.config
    prompts = check_prompts(prompts, cfg.vocab_size)
    check_max_new_tokens(max_new_tokens)
    check_sampling_args(cfg.vocab_size, temperature, top_k, top_p)
    check_generator(generator)
    stop_token = _check_stop_token(stop_token, cfg.vocab_size)
    longest = max(len(p) for p in prompts)
    if longest + max_new_tokens > cfg.block_size:
        raise ValueError(
            f"the longest prompt ({longest} tokens) + max_new_tokens ({max_new_tokens}) exceeds "
            f"the context length block_size={cfg.block_size}; batched generation has no sliding "
            f"window: shorten the prompts or max_new_tokens"
        )
    if max_new_tokens == 0:
        return [list(p) for p in prompts]
    device = model.device
    check_memory(
        batch_memory(
            cfg, len(prompts), longest, max_new_tokens, model.get_input_embeddings().weight
        ),
        device,
        f"a batch of {len(prompts)} prompts (the longest {longest} tokens) + {max_new_tokens} new "
        f"tokens (its KV cache and the prefill's activations)",
        "Split the prompts into smaller batches.",
    )

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            batch = padded_batch(prompts, device=device)
            B, L = batch.ids.shape
            T = L + max_new_tokens
            valid = torch.ones(B, T, dtype=torch.bool, device=device)
            valid[:, :L] = batch.valid
            lengths = (L - batch.pad).clone()  # real tokens per row so far
            cache = model.new_cache(B, T)
            logits = model.run(
                batch.ids,
                cache=cache,
                positions=batch.positions,
                attn_mask=batch.mask(),
                last_only=True,
            ).logits[:, -1, :]
            new = torch.empty(B, max_new_tokens, dtype=torch.long, device=device)
            finished = torch.zeros(B, dtype=torch.bool, device=device)
            n_new = 0
            for step in range(max_new_tokens):
                nxt = sample(logits, temperature, top_k, top_p, generator)  # (B,)
                new[:, step] = nxt
                n_new += 1
                if stop_token is not None:
                    finished |= nxt == stop_token
                    if bool(finished.all()):
                        break
                if step + 1 == max_new_tokens:
                    break
                t = cache.length + 1  # keys attended over after this token is written
                logits = model.run(
                    nxt[:, None],
                    cache=cache,
                    positions=lengths[:, None],
                    attn_mask=valid[:, None, None, :t],
                    last_only=True,
                ).logits[:, -1, :]
                lengths += 1
            rows = new[:, :n_new].tolist()
    finally:
        model.train(was_training)
    out = []
    for p, row in zip(prompts, rows, strict=True):
        if stop_token is not None and stop_token in row:
            row = row[: row.index(stop_token) + 1]
        out.append(p + row)
    return out


def batch_memory(
    config: DecoderConfig, batch_size: int, longest: int, max_new_tokens: int, weight: torch.Tensor
) -> int:
    """About the bytes :func:`generate_batch` allocates for ``batch_size`` prompts: the KV cache
    ``2 L B H_kv T d_head`` numbers of the weights' dtype (``T = longest + max_new_tokens``), and
    the prefill's largest activations in float32 (the MLP's ``4 d`` per position, each head's
    ``L_max x L_max`` scores with the padding mask, one row of logits per prompt)."""
    if not isinstance(config, DecoderConfig):
        raise TypeError(f"config must be a GPTConfig or LlamaConfig, got {type(config).__name__}")
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("longest", longest)
    _check_int("max_new_tokens", max_new_tokens, 0)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a tensor (the model's), got {type(weight).__name__}")
    c, B, L = config, batch_size, longest
    T = L + max_new_tokens
    kv = 2 * c.n_layer * B * T * c.n_kv_head * c.d_head * weight.element_size()
    return kv + 4 * B * (L * 8 * c.n_embd + c.n_head * L * L + c.vocab_size)


def column_major_weights(model: GPT) -> GPT:
    """Store every block's weight matrices column-major, in place; returns ``model``.

    An ``nn.Linear`` weight is ``(out, in)`` and is kept row by row in memory; the layer computes
    ``x @ W.T``. Column-major keeps the same ``(out, in)`` tensor (same values, same shape, same
    state dict) with its memory laid out as ``W.T`` ``(in, out)`` row by row: the layout of GPT-2's
    ``Conv1D`` and of transformers, which calls the matrix kernel without a transpose. Nothing else
    changes; the kernel does. Measured with MKL on this book's machine (``benchmarks/batching.py``,
    the block products of GPT-2 small, one thread): the same time for 1 row, 15% slower for 2,
    about 1.3x faster for 4 to 12 rows — the batch sizes of a small server. Another CPU's BLAS may differ: measure.

    The logits may differ from the row-major model's in the last bits (another kernel sums in
    another order), so compare a batched run with single-sequence runs *of the same model*.
    The output layer (tied to the token embedding, which is looked up by rows) is left as it is.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a nexttoken GPT, got {type(model).__name__}")
    with torch.no_grad():
        for block in model.transformer.h:
            for lin in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
                if not isinstance(lin, torch.nn.Linear):  # e.g. quantized: its own layout
                    continue
                w = lin.weight
                lin.weight = torch.nn.Parameter(
                    w.detach().t().contiguous().t(), requires_grad=w.requires_grad
                )
    return model
