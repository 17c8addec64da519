"""The thread protocol: free text with a lenient trailer; junk and echoes are rejected."""

from __future__ import annotations

import pytest

from apr_mcp.engine.protocol import MAX_FOLLOW_UPS, parse_thread_reply, strip_trailer
from apr_mcp.errors import ModelOutputError


def test_full_trailer_is_parsed_and_removed_from_the_answer() -> None:
    reply = (
        "Paris is the capital.\nIt has been since 987.\n\nSummary: Paris.\n"
        "Confidence: 0.9\nSettles: yes\nFollow-up: When did it become the capital?"
    )
    parsed = parse_thread_reply(reply)
    assert parsed.answer == "Paris is the capital.\nIt has been since 987."
    assert parsed.summary == "Paris." and parsed.confidence == 0.9 and parsed.settles_question
    assert parsed.follow_ups == ["When did it become the capital?"]


def test_missing_trailer_means_defaults_not_failure() -> None:
    parsed = parse_thread_reply("Just an answer, no trailer at all.")
    assert parsed.answer == "Just an answer, no trailer at all."
    assert (parsed.summary, parsed.confidence, parsed.settles_question, parsed.follow_ups) == (
        "",
        0.5,
        False,
        [],
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("**Confidence:** 85%", 0.85),
        ("- confidence: 0.3", 0.3),
        ("Confidence: high", 0.85),
        ("CONFIDENCE : 7", 0.07),
        ("Confidence: 1.5", 0.015),
    ],
)
def test_confidence_is_read_leniently(line: str, expected: float) -> None:
    assert parse_thread_reply(f"An answer.\n{line}").confidence == pytest.approx(expected)


def test_runaway_follow_ups_are_capped_and_deduplicated() -> None:
    lines = "\n".join(f"Follow-up: question {i % 2}" for i in range(40))
    parsed = parse_thread_reply(f"Answer.\n{lines}")
    assert parsed.follow_ups == ["question 0", "question 1"]
    many = "\n".join(f"Follow-up: q{i}" for i in range(10))
    assert len(parse_thread_reply(f"Answer.\n{many}").follow_ups) == MAX_FOLLOW_UPS


def test_template_placeholders_echoed_back_are_ignored() -> None:
    reply = "The answer.\nSummary: <one to three sentences>\nFollow-up: <only if ...>\nSettles: no"
    parsed = parse_thread_reply(reply)
    assert parsed.summary == "" and parsed.follow_ups == []


@pytest.mark.parametrize(
    "reply", ["", "   \n", "Confidence: 0.9\nSettles: no", "<the answer, free text>"]
)
def test_empty_or_template_only_replies_are_rejected(reply: str) -> None:
    with pytest.raises(ModelOutputError):
        parse_thread_reply(reply)


def test_a_reply_that_only_repeats_the_subtask_is_rejected() -> None:
    with pytest.raises(ModelOutputError, match="repeats the subtask"):
        parse_thread_reply("Assess Go for CLIs.", prompt="Assess Go for CLIs")


def test_a_summary_only_reply_still_answers() -> None:
    parsed = parse_thread_reply("Summary: 42 is the answer.\nConfidence: 0.8")
    assert parsed.answer == "42 is the answer." and parsed.confidence == 0.8


def test_strip_trailer_keeps_the_body() -> None:
    assert strip_trailer("Body.\n---\nConfidence: 0.2\nSettles: no") == "Body."
