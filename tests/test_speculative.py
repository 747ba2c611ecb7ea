"""Speculative decoding keeps what it promises: greedy output is the target's own, sampled output
has the target's distribution, and both KV caches roll back correctly."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from nexttoken.generate import generate
from nexttoken.model import GPT, GPTConfig
from nexttoken.sampling import filtered_probs
from nexttoken.speculative import (
    SpeculativeStats,
    accept_or_resample,
    residual,
    rollback,
    speculative_generate,
)

TARGET = GPTConfig(vocab_size=97, block_size=48, n_layer=2, n_head=2, n_embd=32, name="t")
DRAFT = GPTConfig(vocab_size=97, block_size=48, n_layer=1, n_head=2, n_embd=16, name="d")


def _model(config: GPTConfig, seed: int, std: float = 0.02) -> GPT:
    torch.manual_seed(seed)
    m = GPT(config).eval()
    if std != 0.02:  # larger embeddings: sharper, less uniform next-token distributions
        with torch.no_grad():
            m.transformer.wte.weight.normal_(0.0, std)
    return m


@pytest.fixture(scope="module")
def target() -> GPT:
    return _model(TARGET, 0, std=0.5)


@pytest.fixture(scope="module")
def drafts(target) -> list[GPT]:
    return [_model(DRAFT, 1, std=0.5), _model(DRAFT, 2), target]


@settings(max_examples=25, deadline=None)
@given(
    prompt=st.lists(st.integers(0, 96), min_size=1, max_size=8),
    k=st.integers(1, 6),
    n_new=st.integers(0, 20),
    which=st.integers(0, 2),
)
def test_greedy_is_generate_token_for_token(target, drafts, prompt, k, n_new, which):
    want = generate(target, prompt, n_new, temperature=0)
    got, stats = speculative_generate(target, drafts[which], prompt, n_new, k=k, temperature=0)
    assert torch.equal(got, want)
    assert stats.new_tokens == n_new
    assert stats.accepted <= stats.proposed
    # each round emits accepted + 1 tokens, so the counts add up
    assert stats.accepted + stats.target_passes == n_new
    if which == 2:  # the target as its own draft: every proposal is kept
        assert stats.accepted == stats.proposed


def test_greedy_with_stop_token_matches_generate(target, drafts):
    prompt = [5, 17, 3]
    full = generate(target, prompt, 20, temperature=0)[0].tolist()
    stop = full[len(prompt) + 6]  # a token the target does produce
    want = generate(target, prompt, 20, temperature=0, stop_token=stop)
    for k in (1, 3, 5):
        got, _ = speculative_generate(target, drafts[0], prompt, 20, k=k, temperature=0,
                                      stop_token=stop)  # fmt: skip
        assert torch.equal(got, want)


def test_rounds_report_what_happened(target, drafts):
    rounds = []
    out, stats = speculative_generate(target, drafts[0], [1, 2, 3], 15, k=3, temperature=0,
                                      on_round=rounds.append)  # fmt: skip
    assert rounds == stats.rounds and len(rounds) == stats.target_passes
    for r in rounds:
        assert r.proposed[: r.accepted] == r.target_argmax[: r.accepted]
        assert r.corrected == r.target_argmax[r.accepted]  # greedy: the target's own choice
        assert out[0, r.position + r.accepted].item() == r.corrected
    assert isinstance(stats, SpeculativeStats) and 0 <= stats.acceptance_rate <= 1


def test_rollback_forgets_rejected_positions(target):
    """Feeding a, then rejected b, rolling back and feeding c == feeding a + c from scratch."""
    a, b, c = torch.tensor([[4, 8, 15]]), torch.tensor([[16, 23, 42]]), torch.tensor([[7, 9]])
    cache = target.new_cache(1, 16)
    with torch.inference_mode():
        target.run(a, cache=cache)
        target.run(b, cache=cache)
        rollback(cache, 3)
        got = target.run(c, cache=cache).logits
        fresh = target.new_cache(1, 16)
        want = target.run(torch.cat([a, c], 1), cache=fresh).logits[:, -2:]
    assert cache.length == fresh.length == 5
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for layer in range(TARGET.n_layer):
        torch.testing.assert_close(cache.k[layer][:, :, :5], fresh.k[layer][:, :, :5])
        torch.testing.assert_close(cache.v[layer][:, :, :5], fresh.v[layer][:, :, :5])
    with pytest.raises(ValueError, match="roll back"):
        rollback(cache, 6)


def test_residual_and_accept_rule():
    p = torch.tensor([0.5, 0.3, 0.2, 0.0])
    q = torch.tensor([0.1, 0.6, 0.2, 0.1])
    torch.testing.assert_close(residual(p, q), torch.tensor([1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(residual(p, p), p)  # nothing to correct: falls back to p
    g = torch.Generator().manual_seed(0)
    assert accept_or_resample(0, p, q, g) == (True, 0)  # p >= q: always kept
    assert accept_or_resample(3, p, q, g) == (False, 0)  # p = 0: always replaced, from residual


def _joint_target(model: GPT, prompt: list[int], n: int, **kw) -> dict[tuple, float]:
    """Exact probability of every continuation of ``n`` tokens under ``model`` (small vocab)."""
    V = model.config.vocab_size
    out = {}
    with torch.inference_mode():
        for seq in itertools.product(range(V), repeat=n):
            ids = torch.tensor([prompt + list(seq)])
            logits = model(ids)[0, len(prompt) - 1 : -1]
            probs = filtered_probs(logits, **kw)
            out[seq] = float(torch.prod(probs[torch.arange(n), torch.tensor(seq)]))
    return out


def _chi2(counts: dict[tuple, int], probs: dict[tuple, float], draws: int) -> float:
    """Chi-square p-value, cells with expected count < 5 pooled into one."""
    obs, exp, rest_o, rest_e = [], [], 0, 0.0
    for cell, p in probs.items():
        if p * draws >= 5:
            obs.append(counts.get(cell, 0))
            exp.append(p * draws)
        else:
            rest_o += counts.get(cell, 0)
            rest_e += p * draws
    if rest_e > 0:
        obs.append(rest_o)
        exp.append(rest_e)
    exp = [e * sum(obs) / sum(exp) for e in exp]  # exact sums despite rounding
    return float(chisquare(obs, exp).pvalue)


SMALL_T = GPTConfig(vocab_size=5, block_size=16, n_layer=1, n_head=1, n_embd=8, name="st")


@pytest.mark.parametrize(
    "kw, draws",
    [
        (dict(temperature=1.0), 2000),
        (dict(temperature=0.7, top_k=3), 1200),
    ],
)
def test_sampling_follows_the_target_distribution(kw, draws):
    target = _model(SMALL_T, 10, std=0.15)
    draft = _model(SMALL_T, 11, std=0.15)  # deliberately another model
    prompt, n = [1, 4], 3
    p_joint = _joint_target(target, prompt, n, **kw)
    q_joint = _joint_target(draft, prompt, n, **kw)
    tv = 0.5 * sum(abs(p_joint[c] - q_joint[c]) for c in p_joint)
    assert tv > 0.3  # the draft really is a different model
    g = torch.Generator().manual_seed(1234)
    counts: dict[tuple, int] = {}
    accepted = proposed = 0
    for _ in range(draws):
        out, stats = speculative_generate(target, draft, prompt, n, k=2, generator=g, **kw)
        cell = tuple(out[0, len(prompt) :].tolist())
        counts[cell] = counts.get(cell, 0) + 1
        accepted, proposed = accepted + stats.accepted, proposed + stats.proposed
    assert 0 < accepted < proposed  # proposals were both kept and rejected
    assert _chi2(counts, p_joint, draws) > 1e-3
    # the test has power: the draft's own distribution is rejected by it
    assert _chi2(counts, q_joint, draws) < 1e-6


def test_bad_arguments(target, drafts):
    with pytest.raises(ValueError, match="k .*>= 1"):
        speculative_generate(target, drafts[0], [1], 3, k=0)
    with pytest.raises(ValueError, match="batch size 1"):
        speculative_generate(target, drafts[0], torch.zeros(2, 3, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="context"):
        speculative_generate(target, drafts[0], [1] * 40, 20)
    with pytest.raises(TypeError, match="draft"):
        speculative_generate(target, "gpt2", [1], 3)
    other = _model(GPTConfig(vocab_size=50, block_size=48, n_layer=1, n_head=1, n_embd=8), 0)
    with pytest.raises(ValueError, match="vocab"):
        speculative_generate(target, other, [1], 3)
    out, stats = speculative_generate(target, drafts[0], [1, 2], 0)
    assert out.tolist() == [[1, 2]] and stats.target_passes == 0


def test_figures_draw(target, drafts):
    from matplotlib.figure import Figure

    from nexttoken.viz.faster import acceptance_figure, round_figure

    _, stats = speculative_generate(target, drafts[0], [1, 2, 3], 12, k=4, temperature=0)
    for r in stats.rounds:
        assert isinstance(round_figure(r), Figure)
    row = {"tokens_per_round": 2.0, "alpha": 0.6, "measured_tokens_per_s": 90.0,
           "predicted_tokens_per_s": 95.0}  # fmt: skip
    fig = acceptance_figure({"pair": {"plain_tokens_per_s": 100.0, "k=2": row, "k=4": row}})
    assert len(fig.axes) == 2
