"""Self-regulating concurrency: an AIMD limiter and the model wrapper that uses it.

Providers push back with 429/529 (often with ``Retry-After``) or slow down before they fail. A
fixed concurrency either wastes capacity or hammers the endpoint, so the limit adapts the way TCP
congestion control does:

- **multiplicative decrease** on rate limits or overload (429, 529, 503): ``limit *= 0.5``, at most
  once per "epoch" — calls that were already in flight when the limit dropped do not halve it
  again, so one burst of N concurrent 429s is one decrease, not N;
- **what the provider sustains**: an overload signal also caps the limit at the number of calls
  still running at that moment (they are what the provider is serving). During a burst the later
  429s see fewer calls still running, so the limit settles on the provider's capacity in one round
  instead of one halving per ``Retry-After``;
- **Retry-After** starts a cooldown: no new call starts until it passes, for every caller;
- **recovery**: back up to the sustained level one step per success (like TCP's slow start up to
  its threshold); the step beyond it needs ``probe_windows`` clean windows (doubling after each
  failed probe, and a failed probe returns to the sustained level instead of halving), so the
  limit does not keep knocking on the same ceiling; after a clean window above it, ``+increase``
  per full window (``limit`` successes). Gradual by design, capped at ``max_limit``;
- **latency**: an EWMA of time-to-first-token (or latency) is compared with its lowest value seen;
  when it climbs above ``latency_factor`` × that baseline the limit goes down by one per window
  and stops growing.

Composition used by the runtime (outermost first): ``CachedModel → RetryingModel → LimitedModel →
backend``. Each retry attempt re-acquires a slot, and retry sleeps happen outside any slot.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal, NamedTuple

import anyio
import anyio.lowlevel

from ..errors import ConfigError, RateLimitError, ServerError
from .base import Model, ModelRequest, ModelResponse, TokenCallback, WrapperModel

__all__ = ["AdaptiveLimiter", "LimitChange", "LimitedModel", "Outcome", "Slot", "find_limiter"]

log = logging.getLogger(__name__)

#: How a call ended, as far as the limiter cares.
Outcome = Literal["success", "overload", "neutral"]
#: Called as ``on_change(old, new, reason)`` whenever the limit moves.
ChangeCallback = Callable[[int, int, str], None]

#: HTTP statuses that mean "too much load" rather than "broken".
OVERLOAD_STATUSES = frozenset({429, 503, 529})


class LimitChange(NamedTuple):
    """One entry of :attr:`AdaptiveLimiter.history`: clock time, the new limit, and why."""

    time: float
    limit: int
    reason: str


@dataclass
class Slot:
    """A permission to run one call; give it back with :meth:`AdaptiveLimiter.release`."""

    epoch: int
    acquired_at: float
    released: bool = False


class AdaptiveLimiter:
    """AIMD concurrency limit shared by every caller of one backend.

    ``clock`` and ``sleep`` are injectable so tests can drive cooldowns without waiting.
    """

    def __init__(
        self,
        initial: int,
        *,
        min_limit: int = 1,
        max_limit: int,
        increase: int = 1,
        decrease_factor: float = 0.5,
        latency_factor: float = 2.0,
        latency_alpha: float = 0.3,
        latency_min_samples: int = 3,
        latency_floor_s: float = 0.05,
        probe_windows: int = 3,
        max_cooldown_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        on_change: ChangeCallback | None = None,
    ) -> None:
        if min_limit < 1 or max_limit < min_limit:
            raise ConfigError(
                f"limiter bounds must satisfy 1 <= min_limit <= max_limit, got {min_limit}..{max_limit}"
            )
        if not 0.0 < decrease_factor < 1.0:
            raise ConfigError(f"decrease_factor must be in (0, 1), got {decrease_factor}")
        if latency_factor <= 1.0:
            raise ConfigError(f"latency_factor must be > 1, got {latency_factor}")
        if increase < 1:
            raise ConfigError(f"increase must be >= 1, got {increase}")
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.increase = increase
        self.decrease_factor = decrease_factor
        self.latency_factor = latency_factor
        self.latency_alpha = latency_alpha
        self.latency_min_samples = latency_min_samples
        self.latency_floor_s = latency_floor_s
        self.max_cooldown_s = max_cooldown_s
        self.probe_windows = max(1, probe_windows)
        self.clock = clock
        self._sleep = sleep
        self._limit = min(max_limit, max(min_limit, initial))
        self._in_flight = 0
        self._peak_in_flight = 0
        self._epoch = 0  # bumped on every decrease
        self._window_successes = 0  # successes since the last change of the limit
        self._cooldown_until = -math.inf
        #: Concurrency the provider sustained at the last overload (None: no overload to respect).
        self._safe: int | None = None
        self._failed_probes = 0
        self._ewma: float | None = None
        self._baseline: float | None = None
        self._samples = 0
        self._queue: list[object] = []  # waiting acquirers, FIFO
        self._changed = anyio.Event()
        self._listeners: list[Callable[[], ChangeCallback | None]] = []
        if on_change is not None:
            self.subscribe(on_change)
        self._history: list[LimitChange] = [LimitChange(clock(), self._limit, "initial")]

    # ----- observation -----

    @property
    def limit(self) -> int:
        """Calls allowed to run at once right now."""
        return self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def peak_in_flight(self) -> int:
        """Most calls ever in flight at once (for tests and benchmarks)."""
        return self._peak_in_flight

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def history(self) -> list[LimitChange]:
        """Every limit change as ``(time, limit, reason)``, starting with the initial limit."""
        return list(self._history)

    @property
    def latency_ewma(self) -> float | None:
        return self._ewma

    @property
    def latency_baseline(self) -> float | None:
        return self._baseline

    def cooldown_remaining(self) -> float:
        """Seconds until new calls may start again after a ``Retry-After`` (0 if none)."""
        return max(0.0, self._cooldown_until - self.clock())

    def subscribe(self, callback: ChangeCallback, *, weak: bool = False) -> Callable[[], None]:
        """Call ``callback(old, new, reason)`` on each limit change; returns an unsubscribe function.

        A run subscribes for its lifetime and turns changes into ``backoff``/``recover`` decisions
        (new < old is a backoff, new > old a recovery). With ``weak=True`` the limiter holds only a
        weak reference (a bound method's object may be a per-run controller): the subscription
        ends by itself when the subscriber is garbage-collected.
        """
        ref: Callable[[], ChangeCallback | None]
        if not weak:
            ref = lambda: callback
        elif inspect.ismethod(callback):
            ref = weakref.WeakMethod(callback)
        else:
            ref = weakref.ref(callback)
        self._listeners.append(ref)

        def unsubscribe() -> None:
            if ref in self._listeners:
                self._listeners.remove(ref)

        return unsubscribe

    # ----- acquiring and releasing -----

    async def acquire(self) -> Slot:
        """Wait for a free slot (FIFO) and for any cooldown to pass; then take the slot.

        Cancellation-safe: a waiter cancelled at any point holds no slot and its place in the
        queue is handed on.
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        me = object()
        self._queue.append(me)
        try:
            while True:
                wait = self._cooldown_until - self.clock()
                if wait > 0:
                    await self._sleep(wait)
                    continue
                changed = self._changed
                free = self._limit - self._in_flight
                if free > 0 and self._queue.index(me) < free:
                    self._queue.remove(me)
                    self._in_flight += 1
                    self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
                    return Slot(epoch=self._epoch, acquired_at=self.clock())
                await changed.wait()
        finally:
            if me in self._queue:  # cancelled (or failed) while waiting: never took a slot
                self._queue.remove(me)
                self._notify()

    def release(
        self,
        slot: Slot,
        outcome: Outcome = "neutral",
        *,
        latency_s: float | None = None,
        retry_after: float | None = None,
        detail: str = "",
    ) -> None:
        """Give a slot back and report how the call went. Synchronous, so it is safe in ``finally``
        blocks of cancelled tasks; releasing the same slot twice is a no-op."""
        if slot.released:
            return
        slot.released = True
        self._in_flight -= 1
        if outcome == "success":
            self._on_success(latency_s)
        elif outcome == "overload":
            self._on_overload(slot, retry_after, detail or "overloaded")
        self._notify()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """``async with limiter.slot() as s:`` — released as neutral unless released inside."""
        s = await self.acquire()
        try:
            yield s
        finally:
            self.release(s)

    # ----- the control law -----

    def _on_success(self, latency_s: float | None) -> None:
        self._window_successes += 1
        if latency_s is not None and latency_s >= 0:
            self._samples += 1
            a = self.latency_alpha
            self._ewma = latency_s if self._ewma is None else a * latency_s + (1 - a) * self._ewma
            if self._samples >= self.latency_min_samples:
                self._baseline = (
                    self._ewma if self._baseline is None else min(self._baseline, self._ewma)
                )
        if self._latency_high():
            assert self._ewma is not None and self._baseline is not None
            if self._window_successes >= self._limit and self._limit > self.min_limit:
                self._set_limit(
                    self._limit - 1,
                    f"latency {self._ewma:.2f}s > {self.latency_factor:g}x baseline {self._baseline:.2f}s",
                    decrease=True,
                )
            return  # no growth while latency is high
        if self._limit >= self.max_limit:
            return
        safe = self._safe
        if safe is not None and self._limit < safe:
            # Back to a level the provider was sustaining when it refused more: one step per success.
            needed, why = 1, f"recovering towards {safe}, the concurrency the provider sustained"
        elif safe is not None and self._limit == safe:
            # One above is where it refused: probe rarely, and more rarely after each failed probe.
            needed = self._limit * self.probe_windows * 2 ** min(self._failed_probes, 4)
            why = f"{needed} clean calls at the last overload point; probing one higher"
        else:
            needed, why = self._limit, f"{self._limit} successes in a row"
        if self._window_successes >= needed:
            if safe is not None and self._limit > safe:
                self._safe = None  # a full clean window above the old level: capacity grew
                self._failed_probes = 0
            self._set_limit(
                min(self.max_limit, self._limit + (1 if safe is not None else self.increase)), why
            )

    def _latency_high(self) -> bool:
        if self._ewma is None or self._baseline is None or self._samples < self.latency_min_samples:
            return False
        return self._ewma > max(self.latency_factor * self._baseline, self.latency_floor_s)

    def _on_overload(self, slot: Slot, retry_after: float | None, detail: str) -> None:
        pause = ""
        if retry_after is not None and retry_after > 0:
            until = self.clock() + min(retry_after, self.max_cooldown_s)
            self._cooldown_until = max(self._cooldown_until, until)
            pause = f"; pausing new calls {min(retry_after, self.max_cooldown_s):g}s (Retry-After)"
        # The calls still running when the provider refused one more are what it sustains now.
        # (During a burst, later 429s see fewer still running: the estimate tightens.)
        sustained = max(self.min_limit, self._in_flight)
        fresh = slot.epoch == self._epoch  # one multiplicative decrease per burst, not per 429
        new = self._limit
        if fresh:
            if self._safe is not None and self._limit > self._safe:
                new = self._safe  # a failed probe: back to the level that worked, no halving
                self._failed_probes += 1
            else:
                new = math.floor(self._limit * self.decrease_factor)
        self._safe = sustained if fresh or self._safe is None else min(self._safe, sustained)
        new = max(self.min_limit, min(new, sustained))
        if new < self._limit:
            running = f"; {self._in_flight} call(s) still running" if not fresh else ""
            self._set_limit(new, detail + pause + running, decrease=True)
        elif fresh:
            self._epoch += 1
            self._window_successes = 0

    def _set_limit(self, new: int, reason: str, *, decrease: bool = False) -> None:
        old = self._limit
        self._limit = new
        self._window_successes = 0
        if decrease:
            self._epoch += 1
        self._history.append(LimitChange(self.clock(), new, reason))
        log.info("concurrency limit %d -> %d: %s", old, new, reason)
        for ref in list(self._listeners):
            listener = ref()
            if listener is None:  # a weak subscriber is gone
                self._listeners.remove(ref)
                continue
            try:
                listener(old, new, reason)
            except Exception:  # a broken listener must not break every model call
                log.exception("limiter listener failed")
        if new > old:
            self._notify()

    def _notify(self) -> None:
        # Wake every waiter; each re-checks its FIFO position, so a lost wake-up is impossible.
        self._changed.set()
        self._changed = anyio.Event()


class LimitedModel(WrapperModel):
    """Runs each call inside a limiter slot and reports the outcome to the limiter.

    The latency sample is the time to first token when the backend reports it (queueing at the
    provider shows there first, and it does not grow with answer length), else the call's latency.
    """

    def __init__(self, inner: Model, limiter: AdaptiveLimiter) -> None:
        super().__init__(inner)
        self.limiter = limiter

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        limiter = self.limiter
        slot = await limiter.acquire()
        start = limiter.clock()
        try:
            response = await self._inner.complete(request, on_token=on_token)
        except RateLimitError as exc:
            status = exc.status_code or 429
            limiter.release(
                slot,
                "overload",
                retry_after=exc.retry_after,
                detail=f"rate limited (HTTP {status})",
            )
            raise
        except ServerError as exc:
            overload = exc.status_code in OVERLOAD_STATUSES
            limiter.release(
                slot,
                "overload" if overload else "neutral",
                detail=f"overloaded (HTTP {exc.status_code})",
            )
            raise
        except BaseException:  # other failures and cancellation say nothing about load
            limiter.release(slot)
            raise
        if response.ttft_s is not None:
            latency = response.ttft_s
        else:
            latency = response.latency_s or (limiter.clock() - start)
        limiter.release(slot, "success", latency_s=latency)
        return response


def find_limiter(model: Model) -> AdaptiveLimiter | None:
    """The limiter of the first :class:`LimitedModel` in a chain of wrappers, if any."""
    m: Model | None = model
    while m is not None:
        if isinstance(m, LimitedModel):
            return m.limiter
        m = m.inner
    return None
