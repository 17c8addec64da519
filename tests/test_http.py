"""Streamable HTTP on loopback: the chain works, foreign Origins get 403, the bearer token is
enforced."""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import uvicorn
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CreateMessageRequestParams, CreateMessageResult, TextContent
from pydantic import SecretStr

from apr_mcp.config import Settings
from apr_mcp.engine import Engine
from apr_mcp.http_app import build_http_app
from apr_mcp.llm.base import Message, Model, ModelRequest
from apr_mcp.llm.simulated import SimulatedModel
from apr_mcp.server import create_server
from apr_mcp.trace import RunStore

QUESTION = "Compare Python, Go and Rust for writing a command-line tool"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"},
    },
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@asynccontextmanager
async def serving(tmp: Path, **overrides: Any) -> AsyncIterator[str]:
    """Run the real HTTP app under uvicorn on a free loopback port; yields the /mcp URL."""
    base: dict[str, Any] = {"backend": "simulated", "cache": False, "cache_dir": tmp / "cache"}
    settings = Settings(**{**base, **overrides})
    model = SimulatedModel(ttft_s=0.005, tokens_per_s=50_000)
    store = RunStore(tmp / "runs")

    def engine(host: Model | None) -> Engine:
        m = host if host is not None else model  # APR_BACKEND=sampling: the client's model
        return Engine(settings=settings, planner=m, solver=m, merger=m, run_store=store)

    server = create_server(settings, engine_factory=engine, run_store=store)
    app = build_http_app(server, settings, host="127.0.0.1")
    # Bind and listen before uvicorn starts, so clients can connect at once: no polling, no sleeps.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: uv.serve(sockets=[sock]))
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            uv.should_exit = True
    sock.close()


@asynccontextmanager
async def _client(
    url: str, headers: dict[str, str] | None = None, mode: str = "auto", **kw: Any
) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers=headers or {}, timeout=httpx2.Timeout(30.0)) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode, **kw) as client,
    ):
        yield client


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_chain_over_streamable_http(tmp_path: Path, mode: str) -> None:
    with anyio.fail_after(20):
        async with serving(tmp_path) as url, _client(url, mode=mode) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == {"decompose", "parallel_solve", "merge", "solve"}
            plan = (await client.call_tool("decompose", {"question": QUESTION})).structured_content
            assert plan is not None and len(plan["subtasks"]) >= 2
            run = (
                await client.call_tool(
                    "parallel_solve", {"question": QUESTION, "subtasks": plan["subtasks"]}
                )
            ).structured_content
            assert run is not None and all(r["status"] == "done" for r in run["results"])
            merged = await client.call_tool(
                "merge", {"question": QUESTION, "results": run["results"]}
            )
            assert not merged.is_error and merged.structured_content["answer"]


async def test_origin_validation(tmp_path: Path) -> None:
    with anyio.fail_after(20):
        async with (
            serving(tmp_path, allowed_origins=["https://app.example.com"]) as url,
            httpx.AsyncClient() as http,
        ):

            async def post(origin: str | None) -> httpx.Response:
                headers = dict(MCP_HEADERS)
                if origin:
                    headers["origin"] = origin
                return await http.post(url, json=INITIALIZE, headers=headers)

            assert (await post("https://evil.example")).status_code == 403
            refused = await post("http://localhost.evil.example:8080")
            assert refused.status_code == 403 and "APR_ALLOWED_ORIGINS" in refused.text
            assert (await post(None)).status_code == 200  # CLI clients send no Origin
            assert (await post("http://localhost:5173")).status_code == 200
            assert (await post("http://127.0.0.1")).status_code == 200
            assert (await post("https://app.example.com")).status_code == 200  # APR_ALLOWED_ORIGINS
            # DNS rebinding: a foreign Host header is refused by the SDK's transport security.
            rebound = await http.post(
                url, json=INITIALIZE, headers={**MCP_HEADERS, "host": "evil.example"}
            )
            assert rebound.status_code == 421


async def test_bearer_token_is_required_when_configured(tmp_path: Path) -> None:
    token = "s3cret-token-for-tests"
    with anyio.fail_after(20):
        async with serving(tmp_path, http_token=SecretStr(token)) as url:
            async with httpx.AsyncClient() as http:
                missing = await http.post(url, json=INITIALIZE, headers=MCP_HEADERS)
                assert missing.status_code == 401 and missing.headers[
                    "www-authenticate"
                ].startswith("Bearer")
                wrong = await http.post(
                    url, json=INITIALIZE, headers={**MCP_HEADERS, "authorization": "Bearer nope"}
                )
                assert wrong.status_code == 401
            async with _client(url, {"authorization": f"Bearer {token}"}) as client:
                result = await client.call_tool("decompose", {"question": QUESTION})
                assert not result.is_error and result.structured_content is not None


async def test_serve_http_subcommand_in_a_subprocess(tmp_path: Path) -> None:
    """``apr-mcp serve --http --port 0`` announces its real URL on stderr and serves the tools."""
    env = {
        **os.environ,
        "APR_SIM_TTFT_S": "0.005",
        "APR_SIM_TOKENS_PER_S": "50000",
        "APR_CACHE_DIR": str(tmp_path / "cache"),
        "APR_RUNS_DIR": str(tmp_path / "runs"),
    }
    cmd = [
        sys.executable,
        "-m",
        "apr_mcp",
        "serve",
        "--http",
        "--port",
        "0",
        "--backend",
        "simulated",
    ]
    with anyio.fail_after(30):
        process = await anyio.open_process(cmd, env=env, cwd=tmp_path)
        try:
            assert process.stderr is not None
            seen = b""
            while b"/mcp" not in seen:
                chunk = await process.stderr.receive()
                seen += chunk
            url = re.search(rb"http://127\.0\.0\.1:\d+/mcp", seen)
            assert url is not None, seen
            async with _client(url.group().decode()) as client:
                result = await client.call_tool("decompose", {"question": QUESTION})
                assert not result.is_error and len(result.structured_content["subtasks"]) >= 2
        finally:
            process.terminate()
            await process.wait()
            await process.aclose()


async def test_sampling_over_http_on_a_2025_connection(tmp_path: Path) -> None:
    """The host's model answers the engine's requests over the HTTP back-channel (SSE)."""
    host = SimulatedModel(ttft_s=0.001, tokens_per_s=50_000)
    asked: list[str] = []

    async def sample(context: Any, params: CreateMessageRequestParams) -> CreateMessageResult:
        meta = params.metadata or {}
        asked.append(str(meta.get("purpose")))
        messages = [Message(role="system", content=params.system_prompt or "")]
        messages += [Message(role=m.role, content=m.content.text) for m in params.messages]  # type: ignore[union-attr]
        request = ModelRequest(
            messages=messages,
            max_tokens=params.max_tokens,
            purpose=str(meta.get("purpose")),
            schema_name=str(meta.get("schema_name")),
        )
        reply = await host.complete(request)
        return CreateMessageResult(
            role="assistant", content=TextContent(type="text", text=reply.text), model="host"
        )

    with anyio.fail_after(20):
        async with (
            serving(tmp_path, backend="sampling") as url,
            _client(url, mode="legacy", sampling_callback=sample) as client,
        ):
            result = await client.call_tool("solve", {"question": QUESTION})
    assert not result.is_error, result.content
    assert result.structured_content is not None and result.structured_content["answer"]
    assert "lead" in asked and asked.count("solver") >= 2 and host.calls == len(asked)
