"""Disk cache of model answers, shared by threads, runs and processes, with in-flight de-duplication.

Storage is :class:`diskcache.Cache` (SQLite in WAL mode plus files), which is safe across threads
and processes, so two ``apr-mcp`` processes pointed at the same ``APR_CACHE_DIR`` share answers.
Inside one process, identical requests that overlap in time cost one computation: the first
caller computes, the others await its result. If that first computation fails or is cancelled,
nothing is stored and a waiter computes itself.

diskcache calls are synchronous. They are called directly, not through a worker thread: a read
of a small entry takes tens of microseconds and a write well under a millisecond (SQLite WAL
with ``synchronous=NORMAL``), which is cheaper than the thread hand-off itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Self, TypeVar, cast

import anyio

from .errors import CacheError

__all__ = ["ResultCache", "make_key"]

log = logging.getLogger(__name__)

V = TypeVar("V")

#: Bump when the meaning of cached values changes; old entries then simply miss.
KEY_VERSION = 1
DEFAULT_SIZE_LIMIT = 1 << 30  # 1 GiB


def make_key(**parts: Any) -> str:
    """A stable key: sha256 of the canonical JSON of ``parts`` (sorted keys, no spaces)."""
    canonical = json.dumps(
        {"_v": KEY_VERSION, **parts},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class _Flight(Generic[V]):
    """One computation in progress; waiters block on ``done``."""

    done: anyio.Event = field(default_factory=anyio.Event)
    ok: bool = False
    value: V | None = None


def _always(_: object) -> bool:
    return True


def _identity(value: Any) -> Any:
    return value


class ResultCache:
    """A disk cache with in-flight de-duplication. A disabled cache computes every time.

    ``hits`` and ``misses`` count this process's lookups (a de-duplicated wait is a hit).
    """

    #: ``ResultCache.key(**parts)`` is :func:`make_key`.
    key = staticmethod(make_key)

    def __init__(
        self, directory: str | Path, *, enabled: bool = True, size_limit: int = DEFAULT_SIZE_LIMIT
    ) -> None:
        self.directory = Path(directory).expanduser()
        self.enabled = enabled
        self.size_limit = size_limit
        self.hits = 0
        self.misses = 0
        self._flights: dict[str, _Flight[Any]] = {}
        self._store: Any = None
        if enabled:
            self._store = self._open()

    def _open(self) -> Any:
        import diskcache  # type: ignore[import-untyped]

        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # least-recently-stored: reads never write, so hits stay cheap and lock-free.
            return diskcache.Cache(
                str(self.directory),
                size_limit=self.size_limit,
                eviction_policy="least-recently-stored",
            )
        except Exception as exc:
            raise CacheError(
                f"cannot open the cache directory {self.directory}: {exc}. "
                "Set APR_CACHE_DIR to a writable directory or APR_CACHE=off."
            ) from exc

    def _require_store(self) -> Any:
        if self._store is None:
            self._store = self._open()
        return self._store

    # ----- raw access (failures degrade to a miss: a broken cache must not break a run) -----

    def _read(self, key: str) -> tuple[bool, Any]:
        try:
            sentinel = object()
            value = self._require_store().get(key, default=sentinel)
        except CacheError:
            raise
        except Exception as exc:  # noqa: BLE001 - corrupt entry, unpickling error, sqlite busy
            log.warning("cache read failed for %s…: %s", key[:12], exc)
            return False, None
        return (value is not sentinel), value

    def _write(self, key: str, value: Any) -> None:
        try:
            self._require_store().set(key, value)
        except Exception as exc:  # noqa: BLE001
            log.warning("cache write failed for %s…: %s", key[:12], exc)

    # ----- the public API -----

    async def get_or_compute(
        self,
        key: str,
        compute: Callable[[], Awaitable[V]],
        *,
        store_if: Callable[[V], bool] = _always,
        encode: Callable[[V], Any] = _identity,
        decode: Callable[[Any], V] = _identity,
    ) -> tuple[V, bool]:
        """The cached value for ``key``, or ``compute()``'s result (stored if ``store_if`` says so).

        Returns ``(value, hit)``. ``encode``/``decode`` convert to and from what is stored (e.g. a
        plain dict instead of a pickled object). Concurrent callers with the same key share one
        computation; only a result that passes ``store_if`` is shared or stored.
        """
        if not self.enabled:
            return await compute(), False
        while True:
            found, raw = self._read(key)
            if found:
                try:
                    value = decode(raw)
                except Exception as exc:  # noqa: BLE001 - stale format: recompute and overwrite
                    log.warning("cache entry %s… unreadable (%s); recomputing", key[:12], exc)
                else:
                    self.hits += 1
                    return value, True
            flight = self._flights.get(key)
            if flight is None:
                break
            await flight.done.wait()
            if flight.ok:
                self.hits += 1
                return cast(V, flight.value), True
            # The first caller failed or was cancelled: look again, then compute ourselves.

        self.misses += 1
        flight = _Flight()
        self._flights[key] = flight
        try:
            value = await compute()
            if store_if(value):
                self._write(key, encode(value))
                flight.ok, flight.value = True, value
            return value, False
        finally:
            del self._flights[key]
            flight.done.set()

    def stats(self) -> dict[str, Any]:
        """Entries and bytes on disk (all processes), plus this process's hits and misses."""
        entries = size = 0
        if self._store is not None or self.enabled:
            store = self._require_store()
            entries, size = len(store), int(store.volume())
        return {
            "directory": str(self.directory),
            "enabled": self.enabled,
            "entries": entries,
            "size_bytes": size,
            "size_limit_bytes": self.size_limit,
            "hits": self.hits,
            "misses": self.misses,
        }

    def clear(self) -> int:
        """Remove every entry; returns how many were removed."""
        return int(self._require_store().clear())

    def close(self) -> None:
        """Close the SQLite connections. Safe to call more than once."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
