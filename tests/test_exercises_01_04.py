"""Checkers of notebooks 01-04 accept the right answer and reject typical wrong ones."""

from __future__ import annotations

import math

import torch

from nexttoken.exercises import attention as ea
from nexttoken.exercises import decoder as ed
from nexttoken.exercises import embeddings as ee
from nexttoken.exercises import tokens as et
from nexttoken.tokenizer import get_encoding

FR = "Le chat mange une souris"


def test_unanswered_is_false_and_todo(capsys):
    for check in (et.check_token_count, et.check_vocab_size, ed.check_mlp_params, ea.check_scale):
        assert check(None) is False
    assert capsys.readouterr().out.count("TODO") == 4


def test_token_count(capsys):
    n = len(get_encoding("gpt2").encode(FR))
    assert et.check_token_count(n)
    assert not et.check_token_count(5)  # words
    assert not et.check_token_count(len(FR))  # characters
    assert not et.check_token_count(n + 1)
    assert not et.check_token_count(float(n))
    assert "number of words" in capsys.readouterr().out


def test_vocab_size():
    assert et.check_vocab_size(get_encoding("o200k_base").n_vocab)
    assert not et.check_vocab_size(200_000)
    assert not et.check_vocab_size(get_encoding("cl100k_base").n_vocab)
    assert et.check_vocab_size(50257, "gpt2")
    assert not et.check_vocab_size(50000, "gpt2")


def test_first_merge():
    text = "the cat the hat the mat"
    assert et.most_frequent_pair(text) in {(b"a", b"t"), (b"t", b"h")}
    right = et.most_frequent_pair(text)
    assert et.check_first_merge(right, text)
    assert et.check_first_merge(right[0] + right[1], text)
    assert not et.check_first_merge((b" ", b"t"), "aa aa aa")  # across the split: not a pair
    assert not et.check_first_merge((b"c", b"a"), text)
    assert not et.check_first_merge(42, text)


def test_pieces(capsys):
    enc = get_encoding("gpt2")
    text = " The cat eats a mouse"
    right = [enc.decode([i]) for i in enc.encode(text)]
    assert et.check_pieces(right)
    assert not et.check_pieces([p.strip() + " " for p in right])  # spaces after the words
    assert not et.check_pieces(text.split())
    assert "spaces" in capsys.readouterr().out


def test_one_hot():
    ids = [3, 0, 2]
    right = torch.nn.functional.one_hot(torch.tensor(ids), 5)
    assert ee.check_one_hot(right, ids, 5)
    assert ee.check_one_hot(right.float(), ids, 5)
    assert not ee.check_one_hot(right.T, ids, 5)
    assert not ee.check_one_hot(torch.nn.functional.one_hot(torch.tensor(ids) + 1, 5), ids, 5)
    assert not ee.check_one_hot(torch.tensor(ids), ids, 5)


def test_input_vectors(tiny_model):
    ids = torch.tensor([[1, 5, 7, 9]])
    wte, wpe = tiny_model.transformer.wte, tiny_model.transformer.wpe
    with torch.no_grad():
        right = wte(ids) + wpe.weight[:4]
        assert ee.check_input_vectors(right, tiny_model, ids)
        assert not ee.check_input_vectors(wte(ids), tiny_model, ids)  # no positions
        assert not ee.check_input_vectors(wte(ids) + wpe.weight[1:5], tiny_model, ids)  # offset
        assert not ee.check_input_vectors(right[0], tiny_model, ids)  # batch dim lost


def test_embedding_bytes():
    p = 50257 * 12288
    assert ee.check_embedding_bytes(2 * p)
    assert not ee.check_embedding_bytes(p)
    assert not ee.check_embedding_bytes(4 * p)
    assert not ee.check_embedding_bytes(2 * 50000 * 12288)
    assert ee.check_embedding_bytes(4 * p, dtype="fp32")


def test_causal_mask():
    n = 5
    right = torch.ones(n, n, dtype=torch.bool).tril()
    assert ea.check_causal_mask(right)
    assert ea.check_causal_mask(right.int())
    assert not ea.check_causal_mask(right.T)  # sees the future
    assert not ea.check_causal_mask(torch.ones(n, n, dtype=torch.bool))
    assert not ea.check_causal_mask(right.tril(-1))  # no diagonal
    assert not ea.check_causal_mask(right[:4, :4])


def _weights(scale=True, dim=-1, mask=True):
    def fn(q, k):
        s = q @ k.T
        if scale:
            s = s / math.sqrt(q.size(-1))
        if mask:
            s = s.masked_fill(~torch.ones(len(q), len(k), dtype=torch.bool).tril(), float("-inf"))
        return torch.softmax(s, dim=dim)

    return fn


def test_attention_weights(capsys):
    assert ea.check_attention_weights(_weights())
    assert not ea.check_attention_weights(_weights(scale=False))
    assert not ea.check_attention_weights(_weights(dim=0))  # softmax over the wrong axis
    assert not ea.check_attention_weights(_weights(mask=False))
    assert not ea.check_attention_weights(lambda q, k: 1 / 0)
    out = capsys.readouterr().out
    assert "sqrt(d_head)" in out and "future" in out and "ZeroDivisionError" in out


def test_visible_words():
    words = FR.split()
    assert ea.check_visible_words({"Le", "chat", "mange"}, words, "mange")
    assert not ea.check_visible_words({"chat", "souris"}, words, "mange")  # the notes' reading
    assert not ea.check_visible_words({"Le", "chat", "mange", "souris"}, words, "mange")
    assert not ea.check_visible_words({"Le", "chat"}, words, "mange")  # itself missing
    assert ea.check_visible_words(set(words), words, "souris")


def test_scale():
    assert ea.check_scale(math.sqrt(128))
    assert ea.check_scale(11.3137)
    assert not ea.check_scale(128)
    assert not ea.check_scale(1 / math.sqrt(128))


def test_layer_norm(capsys):
    right = lambda x: (
        (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-5)
    )
    unbiased = lambda x: (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + 1e-5)
    wrong_dim = lambda x: (
        (x - x.mean(0, keepdim=True)) / torch.sqrt(x.var(0, keepdim=True, unbiased=False) + 1e-5)
    )
    assert ed.check_layer_norm(right)
    assert not ed.check_layer_norm(unbiased)
    assert not ed.check_layer_norm(wrong_dim)
    assert "unbiased=False" in capsys.readouterr().out


def test_split_heads(capsys):
    right = lambda x, h: x.view(x.size(0), x.size(1), h, -1).transpose(1, 2)
    plain_view = lambda x, h: x.view(x.size(0), h, x.size(1), -1)
    assert ed.check_split_heads(right)
    assert not ed.check_split_heads(plain_view)
    assert not ed.check_split_heads(lambda x, h: x)
    assert "wrong content" in capsys.readouterr().out


def test_mlp_params():
    d = 12288
    assert ed.check_mlp_params(8 * d * d + 5 * d)
    assert not ed.check_mlp_params(8 * d * d)
    assert not ed.check_mlp_params(2 * d * d)
    assert ed.check_mlp_params(8 * 768 * 768 + 5 * 768, "gpt2")


def test_total_params():
    assert ed.check_total_params(174_604_259_328)
    assert not ed.check_total_params(175_000_000_000)
    assert not ed.check_total_params(174_604_259_328 + 50257 * 12288)  # untied
    assert ed.check_total_params(124_439_808, "gpt2")
