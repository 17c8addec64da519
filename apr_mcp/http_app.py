"""Streamable HTTP for the MCP server: safe by default.

- **Binding.** Loopback by default. A non-loopback address (``--host 0.0.0.0``) without
  ``APR_HTTP_TOKEN`` refuses to start unless ``--allow-insecure`` is given (:func:`check_binding`);
  an empty ``APR_HTTP_TOKEN`` is a configuration error, never "authentication off".
- **Host header** (DNS rebinding), checked on every bind, every interface included: loopback names,
  the bound address and ``APR_HTTP_ALLOWED_HOSTS`` are accepted; anything else gets ``421``.
- **Origin.** Browsers attach an ``Origin`` header to every cross-site request, so a page the user
  visits could otherwise drive a server on ``127.0.0.1``. Requests without an Origin (CLI clients,
  the Inspector, other servers) are allowed; localhost Origins and the ones the user lists in
  ``APR_ALLOWED_ORIGINS`` are allowed; anything else gets ``403``.
- **Token.** When ``APR_HTTP_TOKEN`` is set, every request must carry
  ``Authorization: Bearer <token>`` or it gets ``401``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import Settings
from .errors import ConfigError

__all__ = [
    "LOOPBACK_ORIGINS",
    "HTTPGuard",
    "allowed_hosts",
    "build_http_app",
    "check_binding",
    "is_loopback",
    "transport_security",
]

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
_ANY_INTERFACE = ("0.0.0.0", "::", "")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def check_binding(settings: Settings, host: str, *, allow_insecure: bool = False) -> list[str]:
    """Refuse (:class:`ConfigError`) to serve a non-loopback address without a bearer token,
    unless ``allow_insecure``; returns the warnings to print when it goes ahead."""
    if is_loopback(host):
        return []
    notes: list[str] = []
    if host.strip() in _ANY_INTERFACE and not settings.http_allowed_hosts:
        notes.append(
            "note: bound to every interface, but only loopback Host headers are accepted; list "
            "the names clients use in APR_HTTP_ALLOWED_HOSTS (e.g. myhost.lan:8765, or * for any)"
        )
    if settings.http_token is not None:
        return notes
    if not allow_insecure:
        raise ConfigError(
            f"refusing to serve on {host!r} without a bearer token: anyone who can reach this "
            "address could run tools that spend your model budget. Set APR_HTTP_TOKEN (e.g. "
            "APR_HTTP_TOKEN=$(openssl rand -hex 32)), bind 127.0.0.1, or pass --allow-insecure "
            "if something in front (a proxy, a firewall) already guards it."
        )
    notes.append(
        f"warning: serving on {host!r} without a bearer token (--allow-insecure); anyone who can "
        "reach it can call the tools"
    )
    return notes


def _host_key(value: str) -> tuple[str, str | None]:
    """``host[:port]`` → (lower-case host with brackets kept for IPv6, port or None)."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end != -1:
            rest = value[end + 1 :]
            return value[: end + 1], rest[1:] if rest.startswith(":") else None
    if value.count(":") == 1:
        name, port = value.split(":")
        return name, port
    if value.count(":") > 1:  # a bare IPv6 address
        return f"[{value}]", None
    return value, None


def allowed_hosts(settings: Settings, host: str) -> list[str] | None:
    """Host header values accepted: loopback names, the bound address (unless it is every
    interface) and ``APR_HTTP_ALLOWED_HOSTS``. ``None`` when the user listed ``*`` (no check)."""
    extra = list(settings.http_allowed_hosts)
    if "*" in extra:
        return None
    hosts = ["127.0.0.1", "localhost", "[::1]"]
    if host.strip() not in _ANY_INTERFACE:
        hosts.append(_host_key(host)[0])
    return hosts + [h for h in extra if h]


def _host_allowed(header: str, allowed: list[str]) -> bool:
    name, port = _host_key(header)
    if port is not None and not port.isdigit():
        return False
    for entry in allowed:
        want_name, want_port = _host_key(entry)
        if want_name != name:
            continue
        # "name" and "name:*" accept any port; "name:8765" only that one.
        if want_port in (None, "*") or want_port == port:
            return True
    return False


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
    """ASGI middleware: refuse foreign Host headers (421), foreign Origins (403) and, if a token
    is set, unauthenticated calls (401)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_origins: list[str],
        token: str | None,
        allowed_hosts: list[str] | None = None,
    ) -> None:
        self.app = app
        self.allowed_origins = list(allowed_origins)
        self.allowed_hosts = None if allowed_hosts is None else list(allowed_hosts)
        if token is not None and not token.strip():
            raise ConfigError("the HTTP bearer token is empty: set a real token or none at all")
        self._token = token.encode() if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self.allowed_hosts is not None and not _host_allowed(host, self.allowed_hosts):
            logger.warning("refused a request for Host %r (not in APR_HTTP_ALLOWED_HOSTS)", host)
            await _reply(
                send,
                421,
                f"Host {host[:100]!r} is not allowed; add it to APR_HTTP_ALLOWED_HOSTS.",
            )
            return
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
    """The SDK's Host/Origin (DNS-rebinding) checks with the same lists as :class:`HTTPGuard`
    (a second line of defence on ``/mcp``)."""
    names = allowed_hosts(settings, host)
    hosts: list[str] = []
    for entry in names or []:
        name, port = _host_key(entry)
        hosts += [name, f"{name}:*"] if port in (None, "*") else [f"{name}:{port}"]
    origins = (
        [f"{o}:*" for o in LOOPBACK_ORIGINS]
        + list(LOOPBACK_ORIGINS)
        + list(settings.allowed_origins)
    )
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=names is not None,
        allowed_hosts=hosts,
        allowed_origins=origins,
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
    token = settings.http_token.get_secret_value() if settings.http_token is not None else None
    return HTTPGuard(
        app,
        allowed_origins=list(settings.allowed_origins),
        token=token,
        allowed_hosts=allowed_hosts(settings, host),
    )
