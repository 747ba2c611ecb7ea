"""Notebook plumbing: one call at the top of every notebook makes its outputs reproducible; and
``python -m nexttoken.notebook check-numbers NOTEBOOK...`` checks that every number the prose of a
notebook states is printed by that notebook (or cited), so that prose and outputs cannot drift apart.

The checker uses the standard library only, so importing this module stays light.
"""

from __future__ import annotations

import html
import json
import math
import random
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

__all__ = ["setup", "SEED", "Claim", "prose_numbers", "output_numbers", "check_numbers", "main"]

SEED = 0


def setup(seed: int = SEED) -> None:
    """Make a notebook deterministic and its outputs stable.

    Seeds Python, NumPy and torch; pins torch to one thread (reductions then add up in the same
    order on every machine, so printed floats do not change); sets short print precision; and makes
    matplotlib draw inline figures as PNG at a fixed resolution (SVG would embed dates and ids).
    """
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.set_printoptions(precision=4, sci_mode=False, linewidth=100)
    np.set_printoptions(precision=4, suppress=True, linewidth=100)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")

    import matplotlib

    matplotlib.rcParams.update(
        {"figure.dpi": 100, "savefig.dpi": 100, "svg.hashsalt": "nexttoken", "font.size": 10}
    )
    try:  # only inside IPython
        from IPython import get_ipython

        if get_ipython() is not None:
            from matplotlib_inline.backend_inline import set_matplotlib_formats

            set_matplotlib_formats("png")
    except ImportError:  # pragma: no cover - IPython is installed with the book
        pass


# ---------------------------------------------------------------------------------------------
# check-numbers: every number the prose states is printed by the same notebook (or cited)
# ---------------------------------------------------------------------------------------------

_MULTIPLIERS = {
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "B": 1e9,
    "thousand": 1e3,
    "million": 1e6,
    "billion": 1e9,
}
_PACKAGES = r"(?:torch|pytorch|python|numpy|transformers|tiktoken|matplotlib|nbval|cuda|version|v)"
_MANTISSA = r"\d+(?:\.\d+)?"
_PLAIN = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_PROSE = re.compile(
    rf"(?P<sci>(?P<m1>{_MANTISSA})\s*[×x*]\s*10\^\s*(?P<e1>[-+]?\d+)"
    rf"|(?P<m2>{_MANTISSA})[eE](?P<e2>[-+]?\d+)(?![\w.]))"
    rf"|(?P<pow>(?<![\d.,])10\^\s*(?P<e3>-\d+))"
    rf"|(?P<num>{_PLAIN})"
    r"(?P<pct>\s?%|\s+percent\b)?"
    r"(?P<ratio>[×x](?![\w\d]))?"
    r"(?P<mult>[kKMB](?![\w])|\s+(?:thousand|million|billion)\b)?"
)
_OUTPUT = re.compile(
    rf"(?P<num>{_PLAIN}|\.\d+)(?:[eE](?P<exp>[-+]?\d+))?(?P<mult>[kKMB](?![\w])|\s+(?:thousand|million|billion)\b)?"
)
_YEAR_BEFORE = re.compile(r"(?:et\s+al\.?,?\s*|\b(?:in|since|of)\s+|\(\s*|[A-Z][a-z]+,?\s+)$")


@dataclass(frozen=True)
class Claim:
    """A number stated in prose: its text, its value (absolute) and the half-width that a printed
    number must fall within (half a unit of its last digit), and its kind."""

    text: str
    value: float
    tolerance: float
    kind: str  # "number", "percent", "ratio", "scientific" or "power"
    scaled: float | None = None  # the value times a k/M/B multiplier, if one follows

    def matches(self, printed: float) -> bool:
        """Whether one printed number (absolute value) shows this claim at its precision."""
        slack = 1e-9 * max(1.0, abs(self.value))
        if self.kind == "power":
            return printed > 0 and round(math.log10(printed)) == round(math.log10(self.value))
        if abs(printed - self.value) <= self.tolerance + slack:
            return True
        if self.kind == "percent" and abs(100 * printed - self.value) <= self.tolerance + slack:
            return True
        if self.scaled is not None:
            scale = self.scaled / self.value if self.value else 1.0
            return abs(printed - self.scaled) <= self.tolerance * scale * (1 + 1e-9)
        return False


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _significant(text: str) -> int:
    digits = text.replace(",", "")
    if "." in digits:
        return len(digits.replace(".", "").lstrip("0"))
    return len(digits.lstrip("0").rstrip("0"))


def _normalize_prose(text: str) -> str:
    """Markdown/LaTeX/HTML to plain text whose numbers the prose pattern reads (see check_numbers)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # link and image targets
    text = re.sub(r"https?://\S+", " ", text)
    text = re.sub(r"<sup>\s*([^<]*?)\s*</sup>", r"^\1", text)
    text = re.sub(r"<[^>]+>", " ", text)  # HTML tags and their attributes
    text = html.unescape(text).replace("\u2212", "-").replace("\u2009", "").replace("\u202f", "")
    text = (
        text.replace("{,}", ",").replace("\\,", " ").replace("\\times", "×").replace("\\cdot", "×")
    )
    text = re.sub(r"\^\{\s*([^{}]*?)\s*\}", r"^\1", text)
    return re.sub(r"[{}$\\]", " ", text)


def _is_name_or_date(text: str, start: int, end: int) -> bool:
    """Whether the number text[start:end] is part of a name, a version or a citation year."""
    before, after = text[:start], text[end:]
    if text[start : start + 3] == "10^":
        return False  # a bare power of ten: "about 10^-14"
    if before and (before[-1].isalnum() or before[-1] in "_."):
        return True  # float32, cl100k_base, A100, o200k, the tail of 2.13.0
    if before.endswith("-") and len(before) > 1 and before[-2].isalpha():
        return True  # GPT-2, GPT-3, top-5
    if re.match(r"\.\d", after):
        return True  # a version such as 2.13.0
    if re.search(rf"\b{_PACKAGES}\s*$", before, flags=re.I):
        return True  # torch 2.13, Python 3.11
    if re.search(r"[A-Za-z]+-\d+\s+$", before) and re.match(r"\d+(\.\d+)?[MB]\b", text[start:end]):
        return True  # a model's size in its name: GPT-3 175B, GPT-2 124M
    if re.fullmatch(r"(19|20)\d\d", text[start:end]) and _YEAR_BEFORE.search(before[-30:]):
        return re.match(r"\s*[();,.:]|\s*$|\s+(?:and\b|Table\b|[A-Z])", after) is not None
    return False


def prose_numbers(markdown: str, code_sources: str = "") -> list[Claim]:
    """The claims of one markdown cell: numbers to check, with their precision (see check_numbers).

    ``code_sources`` is the source of the notebook's code cells: a number inside an inline code span
    that also appears in it quotes the reader's input (``eps = 1e-5``), not a result.
    """
    quoted = set(re.findall(r"\d[\d.,]*(?:[eE][-+]?\d+)?", code_sources))

    def code_span(match: re.Match) -> str:
        span = match.group(1)
        nums = re.findall(r"\d[\d.,]*(?:[eE][-+]?\d+)?", span)
        return " " if nums and all(n.rstrip(".,") in quoted for n in nums) else f" {span} "

    text = re.sub(r"^(```|~~~).*?^\1", " ", markdown, flags=re.S | re.M)  # fenced code blocks
    text = _normalize_prose(re.sub(r"`([^`\n]*)`", code_span, text))
    claims = []
    for match in _PROSE.finditer(text):
        claim = _claim(match)
        if claim is not None and not _is_name_or_date(text, match.start(), match.end()):
            claims.append(claim)
    return claims


def _claim(match: re.Match) -> Claim | None:
    """The claim one match of the prose pattern states, or None for too few significant digits."""
    shown = " ".join(match.group(0).split())
    if match["sci"]:
        mantissa, exponent = (
            (match["m1"], match["e1"]) if match["m1"] else (match["m2"], match["e2"])
        )
        scale = 10.0 ** int(exponent)
        tolerance = 0.5 * 10.0 ** -_decimals(mantissa) * scale
        return Claim(shown, float(mantissa) * scale, tolerance, "scientific")
    if match["pow"]:
        return Claim(shown, 10.0 ** int(match["e3"]), 0.0, "power")
    number = match["num"]
    kind = "percent" if match["pct"] else "ratio" if match["ratio"] else "number"
    if kind == "number" and _significant(number) < 3:
        return None
    digits = number.replace(",", "")
    tolerance = 0.5 * 10.0 ** -_decimals(number)
    if "." not in number and kind == "number":  # 3,800 is stated to the hundred
        tolerance = 0.5 * 10.0 ** (len(digits) - len(digits.rstrip("0")))
    mult = (match["mult"] or "").strip()
    scaled = float(digits) * _MULTIPLIERS[mult] if mult else None
    return Claim(shown, float(digits), tolerance, kind, scaled)


def output_numbers(text: str) -> list[float]:
    """Every number printed in an output's text (absolute values), separators and exponents read,
    and each k/M/B-suffixed number also scaled. ``1,234`` also counts as 1 and 234 (a list)."""
    values = []
    for match in _OUTPUT.finditer(text):
        number = match["num"]
        exponent = 10.0 ** int(match["exp"]) if match["exp"] else 1.0
        value = float(number.replace(",", "")) * exponent
        values.append(value)
        if "," in number:
            values.extend(float(part) for part in number.split(",") if part and part[0] != ".")
        mult = (match["mult"] or "").strip()
        if mult:
            values.append(value * _MULTIPLIERS[mult])
    return values


def _output_text(output: dict) -> str:
    if output.get("output_type") == "stream":
        return "".join(output.get("text", ""))
    data = output.get("data", {})
    parts = ["".join(data.get(kind, "")) for kind in ("text/plain", "text/markdown", "text/latex")]
    if "text/html" in data:
        parts.append(html.unescape(re.sub(r"<[^>]+>", " ", "".join(data["text/html"]))))
    return "\n".join(parts)


def _load_notebook(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"check-numbers: {path}: no such file (give .ipynb notebook paths)")
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"check-numbers: {path}: not a notebook (not JSON: {error})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError(f"check-numbers: {path}: not a notebook (no 'cells' list)")
    return nb


def _cited(nb: dict, path: Path) -> list[Claim]:
    cited = nb.get("metadata", {}).get("nexttoken", {}).get("cited_numbers", {})
    if not isinstance(cited, dict):
        raise ValueError(f"check-numbers: {path}: metadata nexttoken.cited_numbers must be a dict")
    claims = []
    for key, source in cited.items():
        if not isinstance(source, str) or not source.strip():
            raise ValueError(f"check-numbers: {path}: cited number {key!r} has no source")
        parsed = prose_numbers(str(key)) or prose_numbers(f"{key}%")
        if not parsed:
            raise ValueError(f"check-numbers: {path}: cited key {key!r} is not a number")
        claims.extend(parsed)
    return claims


def check_numbers(path: str | Path) -> list[str]:
    r"""The offenders of one notebook: ``notebook cell N: "quoted number" not printed`` per claim.

    Every number that a markdown cell states must be printed by an output of the same notebook, or
    be cited in the notebook's metadata. Raises ValueError for a path that is not a notebook.
    (``python -m nexttoken.notebook check-numbers --help`` prints these rules.)

    **What is checked (a "claim").** A number with 3 or more significant digits (``17.2``, ``4096``,
    ``50,257``, ``0.249``; an integer's trailing zeros do not count: ``3,800`` has 2); any
    percentage (``5%``, ``12.5 %``, ``5 percent``); any ratio, a number with ``×`` or ``x`` right
    after it (``1.36×``, ``1.4x``, ``2×``; ``96 × 128`` is a product, not a ratio); any scientific
    form with a mantissa (``1.3 × 10^-5``, ``1.3e-05``, ``$3.4\times10^{38}$``,
    ``1.3 × 10<sup>-5</sup>``); and a bare power of ten with a negative exponent (``about 10^-14``,
    ``$10^{-7}$``), the size of an error or a tolerance. LaTeX is read, not skipped
    (``$e^{-103.3}$``, ``$d = 14{,}336$`` are claims).

    **How it matches.** A claim written to d decimals is printed when an output holds a number within
    half a unit of its last digit: ``17.2`` matches ``17.21`` or ``17.2``, not ``17.3``; ``3,800``
    matches 3,750 to 3,850. Signs are ignored (prose "falls by 0.23", output ``-0.23``). Thousands
    separators (``50,257``, LaTeX ``50{,}257``) are read as one number, in prose and outputs. A
    percentage also matches its fraction (``5.2%`` matches ``0.052``); a scientific form matches any
    printed form of that value at its mantissa's precision (``1.3e-05``, ``0.0000131``); a bare
    ``10^-14`` matches a printed number of that order of magnitude (``3.1e-14``). A ``k``/``M``/``B``
    (or ``thousand``/``million``/``billion``) suffix also scales the claim (``124M`` matches
    ``124,439,808``). Outputs read: ``text/plain``, ``text/markdown``, ``text/latex``, the text of
    ``text/html`` (tables) and streams, of every code cell.

    **Cited numbers.** A number the notebook takes from elsewhere (a paper, a datasheet, a
    configuration it does not print) is listed in ``nb.metadata["nexttoken"]["cited_numbers"]`` as
    ``{"<number as written>": "<source>"}``; a claim is cited when a key parses to the same value at
    the same precision (``"3.4e38"`` cites ``$3.4\times10^{38}$``). Every source must be non-empty.

    **Exemptions**, each because the text is not a claim about a quantity:

    1. Fenced code blocks, and numbers in an inline code span that also appear in one of the
       notebook's code cells (```eps = 1e-5``` quotes the code the reader sees run; a result is
       not in the code). Any other number in a code span (```10 × 12,288```) is checked.
    2. Link and image targets (``](...)``), bare URLs and HTML tag attributes: addresses.
    3. Numbers glued to a name: right after a letter, a digit, ``_`` or ``.``, or after a hyphen that
       follows a letter (``GPT-2``, ``float32``, ``cl100k_base``, ``A100``, ``top-5``); and a model's
       size inside its name, ``GPT-3 175B`` (the same ``175B`` elsewhere, "175B parameters", is
       checked). A number *followed* by letters (``12288-d``, ``124M``) is still checked.
    4. A year in a citation or a date: 1900 to 2099, after ``et al.``, ``(``, ``in``, ``since``,
       ``of`` or a capitalised name, and followed by punctuation, a capitalised word or ``and``
       (``Sennrich et al. 2016;``, ``the largest GPU of 2020 (``). ``2048 tokens`` is checked.
    5. Fewer than 3 significant digits, outside percentages, ratios and scientific forms (the
       issue's threshold): section and notebook numbers, small counts, round values.
    6. Versions: a number followed by ``.digit`` (``2.13.0``) or after a package name or ``v``
       (``torch 2.13``, ``Python 3.11``): software names, not results.
    7. A positive power of ten standing alone (``10^9 bytes``): a unit's definition.
    """
    return _check(path)[1]


def _check(path: str | Path) -> tuple[int, list[str]]:
    """(number of claims, offenders) of one notebook."""
    path = Path(path)
    nb = _load_notebook(path)
    cells = nb["cells"]
    code = "\n".join("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code")
    printed = [
        value
        for cell in cells
        if cell.get("cell_type") == "code"
        for output in cell.get("outputs", [])
        for value in output_numbers(_output_text(output))
    ]
    cited = _cited(nb, path)
    count, offenders = 0, []
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "markdown":
            continue
        for claim in prose_numbers("".join(cell.get("source", "")), code):
            count += 1
            if any(claim.matches(value) for value in printed):
                continue
            if any(_same(c, claim) for c in cited):
                continue
            offenders.append(f'{path.stem} cell {index}: "{claim.text}" not printed')
    return count, offenders


def _same(cited: Claim, claim: Claim) -> bool:
    return math.isclose(cited.value, claim.value, rel_tol=1e-9) and math.isclose(
        cited.tolerance, claim.tolerance, rel_tol=1e-9
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m nexttoken.notebook check-numbers NOTEBOOK...``: 0 when every number in the prose
    is printed or cited, 1 on any offender (one line each), 2 on bad arguments or a bad file."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[1:2] in (["--help"], ["-h"]):
        print(check_numbers.__doc__)
        return 0
    if len(argv) < 2 or argv[0] != "check-numbers":
        print(
            "usage: python -m nexttoken.notebook check-numbers NOTEBOOK.ipynb...", file=sys.stderr
        )
        return 2
    claims, offenders = 0, []
    try:
        for path in argv[1:]:
            count, found = _check(path)
            claims, offenders = claims + count, offenders + found
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    for line in offenders:
        print(line)
    notebooks = len(argv) - 1
    if offenders:
        print(
            f"check-numbers: {len(offenders)} of {claims} numbers in the prose of {notebooks} notebook(s) not printed"
        )
        return 1
    print(
        f"check-numbers: {notebooks} notebook(s), {claims} numbers in the prose, each printed or cited"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
