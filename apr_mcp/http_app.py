"""Streamable HTTP for the MCP server: loopback by default, Origin checks, optional bearer token.

Browsers attach an ``Origin`` header to every cross-site request, so a page the user visits could
otherwise drive a server on ``127.0.0.1`` (DNS rebinding, CSRF). Requests without an Origin (CLI
clients, the Inspector, other servers) are allowed; localhost Origins and the ones the user lists in
``APR_ALLOWED_ORIGINS`` are allowed; anything else gets ``403``. When ``APR_HTTP_TOKEN`` is set,
every request must carry ``Authorization: Bearer <token>`` or it gets ``401``.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import Settings

__all__ = ["LOOPBACK_ORIGINS", "HTTPGuard", "build_http_app", "transport_security"]

logger = logging.getLogger(__name__)

#: Origins every local server accepts: pages served from this machine.
LOOPBACK_ORIGINS = (
    "http://localhost",
    "http://127.0.0.1",
    "http://[::1]",
    "https://localhost",
    "https://127.0.0.1",
    "https://[::1]",
)
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def _origin_allowed(origin: str, extra: list[str]) -> bool:
    origin = origin.rstrip("/")
    for allowed in (*LOOPBACK_ORIGINS, *extra):
        allowed = allowed.rstrip("/")
        if origin == allowed:
            return True
        # "http://localhost" also allows "http://localhost:5173"; a listed origin with an
        # explicit port only allows that port.
        if allowed in LOOPBACK_ORIGINS and origin.startswith(allowed + ":"):
            rest = origin[len(allowed) + 1 :]
            if rest.isdigit():
                return True
    return False


class HTTPGuard:
    """ASGI middleware: refuse foreign Origins (403) and, if a token is set, unauthenticated calls (401)."""

    def __init__(self, app: ASGIApp, *, allowed_origins: list[str], token: str | None) -> None:
        self.app = app
        self.allowed_origins = list(allowed_origins)
        self._token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin")
        if origin and not _origin_allowed(origin, self.allowed_origins):
            logger.warning("refused a request from Origin %r (not in APR_ALLOWED_ORIGINS)", origin)
            await _reply(
                send, 403, f"Origin {origin} is not allowed; add it to APR_ALLOWED_ORIGINS."
            )
            return
        if self._token is not None:
            auth = headers.get("authorization", "")
            scheme, _, value = auth.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                value.strip().encode(), self._token
            ):
                await _reply(
                    send,
                    401,
                    "Missing or wrong bearer token (Authorization: Bearer <APR_HTTP_TOKEN>).",
                    extra=[(b"www-authenticate", b'Bearer realm="apr-mcp"')],
                )
                return
        await self.app(scope, receive, send)


async def _reply(
    send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def transport_security(settings: Settings, host: str) -> TransportSecuritySettings:
    """The SDK's Host/Origin (DNS-rebinding) checks, widened to the bound host and user Origins."""
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
    if host not in _LOOPBACK_HOSTS and host not in ("0.0.0.0", "::"):
        hosts += [f"{host}:*", host]
    origins = (
        [f"{o}:*" for o in LOOPBACK_ORIGINS]
        + list(LOOPBACK_ORIGINS)
        + list(settings.allowed_origins)
    )
    # Bound to every interface the Host header can be anything; the Origin check still applies.
    enable = host not in ("0.0.0.0", "::")
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=enable, allowed_hosts=hosts, allowed_origins=origins
    )


def build_http_app(
    server: MCPServer[Any], settings: Settings, *, host: str = "127.0.0.1"
) -> ASGIApp:
    """The streamable HTTP ASGI app (endpoint ``/mcp``) wrapped in :class:`HTTPGuard`."""
    app = server.streamable_http_app(
        streamable_http_path="/mcp",
        transport_security=transport_security(settings, host),
        host=host,
    )
    token = settings.http_token.get_secret_value() if settings.http_token else None
    return HTTPGuard(app, allowed_origins=list(settings.allowed_origins), token=token)
