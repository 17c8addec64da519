"""The SSE parser: line endings and UTF-8 split across network chunks, comments, multi-line data."""

from __future__ import annotations

import httpx
import pytest

from apr_mcp.llm._http import SSEEvent, SSEParser, iter_sse

BODY = (
    ": keep-alive comment\r\n"
    "event: message_start\r\n"
    'data: {"a": 1}\r\n'
    "\r\n"
    "data: first line\n"
    "data:second line\n"
    "id: 7\n"
    "\n"
    "not a field line\r"
    "data: caf\u00e9 \u2603\r"
    "\r"
    "data: no blank line at the end"
)
EXPECTED = [
    SSEEvent("message_start", '{"a": 1}'),
    SSEEvent("", "first line\nsecond line"),
    SSEEvent("", "caf\u00e9 \u2603"),
    SSEEvent("", "no blank line at the end"),
]


def _parse(chunks: list[str]) -> list[SSEEvent]:
    parser = SSEParser()
    events = [e for chunk in chunks for e in parser.feed(chunk)]
    return events + parser.close()


def test_whole_body_at_once() -> None:
    assert _parse([BODY]) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_any_split_gives_the_same_events(size: int) -> None:
    # Size 1 splits every CRLF between its CR and LF (a CR at a chunk's end must wait).
    assert _parse([BODY[i : i + size] for i in range(0, len(BODY), size)]) == EXPECTED


async def test_iter_sse_decodes_utf8_split_across_chunks() -> None:
    raw = BODY.encode("utf-8")

    class Chunks(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            for i in range(0, len(raw), 3):  # splits the multi-byte characters
                yield raw[i : i + 3]

    response = httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Chunks())
    assert [e async for e in iter_sse(response)] == EXPECTED


def test_an_unfinished_event_without_data_yields_nothing() -> None:
    assert _parse(["event: ping\n", ": only a comment\n"]) == []
