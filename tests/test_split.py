"""Splitting long answers for Slack and Discord: limits, paragraphs, code fences."""

from __future__ import annotations

import re

import pytest

from adapters.text import first_message, split_message

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


def stream_out(text: str, limit: int, chunk: int) -> list[str]:
    """Feeds `text` in pieces of `chunk` characters, appending to the open message as a
    streaming writer does; returns the messages as shown at the end."""
    shown: list[str] = []
    open_page = ""
    sent = 0
    for start in range(0, len(text), chunk):
        open_page += text[start : start + chunk]
        while len(open_page) > limit:
            already = open_page[:sent]
            head, open_page = first_message(open_page, limit, keep=sent)
            assert head.startswith(already), "what was shown stays on its message"
            shown.append(head)
            sent = 0
        sent = len(open_page) if len(open_page) <= limit // 2 else open_page.rfind("\n") + 1
    return [*shown, open_page]


@pytest.mark.parametrize("chunk", [7, 64, 900])
def test_a_growing_answer_is_cut_without_changing_what_was_shown(chunk: int) -> None:
    code = "\n".join(f"    value_{i} = work({i})" for i in range(150))
    prose = "\n\n".join(f"Point {i}. " + "more words here " * 20 for i in range(12))
    text = f"{prose}\n\n```python\n{code}\n```\n\n{prose}"
    messages = stream_out(text, 2000, chunk)
    assert len(messages) > 3
    assert all(len(m) <= 2000 for m in messages)
    assert all(fences_balanced(m) for m in messages)
    assert words("\n".join(messages)) == words(text)


def test_first_message_prefers_a_paragraph_end() -> None:
    text = "A" * 1200 + "\n\n" + "b " * 600
    head, rest = first_message(text, 2000)
    assert head.rstrip("\n") == "A" * 1200
    assert rest.startswith("b b")


def test_first_message_keeps_what_was_shown_even_mid_line() -> None:
    text = "x" * 1500 + " tail " + "y" * 800
    head, rest = first_message(text, 2000, keep=1700)
    assert head == text[:1700]
    assert rest == text[1700:]
