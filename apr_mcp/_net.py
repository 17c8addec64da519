"""Listening sockets for apr-mcp's HTTP servers (``serve --http`` and ``simulate``).

Both bind the socket themselves before uvicorn starts, then serve uvicorn on it: the URL they
print (with the real port, even for ``--port 0``) accepts connections at once — they queue in the
listen backlog until uvicorn is up — and a port in use is a clear :class:`ConfigError` instead of
a uvicorn log line and ``SystemExit``. Private: no MCP here, so the simulator need not import it.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Literal

import uvicorn

from .errors import ConfigError

if TYPE_CHECKING:
    from starlette.types import ASGIApp

__all__ = ["listen", "serve_on", "shown_host", "uvicorn_server"]


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``port`` 0: any free port) and listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc} (choose another --port)") from exc
    sock.listen(128)  # connections queue from now on, so the URL is usable as soon as it is known
    return sock


def shown_host(host: str) -> str:
    """``host`` as it appears in a URL (IPv6 literals in brackets)."""
    return f"[{host}]" if ":" in host else host


def uvicorn_server(
    app: ASGIApp,
    *,
    log_level: str = "warning",
    lifespan: Literal["on", "off"] = "off",
    graceful_shutdown_s: int | None = None,
) -> uvicorn.Server:
    """A uvicorn server for ``app`` that leaves logging as the caller set it up (stderr) and
    writes no access log."""
    config = uvicorn.Config(
        app,
        log_level=log_level,
        log_config=None,
        access_log=False,
        lifespan=lifespan,
        timeout_graceful_shutdown=graceful_shutdown_s,
    )
    return uvicorn.Server(config)


async def serve_on(server: uvicorn.Server, sock: socket.socket) -> None:
    """Run ``server`` on the listening ``sock`` until it exits; the socket is closed after."""
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()
