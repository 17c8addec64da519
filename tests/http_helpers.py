"""Shared helpers for the HTTP backend tests: a MockTransport recorder and raw loopback HTTP.

The raw helpers speak just enough HTTP/1.1 for a test server on anyio TCP (requests with a
Content-Length, chunked SSE answers), where the test must see connections and disconnects that
uvicorn hides.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Callable
from typing import Any

import anyio
import httpx
from anyio.abc import SocketStream

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that replays scripted responses and keeps the requests.

    Each call takes the next item (the last one repeats): a response, a handler to call with the
    request, or an exception to raise.
    """

    def __init__(self, *responses: httpx.Response | Handler | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(item, Exception):
            raise item
        if callable(item) and not isinstance(item, httpx.Response):
            return item(request)
        return item


class FakeSleep:
    """A ``sleep`` for RetryingModel that records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def sse_response(body: bytes | AsyncIterable[bytes], status: int = 200) -> httpx.Response:
    """A ``text/event-stream`` response with ``body`` (bytes, or chunks as they come)."""
    return httpx.Response(status, headers={"content-type": "text/event-stream"}, content=body)


_CLOSED = (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError)


async def read_request(stream: SocketStream, buffer: bytes = b"") -> tuple[bytes, bytes] | None:
    """Read one request; its body and what is left in the buffer, or None at EOF."""
    while b"\r\n\r\n" not in buffer:
        try:
            buffer += await stream.receive()
        except _CLOSED:
            return None
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        rest += await stream.receive()
    return rest[:length], rest[length:]


async def send_sse_head(stream: SocketStream) -> None:
    """The status line and headers of a chunked SSE answer."""
    await stream.send(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )


async def send_chunk(stream: SocketStream, data: bytes) -> None:
    """One chunk of a chunked body."""
    await stream.send(b"%x\r\n%s\r\n" % (len(data), data))


async def wait_for_disconnect(stream: SocketStream) -> None:
    """Read (and drop) whatever comes until the client closes the connection."""
    try:
        while await stream.receive():
            pass
    except _CLOSED:
        pass
