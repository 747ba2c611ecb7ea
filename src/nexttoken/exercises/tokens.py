"""Exercises of notebook 01 (text to tokens).

Each checker recognises the common wrong answers of its exercise and names the misconception; its
hints are staged (:class:`nexttoken.exercises.Hints`) and never print the answer.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..bpe import pretokenize
from ..tokenizer import get_encoding, mergeable_ranks
from . import Hints, as_count, check_prediction, failed, passed, unanswered

__all__ = [
    "HINTS",
    "check_token_count",
    "check_vocab_size",
    "check_first_merge",
    "check_pieces",
    "check_doubled_sentence_prediction",
    "most_frequent_pair",
]

FRENCH = "Le chat mange une souris"
ENCODINGS = ("gpt2", "cl100k_base", "o200k_base", "book")

HINTS = {
    "count": Hints(
        "token count",
        "a token is neither a word nor a character: ask the encoding itself",
        "encode the text with the encoding named in the exercise and count what comes back",
        "get_encoding(name) gives an Encoding; one of its methods turns text into a list of ids",
        solution="token count",
    ),
    "vocab": Hints(
        "vocabulary size",
        "do not quote a round number from memory: the encoding knows its own size",
        "the size counts the ordinary tokens and the special tokens; look at the attributes of "
        "the Encoding object (dir(enc))",
        "one attribute of the Encoding is the size used for the model's output layer (one row per "
        "id, up to the largest)",
        solution="vocab size",
    ),
    "merge": Hints(
        "first BPE merge",
        "BPE first cuts the text into pre-tokens (words with their leading space, punctuation); "
        "pairs are counted inside each pre-token only",
        "for each pre-token, list its adjacent byte pairs; add up the counts over all pre-tokens",
        "the most frequent pair wins; on a tie, the pair with the smallest byte values (the rule "
        "of nexttoken.bpe.train); order matters: (left, right)",
        solution="first merge",
    ),
    "pieces": Hints(
        "gpt2 token strings",
        "each token is a piece of the original text; put the pieces end to end and you get the "
        "text back, spaces included",
        "decode the ids one at a time, not all at once",
        "in GPT-2's pre-tokens a space belongs to the word after it, never to the word before",
        solution="pieces",
    ),
}


def check_token_count(answer: int | None, encoding: str = "gpt2", text: str = FRENCH) -> bool:
    """How many tokens ``encoding`` makes of ``text`` (not words, not characters)."""
    name, hints = f"tokens of {text!r} in {encoding}", HINTS["count"]
    if unanswered(answer, name, hints):
        return False
    answer, bad = as_count(answer, "a count (a whole number)")
    if bad:
        return failed(name, bad, hints)
    expected = len(get_encoding(encoding).encode(text))
    if answer == expected:
        return passed(name)
    if answer == len(text.split()):
        return failed(name, f"{answer} is the number of words: tokens are not words", hints)
    if answer == len(text):
        return failed(name, f"{answer} is the number of characters", hints)
    if answer == len(text.encode("utf-8")):
        return failed(name, f"{answer} is the number of bytes: BPE merges bytes into tokens", hints)
    for other in ENCODINGS:
        if other != encoding and answer == len(get_encoding(other).encode(text)):
            return failed(
                name,
                f"{answer} is the count in {other}: every encoding cuts differently, use {encoding}",
                hints,
            )
    return failed(name, f"{answer} is not the number of tokens", hints)


def check_vocab_size(answer: int | None, encoding: str = "o200k_base") -> bool:
    """The exact vocabulary size (``n_vocab``, special tokens included) of ``encoding``."""
    name, hints = f"vocabulary size of {encoding}", HINTS["vocab"]
    if unanswered(answer, name, hints):
        return False
    answer, bad = as_count(answer, "a size (a whole number)")
    if bad:
        return failed(name, bad, hints)
    enc = get_encoding(encoding)
    expected = enc.n_vocab
    if answer == expected:
        return passed(name)
    n_ranks, n_special = len(mergeable_ranks(encoding)), len(enc.special_tokens_set)
    if answer == n_ranks:
        return failed(name, "that leaves out the special tokens", hints)
    if answer == n_ranks - 256:
        return failed(
            name, "that is the number of merges only: add the 256 bytes and the specials", hints
        )
    if answer == expected - 1:
        return failed(
            name, "that is the largest id: ids start at 0, so the size is one more", hints
        )
    if answer == n_ranks + n_special:
        return failed(
            name,
            "that counts the defined tokens, but the ids of the special tokens leave gaps: the "
            "output layer needs one row per id up to the largest",
            hints,
        )
    for other in ENCODINGS:
        if other != encoding and answer == get_encoding(other).n_vocab:
            return failed(name, f"that is the size of {other}, not of {encoding}", hints)
    if answer % 1000 == 0:
        return failed(name, f"{answer:,} is a round number, the real size is not", hints)
    return failed(name, f"{answer:,} is not the size of {encoding}", hints)


def _best_pair(counts: Counter) -> tuple[int, int]:
    return max(counts.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))[0]


def _pair_counts(text: str, *, across: bool = False) -> Counter:
    counts: Counter[tuple[int, int]] = Counter()
    for piece in [text] if across else pretokenize(text):
        b = piece.encode("utf-8")
        counts.update(zip(b, b[1:], strict=False))
    return counts


def most_frequent_pair(text: str) -> tuple[bytes, bytes]:
    """The pair of adjacent bytes (inside pre-tokens) that occurs most often in ``text``; ties go to
    the smallest pair of byte values (the rule of :func:`nexttoken.bpe.train`)."""
    counts = _pair_counts(text)
    if not counts:
        raise ValueError("text has no pair of adjacent bytes")
    best = _best_pair(counts)
    return bytes([best[0]]), bytes([best[1]])


def _as_pair(answer: Any) -> tuple[int, int] | None:
    """``(b"a", b"t")``, ``("a", "t")``, ``b"at"`` or ``"at"`` -> ``(97, 116)``; else None."""
    if isinstance(answer, tuple) and len(answer) == 2:
        parts = [x.encode("utf-8") if isinstance(x, str) else x for x in answer]
        if all(isinstance(p, bytes) and len(p) == 1 for p in parts):
            return parts[0][0], parts[1][0]
        return None
    if isinstance(answer, str):
        answer = answer.encode("utf-8")
    if isinstance(answer, bytes) and len(answer) == 2:
        return answer[0], answer[1]
    return None


def check_first_merge(answer: Any, text: str) -> bool:
    """The first merge BPE learns on ``text``: the most frequent adjacent pair, as two bytes objects
    ``(b"a", b"t")`` (or their concatenation ``b"at"``)."""
    name, hints = "first BPE merge", HINTS["merge"]
    if unanswered(answer, name, hints):
        return False
    pair = _as_pair(answer)
    if pair is None:
        return failed(name, "give a pair of single bytes, like (b'a', b'b'), or b'ab'", hints)
    counts = _pair_counts(text)
    best = _best_pair(counts)
    if pair == best:
        return passed(name)
    across = _pair_counts(text, across=True)
    if counts[pair] == 0 and across[pair] > 0:
        return failed(
            name,
            "that pair straddles two pre-tokens (e.g. a letter and the space of the next word): "
            "BPE never counts pairs across a pre-token boundary",
            hints,
        )
    if pair == best[::-1]:
        return failed(name, "right bytes, wrong order: the pair is (left byte, right byte)", hints)
    if counts[pair] == counts[best]:
        return failed(
            name,
            "that pair is tied for most frequent: a tie goes to the pair with the smallest byte values",
            hints,
        )
    if counts[pair] > 0:
        return failed(
            name,
            f"that pair occurs {counts[pair]} times inside pre-tokens; another one occurs more",
            hints,
        )
    return failed(name, "that pair does not occur in the text", hints)


def check_pieces(answer: Any, text: str = " The cat eats a mouse") -> bool:
    """The token strings of ``text`` under gpt2, as a list of str (leading spaces included)."""
    name, hints = "gpt2 token strings", HINTS["pieces"]
    if unanswered(answer, name, hints):
        return False
    enc = get_encoding("gpt2")
    ids = enc.encode(text)
    expected = [enc.decode([i]) for i in ids]
    if isinstance(answer, list) and answer == ids:
        return failed(name, "those are the ids: decode each one to its string", hints)
    if isinstance(answer, list) and answer == [enc.decode_single_token_bytes(i) for i in ids]:
        return failed(name, "those are bytes: decode them to str", hints)
    if isinstance(answer, tuple):
        answer = list(answer)
    if not isinstance(answer, list) or not all(isinstance(p, str) for p in answer):
        return failed(name, "answer must be a list of str, one per token", hints)
    if answer == expected:
        return passed(name)
    if answer == [text]:
        return failed(name, "that is the whole text decoded at once: one string per token", hints)
    stripped = [p.strip() for p in expected]
    if [p.strip() for p in answer] == stripped:
        if answer == stripped:
            return failed(name, "the spaces are missing: in gpt2 a space is part of a token", hints)
        if answer == [p.lstrip() + " " for p in expected]:
            return failed(
                name,
                "the spaces are after the words: gpt2 attaches a space to the next word",
                hints,
            )
        if answer[1:] == expected[1:]:
            return failed(
                name, "the first token too carries a space: the text starts with one", hints
            )
        return failed(
            name, "the words are right but the spaces are not where gpt2 puts them", hints
        )
    if answer == text.split():
        return failed(name, "that is a split on spaces: words are not tokens", hints)
    return failed(name, f"{len(answer)} pieces, gpt2 makes {len(expected)} different ones", hints)


def check_doubled_sentence_prediction(answer: object, text: str = FRENCH) -> bool:
    """Predict, then run: how many gpt2 tokens does ``text + " " + text`` make?"""
    enc = get_encoding("gpt2")
    actual = len(enc.encode(text + " " + text))
    second = enc.encode(" " + text)
    return check_prediction(
        answer,
        actual,
        "tokens of the sentence written twice",
        explain=f"GPT-2 cuts the text into pre-tokens (a word with its leading space) and encodes "
        f"each one on its own, so the second copy gives the same pieces, except that its first "
        f"word now carries a space: {enc.decode(second[:1])!r} is another single token (id "
        f"{second[0]}), not the id of {enc.decode(enc.encode(text)[:1])!r}",
    )
