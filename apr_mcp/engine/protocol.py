"""The thread protocol: a worker answers in free text and ends with a short trailer.

Free text streams, costs no JSON tokens and is what small local models follow reliably; the few
machine-readable fields the controller needs ride in a trailer parsed leniently from the end::

    <the answer, free text>

    Summary: <one to three sentences>
    Confidence: 0.8
    Settles: no
    Follow-up: <a self-contained subproblem>      (zero or more lines)

A missing or partial trailer means defaults (confidence 0.5, does not settle, no follow-ups), never
a failure. A reply that is empty, or only echoes the prompt or an instruction back, is rejected
(:class:`~apr_mcp.errors.ModelOutputError`), so the retry/repair path treats it like junk.
"""

from __future__ import annotations

import re

from ..errors import ModelOutputError
from ..schemas import ThreadAnswer

__all__ = ["MAX_FOLLOW_UPS", "parse_thread_reply", "strip_trailer"]

#: Follow-ups kept from one reply (a small model may repeat the line until max_tokens).
MAX_FOLLOW_UPS = 3
_SUMMARY_CHARS = 1_000

# One trailer line: optional bullet / markdown emphasis, a key, a colon, a value.
_LINE = re.compile(
    r"^[ \t>*_\-•]*(?P<key>summary|confidence|settles(?:[ _]question)?|follow[ -]?ups?)"
    r"[ \t*_]*[:：][ \t*_]*(?P<value>.*?)[ \t*_]*$",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"(\d+(?:\.\d+)?)\s*(%?)")
_YES = re.compile(r"^(yes|true|y|1)\b", re.IGNORECASE)
_NONE = re.compile(r"^\(?(none|no|n/a|-|—)\)?\.?$", re.IGNORECASE)
#: The placeholders of the solver prompt's trailer template, echoed back verbatim.
_TEMPLATE = re.compile(r"<[^>]{3,80}>")


def _trailer_start(lines: list[str]) -> int:
    """Index of the first trailer line: the trailer is the run of key lines (and blank lines)
    at the end of the text."""
    start = len(lines)
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i].strip()
        if not line or line in {"---", "***"}:
            continue
        if _LINE.match(line):
            start = i
            continue
        break
    return start


def strip_trailer(text: str) -> str:
    """The answer part of a reply (the trailer removed)."""
    lines = text.splitlines()
    return "\n".join(lines[: _trailer_start(lines)]).rstrip().removesuffix("---").rstrip()


def _confidence(value: str) -> float | None:
    match = _NUMBER.search(value)
    if not match:
        return {"high": 0.85, "medium": 0.6, "low": 0.3}.get(value.strip().lower().rstrip("."))
    number = float(match.group(1))
    if match.group(2) == "%" or number > 1.0:
        number /= 100.0
    return min(1.0, max(0.0, number))


def parse_thread_reply(text: str, *, prompt: str = "") -> ThreadAnswer:
    """Parse a worker's free-text reply. ``prompt`` (the subtask) is used to reject a reply that
    only echoes it. Raises :class:`ModelOutputError` for an empty or echo-only reply."""
    lines = text.splitlines()
    start = _trailer_start(lines)
    answer = "\n".join(lines[:start]).strip().removesuffix("---").rstrip()
    fields: dict[str, str] = {}
    follow_ups: list[str] = []
    for line in lines[start:]:
        match = _LINE.match(line.strip())
        if not match:
            continue
        key = match.group("key").lower().replace(" ", "").replace("-", "").replace("_", "")
        value = match.group("value").strip()
        if key.startswith("follow"):
            keep = value and not _NONE.match(value) and not _TEMPLATE.fullmatch(value)
            if keep and value not in follow_ups and len(follow_ups) < MAX_FOLLOW_UPS:
                follow_ups.append(value)
        else:
            fields.setdefault(key.removesuffix("question"), value)
    summary = fields.get("summary", "")
    if _TEMPLATE.fullmatch(summary):
        summary = ""
    if not answer:
        # Everything was trailer: a reply that only has a summary still answers.
        answer = summary
    _check_not_echo(answer, prompt)
    confidence = _confidence(fields["confidence"]) if "confidence" in fields else None
    settles = fields.get("settles", "")
    return ThreadAnswer(
        answer=answer,
        summary=summary[:_SUMMARY_CHARS],
        confidence=0.5 if confidence is None else confidence,
        settles_question=bool(_YES.match(settles.strip())),
        follow_ups=follow_ups,
    )


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _check_not_echo(answer: str, prompt: str) -> None:
    if not answer.strip():
        raise ModelOutputError("the reply is empty: no answer before the trailer")
    body = _norm(answer)
    if prompt and body and body == _norm(prompt):
        raise ModelOutputError("the reply only repeats the subtask; no answer was given")
    if _TEMPLATE.fullmatch(answer.strip()):
        raise ModelOutputError("the reply only repeats the answer template; no answer was given")
