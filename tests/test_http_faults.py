"""Faults classified before they are retried (issue 11.7) and streams that end honestly (13.3).

MockTransport for what a reply says; a raw loopback server where timing matters (a stall, slow
headers), since a mock transport has no sockets to time out on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import SocketAttribute, SocketStream
from http_helpers import (
    FakeSleep,
    Recorder,
    read_request,
    send_chunk,
    send_sse_head,
    sse_response,
    wait_for_disconnect,
)

from apr_mcp.errors import ModelHTTPError, ModelTimeoutError, StreamInterrupted
from apr_mcp.llm.anthropic import AnthropicModel
from apr_mcp.llm.base import Message, ModelRequest
from apr_mcp.llm.openai_compat import OpenAICompatModel
from apr_mcp.llm.retry import RetryingModel

BASE = "http://llm.test/v1"
REQ = ModelRequest(messages=[Message(role="user", content="Hi?")], max_tokens=50)
HTML = "<!DOCTYPE html><html><head><title>Open WebUI</title></head><body>app</body></html>"


def sse(*events: object, done: bool = True) -> bytes:
    lines = [f"data: {json.dumps(e)}\n\n" for e in events]
    return ("".join(lines) + ("data: [DONE]\n\n" if done else "")).encode()


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {"content": content} if content is not None else {}
    return {"model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def make(handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> OpenAICompatModel:
    return OpenAICompatModel(
        base_url=BASE, api_key="sk-test", model="m", transport=httpx.MockTransport(handler), **kw
    )


def retrying(model: OpenAICompatModel) -> tuple[RetryingModel, FakeSleep]:
    sleep = FakeSleep()
    return RetryingModel(model, sleep=sleep), sleep


# ----- classified at once, never retried -----


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, headers={"content-type": "text/html"}, text=HTML),
        httpx.Response(200, headers={"content-type": "text/plain"}, text=HTML),
        httpx.Response(200, headers={"content-type": "text/plain"}, text="Ollama is running"),
    ],
    ids=["html", "html-as-text", "plain-text"],
)
async def test_a_200_that_is_not_an_api_answer_fails_at_once(
    response: httpx.Response, stream: bool
) -> None:
    rec = Recorder(response)
    model, sleep = retrying(make(rec, stream=stream))
    with pytest.raises(ModelHTTPError) as info:
        await model.complete(REQ)
    assert len(rec.requests) == 1 and sleep.delays == [] and not info.value.retryable
    assert "APR_BASE_URL should be the API root, usually ending in /v1" in str(info.value)
    assert f"(is {BASE})" in str(info.value)


async def test_an_html_page_from_anthropic_names_its_root() -> None:
    rec = Recorder(httpx.Response(200, headers={"content-type": "text/html"}, text=HTML))
    model = AnthropicModel(
        base_url="https://proxy.test", api_key="k", model="c", transport=httpx.MockTransport(rec)
    )
    with pytest.raises(ModelHTTPError) as info:
        await model.complete(REQ)
    assert "https://api.anthropic.com" in str(info.value) and "HTML page" in str(info.value)


async def test_401_fails_at_once_saying_which_key_to_set() -> None:
    rec = Recorder(httpx.Response(401, json={"error": {"message": "Incorrect API key"}}))
    model, sleep = retrying(make(rec))
    with pytest.raises(ModelHTTPError) as info:
        await model.complete(REQ)
    assert len(rec.requests) == 1 and sleep.delays == []
    assert "set APR_API_KEY or OPENAI_API_KEY" in str(info.value)


def server(chat: httpx.Response, models: httpx.Response) -> Recorder:
    def handle(request: httpx.Request) -> httpx.Response:
        return models if request.url.path.endswith("/models") else chat

    return Recorder(handle)


async def test_404_for_a_model_lists_what_is_served() -> None:
    rec = server(
        httpx.Response(404, json={"error": {"message": "model 'm' not found, try pulling it"}}),
        httpx.Response(200, json={"data": [{"id": "llama3.1"}, {"id": "qwen2.5:7b"}]}),
    )
    model, sleep = retrying(make(rec))
    with pytest.raises(ModelHTTPError) as info:
        await model.complete(REQ)
    assert sleep.delays == [] and [r.url.path for r in rec.requests] == [
        "/v1/chat/completions",
        "/v1/models",
    ]
    expected = "model 'm' not served; available: llama3.1, qwen2.5:7b (set APR_MODEL)"
    assert expected in str(info.value)


async def test_400_model_not_found_gets_the_same_hint() -> None:
    rec = server(
        httpx.Response(400, json={"error": {"message": "The model `m` does not exist."}}),
        httpx.Response(200, json={"data": [{"id": "gpt-4o-mini"}]}),
    )
    with pytest.raises(ModelHTTPError) as info:
        await make(rec).complete(REQ)
    assert "available: gpt-4o-mini" in str(info.value) and info.value.status_code == 400


async def test_404_for_a_served_model_means_the_path_is_wrong() -> None:
    rec = server(
        httpx.Response(404, json={"detail": "Not Found"}),
        httpx.Response(200, json={"data": [{"id": "m"}]}),
    )
    with pytest.raises(ModelHTTPError) as info:
        await make(rec).complete(REQ)
    assert "so the path is wrong: APR_BASE_URL should be the API root" in str(info.value)


# ----- streams end honestly -----


async def test_done_without_a_finish_reason_is_an_interrupted_stream() -> None:
    # llama-cpp-python ends a running stream like this when another request waits.
    stub = sse_response(sse(chunk("The ans")))
    rec = Recorder(stub)
    with pytest.raises(StreamInterrupted) as info:
        await make(rec).complete(REQ)
    assert info.value.retryable and info.value.partial_text == "The ans"
    assert "without a finish_reason" in str(info.value)


async def test_an_interrupted_stream_is_retried_never_accepted() -> None:
    rec = Recorder(
        sse_response(sse(chunk("The ans"))),
        sse_response(sse(chunk("The answer is 4."), chunk(finish="stop"))),
    )
    model, _ = retrying(make(rec))
    got: list[str] = []
    response = await model.complete(REQ, on_token=got.append)
    assert response.text == "The answer is 4." and len(rec.requests) == 2
    assert "".join(got) == "The answer is 4."  # the stub's prefix was not counted twice


async def test_a_stream_closed_mid_answer_keeps_its_text_on_the_error() -> None:
    rec = Recorder(sse_response(sse(chunk("Half of"), chunk(" it"), done=False)))
    model, _ = retrying(make(rec))
    with pytest.raises(StreamInterrupted) as info:
        await model.complete(REQ)
    assert len(rec.requests) == 5 and info.value.partial_text == "Half of it"
    assert "after 5 attempts" in str(info.value)


async def test_anthropic_message_stop_without_a_stop_reason_is_interrupted() -> None:
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"model": "c", "usage": {"input_tokens": 3}}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Par"}},
        {"type": "message_stop"},
    ]
    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()
    model = AnthropicModel(
        api_key="k", model="c", transport=httpx.MockTransport(Recorder(sse_response(body)))
    )
    with pytest.raises(StreamInterrupted) as info:
        await model.complete(REQ)
    assert info.value.partial_text == "Par"


# ----- stalls and deadlines, over loopback -----


@asynccontextmanager
async def raw_server(
    handle: Callable[[SocketStream], Any],
) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback HTTP server running ``handle`` per connection; yields (base URL, requests)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)
    seen: list[int] = []

    async def serve(stream: SocketStream) -> None:
        async with stream:
            if await read_request(stream) is None:
                return
            seen.append(1)
            await handle(stream)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        try:
            yield f"http://127.0.0.1:{port}/v1", seen
        finally:
            tg.cancel_scope.cancel()


async def stall_after_one_chunk(stream: SocketStream) -> None:
    await send_sse_head(stream)
    await send_chunk(stream, sse(chunk("par"), done=False))
    await wait_for_disconnect(stream)  # then nothing: the server hangs


async def test_a_stalled_stream_is_caught_by_the_idle_timeout_and_retried_once() -> None:
    async with raw_server(stall_after_one_chunk) as (url, seen):
        inner = OpenAICompatModel(base_url=url, model="m", timeout_s=60, idle_timeout_s=0.2)
        model = RetryingModel(inner, sleep=FakeSleep())
        with anyio.fail_after(10), pytest.raises(ModelTimeoutError) as info:
            await model.complete(REQ)
        await model.aclose()
    assert len(seen) == 2  # one retry, not four: a second stall means the server is stuck
    assert "stalled" in str(info.value) and "APR_IDLE_TIMEOUT_S" in str(info.value)
    assert info.value.partial_text == "par"


async def test_slow_headers_are_no_stall() -> None:
    # A busy local server queues the request and sends headers with the first token: waiting
    # for them is bounded by the call's total limit, not by the idle timeout.
    async def slow_then_answer(stream: SocketStream) -> None:
        await anyio.sleep(0.6)
        await send_sse_head(stream)
        await send_chunk(stream, sse(chunk("ok"), chunk(finish="stop")))
        await send_chunk(stream, b"")

    async with raw_server(slow_then_answer) as (url, _):
        model = OpenAICompatModel(base_url=url, model="m", timeout_s=30, idle_timeout_s=0.2)
        with anyio.fail_after(10):
            response = await model.complete(REQ)
        await model.aclose()
    assert response.text == "ok"


async def test_the_request_deadline_bounds_a_call_and_is_not_retried() -> None:
    async with raw_server(stall_after_one_chunk) as (url, seen):
        inner = OpenAICompatModel(base_url=url, model="m", timeout_s=60, idle_timeout_s=30)
        model = RetryingModel(inner, sleep=FakeSleep())
        with anyio.fail_after(10), pytest.raises(ModelTimeoutError) as info:
            await model.complete(REQ.model_copy(update={"timeout_s": 0.3}))
        await model.aclose()
    assert len(seen) == 1 and not info.value.retryable
    assert "run's deadline" in str(info.value) and info.value.partial_text == "par"
