"""Checkers of notebooks 01-04: the right answer passes, each recognised wrong answer fails and names
its misconception (mutation-style: a checker that accepts a wrong answer is a bug), hints are staged
and never give the answer away."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nexttoken.exercises import attention as ea
from nexttoken.exercises import decoder as ed
from nexttoken.exercises import embeddings as ee
from nexttoken.exercises import reset_hints
from nexttoken.exercises import tokens as et
from nexttoken.tokenizer import get_encoding, mergeable_ranks

FR = "Le chat mange une souris"
WORDS = FR.split()
D3 = 12288  # GPT-3 175B's d_model
TOTAL3 = 174_604_259_328


def _fails_with(capsys, ok: bool, misconception: str) -> None:
    out = capsys.readouterr().out
    assert ok is False, out
    assert out.startswith("FAIL"), out
    assert misconception in out, out


def test_unanswered_is_false_and_todo(capsys):
    checks = (et.check_token_count, et.check_vocab_size, ed.check_mlp_params, ea.check_scale)
    for check in checks:
        assert check(None) is False
    assert capsys.readouterr().out.count("TODO") == 4


# ---- 01 text to tokens ----------------------------------------------------------------------

N_FR = len(get_encoding("gpt2").encode(FR))


def test_token_count_right():
    assert et.check_token_count(N_FR)
    assert et.check_token_count(len(get_encoding("o200k_base").encode(FR)), "o200k_base")


@pytest.mark.parametrize(
    ("answer", "misconception"),
    [
        (5, "number of words"),
        (len(FR), "number of characters"),
        (26, "is not the number of tokens"),
        (6, "count in cl100k_base"),
        (11, "count in book"),
        (N_FR + 0.5, "got the fraction"),
        (True, "expected a count (a whole number), got bool"),
    ],
)
def test_token_count_wrong(capsys, answer, misconception):
    _fails_with(capsys, et.check_token_count(answer), misconception)


def test_token_count_bytes(capsys):
    text = "Le chat a mangé"  # 15 characters, 16 bytes
    _fails_with(capsys, et.check_token_count(16, text=text), "number of bytes")


O200K = get_encoding("o200k_base").n_vocab
O200K_RANKS = len(mergeable_ranks("o200k_base"))


def test_vocab_size_right():
    assert et.check_vocab_size(O200K)
    assert et.check_vocab_size(50257, "gpt2")


@pytest.mark.parametrize(
    ("answer", "misconception"),
    [
        (200_000, "round number"),
        (O200K_RANKS, "leaves out the special tokens"),
        (O200K_RANKS - 256, "number of merges only"),
        (O200K - 1, "largest id"),
        (O200K_RANKS + 2, "ids of the special tokens leave gaps"),
        (100277, "size of cl100k_base"),
        (50257, "size of gpt2"),
        (199_999.5, "got the fraction"),
        (123_456, "is not the size"),
    ],
)
def test_vocab_size_wrong(capsys, answer, misconception):
    _fails_with(capsys, et.check_vocab_size(answer), misconception)


def test_vocab_size_round_gpt2(capsys):
    _fails_with(capsys, et.check_vocab_size(50000, "gpt2"), "merges only")
    _fails_with(capsys, et.check_vocab_size(51000, "gpt2"), "round number")


MERGE_TEXT = "to be or not to be, to see or not to see"


def test_first_merge_right():
    assert et.most_frequent_pair(MERGE_TEXT) == (b"t", b"o")
    assert et.check_first_merge((b"t", b"o"), MERGE_TEXT)
    assert et.check_first_merge(b"to", MERGE_TEXT)
    assert et.check_first_merge(("t", "o"), MERGE_TEXT)
    assert et.check_first_merge("to", MERGE_TEXT)


@pytest.mark.parametrize(
    ("answer", "misconception"),
    [
        ((b"o", b" "), "straddles two pre-tokens"),
        ((b"o", b"t"), "wrong order"),
        ((b" ", b"t"), "another one occurs more"),
        ((b"x", b"y"), "does not occur"),
        (42, "pair of single bytes"),
        ((b"to", b"be"), "pair of single bytes"),
    ],
)
def test_first_merge_wrong(capsys, answer, misconception):
    _fails_with(capsys, et.check_first_merge(answer, MERGE_TEXT), misconception)


def test_first_merge_tie(capsys):
    # "ab" and "cd" both occur twice: the tie goes to the smallest bytes, (a, b)
    assert et.check_first_merge((b"a", b"b"), "ab,ab,cd,cd")
    capsys.readouterr()
    _fails_with(capsys, et.check_first_merge((b"c", b"d"), "ab,ab,cd,cd"), "tied")


ENC = get_encoding("gpt2")
PIECES_TEXT = " The cat eats a mouse"
PIECES_IDS = ENC.encode(PIECES_TEXT)
PIECES = [ENC.decode([i]) for i in PIECES_IDS]


def test_pieces_right():
    assert et.check_pieces(PIECES)


@pytest.mark.parametrize(
    ("answer", "misconception"),
    [
        ([p.strip() + " " for p in PIECES], "spaces are after the words"),
        ([p.strip() for p in PIECES], "spaces are missing"),
        (["The", *PIECES[1:]], "first token too carries a space"),
        (PIECES_TEXT.split(), "spaces are missing"),
        ("The cat eats a mouse".split(" ") + ["!"], "pieces"),
        (PIECES_IDS, "those are the ids"),
        ([ENC.decode_single_token_bytes(i) for i in PIECES_IDS], "those are bytes"),
        ([PIECES_TEXT], "whole text decoded at once"),
        ("The cat", "list of str"),
        ([" The", "cat", *PIECES[2:]], "spaces are not where"),
    ],
)
def test_pieces_wrong(capsys, answer, misconception):
    _fails_with(capsys, et.check_pieces(answer), misconception)


def test_doubled_sentence_prediction(capsys):
    assert et.check_doubled_sentence_prediction(2 * N_FR)
    assert not et.check_doubled_sentence_prediction(N_FR)
    out = capsys.readouterr().out
    assert "FAIL" in out and "' Le'" in out and "pre-tokens" in out


# ---- 02 tokens to vectors -------------------------------------------------------------------

IDS = [3, 0, 2]
ONE_HOT = F.one_hot(torch.tensor(IDS), 5)


def test_one_hot_right():
    assert ee.check_one_hot(ONE_HOT, IDS, 5)
    assert ee.check_one_hot(ONE_HOT.float(), IDS, 5)
    assert ee.check_one_hot(ONE_HOT.bool(), IDS, 5)


@pytest.mark.parametrize(
    ("answer", "misconception"),
    [
        (ONE_HOT.T, "transposed"),
        (F.one_hot(torch.tensor(IDS) + 1, 5), "off by one"),
        (torch.tensor(IDS), "the ids themselves"),
        (ONE_HOT.sum(0), "bag of words"),
        (ONE_HOT * torch.tensor(IDS)[:, None].clamp(min=2), "must be 1"),
        (F.one_hot(torch.tensor(sorted(IDS)), 5), "rows are sorted"),
        (torch.zeros(3, 4), "shape must be"),
        (torch.zeros(3, 5), "all zeros except"),
        ("[[0, 0, 0, 1, 0]]", "expected a tensor, got str"),
    ],
)
def test_one_hot_wrong(capsys, answer, misconception):
    _fails_with(capsys, ee.check_one_hot(answer, IDS, 5), misconception)


def test_input_vectors(capsys, tiny_model):
    ids = torch.tensor([[1, 5, 7, 9]])
    wte, wpe = tiny_model.transformer.wte, tiny_model.transformer.wpe
    with torch.no_grad():
        tok, pos = wte(ids), wpe.weight[:4]
        assert ee.check_input_vectors(tok + pos, tiny_model, ids)
        capsys.readouterr()
        wrong = [
            (tok, "token vectors only"),
            (pos.expand_as(tok).clone(), "position vectors only"),
            (tok * pos, "multiplied"),
            (tok + wpe.weight[1:5], "off by one"),
            (tok + pos.flip(0), "reverse"),
            ((tok + pos)[0], "batch dimension B is lost"),
            (torch.cat([tok, pos.expand_as(tok)], -1), "concatenated"),
            (tok[:, :3], "shape must be"),
            (tok + pos + 1, "values differ"),
            (str((tok + pos).tolist()), "expected a tensor, got str"),
        ]
        for answer, misconception in wrong:
            _fails_with(capsys, ee.check_input_vectors(answer, tiny_model, ids), misconception)


P3 = 50257 * D3


def test_embedding_bytes_right():
    assert ee.check_embedding_bytes(2 * P3)
    assert ee.check_embedding_bytes(4 * P3, dtype="fp32")
    assert ee.check_embedding_bytes(P3, dtype="int8")


@pytest.mark.parametrize(
    ("answer", "misconception"),
    [
        (P3, "number of parameters"),
        (4 * P3, "size in fp32"),
        (16 * P3, "in bits"),
        (2 * 50000 * D3, "not 50,000"),
        (2 * (50257 + 2048) * D3, "adds the position table"),
        (1_235_000_000, "rounded"),
        (1.235e9, "close but rounded"),
        (1.235e9 / 2**30, "GiB"),
        ("1235116032", "got str"),
        (12345, "is not the size"),
    ],
)
def test_embedding_bytes_wrong(capsys, answer, misconception):
    _fails_with(capsys, ee.check_embedding_bytes(answer), misconception)


def test_embedding_bytes_rejects_unknown_dtype():
    with pytest.raises(ValueError, match="dtype must be one of"):
        ee.check_embedding_bytes(1, dtype="bf8")


def test_table_share_prediction(capsys):
    share = 100 * 50257 * 768 / 124_439_808
    assert ee.check_table_share_prediction(share)
    assert ee.check_table_share_prediction(30)
    assert not ee.check_table_share_prediction(1)
    assert "blocks" in capsys.readouterr().out


# ---- 03 self-attention ----------------------------------------------------------------------

MASK = torch.ones(5, 5, dtype=torch.bool).tril()


def test_causal_mask_right():
    assert ea.check_causal_mask(MASK)
    assert ea.check_causal_mask(MASK.int())
    assert ea.check_causal_mask(MASK.float())


@pytest.mark.parametrize(
    ("answer", "misconception"),
    [
        (MASK.T, "transposed"),
        (~MASK, "True marks the hidden"),
        (torch.ones(5, 5, dtype=torch.bool), "no mask"),
        (MASK.tril(-1), "diagonal is missing"),
        (torch.zeros(5, 5).masked_fill(~MASK, float("-inf")), "additive form"),
        (MASK | torch.eye(5, dtype=torch.bool).roll(1, 1), "later token"),
        (MASK & ~torch.eye(5, dtype=torch.bool).roll(-1, 1), "cannot see an earlier token"),
        (MASK[:4, :4], "expected an (5, 5) tensor"),
        ([[1]], "expected an (5, 5) tensor"),
    ],
)
def test_causal_mask_wrong(capsys, answer, misconception):
    _fails_with(capsys, ea.check_causal_mask(answer), misconception)


def _weights(scale="sqrt", dim=-1, mask="tril", fill=float("-inf"), after=False, swap=False):
    def fn(q, k):
        s = k @ q.T if swap else q @ k.T
        d = q.size(-1)
        s = {"sqrt": s / math.sqrt(d), "none": s, "square": s / d, "times": s * math.sqrt(d)}[scale]
        n = len(q)
        allowed = torch.ones(n, n, dtype=torch.bool).tril()
        if mask == "triu":
            allowed = allowed.T
        if mask == "none":
            return torch.softmax(s, dim=dim)
        if after:
            return torch.softmax(s, dim=dim) * allowed
        return torch.softmax(s.masked_fill(~allowed, fill), dim=dim)

    return fn


def test_attention_weights_right():
    assert ea.check_attention_weights(_weights())
    assert ea.check_attention_weights(_weights(fill=-1e9))
    assert ea.check_attention_weights(_weights(dim=1))


@pytest.mark.parametrize(
    ("fn", "misconception"),
    [
        (_weights(mask="triu"), "mask is transposed"),
        (_weights(mask="none"), "no mask"),
        (_weights(fill=0.0), "masked with 0 instead of -inf"),
        (_weights(after=True), "masked after the softmax"),
        (_weights(dim=0), "softmax over the wrong dimension"),
        (_weights(scale="none"), "scale is missing"),
        (_weights(scale="square"), "scale is squared"),
        (_weights(scale="times"), "multiplied by sqrt(d_head)"),
        (_weights(swap=True), "scores are transposed"),
        (lambda q, k: 1 / 0, "ZeroDivisionError"),
        (lambda q, k: q @ k.T @ q, "shape (6, 6)"),
        (lambda q, k: torch.softmax(q @ k.T, -1).tril(), "rows do not sum to 1"),
        (lambda q, k: torch.eye(6), "values differ"),
        ("softmax", "must be a function"),
    ],
)
def test_attention_weights_wrong(capsys, fn, misconception):
    _fails_with(capsys, ea.check_attention_weights(fn), misconception)


def test_visible_words_right():
    assert ea.check_visible_words({"Le", "chat", "mange"}, WORDS, "mange")
    assert ea.check_visible_words(["Le", "chat", "mange"], WORDS, "mange")
    assert ea.check_visible_words(set(WORDS), WORDS, "souris")


@pytest.mark.parametrize(
    ("answer", "misconception"),
    [
        ({"chat", "souris"}, "meaning-based reading"),
        (set(WORDS), "every word"),
        ({"une", "souris"}, "mask transposed"),
        ({"Le", "chat", "mange", "souris"}, "later word"),
        ({"Le", "chat"}, "also attends to itself"),
        ({"mange"}, "only itself"),
        ({"chat", "mange"}, "some earlier word is missing"),
        ("Le chat", "set of words"),
    ],
)
def test_visible_words_wrong(capsys, answer, misconception):
    _fails_with(capsys, ea.check_visible_words(answer, WORDS, "mange"), misconception)


def test_scale_right():
    assert ea.check_scale(math.sqrt(128))
    assert ea.check_scale(11.3137)
    assert ea.check_scale(8, d_head=64)


@pytest.mark.parametrize(
    ("answer", "misconception"),
    [
        (128, "the square, not its root"),
        (1 / math.sqrt(128), "multiplied by, not divided"),
        (math.sqrt(12288), "sqrt(d_model)"),
        (12288, "that is d_model"),
        (math.sqrt(96), "number of heads"),
        (8, "GPT-2's d_head"),
        ("sqrt(128)", "expected a number, got str"),
        (10, "is not the scale"),
    ],
)
def test_scale_wrong(capsys, answer, misconception):
    _fails_with(capsys, ea.check_scale(answer), misconception)


def test_masked_weight_prediction(capsys, tiny_model):
    with torch.no_grad():
        att = tiny_model.run(torch.tensor([[1, 2, 3, 4, 5]]), output_attentions=True).attentions
    assert ea.check_masked_weight_prediction(0, att, 2, [3, 4], layer=1)
    assert not ea.check_masked_weight_prediction(0.3, att, 2, [3, 4], layer=1)
    assert "-inf" in capsys.readouterr().out


# ---- 04 the decoder block -------------------------------------------------------------------


def _ln(dim=-1, unbiased=False, eps=1e-5, where="inside"):
    def fn(x):
        mu = x.mean(dim, keepdim=True)
        var = x.var(dim, keepdim=True, unbiased=unbiased)
        if where == "std":
            return (x - mu) / (var.sqrt() + eps)
        if where == "var":
            return (x - mu) / (var + eps)
        return (x - mu) / torch.sqrt(var + eps)

    return fn


def test_layer_norm_right():
    assert ed.check_layer_norm(_ln())
    assert ed.check_layer_norm(lambda x: F.layer_norm(x, x.shape[-1:]))


@pytest.mark.parametrize(
    ("fn", "misconception"),
    [
        (_ln(unbiased=True), "biased one"),
        (_ln(eps=0.0), "eps is missing"),
        (_ln(where="std"), "inside the sqrt"),
        (_ln(where="var"), "divided by the variance"),
        (lambda x: x - x.mean(-1, keepdim=True), "only centred"),
        (lambda x: x / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-5), "only scaled"),
        (_ln(dim=0), "over the batch"),
        (_ln(dim=1), "over the tokens"),
        (_ln(dim=(0, 1, 2)), "whole tensor"),
        (lambda x: x[0], "expected a tensor of shape"),
        (lambda x: torch.tanh(x), "mean 0"),
        (lambda x: _ln()(x) * 1.01, "values differ"),
        (lambda x: 1 / 0, "ZeroDivisionError"),
        (None, "TODO"),
    ],
)
def test_layer_norm_wrong(capsys, fn, misconception):
    ok = ed.check_layer_norm(fn)
    out = capsys.readouterr().out
    assert ok is False and misconception in out, out


def test_split_heads_right():
    assert ed.check_split_heads(lambda x, h: x.view(x.size(0), x.size(1), h, -1).transpose(1, 2))
    assert ed.check_split_heads(lambda x, h: x.unflatten(-1, (h, -1)).permute(0, 2, 1, 3))


@pytest.mark.parametrize(
    ("fn", "misconception"),
    [
        (lambda x, h: x.view(x.size(0), h, x.size(1), -1), "plain view mixes tokens"),
        (lambda x, h: x.view(x.size(0), x.size(1), h, -1), "head axis is still after"),
        (
            lambda x, h: x.view(x.size(0), x.size(1), -1, h).permute(0, 3, 1, 2),
            "interleaved",
        ),
        (lambda x, h: x, "expected shape"),
        (lambda x, h: x.view(x.size(0), x.size(1), h, -1).transpose(1, 2) + 1, "right place"),
        (lambda x, h: "heads", "expected a tensor, got str"),
        (lambda x, h: x.view(3, 7), "RuntimeError"),
    ],
)
def test_split_heads_wrong(capsys, fn, misconception):
    _fails_with(capsys, ed.check_split_heads(fn), misconception)


def test_mlp_params_right():
    assert ed.check_mlp_params(8 * D3 * D3 + 5 * D3)
    assert ed.check_mlp_params(8 * 768 * 768 + 5 * 768, "gpt2")


@pytest.mark.parametrize(
    ("answer", "misconception"),
    [
        (8 * D3 * D3, "biases are missing"),
        (2 * D3 * D3 + 2 * D3, "4d wide"),
        (2 * D3 * D3, "4d wide"),
        (4 * D3 * D3 + 4 * D3, "one of the two linear layers"),
        (4 * D3 * D3 + D3, "one of the two linear layers"),
        (8 * D3 * D3 + 8 * D3, "second bias"),
        (8 * D3 * D3 + 7 * D3, "ln_2"),
        (12 * D3 * D3 + 13 * D3, "whole block"),
        (96 * (8 * D3 * D3 + 5 * D3), "all 96 MLPs"),
        (1.2e9 + 0.5, "got the fraction"),
        (1_208_000_000, "not the count of one MLP"),
    ],
)
def test_mlp_params_wrong(capsys, answer, misconception):
    _fails_with(capsys, ed.check_mlp_params(answer), misconception)


def test_total_params_right():
    assert ed.check_total_params(TOTAL3)
    assert ed.check_total_params(124_439_808, "gpt2")


@pytest.mark.parametrize(
    ("answer", "misconception"),
    [
        (TOTAL3 + 50257 * D3, "tied"),
        (TOTAL3 - 2048 * D3, "position table"),
        (96 * (12 * D3 * D3 + 13 * D3), "blocks only"),
        (TOTAL3 - 2 * D3, "final LayerNorm"),
        (TOTAL3 - 50257 * D3, "token table is missing"),
        (175_000_000_000, "rounded name"),
        (174_600_000_000, "rounded name"),
        (1.746e11 + 0.5, "got the fraction"),
        (TOTAL3 + 1, "is not the count"),
    ],
)
def test_total_params_wrong(capsys, answer, misconception):
    _fails_with(capsys, ed.check_total_params(answer), misconception)


def test_layer_norm_prediction(capsys, tiny_model):
    ids = torch.tensor([[1, 2, 3]])
    d = tiny_model.config.n_embd
    assert ed.check_layer_norm_prediction(math.sqrt(d), tiny_model, ids)
    assert not ed.check_layer_norm_prediction(1.0, tiny_model, ids)
    assert "sqrt(d)" in capsys.readouterr().out


# ---- hints: staged, and never the answer ----------------------------------------------------

ALL_HINTS = {
    **{f"tokens.{k}": h for k, h in et.HINTS.items()},
    **{f"embeddings.{k}": h for k, h in ee.HINTS.items()},
    **{f"attention.{k}": h for k, h in ea.HINTS.items()},
    **{f"decoder.{k}": h for k, h in ed.HINTS.items()},
}

# what the solutions notebooks write (and the numbers they find): no hint may contain them
SOLUTION_CODE = [
    ".tril()",
    "torch.ones(n, n",
    "masked_fill(",
    "F.one_hot(",
    "one_hot(torch.tensor",
    "wpe.weight[:",
    "wte(ids)",
    ".n_vocab",
    "len(enc.encode",
    "enc.decode([i])",
    "view(B, N, H",
    ".transpose(1, 2)",
    "unbiased=False",
    "var(-1",
    "8 * d * d",
    "math.sqrt(128)",
    "11.31",
    "200,019",
    "200019",
    "122880",
    "174,604,259,328",
    "1,235,116,032",
]


@pytest.mark.parametrize("hints", list(ALL_HINTS.values()), ids=list(ALL_HINTS))
def test_no_hint_gives_the_answer(hints):
    assert len(hints.stages) >= 2
    for stage in hints.stages:
        for code in SOLUTION_CODE:
            assert code not in stage, (hints.name, code)


def test_hints_advance_per_exercise(capsys):
    for k in (1, 2, 3, 3):
        ea.check_causal_mask(MASK.T)
        assert f"Hint {k}/3" in capsys.readouterr().out
    ea.check_scale(128)  # another exercise starts at its own first stage
    assert "Hint 1/3" in capsys.readouterr().out
    reset_hints()
    ea.check_causal_mask(MASK.T)
    assert "Hint 1/3" in capsys.readouterr().out
