"""The encodings are the real ones (exact ids), offline, and checked by hash."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from nexttoken import tokenizer
from nexttoken.tokenizer import PINNED_SHA256, get_encoding, list_encodings

REAL = ["gpt2", "r50k_base", "cl100k_base", "o200k_base"]


def test_hello_world_ids_match_tiktoken():
    assert get_encoding("gpt2").encode("Hello world") == [15496, 995]
    assert get_encoding("r50k_base").encode("Hello world") == [15496, 995]
    assert get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert get_encoding("o200k_base").encode("hello world") == [24912, 2375]


def test_vocabulary_sizes():
    assert get_encoding("gpt2").n_vocab == 50257
    assert get_encoding("cl100k_base").n_vocab == 100277
    assert get_encoding("o200k_base").n_vocab == 200019


def test_special_tokens():
    assert get_encoding("gpt2").encode("<|endoftext|>", allowed_special="all") == [50256]
    assert get_encoding("cl100k_base").eot_token == 100257
    assert get_encoding("o200k_base").eot_token == 199999
    with pytest.raises(ValueError):  # tiktoken refuses special tokens in plain text by default
        get_encoding("gpt2").encode("<|endoftext|>")


def test_source_notes_sentence():
    enc = get_encoding("gpt2")
    ids = enc.encode("Le chat mange une souris")
    assert enc.decode(ids) == "Le chat mange une souris"
    assert ids == [3123, 8537, 582, 469, 17809, 11348, 271]
    assert [enc.decode([i]) for i in ids] == ["Le", " chat", " man", "ge", " une", " sour", "is"]


def test_returns_tiktoken_encoding_and_is_cached():
    enc = get_encoding("cl100k_base")
    assert isinstance(enc, tiktoken.Encoding)
    assert get_encoding("cl100k_base") is enc


def test_unknown_name_lists_the_names():
    with pytest.raises(ValueError, match="known: gpt2, r50k_base, cl100k_base, o200k_base"):
        get_encoding("gpt5")


def test_non_string_name():
    with pytest.raises(TypeError, match="encoding name must be a str"):
        get_encoding(50257)


def test_list_encodings():
    assert list_encodings()[:4] == REAL


def test_pinned_hashes_agree_with_tiktoken_source():
    """Our pinned sha256 values are the very ones tiktoken pins for the same files."""
    import tiktoken_ext.openai_public as op

    source = Path(op.__file__).read_text()
    pinned = set(re.findall(r'"([0-9a-f]{64})"', source))
    assert set(PINNED_SHA256.values()) <= pinned


def test_hash_mismatch_is_refused_with_the_file_name():
    with pytest.raises(ValueError, match="sha256 mismatch for tokenizer file 'vocab.bpe'"):
        tokenizer._checked("vocab.bpe", b"tampered")


def test_bytes_to_unicode_is_a_bijection():
    m = tokenizer.bytes_to_unicode()
    assert len(m) == 256 and len(set(m.values())) == 256
    assert m[ord(" ")] == "Ġ" and m[ord("\n")] == "Ċ"


def test_ranks_file_round_trip():
    ranks = {b"a": 0, b"b": 1, b"ab": 2, b"\n\x00": 3}
    assert tokenizer.load_tiktoken_ranks(tokenizer.dump_tiktoken_ranks(ranks)) == ranks


@pytest.mark.parametrize("name", ["gpt2", "cl100k_base", "o200k_base"])
@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=60))
def test_round_trip_arbitrary_unicode(name, text):
    enc = get_encoding(name)
    assert enc.decode(enc.encode(text, disallowed_special=())) == text


def test_encode_and_pieces_helpers():
    assert tokenizer.encode("Hello world") == [15496, 995]
    assert tokenizer.encode("hello world", "o200k_base") == [24912, 2375]
    assert tokenizer.pieces("Le chat mange une souris") == [
        "Le",
        " chat",
        " man",
        "ge",
        " une",
        " sour",
        "is",
    ]
    assert tokenizer.encode("<|endoftext|>") != [50256]  # plain text, not the special token


@pytest.mark.parametrize("bad", [123, None, b"bytes", ["a"]])
def test_non_string_text_is_a_type_error(bad):
    with pytest.raises(TypeError, match="text must be a str"):
        tokenizer.encode(bad)
