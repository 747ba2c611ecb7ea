"""Exercises of notebook 01 (text to tokens)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..bpe import pretokenize
from ..tokenizer import get_encoding
from . import report, unanswered

__all__ = ["check_token_count", "check_vocab_size", "check_first_merge", "check_pieces"]

FRENCH = "Le chat mange une souris"


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_token_count(answer: int | None, encoding: str = "gpt2", text: str = FRENCH) -> bool:
    """How many tokens ``encoding`` makes of ``text`` (not words, not characters)."""
    name = f"tokens of {text!r} in {encoding}"
    hint = f"len(get_encoding({encoding!r}).encode(text))"
    if unanswered(answer, name, hint):
        return False
    if not _is_int(answer):
        return report(False, name, hint, f"answer must be an int, got {type(answer).__name__}")
    expected = len(get_encoding(encoding).encode(text))
    if answer == len(text.split()):
        return report(False, name, hint, f"{answer} is the number of words; tokens are not words")
    if answer == len(text):
        return report(False, name, hint, f"{answer} is the number of characters")
    return report(answer == expected, name, hint, f"{answer} is not the number of tokens")


def check_vocab_size(answer: int | None, encoding: str = "o200k_base") -> bool:
    """The exact vocabulary size (``n_vocab``, special tokens included) of ``encoding``."""
    name = f"vocabulary size of {encoding}"
    hint = f"get_encoding({encoding!r}).n_vocab: compute it, do not round it"
    if unanswered(answer, name, hint):
        return False
    if not _is_int(answer):
        return report(False, name, hint, f"answer must be an int, got {type(answer).__name__}")
    expected = get_encoding(encoding).n_vocab
    if answer != expected and answer % 1000 == 0:
        return report(False, name, hint, f"{answer:,} is a round number, the real size is not")
    return report(answer == expected, name, hint, f"{answer:,} is not n_vocab")


def most_frequent_pair(text: str) -> tuple[bytes, bytes]:
    """The pair of adjacent bytes (inside pre-tokens) that occurs most often in ``text``; ties go to
    the smallest pair of byte values (the rule of :func:`nexttoken.bpe.train`)."""
    counts: Counter[tuple[int, int]] = Counter()
    for piece in pretokenize(text):
        b = piece.encode("utf-8")
        counts.update(zip(b, b[1:], strict=False))
    if not counts:
        raise ValueError("text has no pair of adjacent bytes")
    best = max(counts.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))[0]
    return bytes([best[0]]), bytes([best[1]])


def check_first_merge(answer: Any, text: str) -> bool:
    """The first merge BPE learns on ``text``: the most frequent adjacent pair, as two bytes objects
    ``(b"a", b"t")`` (or their concatenation ``b"at"``)."""
    name = "first BPE merge"
    hint = "count adjacent byte pairs inside each pre-token (pretokenize), take the most frequent"
    if unanswered(answer, name, hint):
        return False
    left, right = most_frequent_pair(text)
    if isinstance(answer, str):
        answer = answer.encode("utf-8")
    if isinstance(answer, tuple) and len(answer) == 2:
        a = tuple(x.encode("utf-8") if isinstance(x, str) else x for x in answer)
        ok = a == (left, right)
    elif isinstance(answer, bytes):
        ok = answer == left + right
    else:
        return report(False, name, hint, "answer must be a pair (b'a', b'b') or bytes b'ab'")
    detail = "" if ok else "that is not the most frequent pair (pairs across a space do not count)"
    return report(ok, name, hint, detail)


def check_pieces(answer: Any, text: str = " The cat eats a mouse") -> bool:
    """The token strings of ``text`` under gpt2, as a list of str (leading spaces included)."""
    name = "gpt2 token strings"
    hint = "[enc.decode([i]) for i in enc.encode(text)]: spaces belong to the *next* word"
    if unanswered(answer, name, hint):
        return False
    enc = get_encoding("gpt2")
    expected = [enc.decode([i]) for i in enc.encode(text)]
    if not isinstance(answer, list) or not all(isinstance(p, str) for p in answer):
        return report(False, name, hint, "answer must be a list of str")
    if [p.strip() for p in answer] == [p.strip() for p in expected] and answer != expected:
        return report(
            False, name, hint, "the words are right but the spaces are not where gpt2 puts them"
        )
    return report(answer == expected, name, hint, f"{answer} differs from {expected}")
