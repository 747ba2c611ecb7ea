"""Byte-level BPE from scratch: pre-tokenize, encode, decode and train.

This is the algorithm behind GPT-2's tokenizer, written plainly (in the spirit of tiktoken's own
``_educational.py``). A *ranks* table ``dict[bytes, int]`` is the whole tokenizer: the 256 single
bytes, then one entry per merge, ranked in the order the merges were learned.

- :func:`pretokenize` cuts text into pieces with a regex (GPT-2's by default); merges never cross a
  piece boundary, so " cat" and "cat" can become different tokens but "cat." never one token.
- :func:`encode_piece` starts from the piece's bytes and repeatedly merges the adjacent pair whose
  concatenation has the *lowest* rank (the merge learned earliest), until no pair is in the table.
  This is exactly what tiktoken does, so ``encode(text, gpt2_ranks)`` equals tiktoken's gpt2.
- :func:`train` learns a ranks table from text: count adjacent pairs over the pre-tokens (each
  unique pre-token weighted by how often it occurs), merge the most frequent pair, repeat.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from itertools import pairwise

import regex

from .tokenizer import R50K_PAT

__all__ = ["pretokenize", "encode_piece", "encode", "decode", "train", "byte_ranks", "R50K_PAT"]


def _check_ranks(ranks) -> None:
    if not isinstance(ranks, dict):
        raise TypeError(f"ranks must be a dict[bytes, int], got {type(ranks).__name__}")


def _check_text(text) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(
                f"text has a lone surrogate U+{ord(text[err.start]):04X} at index {err.start}: "
                f"not valid Unicode text, it has no UTF-8 bytes to encode"
            ) from None


def byte_ranks() -> dict[bytes, int]:
    """The 256 single bytes, byte ``b`` at rank ``b`` (the start of every table :func:`train` makes)."""
    return {bytes([b]): b for b in range(256)}


def pretokenize(text: str, pat: str = R50K_PAT) -> list[str]:
    """Split ``text`` into pre-tokens with the regex ``pat`` (GPT-2's by default).

    >>> pretokenize("Le chat mange une souris.")
    ['Le', ' chat', ' mange', ' une', ' souris', '.']
    """
    _check_text(text)
    return regex.findall(pat, text)


def encode_piece(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """Token ids of one pre-token's bytes: merge the lowest-ranked adjacent pair until none is left.

    Every single byte must be in ``ranks`` (true of any byte-level table).
    """
    if not isinstance(piece, (bytes, bytearray)):
        raise TypeError(f"piece must be bytes, got {type(piece).__name__}")
    _check_ranks(ranks)
    parts = [bytes([b]) for b in piece]
    while len(parts) > 1:
        best_i, best_rank = -1, None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and (best_rank is None or r < best_rank):
                best_i, best_rank = i, r
        if best_rank is None:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    try:
        return [ranks[p] for p in parts]
    except KeyError as err:
        raise ValueError(f"byte {err.args[0]!r} is not in ranks: not a byte-level table") from None


def encode(text: str, ranks: dict[bytes, int], pat: str = R50K_PAT) -> list[int]:
    """Token ids of ``text``: pre-tokenize, then :func:`encode_piece` each piece (cached per piece).

    Special tokens such as ``<|endoftext|>`` are not recognized: they are encoded as plain text.
    """
    _check_text(text)
    _check_ranks(ranks)
    cache: dict[str, list[int]] = {}
    out: list[int] = []
    for piece in regex.findall(pat, text):
        ids = cache.get(piece)
        if ids is None:
            ids = cache[piece] = encode_piece(piece.encode("utf-8"), ranks)
        out.extend(ids)
    return out


def decode_bytes(ids: list[int], ranks: dict[bytes, int]) -> bytes:
    """The bytes behind token ids (the inverse lookup of ``ranks``)."""
    _check_ranks(ranks)
    inverse = {r: t for t, r in ranks.items()}
    try:
        return b"".join(inverse[i] for i in ids)
    except KeyError as err:
        raise ValueError(f"token id {err.args[0]} is not in ranks") from None


def decode(ids: list[int], ranks: dict[bytes, int]) -> str:
    """The text behind token ids (bytes that are not valid UTF-8 become U+FFFD, as in tiktoken)."""
    return decode_bytes(ids, ranks).decode("utf-8", errors="replace")


def train(text: str, vocab_size: int, pat: str = R50K_PAT) -> dict[bytes, int]:
    """Learn a byte-level BPE ranks table of ``vocab_size`` entries (256 bytes + merges) from ``text``.

    Each step merges the adjacent pair that occurs most often, counted over the pre-tokens (each
    unique pre-token weighted by its frequency). **Ties** are broken deterministically: among pairs
    with the same count, the one whose two tokens have the smallest ``(rank_left, rank_right)``
    wins (i.e. the pair built from the earliest-learned tokens). The result depends only on
    ``text``, ``vocab_size`` and ``pat``.

    Pair counts are kept up to date incrementally (only the words that contain the merged pair are
    touched), with a lazy max-heap, so 4k merges on a few MB take about a minute.
    """
    _check_text(text)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be >= 256 (the single bytes), got {vocab_size}")
    ranks = byte_ranks()
    # words: unique pre-tokens as lists of token ids, with their counts
    freq = Counter(regex.findall(pat, text))
    words: list[list[int]] = [list(w.encode("utf-8")) for w in freq]
    counts: list[int] = list(freq.values())
    pair_count: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> words containing it
    for wi, (w, c) in enumerate(zip(words, counts, strict=True)):
        for p in pairwise(w):
            pair_count[p] += c
            where[p].add(wi)
    # ids are ranks: id i <-> token bytes
    token_bytes = [bytes([b]) for b in range(256)]
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    while len(ranks) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg:  # stale entry
            continue
        if -neg <= 0:
            break
        new_id = len(token_bytes)
        new_tok = token_bytes[pair[0]] + token_bytes[pair[1]]
        token_bytes.append(new_tok)
        ranks[new_tok] = new_id
        changed: set[tuple[int, int]] = set()
        for wi in list(where.pop(pair, ())):
            w, c = words[wi], counts[wi]
            for p in pairwise(w):  # remove this word's old pairs
                pair_count[p] -= c
                changed.add(p)
            merged: list[int] = []
            i = 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == pair[0] and w[i + 1] == pair[1]:
                    merged.append(new_id)
                    i += 2
                else:
                    merged.append(w[i])
                    i += 1
            words[wi] = merged
            for p in pairwise(merged):  # add its new pairs
                pair_count[p] += c
                where[p].add(wi)
                changed.add(p)
        pair_count.pop(pair, None)
        changed.discard(pair)
        for p in changed:
            c = pair_count.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                pair_count.pop(p, None)
                where.pop(p, None)
    return ranks
