"""Streamed calls reuse one keep-alive connection; a stream that never ends after its marker
still returns the answer.

The server is raw anyio TCP so that it can count accepted connections (uvicorn does not say).
It speaks just enough HTTP/1.1: requests with a Content-Length, chunked SSE responses, several
requests per connection. Nothing sleeps; every wait is bounded.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import SocketAttribute, SocketStream
from http_helpers import read_request, send_chunk, send_sse_head, wait_for_disconnect

from apr_mcp.llm import _http
from apr_mcp.llm._http import ClientPool
from apr_mcp.llm.anthropic import AnthropicModel
from apr_mcp.llm.base import Message, Model, ModelRequest
from apr_mcp.llm.openai_compat import OpenAICompatModel
from apr_mcp.llm.simulated import SimRule, SimScript, SimulatedModel
from apr_mcp.simulate_server import ServerStats, serve_simulated


def _openai_events(text: str) -> list[bytes]:
    delta = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    stop = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    return [
        f"data: {json.dumps(delta)}\n\n".encode(),
        f"data: {json.dumps(stop)}\n\n".encode(),
        b"data: [DONE]\n\n",
    ]


def _anthropic_events(text: str) -> list[bytes]:
    payloads: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"model": "m", "usage": {"input_tokens": 3}}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": text}},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 2},
        },
        {"type": "message_stop"},
    ]
    return [f"event: {p['type']}\ndata: {json.dumps(p)}\n\n".encode() for p in payloads]


class CountingSSEServer:
    """Answers every request with an SSE stream; counts connections and requests.

    With ``hold_until=n`` the answers wait until ``n`` requests are in (so that they are all
    in flight at once); the count then restarts for the next wave.
    """

    def __init__(self, events: list[bytes], *, end_body: bool = True, hold_until: int = 0) -> None:
        self.events = events
        self.end_body = end_body  # False: never send the final chunk (a buggy server)
        self.connections = 0
        self.requests = 0
        self.hold_until = hold_until
        self._wave: list[anyio.Event] = []

    async def _hold(self) -> None:
        arrived = anyio.Event()
        self._wave.append(arrived)
        if len(self._wave) == self.hold_until:
            wave, self._wave = self._wave, []
            for event in wave:
                event.set()
        await arrived.wait()

    async def handle(self, stream: SocketStream) -> None:
        self.connections += 1
        buffer = b""
        async with stream:
            while True:
                got = await read_request(stream, buffer)
                if got is None:
                    return
                buffer = got[1]
                self.requests += 1
                if self.hold_until:
                    await self._hold()
                await send_sse_head(stream)
                for event in self.events:
                    await send_chunk(stream, event)
                if not self.end_body:  # hold the body open until the client gives up on it
                    await wait_for_disconnect(stream)
                    return
                await stream.send(b"0\r\n\r\n")


def _model(kind: str, port: int) -> Model:
    if kind == "openai":
        return OpenAICompatModel(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout_s=30)
    return AnthropicModel(base_url=f"http://127.0.0.1:{port}", api_key="k", model="m", timeout_s=30)


_REQUEST = ModelRequest(messages=[Message(role="user", content="hi")], max_tokens=16)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_sequential_streamed_calls_reuse_one_connection(kind: str) -> None:
    events = _openai_events("hello") if kind == "openai" else _anthropic_events("hello")
    server = CountingSSEServer(events)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    model = _model(kind, listener.extra(SocketAttribute.local_port))
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle)
        with anyio.fail_after(10):
            texts = [(await model.complete(_REQUEST)).text for _ in range(3)]
        await model.aclose()
        tg.cancel_scope.cancel()
    assert texts == ["hello"] * 3
    assert server.requests == 3
    assert server.connections == 1


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_body_left_open_after_the_end_marker_still_returns_the_answer(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The answer is complete at the marker; waiting for the body's end is bounded (and short here).
    monkeypatch.setattr(_http, "_DRAIN_S", 0.05)
    events = _openai_events("kept") if kind == "openai" else _anthropic_events("kept")
    server = CountingSSEServer(events, end_body=False)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    model = _model(kind, listener.extra(SocketAttribute.local_port))
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle)
        with anyio.fail_after(10):
            first = await model.complete(_REQUEST)
            second = await model.complete(_REQUEST)
        await model.aclose()
        tg.cancel_scope.cancel()
    assert (first.text, second.text) == ("kept", "kept")
    # The held-open connection could not be reused: the second call needed a new one.
    assert server.connections == 2


async def test_max_connections_queues_calls_without_failing_them() -> None:
    # One connection, replies that take 0.1 s each and a 0.25 s idle timeout: the fifth call
    # waits ~0.4 s for a pool slot and must still succeed (waiting for the pool is no stall;
    # only the call's total limit bounds it). Server-side max_active shows that the limit is
    # applied.
    stats = ServerStats()
    script = SimScript(rules=[SimRule(pattern=".", reply="ok")])
    model = SimulatedModel(ttft_s=0.1, tokens_per_s=1e6, script=script)
    async with serve_simulated(model, stats=stats) as url:
        client = OpenAICompatModel(
            base_url=url, model="sim-1", idle_timeout_s=0.25, max_connections=1
        )
        texts: list[str] = []

        async def call() -> None:
            texts.append((await client.complete(_REQUEST)).text)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(call)
        await client.aclose()
    assert texts == ["ok"] * 5
    assert stats.max_active == 1 and stats.completed == 5


async def test_concurrent_calls_beyond_one_pool_reuse_their_connections() -> None:
    # 20 calls at once exceed one client's pool (SHARD_SIZE = 16): a second client takes the
    # rest. A second wave of 20 must reuse all 20 connections, not open new ones.
    server = CountingSSEServer(_openai_events("hi"), hold_until=20)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    model = OpenAICompatModel(
        base_url=f"http://127.0.0.1:{listener.extra(SocketAttribute.local_port)}/v1", model="m"
    )
    texts: list[str] = []

    async def call() -> None:
        texts.append((await model.complete(_REQUEST)).text)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle)
        with anyio.fail_after(10):
            for _wave in range(2):
                async with anyio.create_task_group() as calls:
                    for _ in range(20):
                        calls.start_soon(call)
        opened = model._clients.clients
        await model.aclose()
        tg.cancel_scope.cancel()
    assert texts == ["hi"] * 40 and server.requests == 40
    assert opened == 2
    assert server.connections == 20


async def test_client_pool_fills_the_first_client_first() -> None:
    made: list[int] = []

    def make(size: int) -> httpx.AsyncClient:
        made.append(size)
        return httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200)))

    pool = ClientPool(make, 40)  # 3 clients of at most 14 connections
    async with AsyncExitStack() as stack:
        first = [await stack.enter_async_context(pool.lease()) for _ in range(14)]
        overflow = await stack.enter_async_context(pool.lease())
    assert made == [14, 14] and len(set(map(id, first))) == 1 and overflow is not first[0]
    async with pool.lease() as again:  # everything released: back to the first, warm client
        assert again is first[0]
    await pool.aclose()
    assert pool.clients == 0
    with pytest.raises(RuntimeError, match="closed"):
        async with pool.lease():
            pass
