"""The checkers a learner can trust (issue 25), judged as a student would try them.

For every checker rebuilt on the shared judge: correct answers in several forms (must pass), every
recognised mistake (must fail, naming it), two mistakes that coincide on one input (told apart),
hostile inputs (one FAIL line, False, no exception); that no hint stage contains an answer; that a
typo costs no hint stage and a PASS resets the stages; that ``solution(key)`` is the explicit step.

``pytest tests/test_exercises_judge.py -q -s -k counts`` prints the per-notebook counts.
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nexttoken.exercises import SOLUTIONS, Hints, as_count, as_number, as_tensor, solution
from nexttoken.exercises import attention as ex03
from nexttoken.exercises import decoder as ex04
from nexttoken.exercises import embeddings as ex02
from nexttoken.exercises import faster as ex11
from nexttoken.exercises import gpt2 as ex09
from nexttoken.exercises import inspect as ex13
from nexttoken.exercises import logits as ex05
from nexttoken.exercises import loop as ex07
from nexttoken.exercises import modern as ex14
from nexttoken.exercises import parallel as ex12
from nexttoken.exercises import pipeline as ex00
from nexttoken.exercises import sampling as ex06
from nexttoken.exercises import serving as ex10
from nexttoken.exercises import training as ex08
from nexttoken.exercises._judge import _SINGULAR  # noqa: F401 (the module loads)


def _interleave(d: int) -> torch.Tensor:
    """Feature order that makes Llama's pairs (i, i + d/2) adjacent: 0, d/2, 1, d/2 + 1, ..."""
    return torch.stack((torch.arange(d // 2), torch.arange(d // 2, d)), dim=1).flatten()


def _halves(d: int) -> torch.Tensor:
    """The inverse: evens first, then odds."""
    return torch.cat((torch.arange(0, d, 2), torch.arange(1, d, 2)))


def run(check, answer, capsys):
    ok = check(answer)
    return ok, capsys.readouterr().out


# ------------------------------------------------------------------------------------------------
# The exercises: correct forms, recognised mistakes (words the FAIL line must contain), hostile
# ------------------------------------------------------------------------------------------------


def _positions(lengths):
    L = max(lengths)
    return [[max(0, j - (L - n)) for j in range(L)] for n in lengths]


def _round(a, k):
    return sum(a**i for i in range(k + 1))


def _quantize(w):
    scale = w.abs().amax(dim=1) / 127
    return torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def _weights(q, k):
    n = q.size(0)
    s = (q @ k.T / math.sqrt(q.size(-1))).masked_fill(~torch.ones(n, n).bool().tril(), -math.inf)
    return torch.softmax(s, -1)


def _predict(check, actual):
    """A predict-then-run checker with the value the notebook computes bound to it."""

    def f(answer):
        return check(answer, actual)

    f.__name__ = check.__name__
    return f


STATIC_STEPS = _predict(ex10.check_static_steps_prediction, 26)
VERIFY_COST = _predict(ex11.check_verify_cost_prediction, 1.5383)  # the book model, 5 rows
ALLREDUCES = _predict(ex12.check_allreduce_count_prediction, 192)
VALUE_CHECKERS = {STATIC_STEPS, VERIFY_COST, ALLREDUCES}

EXERCISES = {
    "10": {
        STATIC_STEPS: ([26, 26.0, np.int64(26), torch.tensor(26)], {}),
        ex10.check_positions: (
            [
                _positions,
                lambda ls: torch.tensor(_positions(ls)),
                lambda ls: np.array(_positions(ls), dtype=np.int32),
                lambda ls: torch.tensor(_positions(ls), dtype=torch.float32),
                lambda ls: tuple(tuple(r) for r in _positions(ls)),
            ],
            {
                "column indices": lambda ls: [list(range(max(ls))) for _ in ls],
                "right padding": lambda ls: [list(range(n)) + [0] * (max(ls) - n) for n in ls],
                "negative positions": lambda ls: [
                    [j - (max(ls) - n) for j in range(max(ls))] for n in ls
                ],
                "transposed": lambda ls: torch.tensor(_positions(ls)).T,
                "start at 1": lambda ls: [
                    [j - (max(ls) - n) + 1 if j >= max(ls) - n else 0 for j in range(max(ls))]
                    for n in ls
                ],
            },
        ),
        ex10.check_blocks_needed: (
            [
                lambda n, b: -(-n // b),
                lambda n, b: np.int64(math.ceil(n / b)),
                lambda n, b: (n + b - 1) // b,
                lambda n, b: math.ceil(n / b),
                lambda n, b: torch.tensor(n / b).ceil(),
                lambda n, b: float(-(-n // b)),
                lambda n, b: np.ceil(np.float32(n) / b),
            ],
            {
                "rounded down": lambda n, b: n // b,
                "one block too many": lambda n, b: n // b + 1,
                "number of tokens": lambda n, b: n,
                "round the division up": lambda n, b: n / b,
                "NEAREST whole number": lambda n, b: round(n / b),
            },
        ),
        ex10.check_cache_outweighs: (
            [37, np.int64(37), 37.0, torch.tensor(37), np.array(37), torch.tensor([37.0])],
            {
                "rounded down": 36,
                "keys only": 73,
                "fp32 cache": 19,
                "one token per sequence": 74007,
                "one layer's cache": 3470,
            },
        ),
    },
    "11": {
        VERIFY_COST: ([1.5, 1.5383, np.float32(1.9), torch.tensor(1.2)], {}),
        ex11.check_quantize_int8: (
            [
                _quantize,
                lambda w: (_quantize(w)[0], _quantize(w)[1][:, None]),
                lambda w: (_quantize(w)[0], _quantize(w)[1].numpy()),
                lambda w: list(_quantize(w)),
            ],
            {
                "one scale for the whole matrix": lambda w: (
                    torch.round(w / (w.abs().max() / 127)).to(torch.int8),
                    w.abs().max() / 127,
                ),
                "a scale per column": lambda w: (
                    torch.round(w / (w.abs().amax(0) / 127)).to(torch.int8),
                    w.abs().amax(0) / 127,
                ),
                "128 or 255": lambda w: (
                    torch.round(w / (w.abs().amax(1) / 128)[:, None]).to(torch.int8),
                    w.abs().amax(1) / 128,
                ),
                "truncated towards zero": lambda w: (
                    torch.trunc(w / (w.abs().amax(1) / 127)[:, None]).to(torch.int8),
                    w.abs().amax(1) / 127,
                ),
                "stored as torch.int8": lambda w: (_quantize(w)[0].float(), _quantize(w)[1]),
            },
        ),
        ex11.check_accept_probability: (
            [
                lambda p, q: min(1.0, p / q),
                lambda p, q: torch.minimum(torch.tensor(1.0), torch.tensor(p) / q),
                lambda p, q: np.minimum(1.0, np.float32(p) / np.float32(q)),
                lambda p, q: round(min(1.0, p / q), 4),
                lambda p, q: 1 if p >= q else p / q,
            ],
            {
                "capped at 1": lambda p, q: p / q,
                "upside down": lambda p, q: min(1.0, q / p) if p else 1.0,
                "ignores how often the draft": lambda p, q: p,
                "draft's distribution": lambda p, q: 1.0 if p > 0 else 0.0,
                "percentage": lambda p, q: 100 * min(1.0, p / q),
                "share REJECTED": lambda p, q: max(0.0, 1 - q / p) if p else 0.0,
                "AGREE on x": lambda p, q: min(p, q),
            },
        ),
        ex11.check_tokens_per_round: (
            [
                _round,
                lambda a, k: k + 1 if a == 1 else (1 - a ** (k + 1)) / (1 - a),
                lambda a, k: torch.tensor([a**i for i in range(k + 1)], dtype=torch.float32).sum(),
                lambda a, k: np.polyval(np.ones(k + 1), a),
                lambda a, k: round(_round(a, k), 8),
            ],
            {
                "target's own token is missing": lambda a, k: _round(a, k) - 1,
                "not alpha": lambda a, k: k * a + 1,
                "chance that all k are kept": lambda a, k: a**k,
                "INFINITE series": lambda a, k: 1 / (1 - a),
                "stops one proposal early": lambda a, k: _round(a, k - 1),
                "one proposal too far": lambda a, k: _round(a, k + 1),
                "singular point": lambda a, k: (1 - a ** (k + 1)) / (1 - a),
                "most a round can emit": lambda a, k: k + 1,
            },
        ),
    },
    "12": {
        ALLREDUCES: (
            [192, 192.0, np.int64(192), torch.tensor(192)],
            {
                "forward AND the backward": 384,
                "one all-reduce per block": 96,
                "does not grow": 1536,
            },
        ),
        ex12.check_mlp_cut: (
            [
                {"W_fc": "columns", "W_proj": "rows"},
                {"W_fc": "Columns ", "W_proj": "ROWS"},
                {"W_fc": "column", "W_proj": "row"},
                {"W_proj": "rows", "W_fc": "cols"},
            ],
            {
                "GELU(a + b)": {"W_fc": "rows", "W_proj": "columns"},
                "all-gather": {"W_fc": "columns", "W_proj": "columns"},
                "partial sums": {"W_fc": "rows", "W_proj": "rows"},
            },
        ),
        ex12.check_tp_bytes: (
            [
                lambda L, B, N, d, nb: 2 * L * B * N * d * nb,
                lambda L, B, N, d, nb: np.int64(2) * L * B * N * d * nb,
                lambda L, B, N, d, nb: float(2 * L * B * N * d * nb),
                lambda L, B, N, d, nb: torch.tensor(2 * L * B * N * d * nb),
            ],
            {
                "half of it": lambda L, B, N, d, nb: L * B * N * d * nb,
                "batch B is missing": lambda L, B, N, d, nb: 2 * L * N * d * nb,
                "N positions are missing": lambda L, B, N, d, nb: 2 * L * B * d * nb,
                "hidden width": lambda L, B, N, d, nb: 8 * L * B * N * d * nb,
                "that is bits": lambda L, B, N, d, nb: 16 * L * B * N * d * nb,
                "counts numbers": lambda L, B, N, d, nb: 2 * L * B * N * d,
                "multiply by n_layer": lambda L, B, N, d, nb: 2 * B * N * d * nb,
                "ring all-reduce": lambda L, B, N, d, nb: 4 * L * B * N * d * nb,
            },
        ),
        ex12.check_bubble: (
            [
                lambda p, m: (p - 1) / (m + p - 1),
                lambda p, m: round((p - 1) / (m + p - 1), 4),
                lambda p, m: np.float32(p - 1) / np.float32(m + p - 1),
                lambda p, m: torch.tensor((p - 1) / (m + p - 1)),
                lambda p, m: 1 - m / (m + p - 1),
            ],
            {
                "idle slots with the busy ones": lambda p, m: (p - 1) / m,
                "leaves out the micro-batches": lambda p, m: (p - 1) / p,
                "grows with the number of stages": lambda p, m: 1 / m,
                "busy share": lambda p, m: m / (m + p - 1),
                "percentage": lambda p, m: 100 * (p - 1) / (m + p - 1),
                "off-by-one in the slots": lambda p, m: (p - 1) / (m + p),
                "swapped": lambda p, m: (m - 1) / (m + p - 1),
            },
        ),
    },
    "13": {
        ex13.check_logit_lens: (
            [
                lambda r, g, b, w: torch.nn.functional.layer_norm(r, r.shape[-1:], g, b) @ w.T,
                lambda r, g, b, w: (
                    torch.nn.functional.layer_norm(r.double(), r.shape[-1:], g.double(), b.double())
                    @ w.double().T
                ).numpy(),
            ],
            {
                "final LayerNorm is missing": lambda r, g, b, w: r @ w.T,
                "probabilities": lambda r, g, b, w: torch.softmax(
                    torch.nn.functional.layer_norm(r, r.shape[-1:], g, b) @ w.T, -1
                ),
            },
        ),
        ex13.check_part_attribution: (
            [
                lambda p, s, g, b, u: float(((p - p.mean()) / s * g) @ u),
                lambda p, s, g, b, u: torch.dot((p - p.mean()) * g, u) / s,
            ],
            {
                "not centred": lambda p, s, g, b, u: float((p / s * g) @ u),
                "belongs to the bias term": lambda p, s, g, b, u: float(
                    ((p - p.mean()) / s * g + b) @ u
                ),
            },
        ),
        ex13.check_previous_token_score: (
            [lambda p: p.diagonal(-1).mean(), lambda p: float(p.diagonal(-1).mean())],
            {
                "looking at ITSELF": lambda p: p.diagonal().mean(),
                "a sum": lambda p: p.diagonal(-1).sum(),
            },
        ),
        ex13.check_induction_score: (
            [
                lambda p, t: p.diagonal(1 - t)[1:].mean(),
                lambda p, t: np.float32(p.diagonal(1 - t)[1:].mean()),
            ],
            {"SAME token": lambda p, t: p.diagonal(-t).mean()},
        ),
        ex13.check_first_divergence: (
            [
                lambda a, b, t: next(
                    i for i, (x, y) in enumerate(zip(a, b, strict=True)) if (x - y).abs().max() > t
                ),
            ],
            {
                "EQUAL to atol": lambda a, b, t: next(
                    i for i, (x, y) in enumerate(zip(a, b, strict=True)) if (x - y).abs().max() >= t
                ),
            },
        ),
    },
    "00": {
        ex00.check_output_shape: (
            [122_880, 122_880.0, np.int64(122_880), torch.tensor(122_880)],
            {"size of the logits": 10 * 50257, "MLP's hidden width": 4 * 122_880},
        ),
    },
    "02": {
        ex02.check_embedding_bytes: (
            [1_235_116_032, np.int64(1_235_116_032), 1.235116032e9, torch.tensor(1_235_116_032)],
            {
                "GiB": 1_235_116_032 / 2**30,
                "GB": 1.235,
                "in bits": 8 * 1_235_116_032,
                "number of parameters": 617_558_016,
            },
        ),
    },
    "04": {
        ex04.check_mlp_params: (
            [1_208_020_992, np.int64(1_208_020_992), 1_208_020_992.0],
            {"biases are missing": 8 * 12288**2, "all 96 MLPs": 96 * 1_208_020_992},
        ),
    },
    "08": {
        ex08.check_perplexity: (
            [math.exp, lambda x: np.exp(x), lambda x: torch.tensor(x).exp(), lambda x: math.e**x],
            {"2 ** loss": lambda x: 2**x, "its inverse": lambda x: math.exp(-x)},
        ),
    },
    "09": {
        ex09.check_roofline: (
            [20e9 / (124_439_808 * 4), np.float32(40.18), 40.2, torch.tensor(40.0)],
            {"bf16": 80.36, "GiB/s": 20 * 2**30 / (124_439_808 * 4), "seconds per token": 0.0249},
        ),
    },
    "03": {
        ex03.check_attention_weights: (
            [
                _weights,
                lambda q, k: _weights(q.double(), k.double()),
                lambda q, k: _weights(q, k).numpy(),
                lambda q, k: torch.nn.functional.scaled_dot_product_attention(
                    q, k, torch.eye(q.size(0)), is_causal=True
                ),
            ],
            {
                "hides each token from ITSELF": lambda q, k: torch.softmax(
                    (q @ k.T / math.sqrt(q.size(-1))).masked_fill(
                        ~torch.ones(q.size(0), q.size(0)).bool().tril(-1), -math.inf
                    ),
                    -1,
                ),
                "transposed": lambda q, k: torch.softmax(
                    (q @ k.T / math.sqrt(q.size(-1))).masked_fill(
                        ~torch.ones(q.size(0), q.size(0)).bool().triu(), -math.inf
                    ),
                    -1,
                ),
                "scale is missing": lambda q, k: _weights(
                    q * q.size(-1) ** 0.25, k * k.size(-1) ** 0.25
                ),
            },
        ),
    },
    "05": {
        ex05.check_softmax: (
            [
                lambda x: torch.softmax(x, -1),
                lambda x: (x - torch.logsumexp(x, -1, keepdim=True)).exp(),
                lambda x: torch.softmax(x.double(), -1),
                lambda x: torch.softmax(x, -1).numpy(),
            ],
            {
                "log-probabilities": lambda x: torch.log_softmax(x, -1),
                "wrong dimension": lambda x: torch.softmax(x, 0),
                "exp overflowed": lambda x: x.exp() / x.exp().sum(-1, keepdim=True),
            },
        ),
    },
    "06": {
        ex06.check_temperature: (
            [
                lambda x, t: torch.softmax(x / t, -1),
                lambda x, t: torch.softmax(x.double() / t, -1),
                lambda x, t: torch.softmax(x / t, -1).numpy(),
                lambda x, t: torch.softmax(x / t, -1).tolist(),
                lambda x, t: (
                    torch.softmax(x, -1) ** (1 / t) / (torch.softmax(x, -1) ** (1 / t)).sum()
                ),
            ],
            {
                "AFTER the softmax": lambda x, t: torch.softmax(x, -1) / t,
                "T = 1 distribution": lambda x, t: torch.softmax(x, -1),
                "MULTIPLIED by T": lambda x, t: torch.softmax(x * t, -1),
                "scaled logits": lambda x, t: x / t,
                "log-probabilities": lambda x, t: torch.log_softmax(x / t, -1),
                "not normalised": lambda x, t: torch.softmax(x, -1) ** (1 / t),
            },
        ),
    },
    "07": {
        ex07.check_kv_bytes: (
            [
                lambda c, nb: 2 * c.n_layer * c.n_embd * nb,
                lambda c, nb: np.int64(2 * c.n_layer * c.n_embd * nb),
                lambda c, nb: 2.0 * c.n_layer * c.n_head * c.d_head * nb,
                lambda c, nb: torch.tensor(2 * c.n_layer * c.n_embd * nb),
            ],
            {
                "half the answer": lambda c, nb: c.n_layer * c.n_embd * nb,
                "query is not cached": lambda c, nb: 3 * c.n_layer * c.n_embd * nb,
                "d_head is one head": lambda c, nb: 2 * c.n_layer * c.d_head * nb,
                "n_head counts heads": lambda c, nb: 2 * c.n_layer * c.n_head * nb,
                "counts numbers, not bytes": lambda c, nb: 2 * c.n_layer * c.n_embd,
                "that is bits": lambda c, nb: 16 * c.n_layer * c.n_embd * nb,
                "multiply by n_layer": lambda c, nb: 2 * c.n_embd * nb,
                "full context": lambda c, nb: 2 * c.n_layer * c.n_embd * nb * c.block_size,
                "MLP's hidden width": lambda c, nb: 8 * c.n_layer * c.n_embd * nb,
            },
        ),
        ex07.check_window: (
            [
                lambda ids, b: ids[-b:],
                lambda ids, b: torch.tensor(ids)[-b:],
                lambda ids, b: np.array(ids)[-b:],
                lambda ids, b: tuple(ids[max(0, len(ids) - b) :]),
                lambda ids, b: torch.tensor([ids])[:, -b:],
            ],
            {
                "OLDEST": lambda ids, b: ids[:b],
                "nothing was cropped": lambda ids, b: ids,
                "one token short": lambda ids, b: ids[-(b - 1) :],
                "one token too many": lambda ids, b: ids[-(b + 1) :],
                "drops the FIRST": lambda ids, b: ids[b:],
            },
        ),
    },
    "14": {
        ex14.check_rope_half: (
            [
                lambda x, p, t: ex14._rope(x, p, t),
                lambda x, p, t: ex14._rope(x, p, t).float(),
                lambda x, p, t: ex14._rope(x, p, t).numpy(),
                lambda x, p, t: ex14._rope(x[:, _interleave(x.size(-1))], p, t, interleaved=True)[
                    :, _halves(x.size(-1))
                ],
            ],
            {
                "feature 2i with 2i + 1": lambda x, p, t: ex14._rope(x, p, t, interleaved=True),
                "wrong way": lambda x, p, t: ex14._rope(x, p, t, sign=-1.0),
                "not theta^(-i/d)": lambda x, p, t: ex14._rope(
                    x, p, t, exps=torch.arange(x.size(-1) // 2).double() / x.size(-1)
                ),
                "spin FASTER": lambda x, p, t: ex14._rope(
                    x, p, t, exps=-torch.arange(0, x.size(-1), 2).double() / x.size(-1)
                ),
                "unturned": lambda x, p, t: x,
                "positions start at 0": lambda x, p, t: ex14._rope(x, p + 1, t),
            },
        ),
        ex14.check_equal_width: (
            [
                ex14._width_right,
                lambda V, T, L, d, H, Hk: np.float32(ex14._width_right(V, T, L, d, H, Hk)),
                lambda V, T, L, d, H, Hk: torch.tensor(ex14._width_right(V, T, L, d, H, Hk)),
            ],
            {
                "position table is missing": lambda V, T, L, d, H, Hk: (
                    ex14._width_right(V, T, L, d, H, Hk) - T / (3 * L)
                ),
                "as many key/value heads": lambda V, T, L, d, H, Hk: ex14._width_right(
                    V, T, L, d, H, H
                ),
                "counted apart": lambda V, T, L, d, H, Hk: (
                    ex14._width_right(V, T, L, d, H, Hk) - V / (3 * L)
                ),
                "2/3 x 4d": lambda V, T, L, d, H, Hk: 8 * d / 3,
                "two d x h matrices": lambda V, T, L, d, H, Hk: (
                    1.5 * ex14._width_right(V, T, L, d, H, Hk)
                ),
            },
        ),
        ex14.check_kv_bytes: (
            [
                ex14._kv_right,
                lambda L, H, Hk, dh, t, w, nb: float(ex14._kv_right(L, H, Hk, dh, t, w, nb)),
                lambda L, H, Hk, dh, t, w, nb: np.int64(ex14._kv_right(L, H, Hk, dh, t, w, nb)),
            ],
            {
                "cache of multi-head attention": lambda L, H, Hk, dh, t, w, nb: (
                    2 * L * H * dh * ex14._kept(t, w) * nb
                ),
                "half of it": lambda L, H, Hk, dh, t, w, nb: L * Hk * dh * ex14._kept(t, w) * nb,
                "window is ignored": lambda L, H, Hk, dh, t, w, nb: 2 * L * Hk * dh * t * nb,
                "min(tokens, window)": lambda L, H, Hk, dh, t, w, nb: (
                    2 * L * Hk * dh * (t if w is None else w) * nb
                ),
                "that is bits": lambda L, H, Hk, dh, t, w, nb: (
                    16 * L * Hk * dh * ex14._kept(t, w) * nb
                ),
                "counts numbers": lambda L, H, Hk, dh, t, w, nb: 2 * L * Hk * dh * ex14._kept(t, w),
                "multiply by n_layer": lambda L, H, Hk, dh, t, w, nb: (
                    2 * Hk * dh * ex14._kept(t, w) * nb
                ),
            },
        ),
        ex14.check_merge_partials: (
            [
                ex14._merge_right,
                lambda m1, s1, a1, m2, s2, a2: (ex14._merge_right(m1, s1, a1, m2, s2, a2)).float(),
                lambda m1, s1, a1, m2, s2, a2: (
                    (torch.exp(m1) * a1 + torch.exp(m2) * a2)
                    / (torch.exp(m1) * s1 + torch.exp(m2) * s2)
                ),  # no overflow at these scores
            ],
            {
                "without rescaling": lambda m1, s1, a1, m2, s2, a2: (a1 + a2) / (s1 + s2),
                "average of the two": lambda m1, s1, a1, m2, s2, a2: (a1 / s1 + a2 / s2) / 2,
                "larger maximum": lambda m1, s1, a1, m2, s2, a2: torch.where(
                    m1 >= m2, a1 / s1, a2 / s2
                ),
                "the other way": lambda m1, s1, a1, m2, s2, a2: ex14._merge_flipped(
                    m1, s1, a1, m2, s2, a2
                ),
            },
        ),
    },
}

# the answers of a function checker that must fail in one line, without an exception
HOSTILE_RETURNS = [
    "0.5",
    b"1",
    True,
    None,
    float("nan"),
    float("inf"),
    1 + 2j,
    object(),
    {"a": 1},
    [[1, 2], [3]],
    [[[]]],
    torch.tensor([]),
    torch.tensor([True, False]),
    np.array(["a", "b"]),
]


def _raises_name_error(*args):
    return undefined_name  # noqa: F821 (a typo, as a learner makes it)


HOSTILE_FUNCTIONS = [lambda *a, r=r: r for r in HOSTILE_RETURNS] + [
    lambda *a: 1 / 0,
    _raises_name_error,
    lambda *a: [].pop(),
    lambda *a: int("x"),
    lambda: 1,  # the wrong number of arguments
]
HOSTILE_VALUES = [
    "37",
    True,
    None,
    [37],
    float("nan"),
    37.5,
    1j,
    object(),
    {"W_fc": 1},
    np.array([1, 2]),
]


def _is_function_checker(check) -> bool:
    values = (ex10.check_cache_outweighs, ex12.check_mlp_cut, ex00.check_output_shape,
              ex02.check_embedding_bytes, ex04.check_mlp_params, ex09.check_roofline)  # fmt: skip
    return check not in (*values, *VALUE_CHECKERS)


def _hostile(check):
    if _is_function_checker(check):
        return HOSTILE_FUNCTIONS + ["nope", 5, HOSTILE_VALUES[0]]
    return [a for a in HOSTILE_VALUES if a is not None]


CHECKERS = [(nb, check) for nb, table in EXERCISES.items() for check in table]


def _id(x):
    return f"{x[0]}-{x[1].__name__}"


@pytest.mark.parametrize("nb_check", CHECKERS, ids=_id)
def test_correct_forms_pass(nb_check, capsys):
    nb, check = nb_check
    for i, answer in enumerate(EXERCISES[nb][check][0]):
        ok, out = run(check, answer, capsys)
        assert ok and out.startswith("PASS"), (i, out)


@pytest.mark.parametrize("nb_check", CHECKERS, ids=_id)
def test_every_recognised_mistake_is_named(nb_check, capsys):
    nb, check = nb_check
    for words, answer in EXERCISES[nb][check][1].items():
        ok, out = run(check, answer, capsys)
        assert ok is False and out.startswith("FAIL") and words in out, (words, out)


@pytest.mark.parametrize("nb_check", CHECKERS, ids=_id)
def test_hostile_inputs_fail_in_one_line(nb_check, capsys):
    nb, check = nb_check
    for i, answer in enumerate(_hostile(check)):
        ok, out = run(check, answer, capsys)
        assert ok is False, (i, out)
        assert out.startswith("FAIL") and out.count("\n") == 1, (i, out)
        assert "Traceback" not in out and len(out) < 1200, (i, out)


@pytest.mark.parametrize(
    "check",
    [ex10.check_blocks_needed, ex11.check_accept_probability, ex11.check_tokens_per_round,
     ex12.check_tp_bytes, ex12.check_bubble, ex07.check_kv_bytes, ex07.check_window,
     ex06.check_temperature, ex10.check_positions],
    ids=lambda c: c.__name__,
)  # fmt: skip
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.one_of(
    st.text(max_size=5), st.booleans(), st.none(), st.floats(allow_nan=True),
    st.lists(st.one_of(st.floats(), st.text(max_size=2)), max_size=4), st.complex_numbers(),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
))  # fmt: skip
def test_hostile_returns_generated(check, value, capsys):
    """Whatever a learner's function returns, the checker prints one line and does not raise."""
    capsys.readouterr()
    ok = check(lambda *a: value)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.split()[0] in ("PASS", "FAIL")
    assert ok is (out.startswith("PASS"))


# --- two mistakes that coincide on one input are told apart ---


def test_coinciding_mistakes_are_told_apart(capsys):
    # on n_layer=5, B=2 both "one all-reduce per block" and "B forgotten" give half the answer
    half, no_b = (
        EXERCISES["12"][ex12.check_tp_bytes][1]["half of it"],
        (lambda L, B, N, d, nb: 2 * L * N * d * nb),
    )
    assert half(5, 2, 16, 256, 4) == no_b(5, 2, 16, 256, 4)
    assert "one all-reduce per block" in run(ex12.check_tp_bytes, half, capsys)[1]
    out = run(ex12.check_tp_bytes, no_b, capsys)[1]
    assert "batch B is missing" in out and "one all-reduce per block" not in out
    # bits and the 4d hidden width with two all-reduces both multiply one case by 8 (n_b = 1)...
    bits = lambda L, B, N, d, nb: 8 * 2 * L * B * N * d * nb  # noqa: E731
    out = run(ex12.check_tp_bytes, bits, capsys)[1]
    assert "that is bits" in out and "hidden width" not in out
    # at alpha = 0.5, k = 1: k * alpha, alpha^k and "no target token" all give 0.5
    for fn, words in [
        (lambda a, k: k * a, "its chance is alpha^i"),
        (lambda a, k: a**k, "chance that all k are kept"),
        (lambda a, k: _round(a, k) - 1, "target's own token is missing"),
    ]:
        assert fn(0.5, 1) == 0.5
        assert words in run(ex11.check_tokens_per_round, fn, capsys)[1]
    # KV cache: in gpt2 n_layer == n_head, so "n_head" and "n_layer" mistakes coincide there
    out = run(ex07.check_kv_bytes, lambda c, nb: 2 * c.n_layer * c.n_head * nb, capsys)[1]
    assert "n_head counts heads" in out
    # a mask hiding the token from itself is not "rows do not sum to 1"
    strict = EXERCISES["03"][ex03.check_attention_weights][1]["hides each token from ITSELF"]
    out = run(ex03.check_attention_weights, strict, capsys)[1]
    assert "ITSELF" in out and "rows do not sum" not in out


def test_an_answer_matching_a_mistake_on_one_case_only_is_not_diagnosed(capsys):
    # floor division on the first case only, right elsewhere: no "rounded down" diagnosis
    def sometimes(n, b):
        return n // b if (n, b) == (17, 16) else -(-n // b)

    out = run(ex10.check_blocks_needed, sometimes, capsys)[1]
    assert "rounded down" not in out and "expected 2, got 1" in out, out


def _on_first_case_only(cases, mistake, right):
    """An answer that computes ``mistake`` on the first case and ``right`` on all the others."""
    first = cases[0].args

    def answer(*args):
        same = len(args) == len(first) and all(
            a is b or (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                       and a.shape == b.shape and torch.equal(a, b))
            or (not isinstance(a, torch.Tensor) and a == b)
            for a, b in zip(args, first, strict=True)
        )  # fmt: skip
        return (mistake if same else right)(*args)

    return answer


def test_entropy_mistake_on_one_case_only_is_not_diagnosed(capsys):
    # bits on the uniform case only, nats elsewhere: the plain line, not "in bits"
    bits = ex05._ENTROPY_MISTAKES[1].formula
    out = run(ex05.check_entropy, _on_first_case_only(ex05._ENTROPY_CASES, bits,
                                                      ex05._entropy_right), capsys)[1]  # fmt: skip
    assert (
        "bits" not in out and "for uniform over 8 tokens: expected 2.0794 nats, got 3.0000" in out
    ), out


def test_top_k_mistake_on_one_case_only_is_not_diagnosed(capsys):
    # k + 1 kept at k=3 only, right elsewhere: the plain line, not "one too many"
    plus_one = ex06._TOP_K_MISTAKES[2].formula
    out = run(ex06.check_top_k, _on_first_case_only(ex06._TOP_K_CASES, plus_one,
                                                    ex06.top_k_filter), capsys)[1]  # fmt: skip
    assert "one too many" not in out and "for k=3: expected the 3 largest" in out, out
    assert "4 kept" in out, out


def test_cross_entropy_mistake_on_one_case_only_is_not_diagnosed(capsys):
    # the sum over positions on the first batch only, the mean elsewhere: not "the sum"
    total = ex08._CE_MISTAKES[1].formula
    out = run(ex08.check_cross_entropy, _on_first_case_only(ex08._CE_CASES, total,
                                                            ex08._ce_right), capsys)[1]  # fmt: skip
    assert "sum over the positions" not in out, out
    assert "for random logits of shape (2, 3, 5): expected" in out, out


def test_layer_norm_mistake_on_one_case_only_is_not_diagnosed(capsys):
    # the unbiased variance on the first input only: not "the biased one"
    unbiased = ex04._LN_MISTAKES[0].formula
    out = run(ex04.check_layer_norm, _on_first_case_only(ex04._LN_CASES, unbiased,
                                                         ex04._ln_right), capsys)[1]  # fmt: skip
    assert "biased" not in out, out
    assert "for a (2, 3, 8) input: values differ from torch.nn.functional.layer_norm" in out, out


def test_split_heads_mistake_on_one_case_only_is_not_diagnosed(capsys):
    # interleaved heads on the first input only: not "interleaved"
    cases = ex04._split_cases(4)
    interleaved = ex04._SPLIT_MISTAKES[2].formula
    out = run(ex04.check_split_heads, _on_first_case_only(cases, interleaved, ex04._split_right),
              capsys)[1]  # fmt: skip
    assert "interleaved" not in out, out
    assert "for x of shape (2, 5, 16), n_head=4: values are not in the right place" in out, out


def test_attention_mistake_on_one_case_only_is_not_diagnosed(capsys):
    # the scale squared on the first (6, 16) case only: not "the scale is squared"
    squared = ex03._ATTENTION_MISTAKES[7].formula
    out = run(ex03.check_attention_weights, _on_first_case_only(
        ex03._ATTENTION_CASES, squared, lambda q, k: ex03._weights(q, k)), capsys)[1]  # fmt: skip
    assert "squared" not in out, out
    assert "for q, k of shape (6, 16): values differ from the reference" in out, out


def test_softmax_mistake_on_one_case_only_is_not_diagnosed(capsys):
    # softmax over dim 0 on the small-spread case only: not "the wrong dimension"
    dim0 = ex05._SOFTMAX_MISTAKES[1].formula
    out = run(ex05.check_softmax, _on_first_case_only(ex05._SOFTMAX_CASES, dim0, ex05._sm_right),
              capsys)[1]  # fmt: skip
    assert "wrong dimension" not in out, out
    assert "for logits of a small spread: each row (the last dimension) must sum to 1" in out, out


def test_targets_mistake_on_one_case_only_is_not_diagnosed(capsys):
    # y one token behind on the first window only: not "one token behind"
    behind = ex08._TARGET_MISTAKES[2].formula
    out = run(ex08.check_targets, _on_first_case_only(ex08._TARGET_CASES, behind,
                                                      ex08._targets_right), capsys)[1]  # fmt: skip
    assert "behind" not in out, out
    assert "for start=3, n=5: y is not x moved one token on" in out, out


def test_probabilities_mistake_on_one_case_only_is_not_diagnosed(capsys):
    # log_softmax on the small logits only: not "log-probabilities"
    log_probs = ex00._PROB_MISTAKES[4].formula
    out = run(ex00.check_probabilities, _on_first_case_only(
        ex00._PROB_CASES, log_probs, lambda s: torch.softmax(s, -1)), capsys)[1]  # fmt: skip
    assert "log-probabilities" not in out, out
    assert "for small logits: values differ from the softmax of each row" in out, out


def _step_cases():
    model = ex00._tiny_model().eval()
    return [ex00.Case((model, ex00._discriminating_prompt(model, s)[0])) for s in (0, 1)]


def test_one_step_mistake_on_one_case_only_is_not_diagnosed(capsys):
    # predicted from the first position on the first prompt only: not "first position"
    cases = _step_cases()
    first = ex00._STEP_MISTAKES[3].formula
    ok = ex00.check_one_step(_on_first_case_only(cases, first, ex00._step_right), cases[0].args[0])
    out = capsys.readouterr().out
    assert not ok and "first position" not in out, out
    assert "for prompt 1 (8 tokens): the appended token is not the most likely one" in out, out


def test_hidden_pairs_mistake_on_one_case_only_is_not_diagnosed(capsys):
    # fixed zeros on the first case only (where they are right), off by one on the second: neither
    # "fixed numbers" nor "off by one", the plain line for the second case
    cases = ex09._hidden_cases()

    def answer(r, o, m):
        if r is cases[0].args[0] or all(
            torch.equal(a, b) for a, b in zip(r, cases[0].args[0], strict=True)
        ):
            return [0.0] * len(r)
        return ex09._PAIR_MISTAKES[1].formula(r, o, m)

    out = run(ex09.check_hidden_pairs, answer, capsys)[1]
    assert "fixed numbers" not in out and "off by one:" not in out, out
    assert "for the same with 0.5 added after block 1: expected 3 differences" in out, out


def test_greedy_loop_mistake_on_one_case_only_is_not_diagnosed(capsys):
    # the first position's logits on the first prompt only: not "FIRST position"
    cases = ex07._loop_cases(ex07._tiny_model())
    first_pos = ex07._LOOP_MISTAKES[4].formula

    def answer(m, p, n):
        return (first_pos if (p, n) == (cases[0].args[1], cases[0].args[2]) else ex07._loop_right)(
            m, p, n
        )

    out = run(ex07.check_greedy_loop, answer, capsys)[1]
    assert "FIRST" not in out, out
    assert "for prompt [1, 2, 3], n=6: the tokens differ from greedy generation" in out, out


def test_mistake_formulas_differ_on_the_cases():
    """Within each checker, the right formula and every recognised mistake disagree with each other
    on at least one case: no diagnosis can be a coincidence."""
    tables = [
        (ex10._BLOCK_CASES, ex10._blocks_right, ex10._BLOCK_MISTAKES, lambda a, b: a == b),
        (ex11._ACCEPT_CASES, lambda p, q: min(1.0, p / q), ex11._ACCEPT_MISTAKES,
         ex11._close_fraction),
        (ex11._ROUND_CASES, ex11.expected_tokens_per_round, ex11._ROUND_MISTAKES,
         lambda a, b: math.isclose(a, b, rel_tol=1e-6)),
        (ex12._TP_CASES, ex12._tp_right, ex12._TP_MISTAKES, lambda a, b: a == b),
        (ex12._BUBBLE_CASES, ex12._bubble_right, ex12._BUBBLE_MISTAKES,
         lambda a, b: math.isclose(a, b, abs_tol=1e-4)),
        (ex07._KV_CASES, ex07._kv_right, ex07._KV_MISTAKES, lambda a, b: a == b),
        (ex07._WINDOW_CASES, lambda ids, b: ids[-b:], ex07._WINDOW_MISTAKES, lambda a, b: a == b),
        (ex10._POSITION_CASES, ex10._right_positions, ex10._POSITION_MISTAKES,
         ex10._same_layout),
        (ex06._CHI_CASES, ex06._chi2, ex06._CHI_MISTAKES,
         lambda a, b: math.isclose(a, b, rel_tol=1e-4)),
        (ex08._PERPLEXITY_CASES, math.exp, ex08._PERPLEXITY_MISTAKES,
         lambda a, b: math.isclose(a, b, rel_tol=1e-6)),
        (ex08._NATS_CASES, lambda a, t, c: a * t / c, ex08._NATS_MISTAKES,
         lambda a, b: math.isclose(a, b, rel_tol=1e-9)),
        (ex06._TEMPERATURE_CASES, ex06._t_softmax, ex06._TEMPERATURE_MISTAKES,
         lambda a, b: a.shape == b.shape and torch.allclose(a, b.double(), atol=1e-4)),
        (ex05._ENTROPY_CASES, ex05._entropy_right, ex05._ENTROPY_MISTAKES, ex05._same_entropy),
        (ex05._SOFTMAX_CASES, ex05._sm_right, ex05._SOFTMAX_MISTAKES, ex05._same_softmax),
        (ex06._TOP_K_CASES, ex06.top_k_filter, ex06._TOP_K_MISTAKES, ex06._same_filter),
        (ex08._CE_CASES, ex08._ce_right, ex08._CE_MISTAKES, ex08._same_ce),
        (ex08._TARGET_CASES, ex08._targets_right, ex08._TARGET_MISTAKES, ex08._same_pair),
        (ex00._PROB_CASES, lambda s: torch.softmax(s, -1), ex00._PROB_MISTAKES,
         ex00._same_probs),
        (_step_cases(), ex00._step_right, ex00._STEP_MISTAKES, ex00._same_ids),
        (ex09._hidden_cases(), ex09._pairs_right, ex09._PAIR_MISTAKES, ex09._same_diffs),
        (ex07._loop_cases(ex07._tiny_model()), ex07._loop_right, ex07._LOOP_MISTAKES,
         lambda a, b: a == b),
        (ex04._LN_CASES, ex04._ln_right, ex04._LN_MISTAKES, ex04._same_ln),
        (ex04._split_cases(4), ex04._split_right, ex04._SPLIT_MISTAKES, ex04._same_split),
        (ex03._ATTENTION_CASES, lambda q, k: ex03._weights(q, k), ex03._ATTENTION_MISTAKES,
         ex03._same_weights),
        (ex13._LENS_CASES, ex13._lens_right, ex13._LENS_MISTAKES, ex13._same_tensor),
        (ex13._ATTR_CASES, ex13._attr_right, ex13._ATTR_MISTAKES,
         lambda a, b: math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5)),
        (ex13._PREV_CASES, ex13._prev_right, ex13._PREV_MISTAKES,
         lambda a, b: math.isclose(a, b, rel_tol=1e-5)),
        (ex13._IND_CASES, ex13._ind_right, ex13._IND_MISTAKES,
         lambda a, b: math.isclose(a, b, rel_tol=1e-5)),
        (ex13._DIV_CASES, ex13._first, ex13._DIV_MISTAKES, lambda a, b: a == b),
        (ex14._ROPE_CASES, ex14._rope_right, ex14._ROPE_MISTAKES, ex14._same_tensor),
        (ex14._WIDTH_CASES, ex14._width_right, ex14._WIDTH_MISTAKES,
         lambda a, b: math.isclose(a, b, rel_tol=1e-6)),
        (ex14._KV_CASES, ex14._kv_right, ex14._KV_MISTAKES, lambda a, b: a == b),
        (ex14._MERGE_CASES, ex14._merge_right, ex14._MERGE_MISTAKES, ex14._same_tensor),
    ]  # fmt: skip

    def values(f, cases):
        out = []
        for c in cases:
            try:
                out.append(f(*c.args))
            except (ArithmeticError, ValueError):
                out.append(None)
        return out

    for cases, right, mistakes, same in tables:
        one_per_why = {m.why: m.formula for m in mistakes}  # two spellings of one mistake: one
        formulas = [right, *one_per_why.values()]
        vals = [values(f, cases) for f in formulas]
        for i in range(len(vals)):
            for j in range(i + 1, len(vals)):
                assert any(
                    a is None or b is None or not same(a, b)
                    for a, b in zip(vals[i], vals[j], strict=True)
                ), (right, i, j)


# --- hints, typos, PASS, solution ---


MODULES = ("pipeline", "tokens", "embeddings", "attention", "decoder", "logits", "sampling", "loop",
           "training", "gpt2", "serving", "faster", "parallel", "inspect", "modern")  # fmt: skip


def _all_hints() -> list[Hints]:
    """Every exercise's staged hints, from each notebook module's HINTS."""
    hints = []
    for m in MODULES:
        hints += list(importlib.import_module(f"nexttoken.exercises.{m}").HINTS.values())
    return hints


def test_no_hint_stage_contains_an_answer():
    hints = _all_hints()
    assert len(hints) == 55 and all(h.solution for h in hints)
    assert {h.solution for h in hints} == set(SOLUTIONS)
    for h in hints:
        assert h.solution in SOLUTIONS, h.name
        for stage in h.stages:
            for secret in SOLUTIONS[h.solution].secrets:
                assert secret.lower() not in stage.lower(), (h.name, secret)
        assert f"solution({h.solution!r})" in h.stages[-1]
        assert all("solution(" not in s for s in h.stages[:-1])


def test_no_fail_line_across_all_stages_contains_the_answer(capsys):
    wrong = {
        ex10.check_blocks_needed: lambda n, b: n // b,
        ex10.check_cache_outweighs: 36,
        ex11.check_tokens_per_round: lambda a, k: k * a,
        ex12.check_tp_bytes: lambda L, B, N, d, nb: L * B * N * d * nb,
        ex12.check_bubble: lambda p, m: (p - 1) / m,
        ex07.check_kv_bytes: lambda c, nb: 2 * c.n_layer * c.n_embd,
    }
    keys = {ex10.check_blocks_needed: "blocks", ex10.check_cache_outweighs: "outweighs",
            ex11.check_tokens_per_round: "tokens per round", ex12.check_tp_bytes: "tp bytes",
            ex12.check_bubble: "bubble", ex07.check_kv_bytes: "kv bytes"}  # fmt: skip
    for check, answer in wrong.items():
        outs = "".join(run(check, answer, capsys)[1] for _ in range(4))
        for secret in SOLUTIONS[keys[check]].secrets:
            assert secret not in outs, (check.__name__, secret)


def test_positions_never_prints_the_expected_matrix(capsys):
    out = run(ex10.check_positions, lambda ls: [[0] * max(ls) for _ in ls], capsys)[1]
    assert "[0, 0, 0, 1, 2]" not in out and "[[" not in out and "row 0" in out, out


def test_a_typo_costs_no_hint_stage_and_a_pass_resets(capsys):
    for _ in range(3):
        out = run(ex10.check_blocks_needed, _raises_name_error, capsys)[1]
        assert "NameError" in out and "Hint 1/3" in out, out
    assert "Hint 1/3" in run(ex10.check_blocks_needed, lambda n, b: n // b, capsys)[1]
    assert "Hint 2/3" in run(ex10.check_blocks_needed, lambda n, b: n // b, capsys)[1]
    assert run(ex10.check_blocks_needed, lambda n, b: -(-n // b), capsys)[0]
    assert "Hint 1/3" in run(ex10.check_blocks_needed, lambda n, b: n // b, capsys)[1]
    # a typo reported after a prefix ("loss 4.300: it raised NameError") keeps costing nothing
    for _ in range(3):
        out = run(ex08.check_perplexity, _raises_name_error, capsys)[1]
        assert "loss 4.300: it raised NameError" in out and "Hint 1/2" in out, out
    # the same for a checker whose FAIL line has another name than its hints
    for _ in range(2):
        run(ex03.check_scale, 128, capsys)
    assert run(ex03.check_scale, np.float32(math.sqrt(128)), capsys)[0]
    assert "Hint 1/3" in run(ex03.check_scale, 128, capsys)[1]


def test_singular_point_is_named_not_a_zero_division(capsys):
    out = run(ex11.check_tokens_per_round, lambda a, k: (1 - a ** (k + 1)) / (1 - a), capsys)[1]
    assert "alpha = 1" in out and "singular" in out and "raised" not in out, out
    assert "(1 - alpha^(k+1))" not in out


def test_solution_is_an_explicit_step(capsys):
    solution("blocks")
    out = capsys.readouterr().out
    assert "-(-n_tokens // block_tokens)" in out and "10_many_requests_at_once_solutions" in out
    with pytest.raises(ValueError, match="'blocks'"):
        solution("no such exercise")
    out = run(ex10.check_blocks_needed, lambda n, b: n // b, capsys)[1]
    assert "solution(" not in out  # stage 1 of 3


def test_strings_are_never_numbers(capsys):
    assert not run(ex11.check_accept_probability, lambda p, q: str(min(1.0, p / q)), capsys)[0]
    for bad in ("37", True, b"37", None):
        assert as_number(bad)[0] is None
    assert as_number(np.int64(37)) == (37, "")
    assert as_count(torch.tensor(3.0)) == (3, "")
    assert as_count(2.5)[0] is None and "fraction" in as_count(2.5)[1]
    t, err = as_tensor([[1, 2], [3]])
    assert t is None and err


def test_counts(capsys):
    """Per notebook: correct forms accepted / tried, mistakes named / tried, hostile handled / tried."""
    rows = []
    for nb, table in EXERCISES.items():
        acc = tried_c = named = tried_m = handled = tried_h = 0
        for check, (good, wrong) in table.items():
            for a in good:
                tried_c += 1
                acc += bool(run(check, a, capsys)[0])
            for words, a in wrong.items():
                tried_m += 1
                ok, out = run(check, a, capsys)
                named += (not ok) and words in out
            for a in _hostile(check):
                tried_h += 1
                ok, out = run(check, a, capsys)
                handled += (not ok) and out.count("\n") == 1
        rows.append((nb, acc, tried_c, named, tried_m, handled, tried_h))
    with capsys.disabled():
        print("\nnotebook  correct accepted/tried  mistakes named/tried  hostile handled/tried")
        for nb, *c in rows:
            print(f"{nb:>8}  {c[0]:>9}/{c[1]:<12}  {c[2]:>8}/{c[3]:<11}  {c[4]:>8}/{c[5]}")
    assert all(r[1] == r[2] and r[3] == r[4] and r[5] == r[6] for r in rows), rows


def test_allreduce_prediction_names_forward_and_backward(capsys):
    out = run(lambda a: ex12.check_allreduce_count_prediction(a, 192), 384, capsys)[1]
    assert "forward AND the backward" in out
    assert run(lambda a: ex12.check_allreduce_count_prediction(a, 192), np.int64(192), capsys)[0]
    out = run(lambda a: ex12.check_allreduce_count_prediction(a, 192), "192", capsys)[1]
    assert out.startswith("FAIL") and "got str" in out


# --- every checker of every notebook, hostile inputs ---

_EXTRA_ARGS = {
    "check_one_hot": lambda: ([3, 1, 4], 5),
    "check_first_merge": lambda: ("to be or not to be",),
    "check_visible_words": lambda: (["le", "chat", "mange"], "chat"),
    "check_input_vectors": lambda: (_tiny(), torch.tensor([[1, 2, 3, 4]])),
    "check_one_step": lambda: (_tiny(),),
    "check_short_context_loss": lambda: (3.5,),
    "check_stored_tensors": lambda: (148,),
}


def _tiny():
    from nexttoken.model import GPT, GPTConfig

    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=97, block_size=24, n_layer=2, n_head=2, n_embd=32)).eval()


_SWEEP = ["0.5", True, float("nan"), 1j, object(), {"a": 1}, [[1, 2], [3]], np.array(["a"])]
_SWEEP += [lambda *a, r=r: r for r in _SWEEP] + [lambda *a: 1 / 0, _raises_name_error, lambda: 1]


@pytest.mark.parametrize("module", MODULES)
def test_every_checker_fails_hostile_inputs_in_one_line(module, capsys):
    mod = importlib.import_module(f"nexttoken.exercises.{module}")
    checkers = [
        (n, f) for n, f in vars(mod).items()
        if n.startswith("check_") and callable(f) and f.__module__ == mod.__name__
        and "prediction" not in n
    ]  # fmt: skip
    assert checkers
    for name, check in checkers:
        extra = _EXTRA_ARGS.get(name, tuple)()
        for i, answer in enumerate(_SWEEP):
            ok = check(answer, *extra)
            out = capsys.readouterr().out
            assert ok is False and out.startswith("FAIL") and out.count("\n") == 1, (name, i, out)
