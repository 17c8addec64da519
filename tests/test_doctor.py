"""`apr-mcp doctor` proves the path a run takes (issue 13.4), against httpx.MockTransport."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from apr_mcp.config import Settings
from apr_mcp.doctor import run_doctor

BASE = "http://127.0.0.1:9/v1"


def settings(**kw: Any) -> Settings:
    return Settings(**{"backend": "openai", "base_url": BASE, "model": "smollm2", **kw})


def sse(*events: object) -> bytes:
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode() + b"data: [DONE]\n\n"


def delta(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    d = {"content": content} if content is not None else {}
    return {"model": "smollm2", "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


class LlamaLike:
    """What llama-cpp-python's server does: lists a file path as its model, refuses
    json_schema with a 500, streams one chunk per token. ``chat`` overrides every completion."""

    def __init__(self, *, chat: httpx.Response | None = None, finish: str | None = "stop") -> None:
        self.chat = chat
        self.finish = finish
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "/models/SmolLM2-135M.Q4_1.gguf"}]})
        if self.chat is not None:
            return self.chat
        body = json.loads(request.content)
        if "response_format" in body:
            refusal = "('body', 'response_format', 'type') literal_error"
            return httpx.Response(500, json={"error": {"message": refusal}})
        text = '{"word": "blue", "ok": true}' if "JSON" in str(body["messages"]) else "ready"
        if body.get("stream"):
            events = [delta(piece) for piece in text.split(" ")] + [delta(finish=self.finish)]
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=sse(*events)
            )
        return httpx.Response(
            200,
            json={"choices": [{"message": {"content": text}, "finish_reason": "stop"}]},
        )


async def test_a_llama_cpp_server_passes_with_warnings_and_the_mode_it_supports(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = LlamaLike()
    code = await run_doctor(settings(), transport=httpx.MockTransport(server))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "[warn] endpoint" in out and "lists file paths" in out  # a warning, not a failure
    assert "[ok  ] completion: 'ready'" in out
    assert "[ok  ] streaming" in out and "first token after" in out
    assert "[ok  ] parallel: 2 concurrent streams both finished" in out
    assert "[ok  ] structured: JSON in the prompt: the endpoint refused response_format" in out
    assert "'word': 'blue'" in out


async def test_doctor_fails_when_every_call_fails(capsys: pytest.CaptureFixture[str]) -> None:
    # The model list answers, the completions do not: a run would get no answer at all.
    server = LlamaLike(chat=httpx.Response(500, json={"error": {"message": "model crashed"}}))
    code = await run_doctor(settings(), transport=httpx.MockTransport(server))
    out = capsys.readouterr().out
    assert code == 1
    assert "[FAIL] completion" in out and "model crashed" in out


async def test_an_interrupting_server_fails_the_streaming_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = LlamaLike(finish=None)  # [DONE] with no finish_reason
    code = await run_doctor(settings(), transport=httpx.MockTransport(server))
    out = capsys.readouterr().out
    assert code == 1
    assert "[FAIL] streaming" in out and "--interrupt_requests False" in out


async def test_a_missing_openai_key_fails_before_any_call(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = LlamaLike()
    code = await run_doctor(
        Settings(backend="openai", model="gpt-4o-mini"), transport=httpx.MockTransport(server)
    )
    out = capsys.readouterr().out
    assert code == 1 and server.paths == []
    assert "[FAIL] backend" in out and "OPENAI_API_KEY" in out


async def test_a_rejected_key_fails_the_endpoint_check(capsys: pytest.CaptureFixture[str]) -> None:
    server = LlamaLike()

    def handler(request: httpx.Request) -> httpx.Response:
        server.paths.append(request.url.path)
        return httpx.Response(401, json={"error": {"message": "bad key"}})

    code = await run_doctor(settings(api_key="sk-wrong"), transport=httpx.MockTransport(handler))
    out = capsys.readouterr().out
    assert code == 1 and "[FAIL] endpoint" in out and "set APR_API_KEY" in out
    assert server.paths == ["/v1/models"]  # no completion is tried with a rejected key


async def test_a_server_that_interrupts_concurrent_streams_is_a_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # llama-cpp-python's default: while two calls overlap, one stream ends without a reason.
    server = LlamaLike()
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        body = json.loads(request.content) if request.content else {}
        if "from 50 to" in str(body.get("messages")):
            calls += 1
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=sse(delta("fif"))
            )
        return server(request)

    code = await run_doctor(settings(), transport=httpx.MockTransport(handler))
    out = capsys.readouterr().out
    assert code == 0 and calls == 1
    assert "[warn] parallel: 1 of 2 concurrent streams interrupted" in out
    assert "--interrupt_requests False" in out
