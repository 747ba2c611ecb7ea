"""Bad input to nexttoken.data: clear errors, and hostile markdown cleaned in linear time."""

from __future__ import annotations

import time

import pytest

from nexttoken.data import clean_play, corpus_stats, join_plays, split_plays

ERRORS = [
    (lambda: corpus_stats([1, 2]), TypeError, "plays must be a dict title -> text"),
    (lambda: corpus_stats("Hamlet"), TypeError, "plays must be a dict title -> text"),
    (lambda: corpus_stats({"T": 5}), TypeError, "plays must map str titles to str texts"),
    (lambda: corpus_stats({"T": "x"}, encoding="gpt2"), TypeError, "encoding must be a tiktoken"),
    (lambda: join_plays("Hamlet"), TypeError, "plays must be a dict title -> text"),
    (lambda: join_plays(["a", "b"]), TypeError, "plays must be a dict title -> text"),
    (lambda: join_plays({"T": b"x"}), TypeError, "plays must map str titles to str texts"),
    (lambda: join_plays({"T": "x"}, separator=None), TypeError, "separator must be a str"),
    (lambda: split_plays(["a"]), TypeError, "plays must be a dict title -> text"),
    (lambda: split_plays({"A": "x"}, held_out=3), TypeError, "held_out must be a title"),
    (lambda: split_plays({"A": "x"}, held_out="B"), ValueError, "held_out must be one of"),
    (lambda: clean_play(b"# T\n"), TypeError, "markdown must be a str"),
    (lambda: clean_play("# T\n", title=3), TypeError, "title must be a str or None"),
    (lambda: clean_play("no title here"), ValueError, "no '# Title' line"),
]


@pytest.mark.parametrize("call, exc, match", ERRORS)
def test_bad_input_is_a_clear_error(call, exc, match):
    with pytest.raises(exc) as info:
        call()
    assert match in str(info.value)


MEGA = 1_000_000

HOSTILE = {
    "open brackets": "# T\n" + "[" * MEGA,
    "underscores": "# T\n" + "_" * MEGA,
    "italic opens": "# T\nx" + "_[" * (MEGA // 2),
    "escaped opens": "# T\nx " + "\\[" * (MEGA // 2),
    "unclosed bold": "# T\n**" + "A" * MEGA,
    "colons": "# T\n" + ":" * MEGA + "\n\nx",
    "one-line directions": "# T\n" + "_Exit_\n" * (MEGA // 7),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_markdown_is_cleaned_in_linear_time(name):
    """1 MB of any of these took hours before (quadratic backtracking); now well under a second
    on a laptop. The bound is loose so that a slow, shared CI machine passes too."""
    t0 = time.perf_counter()
    title, text = clean_play(HOSTILE[name])
    assert time.perf_counter() - t0 < 5.0
    assert title == "T"


RESULTS = [
    (lambda: clean_play("# T\n" + "[" * 10)[1], lambda t: t == "T\n\n" + "[" * 10 + "\n"),
    (lambda: clean_play("# T\nsay _\\[Aside]_ hi")[1], lambda t: t == "T\n\nsay [Aside] hi\n"),
    (lambda: clean_play("# T\nsay [ a [b] ] now")[1], lambda t: "[b]" in t),
    (lambda: corpus_stats({}), lambda rows: rows == []),
    (lambda: join_plays({}), lambda s: s == ""),
    (lambda: corpus_stats({"T": ""})[0]["characters"], lambda n: n == 0),
]


@pytest.mark.parametrize("call, check", RESULTS)
def test_awkward_but_valid_input_gives_the_right_result(call, check):
    assert check(call())


def test_empty_play_has_no_chars_per_token():
    from nexttoken.book import load_book_encoding

    row = corpus_stats({"T": ""}, load_book_encoding())[0]
    assert row["tokens"] == 0 and row["chars_per_token"] != row["chars_per_token"]  # NaN
