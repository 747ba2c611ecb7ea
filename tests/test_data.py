"""The corpus: 38 plays, deterministic cleaning, The Tempest held out."""

from __future__ import annotations

import pytest

from nexttoken import data


def test_thirty_eight_plays_sorted():
    plays = data.load_plays()
    assert len(plays) == 38
    assert list(plays) == sorted(plays)
    assert data.HELD_OUT == "The Tempest" and data.HELD_OUT in plays
    assert "Hamlet" in plays and "Measure for Measure" in plays


def test_cleaning_is_deterministic_and_markup_free():
    a = data.load_plays()
    files = data.play_files()
    b = {}
    for path, md in files.items():
        slug = path.rsplit("/", 1)[1].removesuffix(".md")
        title, text = data.clean_play(md, data._title_from_slug(slug))
        b[title] = text
    assert a == b
    for text in a.values():
        for mark in ("**", "__", "#", "\\", "  \n"):
            assert mark not in text


def test_clean_play_format():
    md = (
        "# A Play\n\n## ACT I\n\n### SCENE I. A room.\n\n_Enter HAMLET and\nHORATIO_\n\n"
        "**HAMLET**  \nTo be, or not to be  \n__\\[Aside]_  \nthat is the question.\n"
    )
    title, text = data.clean_play(md)
    assert title == "A Play"
    assert text == (
        "A Play\n\nACT I\n\nSCENE I. A room.\n\n[Enter HAMLET and HORATIO]\n\n"
        "HAMLET:\nTo be, or not to be\n[Aside]\nthat is the question.\n"
    )


def test_split_holds_out_the_tempest():
    plays = data.load_plays()
    train, held = data.split_plays(plays)
    assert list(held) == ["The Tempest"]
    assert "The Tempest" not in train and len(train) == 37
    assert set(train) | set(held) == set(plays)
    with pytest.raises(ValueError, match="held_out"):
        data.split_plays(plays, "Not A Play")
    with pytest.raises(TypeError, match="plays"):
        data.split_plays(["x"])


def test_join_and_stats():
    plays = {"A": "one\n", "B": "two two\n"}
    assert data.join_plays(plays) == "one\n<|endoftext|>two two\n<|endoftext|>"
    rows = data.corpus_stats(plays)
    assert rows[1] == {"title": "B", "characters": 8, "lines": 1, "words": 2}


def test_clean_play_needs_a_title():
    with pytest.raises(ValueError, match="title"):
        data.clean_play("**A**  \nline\n")
    with pytest.raises(TypeError, match="markdown"):
        data.clean_play(b"# x")
