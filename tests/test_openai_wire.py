"""Wire format of the OpenAI-compatible backend, against httpx.MockTransport (no network)."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from http_helpers import Recorder, sse_response

from apr_mcp.errors import (
    ModelConnectionError,
    ModelHTTPError,
    ModelOutputError,
    ModelTimeoutError,
    RateLimitError,
    ServerError,
    StreamInterrupted,
)
from apr_mcp.llm.base import Message, ModelRequest
from apr_mcp.llm.openai_compat import OpenAICompatModel

BASE = "http://llm.test/v1"


def sse(*events: object, done: bool = True) -> bytes:
    lines = [f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events]
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


def chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    delta = {"content": content} if content is not None else {}
    return {
        "id": "c1",
        "model": "served-m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def make(rec: Recorder, **kw: Any) -> OpenAICompatModel:
    return OpenAICompatModel(
        base_url=BASE, api_key="sk-test", model="m", transport=httpx.MockTransport(rec), **kw
    )


def req(**kw: Any) -> ModelRequest:
    return ModelRequest(
        messages=[Message(role="system", content="Be brief."), Message(role="user", content="Hi?")],
        **kw,
    )


STREAM_OK = sse(
    chunk("Hel"),
    chunk("lo"),
    chunk(finish="stop"),
    {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 2}},
)


async def test_streamed_request_shape_and_parsing() -> None:
    rec = Recorder(sse_response(STREAM_OK))
    model = make(rec, extra_headers={"X-Title": "apr"})
    deltas: list[str] = []
    resp = await model.complete(
        req(max_tokens=50, temperature=0.3, stop=["END"], seed=7), on_token=deltas.append
    )
    (sent,) = rec.requests
    assert sent.url == "http://llm.test/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.headers["x-title"] == "apr"
    body = json.loads(sent.content)
    assert body["model"] == "m" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi?"},
    ]
    assert body["max_tokens"] == 50 and body["temperature"] == 0.3
    assert body["stop"] == ["END"] and body["seed"] == 7
    assert "response_format" not in body
    assert deltas == ["Hel", "lo"]
    assert resp.text == "Hello" and resp.finish_reason == "stop"
    assert resp.usage.input_tokens == 11 and resp.usage.output_tokens == 2 and resp.usage.reported
    assert resp.backend == "openai" and resp.model == "served-m"
    assert resp.ttft_s is not None and resp.latency_s >= resp.ttft_s
    await model.aclose()


async def test_structured_request_sends_response_format_and_model_override() -> None:
    rec = Recorder(sse_response(sse(chunk('{"a": 1}', finish="stop"))))
    model = make(rec)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    await model.complete(req(json_schema=schema, schema_name="Thing", model="other-m"))
    body = rec.bodies()[0]
    assert body["model"] == "other-m"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Thing", "schema": schema, "strict": False},
    }


async def test_usage_is_counted_when_the_server_does_not_report_it() -> None:
    rec = Recorder(sse_response(sse(chunk("Hello there"), chunk(finish="stop"))))
    resp = await make(rec).complete(req())
    assert resp.usage.reported is False
    assert resp.usage.output_tokens == 2  # "Hello there" in cl100k
    assert resp.usage.input_tokens > 4


async def test_non_streamed_request_and_parsing() -> None:
    payload = {
        "model": "served-m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi!"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3},
    }
    rec = Recorder(httpx.Response(200, json=payload))
    deltas: list[str] = []
    resp = await make(rec, stream=False).complete(req(), on_token=deltas.append)
    body = rec.bodies()[0]
    assert "stream" not in body and "stream_options" not in body
    assert resp.text == "Hi!" and deltas == ["Hi!"]
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.reported) == (9, 3, True)


async def test_server_answering_json_to_a_stream_request_is_understood() -> None:
    payload = {"choices": [{"message": {"content": "plain"}, "finish_reason": "stop"}]}
    resp = await make(Recorder(httpx.Response(200, json=payload))).complete(req())
    assert resp.text == "plain" and resp.usage.reported is False


async def test_async_on_token_is_awaited() -> None:
    got: list[str] = []

    async def on_token(delta: str) -> None:
        got.append(delta)

    await make(Recorder(sse_response(STREAM_OK))).complete(req(), on_token=on_token)
    assert got == ["Hel", "lo"]


async def test_stream_options_rejection_is_retried_once_without_it_and_remembered() -> None:
    bad = httpx.Response(
        400, json={"error": {"message": "Unrecognized request argument: stream_options"}}
    )
    rec = Recorder(bad, sse_response(STREAM_OK))
    model = make(rec)
    assert (await model.complete(req())).text == "Hello"
    rec.responses = [sse_response(STREAM_OK)]
    await model.complete(req())
    bodies = rec.bodies()
    assert "stream_options" in bodies[0]
    assert "stream_options" not in bodies[1] and "stream_options" not in bodies[2]


async def test_max_completion_tokens_is_used_when_the_server_asks_for_it() -> None:
    bad = httpx.Response(
        400,
        json={
            "error": {
                "message": "Unsupported parameter: 'max_tokens'. Use 'max_completion_tokens' "
                "instead."
            }
        },
    )
    rec = Recorder(bad, sse_response(STREAM_OK))
    await make(rec).complete(req(max_tokens=33))
    assert rec.bodies()[1]["max_completion_tokens"] == 33 and "max_tokens" not in rec.bodies()[1]


async def test_response_format_rejection_turns_native_schema_off() -> None:
    bad = httpx.Response(
        400, json={"error": {"message": "response_format json_schema is not supported"}}
    )
    model = make(Recorder(bad))
    with pytest.raises(ModelHTTPError) as info:
        await model.complete(req(json_schema={"type": "object"}))
    assert info.value.status_code == 400
    assert model.supports_json_schema is False
    assert "response_format" not in model.build_body(req(json_schema={"type": "object"}))


@pytest.mark.parametrize(
    ("status", "body", "exc_type", "needle"),
    [
        (
            401,
            {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}},
            ModelHTTPError,
            "OPENAI_API_KEY",
        ),
        (404, {"error": {"message": "The model `m` does not exist"}}, ModelHTTPError, "APR_MODEL"),
        (400, {"detail": "messages: field required"}, ModelHTTPError, "field required"),
        (500, {"error": {"message": "boom"}}, ServerError, "boom"),
        (503, {"error": "model is loading"}, ServerError, "model is loading"),
    ],
)
async def test_error_bodies_map_to_exceptions(
    status: int, body: dict[str, Any], exc_type: type[Exception], needle: str
) -> None:
    model = make(Recorder(httpx.Response(status, json=body)))
    with pytest.raises(exc_type) as info:
        await model.complete(req())
    err = info.value
    assert type(err) is exc_type
    assert err.status_code == status and err.backend == "openai" and err.model == "m"  # type: ignore[attr-defined]
    assert json.loads(err.body) == body  # type: ignore[attr-defined]
    text = str(err)
    assert "openai/m" in text and f"HTTP {status}" in text and needle in text


async def test_non_json_error_body_is_kept() -> None:
    with pytest.raises(ServerError) as info:
        await make(Recorder(httpx.Response(502, text="<html>Bad gateway</html>"))).complete(req())
    assert "Bad gateway" in str(info.value) and info.value.retryable


async def test_429_with_retry_after_seconds() -> None:
    rec = Recorder(
        httpx.Response(429, headers={"retry-after": "7"}, json={"error": {"message": "slow down"}})
    )
    with pytest.raises(RateLimitError) as info:
        await make(rec).complete(req())
    assert info.value.retry_after == 7.0 and info.value.status_code == 429
    assert "slow down" in str(info.value)


async def test_429_with_retry_after_http_date_and_ms() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    with pytest.raises(RateLimitError) as info:
        await make(Recorder(httpx.Response(429, headers={"retry-after": when}))).complete(req())
    assert info.value.retry_after is not None and 25 < info.value.retry_after <= 30

    with pytest.raises(RateLimitError) as info:
        await make(
            Recorder(httpx.Response(429, headers={"retry-after-ms": "1500", "retry-after": "9"}))
        ).complete(req())
    assert info.value.retry_after == 1.5


async def test_read_timeout_maps_to_model_timeout() -> None:
    rec = Recorder(httpx.ReadTimeout("read timed out"))
    with pytest.raises(ModelTimeoutError) as info:
        await make(rec).complete(req())
    assert (
        info.value.retryable
        and "openai/m" in str(info.value)
        and "APR_TIMEOUT_S" in str(info.value)
    )


async def test_connect_error_maps_to_connection_error() -> None:
    with pytest.raises(ModelConnectionError) as info:
        await make(Recorder(httpx.ConnectError("connection refused"))).complete(req())
    assert "APR_BASE_URL" in str(info.value)


async def test_timeout_mid_stream_maps_to_model_timeout() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield sse(chunk("par"), done=False)
        raise httpx.ReadTimeout("stalled")

    rec = Recorder(sse_response(body()))
    with pytest.raises(ModelTimeoutError):
        await make(rec).complete(req())


async def test_stream_cut_mid_answer_without_finish() -> None:
    rec = Recorder(sse_response(sse(chunk("The answer is"), done=False)))
    got: list[str] = []
    with pytest.raises(StreamInterrupted) as info:
        await make(rec).complete(req(), on_token=got.append)
    assert got == ["The answer is"] and info.value.retryable
    assert "13 characters" in str(info.value)


async def test_connection_dropped_mid_stream_is_stream_interrupted() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield sse(chunk("par"), done=False)
        raise httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body"
        )

    rec = Recorder(sse_response(body()))
    with pytest.raises(StreamInterrupted):
        await make(rec).complete(req())


async def test_malformed_json_lines_are_skipped() -> None:
    body = sse("{not json", chunk("ok"), "garbage", chunk(finish="stop")) + b"no colon line\n\n"
    resp = await make(Recorder(sse_response(body))).complete(req())
    assert resp.text == "ok"


async def test_entirely_junk_stream_is_output_error() -> None:
    with pytest.raises(ModelOutputError) as info:
        await make(Recorder(sse_response(sse("{oops", "<html>")))).complete(req())
    assert "no valid JSON chunk" in str(info.value)


async def test_junk_non_streamed_body_is_output_error() -> None:
    # Not JSON at all: no API answered (issue 11.7), so the error says how to fix the URL.
    with pytest.raises(ModelHTTPError) as info:
        await make(Recorder(httpx.Response(200, text="hello?")), stream=False).complete(req())
    assert "APR_BASE_URL" in str(info.value) and not info.value.retryable
    # JSON, but not a chat completion: the model's (or server's) output is junk.
    with pytest.raises(ModelOutputError):
        await make(Recorder(httpx.Response(200, json={"hello": 1})), stream=False).complete(req())


async def test_error_event_inside_stream() -> None:
    body = sse(chunk("a"), {"error": {"message": "upstream rate limited", "code": 429}}, done=False)
    with pytest.raises(RateLimitError):
        await make(Recorder(sse_response(body))).complete(req())


async def test_empty_content_is_output_error() -> None:
    with pytest.raises(ModelOutputError) as info:
        await make(Recorder(sse_response(sse(chunk(""), chunk(finish="stop"))))).complete(req())
    assert "empty answer" in str(info.value)


async def test_finish_reason_length_keeps_free_text() -> None:
    rec = Recorder(sse_response(sse(chunk("A long answer that was"), chunk(finish="length"))))
    resp = await make(rec).complete(req())
    assert resp.text == "A long answer that was" and resp.finish_reason == "length"


async def test_finish_reason_length_fails_structured_or_empty() -> None:
    rec = Recorder(sse_response(sse(chunk('{"a": [1, 2'), chunk(finish="length"))))
    with pytest.raises(ModelOutputError) as info:
        await make(rec).complete(req(json_schema={"type": "object"}, max_tokens=5))
    assert "max_tokens=5" in str(info.value) and info.value.body == '{"a": [1, 2'

    rec = Recorder(sse_response(sse(chunk(finish="length"))))
    with pytest.raises(ModelOutputError):
        await make(rec).complete(req())


async def test_408_is_a_retryable_timeout() -> None:
    with pytest.raises(ModelTimeoutError) as info:
        await make(Recorder(httpx.Response(408, text="request timeout"))).complete(req())
    assert info.value.status_code == 408 and info.value.retryable


async def test_error_object_in_a_200_json_body() -> None:
    body = {"error": {"message": "Provider returned error", "code": 502}}
    with pytest.raises(ServerError) as info:
        await make(Recorder(httpx.Response(200, json=body)), stream=False).complete(req())
    assert "Provider returned error" in str(info.value)
