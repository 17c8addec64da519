"""Self-regulating concurrency: an adaptive limiter that tells load from policy, and the model
wrapper that uses it.

Providers push back with 429/529/503 (often with ``Retry-After``) or slow down before they fail.
Two kinds of pushback look alike on the wire and need opposite answers:

- **load**: the provider serves so many calls at once and refuses the rest. Fewer calls in flight
  is the cure, and the calls still running when one is refused are what it sustains.
- **policy**: a fixed rate or a quota (say every third request refused, whatever the load).
  Lowering concurrency cannot help: the refused request waits its ``Retry-After`` (the retry
  wrapper does that, outside any slot) and every other call carries on.

The limiter tells them apart by what it has seen the provider serve. Each success records how
many calls were in flight when it ended, its *served level* (the limiter uses the second highest
of the last 32 within a quiet period, so one coincidence cannot raise it and an old one expires). A
refusal while fewer calls ran than that is
not explained by load. Two such refusals among the last eight put the limiter in **policy mode**:
a backoff made since the limit last stood high is undone at once (a visible ``recover``), and
refusals leave the limit alone until none has come for a quiet period. Any other refusal is load,
and the limit follows an AIMD law:

- **multiplicative decrease**: ``limit *= decrease_factor``, at most once per epoch (calls already
  in flight when it dropped do not lower it again: one burst of N refusals is one decrease), and
  capped at the number of calls still running, which is what the provider sustains. During a
  burst the later refusals see fewer calls running, so the limit settles on the provider's
  capacity in one round. A refusal with nothing else running says nothing about capacity; outside
  policy mode it only halves (it cannot tell load from policy yet);
- **recovery**: back up to the sustained level one step per success; the step beyond it needs
  ``probe_windows`` clean windows (doubling after each failed probe, and a failed probe returns to
  the sustained level instead of halving); after a clean window above it, ``+increase`` per
  window (``limit`` successes), up to ``max_limit``;
- **quiet recovery**: after ``recover_after_s`` (at least twice the last ``Retry-After``) without
  load pushback, the limit doubles, or, when no call is running (between calls), goes straight
  back to its configured level. A limiter shared by a server's lifetime never stays low once the
  pushback has stopped;
- **latency**: an EWMA of the time to first token is compared with its lowest value; only a clear
  rise (above ``latency_factor`` times that baseline *and* at least ``latency_min_rise_s`` above
  it) held for a whole window of calls in a row lowers the limit, by one. Jitter below that
  threshold changes nothing.

Every change of the limit goes to the subscribers as ``(old, new, reason)``; the engine turns
them into ``backoff``/``recover`` decisions, and the reason names the rule that moved it.
Refusals that leave the limit alone are counted (:attr:`AdaptiveLimiter.stats`), not reported.

Composition used by the runtime (outermost first): ``CachedModel → RetryingModel → LimitedModel →
backend``. Each retry attempt re-acquires a slot, and retry sleeps (``Retry-After`` included)
happen outside any slot.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import anyio
import anyio.lowlevel

from ..errors import ConfigError, RateLimitError, ServerError, StreamInterrupted
from .base import Model, ModelRequest, ModelResponse, TokenCallback, WrapperModel

__all__ = [
    "AdaptiveLimiter",
    "LimitChange",
    "LimitedModel",
    "LimiterStats",
    "Outcome",
    "Slot",
    "find_limiter",
]

log = logging.getLogger(__name__)

#: How a call ended, as far as the limiter cares.
Outcome = Literal["success", "overload", "neutral"]
#: Called as ``on_change(old, new, reason)`` whenever the limit moves.
ChangeCallback = Callable[[int, int, str], None]

#: HTTP statuses that mean "too much load" rather than "broken".
OVERLOAD_STATUSES = frozenset({429, 503, 529})
#: Successes whose served level is remembered, and refusals whose verdict is.
_SERVED_WINDOW = 32
_VERDICT_WINDOW = 8
#: Refusals below the served level (among the last eight) that mean "policy, not load".
_POLICY_EVIDENCE = 2
#: Longest Retry-After taken into account for the quiet period (a day-long quota reset would
#: otherwise freeze recovery).
_MAX_RETRY_AFTER_S = 60.0


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


@dataclass
class LimiterStats:
    """What the limiter saw (for benchmarks, ``doctor`` and tests)."""

    successes: int = 0
    #: Refusals (429/503/529) judged to come from load: they may lower the limit.
    load_refusals: int = 0
    #: Refusals judged to come from a rate or quota policy: the limit holds.
    policy_refusals: int = 0
    #: Verdict of the last refusals, newest last: True when it came below the served level.
    verdicts: deque[bool] = field(default_factory=lambda: deque(maxlen=_VERDICT_WINDOW))


class AdaptiveLimiter:
    """Concurrency limit shared by every caller of one backend (see the module docstring).

    ``initial`` is the configured level, the one quiet recovery returns to. ``clock`` is
    injectable so tests can drive the quiet period without waiting.
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
        latency_min_rise_s: float = 0.5,
        latency_alpha: float = 0.3,
        latency_min_samples: int = 8,
        latency_floor_s: float = 0.05,
        probe_windows: int = 3,
        recover_after_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: ChangeCallback | None = None,
    ) -> None:
        if min_limit < 1 or max_limit < min_limit:
            raise ConfigError(
                "limiter bounds must satisfy 1 <= min_limit <= max_limit, got "
                f"{min_limit}..{max_limit}"
            )
        if not 0.0 < decrease_factor < 1.0:
            raise ConfigError(f"decrease_factor must be in (0, 1), got {decrease_factor}")
        if latency_factor <= 1.0:
            raise ConfigError(f"latency_factor must be > 1, got {latency_factor}")
        if increase < 1:
            raise ConfigError(f"increase must be >= 1, got {increase}")
        if recover_after_s <= 0:
            raise ConfigError(f"recover_after_s must be > 0, got {recover_after_s}")
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.increase = increase
        self.decrease_factor = decrease_factor
        self.latency_factor = latency_factor
        self.latency_min_rise_s = latency_min_rise_s
        self.latency_alpha = latency_alpha
        self.latency_min_samples = latency_min_samples
        self.latency_floor_s = latency_floor_s
        self.probe_windows = max(1, probe_windows)
        self.recover_after_s = recover_after_s
        self.clock = clock
        self.stats = LimiterStats()
        self._limit = min(max_limit, max(min_limit, initial))
        self._configured = self._limit
        self._in_flight = 0
        self._peak_in_flight = 0
        self._epoch = 0  # bumped on every decrease
        self._window_successes = 0  # successes since the last change of the limit
        #: Concurrency the provider sustained at the last overload (None: no overload to respect).
        self._safe: int | None = None
        self._failed_probes = 0
        #: The limit before the backoffs made since it last stood high (policy mode restores it).
        self._before_backoff: int | None = None
        self._served: deque[tuple[float, int]] = deque(maxlen=_SERVED_WINDOW)  # (time, level)
        self._policy = False
        self._last_refusal = -math.inf
        self._last_pushback = -math.inf  # load refusals and latency decreases
        self._last_quiet_step = -math.inf
        self._retry_after = 0.0
        self._ewma: float | None = None
        self._baseline: float | None = None
        self._samples = 0
        self._high_streak = 0
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
    def configured(self) -> int:
        """The level the limit starts at and quiet recovery returns to."""
        return self._configured

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

    @property
    def policy_mode(self) -> bool:
        """True while refusals are judged a rate or quota policy (they leave the limit alone)."""
        return self._policy

    @property
    def served_level(self) -> int | None:
        """Calls the provider recently served at once: the second highest served level of the
        last successes within a quiet period (None until two are known)."""
        since = self.clock() - self._quiet_s()
        levels = sorted(level for at, level in self._served if at >= since)
        return levels[-2] if len(levels) >= 2 else None

    def subscribe(
        self, callback: ChangeCallback, *, weak: bool = False, replay: bool = False
    ) -> Callable[[], None]:
        """Call ``callback(old, new, reason)`` on each limit change; returns an unsubscribe
        function.

        A run subscribes for its lifetime and turns changes into ``backoff``/``recover`` decisions
        (new < old is a backoff, new > old a recovery). With ``weak=True`` the limiter holds only a
        weak reference (a bound method's object may be a per-run controller): the subscription
        ends by itself when the subscriber is garbage-collected. With ``replay=True`` a limit
        still below its configured level is reported at once, as a change from the configured
        level with the reason of the last decrease, so a run that starts throttled says why.
        """
        if replay and self._limit < self._configured:
            last = next((h.reason for h in reversed(self._history) if h.limit == self._limit), "")
            callback(self._configured, self._limit, f"still lowered by earlier pushback ({last})")
        ref: Callable[[], ChangeCallback | None]
        if not weak:
            ref = lambda: callback
        elif inspect.ismethod(callback):
            ref = weakref.WeakMethod(callback)
        else:
            ref = weakref.ref(callback)
        # Drop subscribers that are gone (one per finished run), so the list stays bounded
        # even when the limit never changes.
        self._listeners = [r for r in self._listeners if r() is not None]
        self._listeners.append(ref)

        def unsubscribe() -> None:
            if ref in self._listeners:
                self._listeners.remove(ref)

        return unsubscribe

    # ----- acquiring and releasing -----

    async def acquire(self) -> Slot:
        """Wait for a free slot (FIFO), then take it.

        Cancellation-safe: a waiter cancelled at any point holds no slot and its place in the
        queue is handed on.
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._quiet_recovery()
        me = object()
        self._queue.append(me)
        try:
            while True:
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
        served = self._in_flight  # calls in flight while this one ended, itself included
        self._in_flight -= 1
        if outcome == "success":
            self._on_success(latency_s, served)
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

    def _on_success(self, latency_s: float | None, served: int) -> None:
        self.stats.successes += 1
        self._served.append((self.clock(), served))
        self._window_successes += 1
        self._quiet_recovery()
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
            self._high_streak += 1
            if self._high_streak >= self._limit and self._limit > self.min_limit:
                self._high_streak = 0
                self._last_pushback = self.clock()
                self._lower(
                    self._limit - 1,
                    f"latency {self._ewma:.2f}s for {self._limit} calls in a row, over "
                    f"{self.latency_factor:g}x the baseline {self._baseline:.2f}s",
                )
            return  # no growth while latency is high
        self._high_streak = 0
        if self._limit >= self.max_limit:
            return
        safe = self._safe
        if safe is not None and self._limit < safe:
            # Back to a level the provider was sustaining when it refused more: one step per
            # success.
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
            self._raise(
                min(self.max_limit, self._limit + (1 if safe is not None else self.increase)), why
            )

    def _latency_high(self) -> bool:
        if self._ewma is None or self._baseline is None or self._samples < self.latency_min_samples:
            return False
        return self._ewma > max(
            self.latency_factor * self._baseline,
            self._baseline + self.latency_min_rise_s,
            self.latency_floor_s,
        )

    def _on_overload(self, slot: Slot, retry_after: float | None, detail: str) -> None:
        now = self.clock()
        running = self._in_flight  # the calls still running: what the provider serves now
        self._last_refusal = now
        if retry_after is not None and retry_after > 0:
            self._retry_after = min(retry_after, _MAX_RETRY_AFTER_S)
        served = self.served_level
        below = served is not None and running < served
        self.stats.verdicts.append(below)
        if not self._policy and sum(self.stats.verdicts) >= _POLICY_EVIDENCE:
            self._enter_policy_mode(running, served or 0, detail)
        if self._policy:
            self.stats.policy_refusals += 1
            return
        self.stats.load_refusals += 1
        self._last_pushback = now
        fresh = slot.epoch == self._epoch  # one multiplicative decrease per burst, not per refusal
        if running == 0:
            # Refused with nothing else running: no capacity to read off; halve (once per burst).
            if fresh:
                self._lower(
                    max(self.min_limit, math.floor(self._limit * self.decrease_factor)),
                    f"{detail} with no other call running (load or policy, not known yet)",
                )
            return
        sustained = max(self.min_limit, running)
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
            self._lower(new, f"{detail} while {running} other call(s) ran (load)")
        elif fresh:
            self._epoch += 1
            self._window_successes = 0

    def _enter_policy_mode(self, running: int, served: int, detail: str) -> None:
        self._policy = True
        log.info(
            "refusals below the served level (%d running < %d served): rate or quota policy",
            running,
            served,
        )
        target = self._before_backoff
        self._safe = None
        self._failed_probes = 0
        if target is not None and target > self._limit:
            self._raise(
                target,
                f"{detail} while only {running} call(s) ran, fewer than the {served} it served "
                f"at once: a rate or quota policy, not load; each refused call waits its "
                f"Retry-After, concurrency goes back up",
            )

    def _quiet_recovery(self) -> None:
        """Undo backoffs once the pushback has stopped for a quiet period; leave policy mode."""
        now = self.clock()
        quiet = self._quiet_s()
        if self._policy and now - self._last_refusal >= quiet:
            self._policy = False
            self.stats.verdicts.clear()
        if self._limit >= self._configured:
            return
        since = now - max(self._last_pushback, self._last_quiet_step)
        if since < quiet:
            return
        self._last_quiet_step = now
        self._safe = None
        self._failed_probes = 0
        if self._in_flight == 0:
            self._raise(
                self._configured,
                f"no pushback for {since:.0f}s and no call running: back to the configured "
                f"{self._configured}",
            )
        else:
            self._raise(
                min(self._configured, max(self._limit + 1, self._limit * 2)),
                f"no pushback for {since:.0f}s: doubling",
            )

    def _quiet_s(self) -> float:
        return max(self.recover_after_s, 2 * self._retry_after)

    def _lower(self, new: int, reason: str) -> None:
        if new >= self._limit:
            return
        if self._before_backoff is None:
            self._before_backoff = self._limit
        self._epoch += 1
        self._set_limit(new, reason)

    def _raise(self, new: int, reason: str) -> None:
        if new <= self._limit:
            return
        if self._before_backoff is not None and new >= self._before_backoff:
            self._before_backoff = None
        self._set_limit(new, reason)

    def _set_limit(self, new: int, reason: str) -> None:
        old = self._limit
        self._limit = new
        self._window_successes = 0
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
            after = f", Retry-After {exc.retry_after:g}s" if exc.retry_after is not None else ""
            limiter.release(
                slot,
                "overload",
                retry_after=exc.retry_after,
                detail=f"rate limited (HTTP {status}{after})",
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
        except StreamInterrupted as exc:
            # llama-cpp-python (by default) ends a running answer when another request waits:
            # more at once only means more answers cut, so it counts as load.
            limiter.release(
                slot,
                "overload" if exc.by_server else "neutral",
                detail="the server interrupted a running answer (it serves one request at a "
                "time; see docs/local-models.md)",
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
