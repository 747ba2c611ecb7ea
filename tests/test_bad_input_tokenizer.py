"""Bad input to nexttoken.tokenizer and its shipped data: clear errors that name the problem."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from nexttoken import bpe, tokenizer
from nexttoken.tokenizer import (
    BOOK_RANKS_SHA256,
    dump_tiktoken_ranks,
    encode,
    get_encoding,
    load_tiktoken_ranks,
    pieces,
)


def _book():
    return get_encoding("book")


def _gpt2():
    return get_encoding("gpt2")


ERRORS = [
    # ids that are not in the vocabulary
    (lambda: _book().decode([4096]), ValueError, "token id 4096 is out of range for 'book'"),
    (lambda: _book().decode([-1]), ValueError, "token id -1 is out of range for 'book'"),
    (lambda: _book().decode([1, 2, 10**30]), ValueError, "ids must be in [0, 4095]"),
    (lambda: _book().decode_bytes([4096]), ValueError, "token id 4096 is out of range"),
    (lambda: _book().decode_single_token_bytes(4096), ValueError, "ids must be in [0, 4095]"),
    (lambda: _book().decode_tokens_bytes([5000]), ValueError, "token id 5000 is out of range"),
    (lambda: _book().decode_with_offsets([-7]), ValueError, "token id -7 is out of range"),
    (lambda: _book().decode_batch([[1], [4096]]), ValueError, "token id 4096 is out of range"),
    (lambda: _gpt2().decode([50257]), ValueError, "ids must be in [0, 50256]"),
    (lambda: _book().decode([1.5]), TypeError, "token ids must be ints"),
    (lambda: _book().decode(["a"]), TypeError, "token ids must be ints"),
    (lambda: _book().decode([True]), TypeError, "token ids must be ints"),
    (lambda: _book().decode(5), TypeError, "tokens must be a list of int ids"),
    (lambda: _book().decode("abc"), TypeError, "tokens must be a list of int ids"),
    # a lone surrogate is not text: refused instead of silently becoming U+FFFD
    (lambda: _book().encode("a\ud800b"), ValueError, "lone surrogate U+D800 at index 1"),
    (lambda: _book().encode_ordinary("a\udfffb"), ValueError, "lone surrogate U+DFFF"),
    (lambda: _gpt2().encode_batch(["ok", "\ud800"]), ValueError, "lone surrogate"),
    (lambda: _gpt2().encode_to_numpy("x\ud800"), ValueError, "lone surrogate"),
    (lambda: encode("a\ud800b"), ValueError, "lone surrogate"),
    (lambda: encode("a\ud800b", "book"), ValueError, "not valid Unicode text"),
    (lambda: pieces("\ud83d"), ValueError, "lone surrogate"),
    (lambda: _book().encode(b"bytes"), TypeError, "text must be a str"),
    (lambda: encode(None), TypeError, "text must be a str"),
    (lambda: get_encoding("gpt5"), ValueError, "unknown encoding 'gpt5'"),
    (lambda: get_encoding(None), TypeError, "encoding name must be a str"),
    # .tiktoken data, line by line
    (
        lambda: load_tiktoken_ranks(b"garbage line here"),
        ValueError,
        "line 1: expected 'base64-token rank', got 3 fields",
    ),
    (lambda: load_tiktoken_ranks(b"!!! 3"), ValueError, "line 1: b'!!!' is not valid base64"),
    (lambda: load_tiktoken_ranks(b"AA= 0"), ValueError, "line 1: b'AA=' is not valid base64"),
    (lambda: load_tiktoken_ranks(b"QQ== 0\n= 1"), ValueError, "line 2"),
    (lambda: load_tiktoken_ranks(b"QQ== x"), ValueError, "the rank must be an integer >= 0"),
    (lambda: load_tiktoken_ranks(b"QQ== -1"), ValueError, "the rank must be an integer >= 0"),
    (lambda: load_tiktoken_ranks(b"QQ== 0\nQQ== 1"), ValueError, "token b'A' appears twice"),
    (lambda: load_tiktoken_ranks(b"QQ== 0\nQg== 0"), ValueError, "rank 0 appears twice"),
    (lambda: load_tiktoken_ranks(b"QQ==\n"), ValueError, "got 1 fields"),
    (lambda: load_tiktoken_ranks("QQ== 0"), TypeError, "data must be bytes"),
    (lambda: load_tiktoken_ranks(b"!!! 3", source="x.tiktoken"), ValueError, "x.tiktoken, line 1"),
    # the from-scratch BPE (nexttoken.bpe) follows the same rules
    (lambda: bpe.encode("a\ud800b", bpe.byte_ranks()), ValueError, "lone surrogate U+D800"),
    (lambda: bpe.train("a\udc00b", 300), ValueError, "lone surrogate U+DC00"),
    (lambda: bpe.decode([256], bpe.byte_ranks()), ValueError, "token id 256 is not in ranks"),
    (lambda: bpe.encode("abc", {b"a": 0}), ValueError, "not a byte-level table"),
    (lambda: bpe.train("abc", 255), ValueError, "vocab_size must be >= 256"),
]


@pytest.mark.parametrize("call, exc, match", ERRORS)
def test_bad_input_is_a_clear_error(call, exc, match):
    with pytest.raises(exc) as info:
        call()
    assert match in str(info.value)


RESULTS = [
    (lambda: _book().decode([4095]), lambda s: s == "<|endoftext|>"),
    (lambda: _book().decode([]), lambda s: s == ""),
    (lambda: _gpt2().decode([50256]), lambda s: s == "<|endoftext|>"),
    (lambda: load_tiktoken_ranks(b"QQ== 0\n\nQg== 1\n"), lambda r: r == {b"A": 0, b"B": 1}),
    (lambda: load_tiktoken_ranks(dump_tiktoken_ranks({b"A": 0})), lambda r: r == {b"A": 0}),
    # a valid surrogate *pair* is one character, and round-trips
    (lambda: _book().decode(_book().encode("a\U0001f600b")), lambda s: s == "a\U0001f600b"),
]


@pytest.mark.parametrize("call, check", RESULTS)
def test_awkward_but_valid_input_gives_the_right_result(call, check):
    assert check(call())


def test_gap_ids_of_cl100k_are_refused():
    enc = get_encoding("cl100k_base")
    assert enc.decode([100257]) == "<|endoftext|>"
    with pytest.raises(ValueError, match="100261 is not in the 'cl100k_base' vocabulary"):
        enc.decode([100261])


# --- the shipped data: book.tiktoken is pinned; a damaged gz names the file ------------------


@pytest.fixture
def ranks_copy(tmp_path, monkeypatch):
    """A copy of book.tiktoken that the tokenizer reads instead of the shipped one."""
    data = tokenizer.book_ranks_path().read_bytes()
    path = tmp_path / "book.tiktoken"
    monkeypatch.setattr(tokenizer, "book_ranks_path", lambda: path)
    return path, data


def test_shipped_book_ranks_match_the_pinned_hash():
    data = tokenizer.book_ranks_path().read_bytes()
    assert hashlib.sha256(data).hexdigest() == BOOK_RANKS_SHA256
    assert len(tokenizer._book_ranks()) == 4095


def _edit_one_line(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[500], lines[501] = lines[500].split()[0] + b" 501", lines[501].split()[0] + b" 500"
    return b"\n".join(lines)


@pytest.mark.parametrize(
    "damage, what",
    [
        (_edit_one_line, "it parses, but to 4095 ranks"),
        (lambda d: b"\n".join(d.split(b"\n")[:1501]) + b"\n", "it parses, but to 1501 ranks"),
        (lambda d: d[: len(d) // 2], "it does not even parse"),
        (lambda d: d.replace(b"AA== 0", b"AA= 0", 1), "line 1: b'AA=' is not valid base64"),
        (lambda d: b"", "it parses, but to 0 ranks"),
    ],
)
def test_damaged_book_ranks_are_refused_with_the_path(ranks_copy, damage, what):
    path, data = ranks_copy
    path.write_bytes(damage(data))
    with pytest.raises(ValueError) as info:
        tokenizer._book_ranks()
    msg = str(info.value)
    assert "sha256 mismatch" in msg and str(path) in msg and what in msg


def test_missing_book_ranks_names_the_path(ranks_copy):
    path, _ = ranks_copy
    with pytest.raises(FileNotFoundError, match="ranks file is missing"):
        tokenizer._book_ranks()


@pytest.mark.parametrize(
    "raw, problem",
    [
        (b"not gzip at all", "BadGzipFile"),
        # mtime=0: the header's time stamp would otherwise make the bytes (and so the test id)
        # differ between the pytest-xdist workers that collect it a second apart
        (gzip.compress(b"QQ== 0\n" * 1000, mtime=0)[:40], "EOFError"),
    ],
    ids=["not-gzip", "truncated-gzip"],
)
def test_damaged_cl100k_gz_names_the_file(monkeypatch, raw, problem):
    monkeypatch.setattr(tokenizer, "_package_file", lambda package, relpath: raw)
    with pytest.raises(ValueError) as info:
        tokenizer._gz_ranks("cl100k_base.tiktoken")
    msg = str(info.value)
    assert "data/cl100k_base.tiktoken.gz" in msg and "not a valid gzip file" in msg
    assert problem in msg


def test_cl100k_with_the_wrong_content_is_refused(monkeypatch):
    monkeypatch.setattr(
        tokenizer, "_package_file", lambda package, relpath: gzip.compress(b"QQ== 0\n")
    )
    with pytest.raises(ValueError, match="sha256 mismatch for tokenizer file 'cl100k_base"):
        tokenizer._gz_ranks("cl100k_base.tiktoken")
