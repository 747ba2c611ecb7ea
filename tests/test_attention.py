"""nexttoken.attention: every kernel equal to PyTorch's fused attention; memory counted and measured."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from nexttoken import model
from nexttoken.attention import (
    attention_mask,
    attention_memory,
    attention_weights,
    causal_mask,
    memory_curve,
    online_softmax_attention,
    peak_memory,
    plain_attention,
    repeat_kv,
    sdpa_attention,
)


def qkv(B=2, H=4, H_kv=2, N=5, M=13, d=8, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, N, d, generator=g, dtype=dtype)
    k = torch.randn(B, H_kv, M, d, generator=g, dtype=dtype)
    v = torch.randn(B, H_kv, M, d, generator=g, dtype=dtype)
    return q, k, v


def reference(q, k, v, causal=True, window=None):
    """PyTorch's own kernel over repeated key/value heads and an explicit mask (no code of ours
    but the mask, which :func:`test_attention_mask_by_definition` checks element by element)."""
    n_rep = q.size(1) // k.size(1)
    k, v = k.repeat_interleave(n_rep, dim=1), v.repeat_interleave(n_rep, dim=1)
    mask = attention_mask(q.size(2), k.size(2), causal=causal, window=window)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def test_attention_mask_by_definition():
    N, M, w = 4, 9, 3
    m = attention_mask(N, M, causal=True, window=w)
    for i in range(N):
        p = M - N + i
        assert m[i].tolist() == [p - w < j <= p for j in range(M)]
    assert attention_mask(N, M, causal=False, window=w)[0].tolist() == [
        j > M - N - w for j in range(M)
    ]
    assert attention_mask(N, M, causal=False) is None
    assert torch.equal(attention_mask(N, M), causal_mask(N, M))
    assert torch.equal(causal_mask(N, M), model.causal_mask(N, M))


def test_repeat_kv_matches_repeat_interleave():
    _, k, _ = qkv(H_kv=3)
    assert torch.equal(repeat_kv(k, 4), k.repeat_interleave(4, dim=1))
    assert repeat_kv(k, 1) is k


@settings(max_examples=40, deadline=None)
@given(
    B=st.integers(1, 2),
    H_kv=st.integers(1, 3),
    n_rep=st.sampled_from([1, 2, 4]),
    N=st.integers(1, 12),
    extra=st.integers(0, 20),
    d=st.sampled_from([1, 4, 8, 16]),
    block_size=st.integers(1, 40),
    causal=st.booleans(),
    window=st.one_of(st.none(), st.integers(1, 10)),
    seed=st.integers(0, 2**16),
)
def test_every_kernel_equals_sdpa(B, H_kv, n_rep, N, extra, d, block_size, causal, window, seed):
    """Any shape: GQA or not, more keys than queries (a KV cache), any block size, causal or not,
    sliding window or not: online softmax, the fused wrapper and the written-out version agree with
    PyTorch's kernel within 1e-5."""
    q, k, v = qkv(B, H_kv * n_rep, H_kv, N, N + extra, d, seed)
    want = reference(q, k, v, causal, window)
    online = online_softmax_attention(q, k, v, block_size=block_size, causal=causal, window=window)
    fused = sdpa_attention(q, k, v, causal=causal, window=window)
    plain, weights = plain_attention(q, k, v, causal=causal, window=window)
    for got in (online, fused, plain):
        assert got.shape == q.shape
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert weights.shape == (B, H_kv * n_rep, N, N + extra)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H_kv * n_rep, N))


@pytest.mark.parametrize("block_size", [1, 3, 64, 1000])
def test_online_softmax_on_a_long_prompt_and_large_scores(block_size):
    """Scores around +-100 (exp would overflow without the running maximum); M = 200 in blocks
    that do not divide it."""
    q, k, v = qkv(1, 2, 2, 200, 200, 16, seed=1)
    q = q * 12
    want = reference(q, k, v)
    got = online_softmax_attention(q, k, v, block_size=block_size)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_online_softmax_in_float64_is_exact_to_1e12():
    q, k, v = qkv(N=7, M=30, dtype=torch.float64)
    torch.testing.assert_close(
        online_softmax_attention(q, k, v, block_size=4), reference(q, k, v), atol=1e-12, rtol=0
    )


def test_online_softmax_window_skips_hidden_blocks():
    """With a window of 8 over 1,000 keys, one query visits one block of 8, not 125: the result
    holds even when the keys it cannot see are NaN (they are never read)."""
    q, k, v = qkv(1, 2, 1, 1, 1000, 8, seed=2)
    k[:, :, :992], v[:, :, :992] = float("nan"), float("nan")
    got = online_softmax_attention(q, k, v, block_size=8, window=8)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(
        got, reference(q, k[..., 992:, :], v[..., 992:, :]), atol=1e-6, rtol=0
    )


def test_sdpa_attention_is_bit_identical_to_model_fused_attention():
    """model.py could call the one home without changing a bit: the same fused calls for a prompt
    (N == M), a cached step (N == 1), a chunk over a cache (N < M) and an explicit mask."""
    q, k, v = qkv(H=4, H_kv=4, N=6, M=6)
    assert torch.equal(sdpa_attention(q, k, v), model.fused_attention(q, k, v))
    q, k, v = qkv(H=4, H_kv=4, N=1, M=11)
    assert torch.equal(sdpa_attention(q, k, v), model.fused_attention(q, k, v))
    q, k, v = qkv(H=4, H_kv=4, N=3, M=11)
    assert torch.equal(sdpa_attention(q, k, v), model.fused_attention(q, k, v))
    mask = torch.rand(2, 1, 3, 11, generator=torch.Generator().manual_seed(0)) > 0.3
    mask[..., 0] = True
    assert torch.equal(sdpa_attention(q, k, v, mask=mask), model.fused_attention(q, k, v, mask))


def test_plain_attention_is_bit_identical_to_model_attention():
    q, k, v = qkv(H=4, H_kv=4, N=5, M=9)
    out, w = plain_attention(q, k, v)
    want_out, want_w = model.attention(q, k, v, model.causal_mask(5, 9))
    assert torch.equal(out, want_out) and torch.equal(w, want_w)
    assert torch.equal(attention_weights(q, k), w)


@pytest.mark.parametrize("per_head", [False, True])
def test_sdpa_attention_gqa_with_a_padding_mask(per_head):
    """A padded batch: row 0 hides its first 2 keys. GQA stacks a group's query heads as rows; the
    mask (one for all heads, or one per head) must follow them."""
    q, k, v = qkv(B=2, H=6, H_kv=2, N=3, M=8)
    mask = causal_mask(3, 8).expand(2, 1, 3, 8).clone()
    mask[0, :, :, :2] = False
    if per_head:
        mask = mask.expand(2, 6, 3, 8).clone()
        mask[1, 5, :, 3] = False  # one head of one row sees one key less
    want = F.scaled_dot_product_attention(
        q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1), attn_mask=mask
    )
    torch.testing.assert_close(sdpa_attention(q, k, v, mask=mask), want, atol=1e-6, rtol=0)
    torch.testing.assert_close(plain_attention(q, k, v, mask=mask)[0], want, atol=1e-6, rtol=0)


def test_gqa_equals_mha_with_repeated_heads():
    """Grouped-query attention is multi-head attention whose key/value heads come in copies."""
    q, k, v = qkv(H=8, H_kv=2, N=4, M=10)
    mha = sdpa_attention(q, repeat_kv(k, 4), repeat_kv(v, 4))
    torch.testing.assert_close(sdpa_attention(q, k, v), mha, atol=1e-6, rtol=0)
    torch.testing.assert_close(online_softmax_attention(q, k, v), mha, atol=1e-6, rtol=0)


def test_attention_memory_from_shapes():
    assert attention_memory(1024, 1024) == 1024 * 1024 * 4
    assert attention_memory(1024, 1024, method="online") == 1024 * 64 * 4
    assert (
        attention_memory(8, 20, method="online", block_size=64, n_head=12, batch=2)
        == 2 * 12 * 8 * 20 * 4
    )
    assert attention_memory(4096, 4096, n_head=32, bytes_per_number=2) == 1_073_741_824


def test_peak_memory_plain_grows_as_n_squared_online_as_n():
    """Measured: the written-out version's largest tensor is the (B, H, N, N) score matrix, exactly
    as computed from shapes; online softmax never holds more than a few (N, block) tiles."""
    peaks = {}
    for N in (256, 512, 1024):
        q, k, v = qkv(1, 2, 2, N, N, 32, seed=3)
        plain = peak_memory(plain_attention, q, k, v)
        online = peak_memory(online_softmax_attention, q, k, v, block_size=32)
        assert plain["largest"] == attention_memory(N, N, n_head=2)
        assert online["largest"] == max(
            attention_memory(N, N, method="online", block_size=32, n_head=2), q.numel() * 4
        )
        assert online["peak"] < plain["largest"] < plain["peak"]
        peaks[N] = (plain["peak"], online["peak"])
    assert peaks[1024][0] == 16 * peaks[256][0]  # quadratic: 4x the tokens, 16x the bytes
    assert 3.99 < peaks[1024][1] / peaks[256][1] < 4.0  # linear (plus a few bytes that stay put)


def test_peak_memory_counts_only_new_tensors():
    x = torch.ones(1000)
    assert peak_memory(lambda t: t.add_(1), x) == {"peak": 0, "largest": 0}
    assert peak_memory(lambda t: (t * 2).sum(), x) == {"peak": 4004, "largest": 4000}
    assert peak_memory(lambda t: (t * 2 + 1).sum(), x) == {"peak": 8000, "largest": 4000}


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (
            dict(q=torch.zeros(2, 4, 8)),
            ValueError,
            "q must have shape (B, heads, positions, d_head)",
        ),
        (
            dict(k=torch.zeros(1, 3, 6, 8), v=torch.zeros(1, 3, 6, 8)),
            ValueError,
            "(3) must divide the query heads (4)",
        ),
        (dict(v=torch.zeros(1, 2, 5, 8)), ValueError, "k and v must have the same shape"),
        (
            dict(k=torch.zeros(1, 2, 6, 4), v=torch.zeros(1, 2, 6, 4)),
            ValueError,
            "must agree on B and d_head",
        ),
        (dict(q=torch.zeros(1, 4, 7, 8)), ValueError, "got N=7, M=6"),
        (dict(q=torch.zeros(1, 4, 3, 8, dtype=torch.float64)), TypeError, "must share one dtype"),
        (
            dict(q=torch.zeros(1, 4, 3, 8, dtype=torch.long)),
            TypeError,
            "q must be a floating-point",
        ),
        (dict(q=[[1.0]]), TypeError, "q must be a torch.Tensor"),
        (dict(window=0), ValueError, "window must be an int >= 1, got 0"),
        (dict(causal=1), TypeError, "causal must be True or False"),
    ],
)
@pytest.mark.parametrize("fn", [online_softmax_attention, sdpa_attention, plain_attention])
def test_bad_input_names_the_problem(fn, kwargs, error, words):
    args = dict(q=torch.zeros(1, 4, 3, 8), k=torch.zeros(1, 2, 6, 8), v=torch.zeros(1, 2, 6, 8))
    args.update(kwargs)
    q, k, v = args.pop("q"), args.pop("k"), args.pop("v")
    with pytest.raises(error, match=None) as info:
        fn(q, k, v, **args)
    assert words in str(info.value)


@pytest.mark.parametrize("block_size", [0, -1, 2.0, True])
def test_bad_block_size(block_size):
    q, k, v = qkv()
    with pytest.raises(ValueError, match="block_size must be an int >= 1"):
        online_softmax_attention(q, k, v, block_size=block_size)


def test_bad_memory_arguments():
    with pytest.raises(ValueError, match="method must be 'plain' or 'online', got 'flash'"):
        attention_memory(4, 4, method="flash")
    with pytest.raises(ValueError, match="n_query must be an int >= 1, got 0"):
        attention_memory(0, 4)
    with pytest.raises(TypeError, match="fn must be callable"):
        peak_memory(3)


def test_memory_curve_rows():
    rows = memory_curve([64, 256], n_head=2, d_head=16, block_size=32)
    assert [r["N"] for r in rows] == [64, 256]
    assert rows[1]["plain_scores"] == 2 * 256 * 256 * 4
    assert rows[1]["online_block"] == 2 * 256 * 32 * 4
    # measured: the written-out version holds the scores and the weights at once (and a bit more)
    assert 2 * rows[1]["plain_scores"] <= rows[1]["plain_peak"] < 3 * rows[1]["plain_scores"]
    assert rows[1]["online_peak"] < rows[1]["plain_peak"] / 3
    assert rows[1]["sdpa_peak"] >= 2 * 256 * 16 * 4  # at least the output
    with pytest.raises(ValueError, match="sizes must be a non-empty list"):
        memory_curve([])
    with pytest.raises(ValueError, match="each size must be an int >= 1, got 0"):
        memory_curve([0])
