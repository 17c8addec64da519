"""Wire format of the Anthropic Messages backend, against httpx.MockTransport (no network)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from http_helpers import Recorder, sse_response

from apr_mcp.errors import (
    ModelHTTPError,
    ModelOutputError,
    ModelTimeoutError,
    RateLimitError,
    ServerError,
    StreamInterrupted,
)
from apr_mcp.llm.anthropic import AnthropicModel
from apr_mcp.llm.base import Message, ModelRequest


def sse(*events: dict[str, Any] | str) -> bytes:
    out = []
    for e in events:
        if isinstance(e, str):
            out.append(f"data: {e}\n\n")
        else:
            out.append(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n")
    return "".join(out).encode()


def start(input_tokens: int = 12) -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "model": "claude-served",
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        },
    }


def text(piece: str) -> dict[str, Any]:
    return {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": piece},
    }


def stop(reason: str = "end_turn", output_tokens: int = 5) -> list[dict[str, Any]]:
    return [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": reason},
            "usage": {"output_tokens": output_tokens},
        },
        {"type": "message_stop"},
    ]


OK_STREAM = sse(
    start(),
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    text("Bon"),
    text("jour"),
    *stop(),
)


def make(rec: Recorder, **kw: Any) -> AnthropicModel:
    return AnthropicModel(
        base_url="https://anthropic.test/v1",
        api_key="ak-test",
        model="claude-x",
        transport=httpx.MockTransport(rec),
        **kw,
    )


def req(**kw: Any) -> ModelRequest:
    return ModelRequest(
        messages=[
            Message(role="system", content="You are terse."),
            Message(role="system", content="Answer in French."),
            Message(role="user", content="Hello"),
            Message(role="user", content="(politely)"),
        ],
        **kw,
    )


async def test_streamed_request_shape_and_parsing() -> None:
    rec = Recorder(sse_response(OK_STREAM))
    got: list[str] = []
    resp = await make(rec).complete(
        req(max_tokens=64, temperature=1.5, stop=["###"]), on_token=got.append
    )
    (sent,) = rec.requests
    assert sent.url == "https://anthropic.test/v1/messages"
    assert sent.headers["x-api-key"] == "ak-test"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    body = json.loads(sent.content)
    assert body["system"] == "You are terse.\n\nAnswer in French."
    assert body["messages"] == [{"role": "user", "content": "Hello\n\n(politely)"}]
    assert body["max_tokens"] == 64 and body["stream"] is True
    assert body["temperature"] == 1.0  # clamped into Anthropic's 0..1
    assert body["stop_sequences"] == ["###"]
    assert got == ["Bon", "jour"]
    assert resp.text == "Bonjour" and resp.finish_reason == "stop"
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.reported) == (12, 5, True)
    assert resp.model == "claude-served" and resp.backend == "anthropic"


async def test_structured_request_has_no_native_schema() -> None:
    rec = Recorder(sse_response(OK_STREAM))
    model = make(rec)
    assert model.supports_json_schema is False
    await model.complete(req(json_schema={"type": "object"}))
    body = json.loads(rec.requests[0].content)
    assert "response_format" not in body and "json_schema" not in json.dumps(body)


async def test_non_streamed() -> None:
    payload = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-served",
        "content": [{"type": "text", "text": "Salut"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 8, "output_tokens": 2},
    }
    rec = Recorder(httpx.Response(200, json=payload))
    resp = await make(rec, stream=False).complete(req())
    assert "stream" not in json.loads(rec.requests[0].content)
    assert resp.text == "Salut" and resp.usage.reported and resp.usage.output_tokens == 2


async def test_usage_counted_when_missing() -> None:
    body = sse(
        {"type": "message_start", "message": {}},
        text("Hello there"),
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
        {"type": "message_stop"},
    )
    resp = await make(Recorder(sse_response(body))).complete(req())
    assert resp.usage.reported is False and resp.usage.output_tokens == 2


@pytest.mark.parametrize(
    ("status", "error_type", "exc_type", "needle"),
    [
        (401, "authentication_error", ModelHTTPError, "ANTHROPIC_API_KEY"),
        (404, "not_found_error", ModelHTTPError, "APR_MODEL"),
        (400, "invalid_request_error", ModelHTTPError, "invalid_request_error"),
        (429, "rate_limit_error", RateLimitError, "rate limited"),
        (529, "overloaded_error", RateLimitError, "overloaded"),
        (500, "api_error", ServerError, "api_error"),
    ],
)
async def test_error_bodies(
    status: int, error_type: str, exc_type: type[Exception], needle: str
) -> None:
    payload = {"type": "error", "error": {"type": error_type, "message": "something specific"}}
    rec = Recorder(httpx.Response(status, json=payload, headers={"retry-after": "3"}))
    with pytest.raises(exc_type) as info:
        await make(rec).complete(req())
    err = info.value
    assert type(err) is exc_type
    assert err.status_code == status and err.model == "claude-x"  # type: ignore[attr-defined]
    assert (
        "anthropic/claude-x" in str(err) and needle in str(err) and "something specific" in str(err)
    )
    if isinstance(err, RateLimitError):
        assert err.retry_after == 3.0


async def test_overloaded_error_event_in_stream_is_rate_limit() -> None:
    body = sse(
        start(),
        text("Bo"),
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    with pytest.raises(RateLimitError) as info:
        await make(Recorder(sse_response(body))).complete(req())
    assert "Overloaded" in str(info.value) and info.value.retryable


async def test_stream_cut_before_message_stop() -> None:
    with pytest.raises(StreamInterrupted):
        await make(Recorder(sse_response(sse(start(), text("Bon"))))).complete(req())


async def test_timeout_mid_stream() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield sse(start(), text("Bon"))
        raise httpx.ReadTimeout("stalled")

    rec = Recorder(sse_response(body()))
    with pytest.raises(ModelTimeoutError):
        await make(rec).complete(req())


async def test_junk_lines_skipped_and_all_junk_fails() -> None:
    body = sse("{bad json", start(), text("ok"), *stop())
    assert (await make(Recorder(sse_response(body))).complete(req())).text == "ok"
    with pytest.raises(ModelOutputError):
        await make(Recorder(sse_response(sse("nope", "{still nope")))).complete(req())


async def test_empty_and_max_tokens() -> None:
    with pytest.raises(ModelOutputError):
        await make(Recorder(sse_response(sse(start(), *stop())))).complete(req())
    resp = await make(
        Recorder(sse_response(sse(start(), text("partial"), *stop("max_tokens"))))
    ).complete(req())
    assert resp.finish_reason == "length" and resp.text == "partial"
    with pytest.raises(ModelOutputError):
        await make(
            Recorder(sse_response(sse(start(), text('{"a":'), *stop("max_tokens"))))
        ).complete(req(json_schema={"type": "object"}))
