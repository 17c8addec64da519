"""HTTP binding is safe by default: no open non-loopback server without a token, Host checked on
every bind (every interface included), and an empty token is an error, not "auth off"."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from apr_mcp.cli import main as cli_main
from apr_mcp.config import Settings, load_settings
from apr_mcp.errors import ConfigError
from apr_mcp.http_app import (
    HTTPGuard,
    allowed_hosts,
    build_http_app,
    check_binding,
    is_loopback,
    transport_security,
)
from apr_mcp.server import create_server
from apr_mcp.trace import RunStore

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


def _settings(tmp: Path, **kw: Any) -> Settings:
    return Settings(backend="simulated", cache=False, cache_dir=tmp / "cache", **kw)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("myhost.lan", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_non_loopback_without_token_is_refused(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    with pytest.raises(ConfigError, match="APR_HTTP_TOKEN.*--allow-insecure"):
        check_binding(s, "0.0.0.0")
    with pytest.raises(ConfigError):
        check_binding(s, "192.168.1.20")
    assert check_binding(s, "127.0.0.1") == []
    notes = check_binding(s, "0.0.0.0", allow_insecure=True)
    assert any("without a bearer token" in n for n in notes)
    assert any("APR_HTTP_ALLOWED_HOSTS" in n for n in notes)  # only loopback Host headers pass
    with_token = _settings(tmp_path, http_token=SecretStr("t0ken-for-tests"))
    assert not any("bearer" in n for n in check_binding(with_token, "0.0.0.0"))
    assert check_binding(with_token, "192.168.1.20") == []


def main(argv: list[str]) -> int:
    """``apr-mcp serve ARGS``'s exit code."""
    try:
        cli_main(["serve", *argv])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_serve_refuses_a_public_bind_without_token_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["--http", "--host", "0.0.0.0", "--port", "0", "--backend", "simulated"])
    err = capsys.readouterr().err
    assert code == 2
    assert "refusing to serve on '0.0.0.0' without a bearer token" in err
    assert "--allow-insecure" in err and "APR_HTTP_TOKEN" in err


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_token_is_a_config_error(
    value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APR_HTTP_TOKEN", value)
    with pytest.raises(ConfigError, match=r"APR_HTTP_TOKEN\): an empty token is not allowed"):
        load_settings()
    assert main(["--http", "--port", "0", "--backend", "simulated"]) == 2
    assert "(APR_HTTP_TOKEN): an empty token is not allowed" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        HTTPGuard(lambda *a: None, allowed_origins=[], token=value)  # type: ignore[arg-type]


def test_allowed_hosts_setting_is_parsed_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APR_HTTP_ALLOWED_HOSTS", "myhost.lan:8765, proxy.local ,")
    s = load_settings(backend="simulated")
    assert s.http_allowed_hosts == ["myhost.lan:8765", "proxy.local"]
    assert allowed_hosts(s, "0.0.0.0") == [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "myhost.lan:8765",
        "proxy.local",
    ]
    assert "10.0.0.5" in (allowed_hosts(s, "10.0.0.5") or [])  # the bound address itself
    sdk = transport_security(s, "0.0.0.0")
    assert sdk.enable_dns_rebinding_protection  # on for every bind, 0.0.0.0 included
    assert "myhost.lan:8765" in sdk.allowed_hosts and "proxy.local:*" in sdk.allowed_hosts


@asynccontextmanager
async def serving(settings: Settings, tmp: Path, *, as_if_bound_to: str) -> AsyncIterator[str]:
    """The real app under uvicorn on a loopback socket, built as if bound to ``as_if_bound_to``
    (the Host policy depends on the configured bind, not on the socket the test can open)."""
    server = create_server(settings, run_store=RunStore(tmp / "runs"))
    app = build_http_app(server, settings, host=as_if_bound_to)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: uv.serve(sockets=[sock]))
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            uv.should_exit = True
    sock.close()


@pytest.mark.parametrize(
    ("bound", "allowed", "host", "status"),
    [
        ("0.0.0.0", [], "evil.example", 421),  # every interface: Host is still checked
        ("0.0.0.0", [], "192.168.1.20:8765", 421),
        ("0.0.0.0", [], "127.0.0.1:{port}", 200),
        ("0.0.0.0", [], "localhost:{port}", 200),
        ("0.0.0.0", ["myhost.lan:8765"], "myhost.lan:8765", 200),
        ("0.0.0.0", ["myhost.lan:8765"], "myhost.lan:9999", 421),
        ("0.0.0.0", ["proxy.local"], "proxy.local:1234", 200),  # a bare name: any port
        ("0.0.0.0", ["*"], "anything.example", 200),  # explicit opt-out
        ("10.1.2.3", [], "10.1.2.3:8765", 200),  # the bound address itself
        ("127.0.0.1", [], "evil.example", 421),
    ],
)
async def test_host_header_is_checked_on_every_bind(
    tmp_path: Path, bound: str, allowed: list[str], host: str, status: int
) -> None:
    settings = _settings(
        tmp_path, http_allowed_hosts=allowed, http_token=SecretStr("t0ken-for-tests")
    )
    with anyio.fail_after(20):
        async with serving(settings, tmp_path, as_if_bound_to=bound) as url:
            port = url.split(":")[2].split("/")[0]
            headers = {
                **MCP_HEADERS,
                "host": host.format(port=port),
                "authorization": "Bearer t0ken-for-tests",
            }
            async with httpx.AsyncClient() as http:
                reply = await http.post(url, json=INITIALIZE, headers=headers)
    assert reply.status_code == status, reply.text
    if status == 421:
        assert "APR_HTTP_ALLOWED_HOSTS" in reply.text
