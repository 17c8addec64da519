"""Test-wide guards: no test reaches the network, and none touches the user's real settings,
cache or run history."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check(address: object) -> None:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            if host != "localhost":
                raise RuntimeError(f"test tried to reach the network: {address!r}") from None
            return
        if not ip.is_loopback:
            raise RuntimeError(f"test tried to reach the network: {address!r}")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check(address)
    return _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check(address)
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True, scope="session")
def _no_network() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        # APR_REQUIRE_* are CI switches (e.g. APR_REQUIRE_INSPECTOR), not product settings.
        if (name.startswith("APR_") and not name.startswith("APR_REQUIRE_")) or name in {
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "OPENAI_BASE_URL",
        }:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("APR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("APR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("APR_CONFIG", str(tmp_path / "no-config.toml"))


@pytest.fixture(autouse=True)
def _forget_schema_refusals() -> None:
    # Which endpoints refused native JSON schema is remembered per process; not across tests.
    from apr_mcp.llm.openai_compat import forget_schema_refusals

    forget_schema_refusals()
