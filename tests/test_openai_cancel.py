"""Cancelling a call closes its HTTP stream: a real loopback server sees the disconnect.

The server is a few lines of raw anyio TCP: it answers with an SSE stream that sends one chunk and
then never finishes, and records when the client goes away. Nothing sleeps; every wait is bounded.
"""

from __future__ import annotations

import json

import anyio
from anyio.abc import SocketStream
from http_helpers import read_request, send_chunk, send_sse_head, wait_for_disconnect

from apr_mcp.llm.base import Message, ModelRequest
from apr_mcp.llm.openai_compat import OpenAICompatModel


class SlowSSEServer:
    def __init__(self) -> None:
        self.first_chunk_sent = anyio.Event()
        self.disconnected = anyio.Event()
        self.requests: list[bytes] = []

    async def handle(self, stream: SocketStream) -> None:
        async with stream:
            got = await read_request(stream)
            assert got is not None
            self.requests.append(got[0])
            await send_sse_head(stream)
            delta = {
                "choices": [{"index": 0, "delta": {"content": "thinking"}, "finish_reason": None}]
            }
            await send_chunk(stream, b"data: " + json.dumps(delta).encode() + b"\n\n")
            self.first_chunk_sent.set()
            # The answer never finishes; the only way out is the client closing the connection.
            await wait_for_disconnect(stream)
            self.disconnected.set()


async def test_cancelling_the_caller_closes_the_stream() -> None:
    server = SlowSSEServer()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    model = OpenAICompatModel(base_url=f"http://127.0.0.1:{port}/v1", model="slow", timeout_s=30)
    got_token = anyio.Event()
    finished = False

    async def call() -> None:
        nonlocal finished
        await model.complete(
            ModelRequest(messages=[Message(role="user", content="go")]),
            on_token=lambda _delta: got_token.set(),
        )
        finished = True

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as caller:
                caller.start_soon(call)
                await got_token.wait()
                caller.cancel_scope.cancel()
            await server.disconnected.wait()
        tg.cancel_scope.cancel()
    await model.aclose()
    assert not finished
    assert json.loads(server.requests[0])["stream"] is True
