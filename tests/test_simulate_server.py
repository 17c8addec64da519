"""The OpenAI-compatible loopback server: wire format, faults as HTTP, disconnects, subprocess."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from apr_mcp.cli import build_parser
from apr_mcp.llm.base import Message, ModelRequest
from apr_mcp.llm.simulated import SimRule, SimScript, SimulatedModel
from apr_mcp.schemas import Plan
from apr_mcp.simulate_server import (
    ServerStats,
    serve_simulated,
    simulate_subprocess,
)

QUESTION = {"role": "user", "content": "What is 6 * 7?"}


def body(*messages: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"model": "sim-test", "messages": list(messages or [QUESTION]), **extra}


def sse_events(lines: list[str]) -> list[Any]:
    out: list[Any] = []
    for line in lines:
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


@pytest.fixture
async def server() -> AsyncIterator[tuple[httpx.AsyncClient, SimulatedModel, ServerStats]]:
    script = SimScript(
        [
            SimRule("ratelimit", fault="429", retry_after=0.25),
            SimRule("servererror", fault="500"),
            SimRule("hang", fault="timeout"),
            SimRule("cutme", fault="cut"),
            SimRule("junk", fault="junk"),
            SimRule("empty", fault="empty"),
            SimRule("truncate", fault="length"),
            SimRule("slowly", ttft_s=0.0, tokens_per_s=20),
        ]
    )
    model = SimulatedModel(ttft_s=0.002, tokens_per_s=1e5, script=script)
    stats = ServerStats()
    async with serve_simulated(model, stats=stats) as base_url:
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            yield client, model, stats


async def test_non_streamed_completion_has_openai_shape(server: Any) -> None:
    client, model, stats = server
    response = await client.post("/chat/completions", json=body())
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion" and data["model"] == "sim-test"
    assert data["simulated"] is True and data["system_fingerprint"] == "apr-mcp-simulated"
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    # A plain client's free-text request is answered as a thread: a placeholder and its trailer.
    content = choice["message"]["content"]
    assert content.startswith("[sim]") and content.endswith("Settles: no") and "42" not in content
    usage = data["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert stats.completed == 1 and model.calls == 1


async def test_streamed_completion_chunks_and_usage(server: Any) -> None:
    client, _, _ = server
    whole = (await client.post("/chat/completions", json=body())).json()
    for include_usage in (True, False):
        request = body(stream=True, stream_options={"include_usage": include_usage})
        async with client.stream("POST", "/chat/completions", json=request) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events([line async for line in response.aiter_lines()])
        assert events[-1] == "[DONE]"
        chunks = events[:-1]
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        assert text == whole["choices"][0]["message"]["content"]
        finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
        assert [f["choices"][0]["finish_reason"] for f in finals] == ["stop"]
        usage_chunks = [c for c in chunks if c.get("usage")]
        if include_usage:
            assert len(usage_chunks) == 1 and usage_chunks[0]["choices"] == []
            assert usage_chunks[0]["usage"] == whole["usage"]
        else:
            assert usage_chunks == []


async def test_json_schema_shape_selects_the_reply_and_purpose(server: Any) -> None:
    client, model, _ = server
    request = body(
        {"role": "system", "content": "You are the planner."},
        {
            "role": "user",
            "content": "Question:\nCompare Python, Go and Rust\n\n"
            "Heuristic signals noticed: comparison; suggested width 3",
        },
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "Plan", "schema": Plan.model_json_schema(), "strict": False},
        },
    )
    response = await client.post("/chat/completions", json=request)
    plan = Plan.model_validate_json(response.json()["choices"][0]["message"]["content"])
    assert plan.should_split and len(plan.subtasks) == 3
    assert model.calls_by_purpose["planner"] == 1


async def test_every_reply_says_it_is_simulated_whatever_model_was_asked_for(server: Any) -> None:
    client, _, _ = server
    whole = (await client.post("/chat/completions", json={**body(), "model": "gpt-4o"})).json()
    assert whole["model"] == "sim-gpt-4o" and whole["simulated"] is True
    request = {**body(stream=True, stream_options={"include_usage": True}), "model": "gpt-4o"}
    async with client.stream("POST", "/chat/completions", json=request) as response:
        chunks = sse_events([line async for line in response.aiter_lines()])[:-1]
    assert all(c["model"] == "sim-gpt-4o" and c["simulated"] is True for c in chunks)
    models = (await client.get("/models")).json()
    assert models["data"][0]["id"].startswith("sim-") and models["data"][0]["simulated"] is True


async def test_rate_limit_and_server_error_are_real_http_errors(server: Any) -> None:
    client, _, stats = server
    limited = await client.post(
        "/chat/completions", json=body({"role": "user", "content": "ratelimit"})
    )
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "0.25" and limited.headers["retry-after-ms"] == "250"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    failed = await client.post(
        "/chat/completions", json=body({"role": "user", "content": "servererror"}, stream=True)
    )
    assert failed.status_code == 500 and failed.json()["error"]["type"] == "server_error"
    assert stats.faults == 2


async def test_content_faults(server: Any) -> None:
    client, _, _ = server

    async def ask(text: str, **extra: Any) -> dict[str, Any]:
        response = await client.post(
            "/chat/completions", json=body({"role": "user", "content": text}, **extra)
        )
        return response.json()["choices"][0]  # type: ignore[no-any-return]

    junk = await ask(
        "junk", response_format={"type": "json_schema", "json_schema": {"name": "Plan"}}
    )
    with pytest.raises(ValueError):
        json.loads(junk["message"]["content"])
    assert (await ask("empty"))["message"]["content"] == ""
    truncated = await ask("truncate: explain the printing press")
    assert truncated["finish_reason"] == "length" and truncated["message"]["content"]


async def test_cut_stream_ends_without_finish_reason_or_done(server: Any) -> None:
    client, _, _ = server
    request = body({"role": "user", "content": "cutme: tell a long story about ships"}, stream=True)
    async with client.stream("POST", "/chat/completions", json=request) as response:
        events = sse_events([line async for line in response.aiter_lines()])
    assert events and "[DONE]" not in events
    assert all(e["choices"][0]["finish_reason"] is None for e in events)
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events)


async def test_cut_non_streamed_body_is_broken_json(server: Any) -> None:
    client, _, _ = server
    response = await client.post(
        "/chat/completions", json=body({"role": "user", "content": "cutme"})
    )
    with pytest.raises(json.JSONDecodeError):
        response.json()


async def test_timeout_hangs_until_the_client_gives_up(server: Any) -> None:
    client, model, stats = server
    with pytest.raises(httpx.ReadTimeout):
        await client.post(
            "/chat/completions", json=body({"role": "user", "content": "hang"}), timeout=0.2
        )
    with anyio.fail_after(5):
        await stats.wait_until(lambda s: s.streams_closed_early == 1)
    assert stats.active == 0 and model.active == 0


async def test_client_closing_a_stream_stops_the_generation(server: Any) -> None:
    client, model, stats = server
    # 20 tokens/s: the full answer would take several seconds.
    request = body({"role": "user", "content": "slowly: explain the printing press"}, stream=True)
    with anyio.fail_after(5):
        async with client.stream("POST", "/chat/completions", json=request) as response:
            async for line in response.aiter_lines():
                if '"content"' in line:
                    break  # leave after the first content chunk: httpx closes the connection
        await stats.wait_until(lambda s: s.streams_closed_early == 1)
    assert stats.completed == 0 and stats.active == 0 and model.active == 0
    status = (await client.get("/stats")).json()
    assert status["streams_closed_early"] == 1 and status["requests"] == 1


async def test_models_and_bad_requests(server: Any) -> None:
    client, _, stats = server
    models = (await client.get("/models")).json()
    assert models["data"][0]["id"] == "sim-1"
    payloads: list[dict[str, Any]] = [
        {"content": b"{nope"},
        {"json": {"messages": []}},
        {"json": {"messages": [{"role": "robot", "content": "x"}]}},
    ]
    for payload in payloads:
        response = await client.post("/chat/completions", **payload)
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert stats.bad_requests == 3


def test_cli_parser_defaults_to_loopback_8799() -> None:
    args = build_parser().parse_args(["simulate", "--script", "s.json", "--ttft", "0.01"])
    assert (args.port, args.host, args.ttft, args.tps, args.script) == (
        8799,
        "127.0.0.1",
        0.01,
        None,
        "s.json",
    )
    assert callable(args.func)


async def test_subprocess_server_serves_a_script(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": [{"pattern": "ping", "reply": "pong", "times": 1}]}))
    ping = body({"role": "user", "content": "ping"})
    args = ("--ttft", "0.001", "--script", str(script), "--model", "sim-sub")
    with anyio.fail_after(30):
        async with simulate_subprocess(*args) as url, httpx.AsyncClient(base_url=url) as client:
            first = (await client.post("/chat/completions", json=ping)).json()
            second = (await client.post("/chat/completions", json=ping)).json()
            stats = (await client.get("/stats")).json()
            models = (await client.get("/models")).json()
    assert first["choices"][0]["message"]["content"] == "pong"
    assert second["choices"][0]["message"]["content"] != "pong"
    assert stats["requests"] == 2 and stats["completed"] == 2
    assert models["data"][0]["id"] == "sim-sub"


async def test_subprocess_server_reads_the_script_from_the_environment_and_scales_reasoning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "env-script.json"
    script.write_text(json.dumps([{"pattern": "ping", "reply": "pong from env"}]))
    monkeypatch.setenv("APR_SIM_SCRIPT", str(script))
    question = {"role": "user", "content": "Explain how a hash map handles collisions."}
    expected = SimulatedModel(reasoning_scale=3).prepare(
        ModelRequest(messages=[Message(role="user", content=question["content"])])
    )
    args = ("--ttft", "0.001", "--tps", "100000", "--reasoning-scale", "3")
    with anyio.fail_after(30):
        async with simulate_subprocess(*args) as url, httpx.AsyncClient(base_url=url) as client:
            ping = (
                await client.post(
                    "/chat/completions", json=body({"role": "user", "content": "ping"})
                )
            ).json()
            long = (await client.post("/chat/completions", json=body(question))).json()
    assert ping["choices"][0]["message"]["content"] == "pong from env"
    assert long["choices"][0]["message"]["content"] == expected.text
    assert long["usage"]["completion_tokens"] == expected.output_tokens > 3 * 100
