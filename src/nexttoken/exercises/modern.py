"""Checkers for notebook 14 (today's decoders): RoPE in Llama's layout, the KV
cache of grouped-query and sliding-window attention, and two online-softmax partials merged; plus
the MLP width that gives a Llama a GPT's parameter count (notebook 14's section 8)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import Case, Hints, Mistake, as_count, as_tensor, check_function

__all__ = [
    "HINTS",
    "check_rope_half",
    "check_equal_width",
    "check_kv_bytes",
    "check_merge_partials",
    "ROPE_HINTS",
    "WIDTH_HINTS",
    "KV_HINTS",
    "MERGE_HINTS",
]

ROPE_HINTS = Hints(
    "RoPE, Llama's layout",
    "Section 2 paired feature 2i with feature 2i + 1. Llama's code (and transformers') pairs "
    "feature i with feature i + d/2: which features turn together now?",
    "Pair i still turns by position * theta^(-2i/d). Write the angle of every pair, then apply it "
    "to both of its features: the first half of the features and the second half share the "
    "angles.",
    "Turning a pair (a, b) by an angle t gives (a cos t - b sin t, a sin t + b cos t). With the "
    "pairs split in halves, a is in the first half and b in the second: check that pair 0 of a "
    "vector at position 1 comes out as you expect.",
    solution="rope half",
)

WIDTH_HINTS = Hints(
    "MLP width at equal size",
    "Count both models' parameters with the MLP width left open: which parts does the GPT have "
    "that the Llama does not (a table, biases, LayerNorm shifts), and which does the Llama shrink?",
    "GPT-2 block: W_QKV and W_O with biases, two LayerNorms with gain and shift, an MLP d -> 4d -> "
    "d with biases; plus the token table (tied), the position table and the final LayerNorm. "
    "Llama block: W_Q, W_O of d x d, W_K, W_V of d x (n_kv_head x d_head), two RMSNorm gains, "
    "three d x h MLP matrices, no biases; plus the token table (tied) and the final RMSNorm.",
    "Set the two totals equal and solve for h: it need not be a whole number. Check it on your "
    "own small case by building both models on the meta device and counting.",
    solution="equal width",
)

KV_HINTS = Hints(
    "KV cache of one sequence",
    "The cache holds a key AND a value for every key/value head of every layer, for every token it "
    "keeps. Which heads does grouped-query attention store?",
    "A sliding window of w tokens keeps at most w positions; a sequence shorter than the window "
    "keeps all of its tokens.",
    "Check on GPT-2 small (12 layers, 12 heads of 64, no window) in fp16: 512 tokens take "
    "18,874,368 bytes.",
    solution="gqa kv bytes",
)

MERGE_HINTS = Hints(
    "merging two partials",
    "Each partial was computed with its OWN running maximum: its sum and its accumulator are "
    "scaled by exp(-m1) and exp(-m2). Bring both to one common scale before adding them.",
    "Rescale both partials to the larger of the two maxima, row by row, as the online softmax "
    "rescales what came before a new block.",
    "On a row where both maxima are equal the merge is a plain sum of the two partials: what "
    "must change when they differ, and what turns the merged partial into an output?",
    solution="merge partials",
)

HINTS = {h.name: h for h in (ROPE_HINTS, WIDTH_HINTS, KV_HINTS, MERGE_HINTS)}


# --- RoPE in the rotate_half layout ----------------------------------------------------------


def _angles(d: int, positions: torch.Tensor, theta: float, exps: torch.Tensor) -> torch.Tensor:
    return positions.double()[:, None] * theta ** (-exps.double())  # (N, d/2)


def _rope(x: torch.Tensor, positions: torch.Tensor, theta: float, *, sign: float = 1.0,
          exps: torch.Tensor | None = None, interleaved: bool = False) -> torch.Tensor:  # fmt: skip
    """``x`` ``(N, d)`` with each pair turned by ``sign * position * theta^(-exps)``: pairs
    ``(i, i + d/2)`` (Llama's layout), or ``(2i, 2i + 1)`` when ``interleaved``."""
    x = x.double()
    d = x.size(-1)
    exps = torch.arange(0, d, 2).double() / d if exps is None else exps
    t = sign * _angles(d, positions, theta, exps)
    cos, sin = t.cos(), t.sin()
    if interleaved:
        a, b = x[:, 0::2], x[:, 1::2]
        out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)
        return out.flatten(-2)
    a, b = x[:, : d // 2], x[:, d // 2 :]
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)


def _rope_right(x, positions, theta):
    return _rope(x, positions, theta)


def _rope_case(n: int, d: int, positions: list[int], theta: float, seed: int) -> Case:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return Case((x, torch.tensor(positions), theta), f"x of shape ({n}, {d}), positions "
                f"{positions}, theta {theta:g}")  # fmt: skip


_ROPE_CASES = [
    _rope_case(5, 8, [0, 1, 2, 3, 4], 10000.0, 1),
    _rope_case(3, 6, [7, 0, 40], 500000.0, 2),
    _rope_case(4, 4, [1, 2, 3, 9], 100.0, 3),
]
_ROPE_MISTAKES = [
    Mistake(lambda x, p, t: _rope(x, p, t, interleaved=True), "that pairs feature 2i with 2i + 1 "
            "(the paper's layout, section 2); Llama pairs feature i with feature i + d/2"),
    Mistake(lambda x, p, t: _rope(x, p, t, sign=-1.0), "each pair turns the wrong way (the sine's "
            "sign is flipped): still relative, but not the rotation Llama's weights expect"),
    Mistake(lambda x, p, t: _rope(x, p, t, exps=torch.arange(x.size(-1) // 2).double()
            / x.size(-1)), "the frequencies: pair i turns by theta^(-2i/d) per position, not "
            "theta^(-i/d)"),  # fmt: skip
    Mistake(lambda x, p, t: _rope(x, p, t, exps=-torch.arange(0, x.size(-1), 2).double()
            / x.size(-1)), "theta^(+2i/d) makes the later pairs spin FASTER; they should turn "
            "slower"),  # fmt: skip
    Mistake(lambda x, p, t: x.double(), "x came back unturned: each token turns by its own "
            "position"),
    Mistake(lambda x, p, t: _rope(x, p + 1, t), "positions start at 0: the first token is not "
            "turned"),
]  # fmt: skip


def _same_tensor(got: torch.Tensor, want: torch.Tensor) -> bool:
    return got.shape == want.shape and torch.allclose(got, want.double(), atol=1e-4)


def _tensor_differ(case: Case, got: torch.Tensor, want: torch.Tensor) -> str:
    at = f"for {case.show()}"
    if got.shape != want.shape:
        return f"{at}: expected a tensor of shape {tuple(want.shape)}, got shape {tuple(got.shape)}"
    if not torch.isfinite(got).all():
        return f"{at}: the result holds nan or inf"
    worst = int((got - want).abs().max(dim=-1).values.argmax())
    return f"{at}: row {worst} differs from the expected one by up to " + (
        f"{float((got - want).abs().max()):.3g}"
    )


def check_rope_half(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None) -> bool:
    """``fn(x, positions, theta)``: ``x`` ``(N, d)`` turned by RoPE in Llama's (transformers')
    layout, pair ``i`` = features ``(i, i + d/2)``, angle ``position x theta^(-2i/d)``; within 1e-4.

    Recognised (only when matched on all three cases): the interleaved layout; the rotation turned
    the wrong way; frequencies ``theta^(-i/d)``; ``theta^(+2i/d)``; x unturned; positions from 1.
    """
    return check_function(
        fn, ROPE_HINTS, _ROPE_CASES, _rope_right, _ROPE_MISTAKES,
        normalise=lambda out: as_tensor(out, None, "a tensor"), same=_same_tensor,
        signature="fn(x, positions, theta) -> turned x", differ=_tensor_differ,
    )  # fmt: skip


# --- the MLP width that gives a Llama the parameters of a GPT ---------------------------------


def _gpt_params(V, T, L, d):
    return V * d + T * d + 2 * d + L * (12 * d * d + 13 * d)


def _llama_rest(V, L, d, H, Hk, *, tied=True):
    dh = d // H
    return V * d * (1 if tied else 2) + d + L * (2 * d * H * dh + 2 * d * Hk * dh + 2 * d)


def _width_right(V, T, L, d, H, Hk):
    return (_gpt_params(V, T, L, d) - _llama_rest(V, L, d, H, Hk)) / (3 * d * L)


_WIDTH_CASES = [Case(c, "vocab_size={}, block_size={}, n_layer={}, d={}, n_head={}, "
                     "n_kv_head={}".format(*c)) for c in (
    (50257, 1024, 12, 768, 12, 4), (32000, 2048, 2, 64, 4, 1), (1000, 128, 3, 96, 6, 3),
)]  # fmt: skip
_WIDTH_MISTAKES = [
    Mistake(lambda V, T, L, d, H, Hk: _width_right(V, T, L, d, H, Hk) - T / (3 * L), "the GPT's "
            "position table is missing: block_size x d parameters the Llama spends elsewhere"),
    Mistake(lambda V, T, L, d, H, Hk: _width_right(V, T, L, d, H, H), "that gives the Llama as "
            "many key/value heads as query heads: with n_kv_head, W_K and W_V shrink"),
    Mistake(lambda V, T, L, d, H, Hk: (_gpt_params(V, T, L, d) - 2 * d - L * 13 * d
            - _llama_rest(V, L, d, H, Hk)) / (3 * d * L), "the GPT's biases and LayerNorm "
            "parameters are missing (13 d per block and 2 d for the final LayerNorm)"),  # fmt: skip
    Mistake(lambda V, T, L, d, H, Hk: _width_right(V, T, L, d, H, Hk) - V / (3 * L), "the "
            "Llama's output layer was counted apart from its embedding: here both are tied, "
            "stored once"),
    Mistake(lambda V, T, L, d, H, Hk: 8 * d / 3, "2/3 x 4d equals a GELU MLP's weights alone; "
            "the rest of the two models differs too (position table, biases, grouped K/V)"),
    Mistake(lambda V, T, L, d, H, Hk: 1.5 * _width_right(V, T, L, d, H, Hk), "that counts two "
            "d x h matrices; the SwiGLU MLP has three (gate, up, down)"),
]  # fmt: skip


def check_equal_width(fn: Callable[..., float] | None) -> bool:
    """``fn(vocab_size, block_size, n_layer, d, n_head, n_kv_head)``: the SwiGLU width ``h`` (a
    real number) that gives a Llama (tied embedding, RMSNorm, no biases, ``n_kv_head`` key/value
    heads of ``d / n_head``) exactly the parameters of the book's GPT of the same shape; within
    1e-6 relative.

    Recognised: the position table missing; MHA keys and values; the GPT's biases and LayerNorm
    parameters missing; an untied output layer; ``8d/3``; two MLP matrices.
    """
    return check_function(
        fn, WIDTH_HINTS, _WIDTH_CASES, _width_right, _WIDTH_MISTAKES,
        signature="fn(vocab_size, block_size, n_layer, d, n_head, n_kv_head) -> float",
    )  # fmt: skip


# --- the KV cache of one sequence -------------------------------------------------------------


def _kept(tokens: int, window: int | None) -> int:
    return tokens if window is None else min(tokens, window)


def _kv_right(L, H, H_kv, dh, tokens, window, nb):
    return 2 * L * H_kv * dh * _kept(tokens, window) * nb


_KV_CASES = [Case(c, "n_layer={}, n_head={}, n_kv_head={}, d_head={}, tokens={}, window={}, "
                  "bytes_per_number={}".format(*c)) for c in (
    (32, 32, 8, 128, 8192, None, 2),  # Llama 3 8B, full context
    (32, 32, 8, 128, 32768, 4096, 2),  # Mistral 7B far past its window
    (2, 8, 1, 16, 100, 4096, 4),  # a short sequence inside its window, multi-query
    (12, 12, 12, 64, 1024, None, 4),  # GPT-2 small
)]  # fmt: skip
_KV_MISTAKES = [
    Mistake(lambda L, H, Hk, dh, t, w, nb: 2 * L * H * dh * _kept(t, w) * nb, "that is the cache "
            "of multi-head attention (n_head heads): grouped-query attention stores only the "
            "n_kv_head key/value heads"),
    Mistake(lambda L, H, Hk, dh, t, w, nb: L * Hk * dh * _kept(t, w) * nb, "that is half of it: "
            "the cache holds a key AND a value"),
    Mistake(lambda L, H, Hk, dh, t, w, nb: 2 * L * Hk * dh * t * nb, "the window is ignored: a "
            "sliding-window model keeps only the last `window` tokens"),
    Mistake(lambda L, H, Hk, dh, t, w, nb: 2 * L * Hk * dh * (t if w is None else w) * nb, "a "
            "sequence shorter than the window keeps only its own tokens: min(tokens, window)"),
    Mistake(lambda L, H, Hk, dh, t, w, nb: 8 * _kv_right(L, H, Hk, dh, t, w, nb), "that is bits "
            "(8 per byte); the question asks for bytes"),
    Mistake(lambda L, H, Hk, dh, t, w, nb: 2 * L * Hk * dh * _kept(t, w), "that counts numbers; "
            "multiply by the bytes per number"),
    Mistake(lambda L, H, Hk, dh, t, w, nb: 2 * Hk * dh * _kept(t, w) * nb, "every layer keeps its "
            "own keys and values: multiply by n_layer"),
]  # fmt: skip


def check_kv_bytes(fn: Callable[..., int] | None) -> bool:
    """``fn(n_layer, n_head, n_kv_head, d_head, tokens, window, bytes_per_number)``: bytes of the
    KV cache of one sequence of ``tokens`` tokens (``window`` None: no sliding window).

    Recognised: ``n_head`` heads; keys only; the window ignored; the window used for a shorter
    sequence; bits; numbers; one layer.
    """
    return check_function(
        fn, KV_HINTS, _KV_CASES, _kv_right, _KV_MISTAKES,
        normalise=lambda out: as_count(out, "a number of bytes (a whole number)"),
        same=lambda a, b: a == b,
        signature="fn(n_layer, n_head, n_kv_head, d_head, tokens, window, bytes_per_number)",
    )  # fmt: skip


# --- merging two online-softmax partials ------------------------------------------------------


def _partial(s: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """What the online softmax holds after some keys: max ``(n, 1)``, sum ``(n, 1)``, acc ``(n, d)``."""
    m = s.amax(-1, keepdim=True)
    p = torch.exp(s - m)
    return m, p.sum(-1, keepdim=True), p @ v


def _merge_case(n: int, k1: int, k2: int, d: int, shift: float, seed: int) -> Case:
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, k1 + k2, generator=g, dtype=torch.float64) * 2
    s[:, k1:] += shift * torch.arange(n, dtype=torch.float64)[:, None]  # each row its own gap
    v = torch.randn(k1 + k2, d, generator=g, dtype=torch.float64)
    args = (*_partial(s[:, :k1], v[:k1]), *_partial(s[:, k1:], v[k1:]))
    return Case(args, f"{n} queries, keys split {k1} + {k2}, values of width {d}")


_MERGE_CASES = [
    _merge_case(3, 4, 5, 2, 1.5, 1),
    _merge_case(4, 6, 3, 3, -2.0, 2),
    _merge_case(2, 2, 7, 4, 4.0, 3),
]


def _merge_right(m1, s1, a1, m2, s2, a2):
    M = torch.maximum(m1, m2)
    e1, e2 = torch.exp(m1 - M), torch.exp(m2 - M)
    return (e1 * a1 + e2 * a2) / (e1 * s1 + e2 * s2)


_MERGE_MISTAKES = [
    Mistake(lambda m1, s1, a1, m2, s2, a2: (a1 + a2) / (s1 + s2), "the two partials were added "
            "without rescaling: each is scaled by its own maximum, exp(-m1) and exp(-m2)"),
    Mistake(lambda m1, s1, a1, m2, s2, a2: (a1 / s1 + a2 / s2) / 2, "the average of the two "
            "partial outputs weighs both parts equally; each part counts by its share of the "
            "softmax's sum"),
    Mistake(lambda m1, s1, a1, m2, s2, a2: torch.where(m1 >= m2, a1 / s1, a2 / s2), "that keeps "
            "only the partial with the larger maximum; the other part's keys count too"),
    Mistake(lambda m1, s1, a1, m2, s2, a2: _merge_right(m1, s1, a1, m2, s2, a2)
            * (torch.exp(m1 - torch.maximum(m1, m2)) * s1
               + torch.exp(m2 - torch.maximum(m1, m2)) * s2),
            "not normalised: divide the merged accumulator by the merged sum"),  # fmt: skip
    Mistake(lambda m1, s1, a1, m2, s2, a2: _merge_flipped(m1, s1, a1, m2, s2, a2), "each "
            "partial was multiplied by exp(M - m): the rescaling goes the other way, exp(m - M) "
            "<= 1"),
]  # fmt: skip


def _merge_flipped(m1, s1, a1, m2, s2, a2):
    M = torch.maximum(m1, m2)
    e1, e2 = torch.exp(M - m1), torch.exp(M - m2)
    return (e1 * a1 + e2 * a2) / (e1 * s1 + e2 * s2)


def check_merge_partials(fn: Callable[..., torch.Tensor] | None) -> bool:
    """``fn(m1, s1, acc1, m2, s2, acc2)``: the attention output ``(n, d)`` over all keys from two
    partials over two disjoint sets of keys (each: running max ``(n, 1)``, sum of
    ``exp(score - max)`` ``(n, 1)``, accumulator ``(n, d)``); within 1e-4.

    Recognised: no rescaling; the average of the two outputs; the larger-max part only; not
    normalised; rescaled by ``exp(M - m)``.
    """
    return check_function(
        fn, MERGE_HINTS, _MERGE_CASES, _merge_right, _MERGE_MISTAKES,
        normalise=lambda out: as_tensor(out, None, "a tensor"), same=_same_tensor,
        signature="fn(m1, s1, acc1, m2, s2, acc2) -> (n, d)", differ=_tensor_differ,
    )  # fmt: skip
