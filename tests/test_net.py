"""The listening-socket helper both HTTP servers use (``serve --http`` and ``simulate``)."""

from __future__ import annotations

import subprocess
import sys

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from apr_mcp._net import listen, serve_on, shown_host, uvicorn_server
from apr_mcp.errors import ConfigError


def test_listen_picks_a_free_port_and_a_taken_port_is_a_config_error() -> None:
    sock = listen("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        assert port > 0
        with pytest.raises(ConfigError, match=rf"cannot listen on 127\.0\.0\.1:{port}: .*--port"):
            listen("127.0.0.1", port)
    finally:
        sock.close()


def test_ipv6_hosts_are_bracketed_in_urls() -> None:
    assert shown_host("::1") == "[::1]"
    assert shown_host("127.0.0.1") == "127.0.0.1"


async def test_serve_on_serves_the_bound_socket_and_closes_it_after() -> None:
    async def hello(_: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn_server(Starlette(routes=[Route("/", hello)]), graceful_shutdown_s=1)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_on, server, sock)
            # The socket listens before uvicorn runs: this request queues until it is up.
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{port}/")
            server.should_exit = True
    assert response.text == "hi"
    assert sock.fileno() == -1  # closed once the server exited


def test_the_simulator_server_does_not_load_mcp() -> None:
    # simulate_server shares the helper with server.py without importing the MCP server.
    code = (
        "import sys, apr_mcp.simulate_server; print('apr_mcp.server' in sys.modules, 'mcp' in "
        "sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
