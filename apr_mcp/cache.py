"""Disk cache of model answers, shared by threads, runs and processes; in-flight de-duplication.

Storage is :class:`diskcache.Cache` (SQLite in WAL mode plus files), which is safe across threads
and processes, so two ``apr-mcp`` processes pointed at the same ``APR_CACHE_DIR`` share answers.

Four promises (issue 11), each with its mechanism:

* **Only usable answers.** ``get_or_compute(valid=...)`` stores a value only if ``valid`` says so,
  and checks it again on every read: an entry that no longer validates is deleted and recomputed.
* **Never on the event loop.** Every SQLite call runs in a worker thread (at most
  :data:`IO_THREADS` at once), and no call waits more than ``lock_timeout`` seconds for another
  process's lock (diskcache's own 60 s retry while opening is bounded too).
* **A broken cache degrades.** A cache that cannot be opened or written (corrupt, read-only,
  locked too long, disk full) turns itself off with one warning; work goes on without it,
  :attr:`ResultCache.status` says ``off (<reason>)`` and :func:`cache_health` (``apr-mcp doctor``)
  says how to fix it. It tries again after :data:`RETRY_AFTER_S`.
* **One computation per key, across processes.** Inside a process, overlapping identical
  requests await the first one's result. Across processes, the first takes a *lease* (an atomic
  ``add`` with an expiry, renewed while it computes); the others poll for its answer with a
  bounded backoff. A holder that dies stops renewing, so its lease expires and a waiter takes
  over. A computation that fails, is cancelled or is not ``valid`` stores nothing and frees the
  lease: a waiter then computes itself.

Memory: SQLite keeps a page cache per connection and diskcache maps up to 64 MB of the file; both
grow with the number of distinct entries touched, which made RSS grow linearly with every new
answer. Both are bounded here (:data:`SQLITE_CACHE_PAGES`, :data:`SQLITE_MMAP_BYTES`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import logging
import math
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Self, TypeVar

import anyio
import anyio.to_thread
import diskcache  # type: ignore[import-untyped]

from .errors import CacheError

__all__ = ["CacheHealth", "ResultCache", "cache_health", "make_key"]

log = logging.getLogger(__name__)

V = TypeVar("V")

#: Bump when the meaning of cached values changes; old entries then simply miss.
KEY_VERSION = 1
DEFAULT_SIZE_LIMIT = 1 << 30  # 1 GiB
#: Longest wait for another process's SQLite lock before the cache turns itself off.
DEFAULT_LOCK_TIMEOUT_S = 1.0
#: A computing process's lease lasts this long unless renewed (it renews every third of it).
DEFAULT_LEASE_S = 10.0
#: After going off, the cache is tried again this long later (a lock may be released, a disk freed).
RETRY_AFTER_S = 60.0
#: Worker threads that may run cache I/O at once (each holds its own SQLite connection).
IO_THREADS = 2
#: SQLite page cache per connection, in pages (4 KiB): 1 MiB instead of diskcache's 32 MiB.
SQLITE_CACHE_PAGES = 256
#: No memory map: mapped pages of a growing file count as resident memory (diskcache maps 64 MiB).
SQLITE_MMAP_BYTES = 0
#: Bounds of the poll for another process's answer, seconds.
_POLL_FIRST_S, _POLL_MAX_S = 0.02, 0.5

_MISSING = object()


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


# ----- what went wrong, and how to fix it -----


@dataclass(frozen=True)
class CacheHealth:
    """``ok``; ``status`` as shown in results (``on`` / ``off (reason)``); ``fix`` for the user."""

    ok: bool
    status: str
    fix: str = ""


class _Off(Exception):
    """The cache is off (or just went off): run without it."""


def _diagnose(exc: BaseException, directory: Path, lock_timeout: float) -> tuple[str, str]:
    """``(short reason, how to fix it)`` for a failure of the store as a whole."""
    text = str(exc).lower()
    code = getattr(exc, "errno", None)
    where = f"APR_CACHE_DIR ({directory})"
    if isinstance(exc, diskcache.Timeout) or "locked" in text or "busy" in text:
        return (
            f"locked for more than {lock_timeout:g} s",
            (
                f"another process holds the lock on {directory / 'cache.db'}; wait for it to "
                "finish, raise APR_CACHE_LOCK_TIMEOUT, or give each process its own APR_CACHE_DIR"
            ),
        )
    if "readonly" in text or code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "read-only", (
            f"make {where} writable, point APR_CACHE_DIR elsewhere, or set APR_CACHE=off"
        )
    if "full" in text or code in (errno.ENOSPC, errno.EDQUOT):
        return "disk full", f"free disk space or run `apr-mcp cache clear` ({where})"
    if isinstance(exc, sqlite3.DatabaseError) and any(
        word in text for word in ("not a database", "malformed", "corrupt", "disk i/o")
    ):
        return "corrupt", (
            f"delete the directory {directory} (it holds only cached answers; it is rebuilt)"
        )
    if isinstance(exc, OSError):
        return (
            f"unusable directory: {exc.strerror or exc}",
            f"set APR_CACHE_DIR to a writable directory or APR_CACHE=off ({where})",
        )
    return f"{type(exc).__name__}: {exc}"[:200], f"check {where}, or set APR_CACHE=off"


def _is_store_failure(exc: BaseException) -> bool:
    """True when the store as a whole failed (vs. one unreadable entry)."""
    return isinstance(exc, (sqlite3.Error, OSError, diskcache.Timeout))


class _BoundedCache(diskcache.Cache):  # type: ignore[misc]
    """diskcache retries a locked statement for 60 s while opening, whatever its ``timeout``
    (``Cache._sql_retry``, used by ``__init__`` and ``reset``); this bounds that retry too."""

    _retry_limit_s = DEFAULT_LOCK_TIMEOUT_S

    def __init__(self, directory: str, *, lock_timeout: float, **settings: Any) -> None:
        self._retry_limit_s = lock_timeout
        super().__init__(directory, timeout=lock_timeout, **settings)

    @property
    def _sql_retry(self) -> Callable[..., Any]:
        sql = self._sql
        limit = self._retry_limit_s

        def execute(statement: str, *args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            while True:
                try:
                    return sql(statement, *args, **kwargs)
                except sqlite3.OperationalError as exc:
                    if str(exc) != "database is locked" or time.monotonic() - start > limit:
                        raise
                    time.sleep(0.005)

        return execute


@dataclass
class _Flight(Generic[V]):
    """One computation in progress in this process; waiters block on ``done``."""

    done: anyio.Event = field(default_factory=anyio.Event)
    ok: bool = False
    value: V | None = None


def _always(_: object) -> bool:
    return True


def _identity(value: Any) -> Any:
    return value


# ----- store operations (run in worker threads) -----


def _get_raw(store: Any, key: str) -> Any:
    try:
        return store.get(key, default=_MISSING)
    except Exception as exc:
        if _is_store_failure(exc):
            raise
        # One unreadable entry (e.g. a damaged pickle): drop it, the caller recomputes.
        log.warning("cache entry %s… unreadable (%s); dropped", key[:12], exc)
        store.delete(key)
        return _MISSING


def _claim(store: Any, key: str, lease_key: str, token: str, lease_s: float) -> tuple[str, Any]:
    """``("hit", raw)``, ``("lease", None)`` (we compute) or ``("busy", None)`` (another does)."""
    raw = _get_raw(store, key)
    if raw is not _MISSING:
        return "hit", raw
    if not store.add(lease_key, token, expire=lease_s):
        return "busy", None
    # The holder may have stored its answer and released the lease between our get and add.
    raw = _get_raw(store, key)
    if raw is not _MISSING:
        _release(store, lease_key, token)
        return "hit", raw
    return "lease", None


def _finish(store: Any, key: str, lease_key: str, token: str, stored: tuple[Any, ...]) -> None:
    """Store the value (if any: ``stored`` is ``()`` or ``(value,)``) and free the lease, in one
    transaction: a waiter sees the answer as the lease goes."""
    with store.transact():
        if stored:
            store.set(key, stored[0])
        if store.get(lease_key) == token:
            store.delete(lease_key)


def _release(store: Any, lease_key: str, token: str) -> None:
    with store.transact():
        if store.get(lease_key) == token:
            store.delete(lease_key)


def _renew(store: Any, lease_key: str, token: str, lease_s: float) -> None:
    with store.transact():
        if store.get(lease_key) == token:
            store.set(lease_key, token, expire=lease_s)


def _drop(store: Any, key: str) -> None:
    store.delete(key)


def _put(store: Any, key: str, value: Any) -> None:
    store.set(key, value)


class ResultCache:
    """A disk cache with in-flight de-duplication. A disabled or broken cache computes every time.

    ``hits`` and ``misses`` count this process's lookups (a de-duplicated wait is a hit). Opening
    is lazy and happens in a worker thread, so constructing one never touches the disk.
    """

    #: ``ResultCache.key(**parts)`` is :func:`make_key`.
    key = staticmethod(make_key)

    def __init__(
        self,
        directory: str | Path,
        *,
        enabled: bool = True,
        size_limit: int = DEFAULT_SIZE_LIMIT,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        self.directory = Path(directory).expanduser()
        self.enabled = enabled
        self.size_limit = size_limit
        self.lock_timeout = lock_timeout
        self.lease_s = lease_s
        self.hits = 0
        self.misses = 0
        self._flights: dict[str, _Flight[Any]] = {}
        self._store: Any = None
        self._open_lock = threading.Lock()  # held while opening (may wait for SQLite)
        self._state_lock = threading.Lock()  # held only to swap _store/_off
        self._limiter: anyio.CapacityLimiter | None = None
        # Why the cache is off and how to fix it; until when (monotonic) it stays off.
        self._off: tuple[str, str] | None = None if enabled else ("disabled", "")
        self._off_until = math.inf
        self._token_prefix = f"{os.getpid()}-"

    # ----- health -----

    @property
    def status(self) -> str:
        """``on``, or ``off (<reason>)``: what results report as their cache status."""
        off = self._current_off()
        return "on" if off is None else f"off ({off[0]})"

    def health(self) -> CacheHealth:
        """The status plus what to do about it (empty when nothing needs doing)."""
        off = self._current_off()
        if off is None:
            return CacheHealth(True, "on")
        return CacheHealth(off[0] == "disabled", f"off ({off[0]})", off[1])

    def _current_off(self) -> tuple[str, str] | None:
        off = self._off
        if off is not None and time.monotonic() >= self._off_until:
            return None  # retry time: the next operation tries the store again
        return off

    def _turn_off(self, exc: BaseException) -> None:
        reason, fix = _diagnose(exc, self.directory, self.lock_timeout)
        with self._state_lock:  # never held during I/O: the event loop may take it
            already = self._off is not None and self._off[0] == reason
            self._off = (reason, fix)
            self._off_until = time.monotonic() + RETRY_AFTER_S
            store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(Exception):  # closing a broken store may fail too
                store.close()  # this thread's connection; the others go with the object
        if not already:
            log.warning(
                "cache off (%s): running without it; fix: %s [%s: %s]",
                reason,
                fix,
                type(exc).__name__,
                exc,
            )

    # ----- the store, opened lazily in a worker thread -----

    def _open(self) -> Any:
        store = self._store
        if store is not None:
            return store
        with self._open_lock:
            if self._store is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                store = _BoundedCache(
                    str(self.directory),
                    lock_timeout=self.lock_timeout,
                    size_limit=self.size_limit,
                    # least-recently-stored: reads never write, so hits stay cheap and lock-free.
                    eviction_policy="least-recently-stored",
                    sqlite_cache_size=SQLITE_CACHE_PAGES,
                    sqlite_mmap_size=SQLITE_MMAP_BYTES,
                )
                with self._state_lock:
                    self._store = store
                    if self.enabled:
                        self._off = None
            return self._store

    def _run(self, op: Callable[..., V], *args: Any) -> V:
        """Run ``op(store, *args)`` in the calling (worker) thread; a store failure turns the
        cache off and raises :class:`_Off`."""
        try:
            return op(self._open(), *args)
        except Exception as exc:
            if not _is_store_failure(exc):
                raise
            self._turn_off(exc)
            raise _Off from exc

    @property
    def _io_bound_s(self) -> float:
        # One operation may wait for the lock more than once (opening runs many statements);
        # past this the thread is abandoned (it ends by itself) and the cache turns off.
        return 2 * self.lock_timeout + 0.1

    async def _io(self, op: Callable[..., V], *args: Any) -> V:
        """``op(store, *args)`` in a worker thread, waiting at most :attr:`_io_bound_s`."""
        if self._current_off() is not None:
            raise _Off
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(IO_THREADS)
        # Shielded: a caller cancelled mid-operation waits for it (about a millisecond), so a
        # lease taken in the thread is always seen, and freed, by the caller.
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._io_bound_s):
            return await anyio.to_thread.run_sync(
                functools.partial(self._run, op, *args),
                limiter=self._limiter,
                # diskcache retries some locked statements (pragmas) for 60 s whatever its
                # timeout: such a thread is left to finish on its own.
                abandon_on_cancel=True,
            )
        self._turn_off(diskcache.Timeout(f"no answer from SQLite in {self._io_bound_s:g} s"))
        raise _Off

    # ----- the public API -----

    async def get_or_compute(
        self,
        key: str,
        compute: Callable[[], Awaitable[V]],
        *,
        valid: Callable[[V], bool] = _always,
        encode: Callable[[V], Any] = _identity,
        decode: Callable[[Any], V] = _identity,
    ) -> tuple[V, bool]:
        """The cached value for ``key``, or ``compute()``'s result (stored if ``valid``).

        Returns ``(value, hit)``. ``valid`` decides what is worth keeping and is checked again
        on reading: an entry that no longer passes (or no longer decodes) is dropped and
        recomputed. ``encode``/``decode`` convert to and from what is stored (e.g. a plain dict
        instead of a pickled object). Concurrent callers with the same key — in this process or
        another one sharing the directory — share one computation.
        """
        if not self.enabled:
            return await compute(), False
        while (flight := self._flights.get(key)) is not None:
            await flight.done.wait()
            if flight.ok:
                self.hits += 1
                return flight.value, True  # type: ignore[return-value]
            # The first caller failed, was cancelled or got an unusable value: our turn.
        flight = _Flight()
        self._flights[key] = flight
        try:
            value, hit = await self._lookup_or_compute(key, compute, valid, encode, decode)
            if hit or valid(value):
                flight.ok, flight.value = True, value
            return value, hit
        finally:
            del self._flights[key]
            flight.done.set()

    async def _lookup_or_compute(
        self,
        key: str,
        compute: Callable[[], Awaitable[V]],
        valid: Callable[[V], bool],
        encode: Callable[[V], Any],
        decode: Callable[[Any], V],
    ) -> tuple[V, bool]:
        lease_key = f"lease:{key}"
        token = self._token_prefix + secrets.token_hex(6)
        delay = _POLL_FIRST_S
        try:
            while True:
                state, raw = await self._io(_claim, key, lease_key, token, self.lease_s)
                if state == "hit":
                    value = self._usable(key, raw, valid, decode)
                    if value is not _MISSING:
                        self.hits += 1
                        return value, True
                    await self._io(_drop, key)
                    continue
                if state == "lease":
                    break
                # Another process computes this key: poll for its answer, backing off.
                await anyio.sleep(delay)
                delay = min(delay * 2, _POLL_MAX_S)
        except _Off:
            self.misses += 1
            return await compute(), False

        self.misses += 1
        stored: tuple[Any, ...] = ()
        try:
            value = await self._compute_holding(lease_key, token, compute)
            if valid(value):
                stored = (encode(value),)
            return value, False
        finally:
            # Store and free the lease in one step (waiters see the answer as the lease goes),
            # also after a failure or a cancellation.
            with anyio.CancelScope(shield=True), contextlib.suppress(_Off):
                await self._io(_finish, key, lease_key, token, stored)

    def _usable(
        self, key: str, raw: Any, valid: Callable[[V], bool], decode: Callable[[Any], V]
    ) -> Any:
        try:
            value = decode(raw)
        except Exception as exc:  # noqa: BLE001 - stale format: recompute and overwrite
            log.warning("cache entry %s… unreadable (%s); dropped", key[:12], exc)
            return _MISSING
        if not valid(value):
            log.info("cache entry %s… no longer valid; dropped", key[:12])
            return _MISSING
        return value

    async def _compute_holding(
        self, lease_key: str, token: str, compute: Callable[[], Awaitable[V]]
    ) -> V:
        """``compute()`` while renewing our lease, so that it outlives slow calls (but not us)."""
        result: list[V] = []
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._keep_lease, lease_key, token)
                try:
                    result.append(await compute())
                finally:
                    tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The renewer never raises: the group wraps compute()'s own error; pass it on as is.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        return result[0]

    async def _keep_lease(self, lease_key: str, token: str) -> None:
        while True:
            await anyio.sleep(self.lease_s / 3)
            try:
                await self._io(_renew, lease_key, token, self.lease_s)
            except _Off:
                return

    # ----- maintenance (synchronous: the CLI, `doctor` and the stats resource) -----

    def check(self) -> CacheHealth:
        """Open the store and write a probe entry now (in the calling thread); the health."""
        if self._off is not None and self._off[0] == "disabled":
            return self.health()
        self._off_until = 0.0  # try now, even during a retry pause
        try:
            self._run(_put, "probe:health", time.time())
            self._run(_drop, "probe:health")
        except _Off:
            pass
        return self.health()

    def stats(self) -> dict[str, Any]:
        """Entries and bytes on disk (all processes), plus this process's hits and misses."""
        entries = size = 0
        if self.status == "on":
            try:
                entries, size = self._run(lambda s: (len(s), int(s.volume())))
            except _Off:
                pass
        return {
            "directory": str(self.directory),
            "enabled": self.enabled,
            "status": self.status,
            "entries": entries,
            "size_bytes": size,
            "size_limit_bytes": self.size_limit,
            "hits": self.hits,
            "misses": self.misses,
        }

    async def astats(self) -> dict[str, Any]:
        """:meth:`stats` from async code: in a worker thread, never longer than the I/O bound."""
        with anyio.move_on_after(self._io_bound_s):
            return await anyio.to_thread.run_sync(self.stats, abandon_on_cancel=True)
        self._turn_off(diskcache.Timeout(f"no answer from SQLite in {self._io_bound_s:g} s"))
        return self.stats()  # off now: reports without touching the disk

    def clear(self) -> int:
        """Remove every entry; returns how many were removed. :class:`CacheError` if unusable."""
        try:
            return int(self._open().clear())
        except Exception as exc:
            reason, fix = _diagnose(exc, self.directory, self.lock_timeout)
            raise CacheError(
                f"cannot clear the cache in {self.directory} ({reason}): {fix}"
            ) from exc

    def close(self) -> None:
        """Close the SQLite connections. Safe to call more than once."""
        with self._state_lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cache_health(
    directory: str | Path, *, enabled: bool = True, lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S
) -> CacheHealth:
    """Open the cache in ``directory`` and write a probe: its health and, if broken, the fix.

    Waits at most about ``2 × lock_timeout``: the probe runs in a daemon thread, left behind
    if SQLite does not answer (see :meth:`ResultCache._io`)."""
    cache = ResultCache(directory, enabled=enabled, lock_timeout=lock_timeout)
    result: list[CacheHealth] = []
    probe = threading.Thread(target=lambda: result.append(cache.check()), daemon=True)
    probe.start()
    probe.join(cache._io_bound_s)
    if not result:
        cache._turn_off(diskcache.Timeout("the health probe got no answer"))
        return cache.health()
    cache.close()
    return result[0]
