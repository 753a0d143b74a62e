"""Splitting long answers for Slack and Discord: limits, paragraphs, code fences."""

from __future__ import annotations

import re

import pytest

from adapters.text import split_message

FENCE_LINE = re.compile(r"^ {0,3}(```|~~~)")


def words(text: str) -> list[str]:
    """The answer's words without fence lines, to show nothing was lost or added."""
    kept = [line for line in text.split("\n") if not FENCE_LINE.match(line)]
    return " ".join(kept).split()


def fences_balanced(message: str) -> bool:
    return sum(1 for line in message.split("\n") if FENCE_LINE.match(line)) % 2 == 0


def test_short_text_is_one_message() -> None:
    assert split_message("hello", 2000) == ["hello"]
    assert split_message("", 2000) == []


def test_paragraphs_are_kept_whole() -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 60 for i in range(40)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    assert len(text) > 10_000
    messages = split_message(text, 2000)
    assert all(len(m) <= 2000 for m in messages)
    assert words("\n".join(messages)) == words(text)
    for message in messages:
        assert message.startswith("Paragraph ")
        assert message.endswith("word")


@pytest.mark.parametrize("limit", [2000, 3000, 4000])
def test_a_code_fence_cut_in_two_is_closed_and_reopened(limit: int) -> None:
    code = "\n".join(f"    result_{i} = compute({i}, option=True)  # step {i}" for i in range(160))
    text = f"Here is the script:\n\n```python\n{code}\n```\n\nRun it with `python x.py`."
    assert len(text) > 7_000
    messages = split_message(text, limit)
    assert len(messages) > 1
    assert all(len(m) <= limit for m in messages)
    assert all(fences_balanced(m) for m in messages)
    for message in messages[1:-1]:
        assert message.startswith("```python\n")
    assert words("\n".join(messages)) == words(text)


def test_a_line_longer_than_the_limit_is_cut() -> None:
    text = "x" * 4500
    messages = split_message(text, 2000)
    assert [len(m) for m in messages] == [2000, 2000, 500]
    spaced = " ".join(["token"] * 900)
    messages = split_message(spaced, 2000)
    assert all(len(m) <= 2000 for m in messages)
    assert words("\n".join(messages)) == words(spaced)


def test_a_long_line_inside_a_fence_fits_with_its_fences() -> None:
    text = "```\n" + "y" * 5000 + "\n```"
    messages = split_message(text, 2000)
    assert all(len(m) <= 2000 for m in messages)
    assert all(fences_balanced(m) for m in messages)
    assert "".join(m.replace("```", "").replace("\n", "") for m in messages) == "y" * 5000
