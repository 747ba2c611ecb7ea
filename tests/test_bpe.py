"""The from-scratch BPE (nexttoken.bpe) against tiktoken, and its trainer's determinism."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from nexttoken import bpe
from nexttoken.tokenizer import R50K_PAT, get_encoding, mergeable_ranks

GPT2 = get_encoding("gpt2")
GPT2_RANKS = mergeable_ranks("gpt2")

SAMPLES = [
    "Le chat mange une souris",
    "The cat eats a mouse.",
    "To be, or not to be, that is the question:\n\n  Whether 'tis nobler...",
    "naïve café — 東京 🙂 12345 don't we'll",
    "",
    "   \n\t  trailing   ",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_encode_equals_tiktoken_gpt2(text):
    assert bpe.encode(text, GPT2_RANKS) == GPT2.encode_ordinary(text)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=60))
def test_encode_equals_tiktoken_on_random_unicode(text):
    ids = bpe.encode(text, GPT2_RANKS)
    assert ids == GPT2.encode_ordinary(text)
    assert bpe.decode(ids, GPT2_RANKS) == text


def test_pretokenize_matches_regex():
    assert bpe.pretokenize("Le chat mange une souris.") == [
        "Le",
        " chat",
        " mange",
        " une",
        " souris",
        ".",
    ]


def _naive_train(text: str, vocab_size: int) -> dict[bytes, int]:
    """Recount every pair at every step (slow, obviously right); same tie rule as bpe.train."""
    ranks = bpe.byte_ranks()
    tokens = [bytes([b]) for b in range(256)]
    words = Counter(tuple(w.encode()) for w in regex.findall(R50K_PAT, text))
    while len(ranks) < vocab_size:
        pairs = Counter()
        for w, c in words.items():
            for p in pairwise(w):
                pairs[p] += c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        new = len(tokens)
        tokens.append(tokens[best[0]] + tokens[best[1]])
        ranks[tokens[-1]] = new
        merged = Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += c
        words = merged
    return ranks


@settings(max_examples=30, deadline=None)
@given(st.text(alphabet="ab c\nd'é", max_size=80), st.integers(256, 300))
def test_train_matches_naive_recount(text, vocab_size):
    assert bpe.train(text, vocab_size) == _naive_train(text, vocab_size)


def test_train_is_deterministic_and_round_trips():
    text = "To be, or not to be, that is the question. " * 20 + "Le chat mange une souris. " * 10
    r1 = bpe.train(text, 300)
    r2 = bpe.train(text, 300)
    assert r1 == r2
    assert list(r1.values()) == list(range(len(r1)))
    ids = bpe.encode(text, r1)
    assert bpe.decode(ids, r1) == text
    assert len(ids) < len(text.encode())


def test_trained_ranks_work_in_tiktoken():
    import tiktoken

    text = "Whether 'tis nobler in the mind to suffer " * 10
    ranks = bpe.train(text, 280)
    enc = tiktoken.Encoding("t", pat_str=R50K_PAT, mergeable_ranks=ranks, special_tokens={})
    assert enc.encode_ordinary(text) == bpe.encode(text, ranks)


def test_bad_arguments():
    with pytest.raises(TypeError, match="text"):
        bpe.encode(b"bytes", GPT2_RANKS)
    with pytest.raises(TypeError, match="ranks"):
        bpe.encode("x", [1, 2])
    with pytest.raises(ValueError, match="vocab_size"):
        bpe.train("abc", 10)
    with pytest.raises(TypeError, match="vocab_size"):
        bpe.train("abc", 300.0)
    with pytest.raises(ValueError, match="not in ranks"):
        bpe.decode([10**9], GPT2_RANKS)


def test_retraining_on_a_slice_reproduces_the_shipped_first_merges():
    from nexttoken import data

    shipped = mergeable_ranks("book")
    assert len(shipped) == 4095
    assert sorted(shipped.values()) == list(range(4095))
    train, _ = data.split_plays(data.load_plays())
    text = "".join(train.values())[:500_000]
    ranks = bpe.train(text, 256 + 5)
    first = sorted(ranks, key=ranks.get)[256:]
    assert first == sorted(shipped, key=shipped.get)[256:261]
