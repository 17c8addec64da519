"""The adaptive limiter and LimitedModel under scripted regimes: load-correlated refusals (the
limit drops to what the provider serves), quota refusals (the limit holds, each refused call waits
its Retry-After), latency jitter (the limit holds), recovery between calls and within a call,
plus FIFO, cancellation and listener safety.

No test sleeps: the quiet period runs on a fake clock the test advances, retry waits go to a
recording sleep, and concurrency is coordinated with anyio.Event.
"""

from __future__ import annotations

import anyio
import pytest

from apr_mcp.errors import (
    ConfigError,
    ModelTimeoutError,
    RateLimitError,
    ServerError,
    StreamInterrupted,
)
from apr_mcp.llm.base import Message, Model, ModelRequest, ModelResponse, TokenCallback
from apr_mcp.llm.limiter import AdaptiveLimiter, LimitedModel, find_limiter

REQ = ModelRequest(messages=[Message(role="user", content="hi")])


class FakeTime:
    """A clock that moves only when the test advances it."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class GatedModel(Model):
    """Counts concurrent calls; each call waits for the gate, then succeeds or raises."""

    backend = "fake"
    model_name = "gated"

    def __init__(
        self, *, errors: list[BaseException] | None = None, ttft: float | None = None
    ) -> None:
        self.gate = anyio.Event()
        self.current = 0
        self.peak = 0
        self.calls = 0
        self.errors = list(errors or [])
        self.ttft = ttft
        self.reached: dict[int, anyio.Event] = {}

    def when_concurrent(self, n: int) -> anyio.Event:
        return self.reached.setdefault(n, anyio.Event())

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        self.calls += 1
        self.current += 1
        self.peak = max(self.peak, self.current)
        if self.current in self.reached:
            self.reached[self.current].set()
        try:
            await self.gate.wait()
            if self.errors:
                raise self.errors.pop(0)
            return ModelResponse(text="ok", ttft_s=self.ttft, latency_s=0.01)
        finally:
            self.current -= 1


async def test_burst_halves_once_then_settles_on_what_the_provider_sustains() -> None:
    changes: list[tuple[int, int, str]] = []
    limiter = AdaptiveLimiter(8, max_limit=8, on_change=lambda o, n, r: changes.append((o, n, r)))
    slots = [await limiter.acquire() for _ in range(8)]
    assert limiter.in_flight == 8
    # Five of eight concurrent calls are refused; three are being served.
    for s in slots[:5]:
        limiter.release(s, "overload", detail="rate limited (HTTP 429)")
    assert limiter.limit == 3 and limiter.in_flight == 3
    assert [(o, n) for o, n, _ in changes] == [(8, 4), (4, 3)]  # one halving, then the cap
    assert all("429" in r for _, _, r in changes)
    assert "3 other call(s) ran (load)" in changes[-1][2]
    for s in slots[5:]:
        limiter.release(s, "success", latency_s=0.01)
    assert limiter.limit == 3  # the level that worked; going beyond it is probed slowly
    s = await limiter.acquire()  # a call started after the decrease that fails again halves again
    limiter.release(s, "overload", detail="rate limited (HTTP 429)")
    assert limiter.limit == 1
    assert [h.limit for h in limiter.history] == [8, 4, 3, 1]
    assert limiter.history[0].reason == "initial"


async def test_provider_that_serves_nothing_drops_to_the_minimum() -> None:
    limiter = AdaptiveLimiter(8, min_limit=2, max_limit=8)
    slots = [await limiter.acquire() for _ in range(8)]
    for s in slots:
        limiter.release(s, "overload")
    assert limiter.limit == 2


async def test_limit_never_below_min() -> None:
    limiter = AdaptiveLimiter(2, min_limit=2, max_limit=4)
    for _ in range(3):
        s = await limiter.acquire()
        limiter.release(s, "overload")
    assert limiter.limit == 2


async def test_recovery_is_gradual_and_probes_slowly_past_the_overload_point() -> None:
    limiter = AdaptiveLimiter(8, max_limit=8, latency_floor_s=0)
    slots = [await limiter.acquire() for _ in range(7)]
    limiter.release(slots[0], "overload")  # six still running: the provider sustains six
    assert limiter.limit == 4
    steps: list[int] = []
    count = 0
    pending = slots[1:]
    while limiter.limit < 8:
        before = limiter.limit
        if pending:
            limiter.release(pending.pop(), "success", latency_s=0.01)
        else:
            s = await limiter.acquire()
            limiter.release(s, "success", latency_s=0.01)
        count += 1
        if limiter.limit != before:
            assert limiter.limit == before + 1  # never jumps
            steps.append(count)
            count = 0
        assert sum(steps) + count < 200
    # Back to the sustained six one step per success; 3 clean windows (18 calls) before probing
    # seven; then one window per step.
    assert steps == [1, 1, 18, 7]
    s = await limiter.acquire()
    limiter.release(s, "success", latency_s=0.01)
    assert limiter.limit == 8  # capped at max
    assert [h.limit for h in limiter.history] == [8, 4, 5, 6, 7, 8]
    assert "probing" in limiter.history[4].reason
    assert "successes" in limiter.history[-1].reason


async def test_a_clear_latency_rise_lowers_the_limit_gently() -> None:
    changes: list[tuple[int, int, str]] = []
    limiter = AdaptiveLimiter(6, max_limit=6, on_change=lambda o, n, r: changes.append((o, n, r)))
    for _ in range(10):
        s = await limiter.acquire()
        limiter.release(s, "success", latency_s=0.2)
    assert limiter.latency_baseline == pytest.approx(0.2)
    assert limiter.limit == 6
    for _ in range(40):  # a provider queueing our calls: 10x the baseline, seconds above it
        s = await limiter.acquire()
        limiter.release(s, "success", latency_s=2.0)
    assert limiter.limit < 6
    assert all(o - n == 1 for o, n, _ in changes)  # gentle: one step at a time
    assert all("latency" in r and "in a row" in r for _, _, r in changes)
    # Latency back to normal: the EWMA falls and the limit grows again.
    low = limiter.limit
    for _ in range(60):
        s = await limiter.acquire()
        limiter.release(s, "success", latency_s=0.2)
    assert limiter.limit > low


async def test_latency_floor_ignores_tiny_jitter() -> None:
    limiter = AdaptiveLimiter(4, max_limit=4, latency_floor_s=0.05)
    for latency in [0.001] * 5 + [0.01] * 20:  # 10x the baseline, but far below the floor
        s = await limiter.acquire()
        limiter.release(s, "success", latency_s=latency)
    assert limiter.limit == 4


async def test_cancelled_waiter_releases_its_place() -> None:
    limiter = AdaptiveLimiter(1, max_limit=1)
    held = await limiter.acquire()
    got: list[str] = []

    async def waiter(name: str, scope_box: list[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            scope_box.append(scope)
            slot = await limiter.acquire()
            got.append(name)
            limiter.release(slot)

    a_scope: list[anyio.CancelScope] = []
    b_scope: list[anyio.CancelScope] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, "a", a_scope)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(waiter, "b", b_scope)
            await anyio.wait_all_tasks_blocked()
            assert limiter.waiting == 2
            a_scope[0].cancel()  # the head of the queue gives up
            await anyio.wait_all_tasks_blocked()
            assert limiter.waiting == 1
            limiter.release(held)
    assert got == ["b"]
    assert limiter.in_flight == 0 and limiter.waiting == 0


async def test_fifo_order() -> None:
    limiter = AdaptiveLimiter(1, max_limit=1)
    held = await limiter.acquire()
    order: list[int] = []

    async def waiter(i: int) -> None:
        slot = await limiter.acquire()
        order.append(i)
        limiter.release(slot)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(waiter, i)
                await anyio.wait_all_tasks_blocked()
            limiter.release(held)
    assert order == [0, 1, 2, 3, 4]


async def test_limited_model_never_exceeds_the_limit() -> None:
    inner = GatedModel()
    limiter = AdaptiveLimiter(3, max_limit=3)
    model = LimitedModel(inner, limiter)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(model.complete, REQ)
            await inner.when_concurrent(3).wait()
            await anyio.wait_all_tasks_blocked()
            assert inner.current == 3 and limiter.in_flight == 3 and limiter.waiting == 17
            inner.gate.set()
    assert inner.calls == 20
    assert inner.peak == 3 and limiter.peak_in_flight == 3
    assert limiter.in_flight == 0


async def test_decrease_while_busy_drains_before_new_calls() -> None:
    limiter = AdaptiveLimiter(4, max_limit=4)
    slots = [await limiter.acquire() for _ in range(4)]
    limiter.release(slots[0], "overload")  # limit 4 -> 2 with 3 still in flight
    assert limiter.limit == 2
    started = anyio.Event()

    async def newcomer() -> None:
        slot = await limiter.acquire()
        started.set()
        limiter.release(slot)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(newcomer)
            await anyio.wait_all_tasks_blocked()
            limiter.release(slots[1])  # 2 in flight: still at the limit
            await anyio.wait_all_tasks_blocked()
            assert not started.is_set()
            limiter.release(slots[2])  # 1 in flight: room for one
            await started.wait()
    limiter.release(slots[3])
    assert limiter.in_flight == 0


async def test_limited_model_reports_429_with_retry_after() -> None:
    inner = GatedModel(
        errors=[RateLimitError("slow down", retry_after=1.5, status_code=429, backend="fake")]
    )
    inner.gate.set()
    limiter = AdaptiveLimiter(4, max_limit=4)
    model = LimitedModel(inner, limiter)
    with pytest.raises(RateLimitError):
        await model.complete(REQ)
    # Refused with nothing else running: no capacity to read off, so only a halving.
    assert limiter.limit == 2 and limiter.in_flight == 0
    assert "HTTP 429, Retry-After 1.5s" in limiter.history[-1].reason
    assert "no other call running" in limiter.history[-1].reason
    await model.complete(REQ)  # no global pause: the next call starts at once


@pytest.mark.parametrize(
    ("status", "lowered"), [(503, True), (529, True), (500, False), (502, False)]
)
async def test_server_errors_only_overload_statuses_lower(status: int, lowered: bool) -> None:
    inner = GatedModel(errors=[ServerError("boom", status_code=status)])
    inner.gate.set()
    limiter = AdaptiveLimiter(4, max_limit=4)
    with pytest.raises(ServerError):
        await LimitedModel(inner, limiter).complete(REQ)
    assert (limiter.limit < 4) is lowered
    assert limiter.in_flight == 0


@pytest.mark.parametrize(("by_server", "lowered"), [(True, True), (False, False)])
async def test_a_server_that_cuts_running_answers_counts_as_load(
    by_server: bool, lowered: bool
) -> None:
    # llama-cpp-python ends a running stream when another request waits: that is load. A
    # stream that merely broke off (network) says nothing about load.
    error = StreamInterrupted("stream ended without a finish_reason")
    error.by_server = by_server
    inner = GatedModel(errors=[error])
    inner.gate.set()
    limiter = AdaptiveLimiter(4, max_limit=4)
    with pytest.raises(StreamInterrupted):
        await LimitedModel(inner, limiter).complete(REQ)
    assert (limiter.limit < 4) is lowered
    if lowered:
        assert "interrupted a running answer" in limiter.history[-1].reason


async def test_timeouts_and_cancellation_release_without_lowering() -> None:
    inner = GatedModel(errors=[ModelTimeoutError("read timed out")])
    inner.gate.set()
    limiter = AdaptiveLimiter(4, max_limit=4)
    model = LimitedModel(inner, limiter)
    with pytest.raises(ModelTimeoutError):
        await model.complete(REQ)
    blocked = GatedModel()
    limited = LimitedModel(blocked, limiter)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(limited.complete, REQ)
            await blocked.when_concurrent(1).wait()
            assert limiter.in_flight == 1
            tg.cancel_scope.cancel()
    assert limiter.in_flight == 0 and limiter.limit == 4


async def test_limited_model_uses_ttft_as_latency_sample() -> None:
    inner = GatedModel(ttft=0.25)
    inner.gate.set()
    limiter = AdaptiveLimiter(2, max_limit=2)
    await LimitedModel(inner, limiter).complete(REQ)
    assert limiter.latency_ewma == pytest.approx(0.25)


async def test_subscribe_and_broken_listener() -> None:
    seen: list[int] = []

    def broken(old: int, new: int, reason: str) -> None:
        raise RuntimeError("listener bug")

    limiter = AdaptiveLimiter(8, max_limit=8, on_change=broken)
    unsubscribe = limiter.subscribe(lambda o, n, r: seen.append(n))
    slots = [await limiter.acquire() for _ in range(8)]
    limiter.release(slots[0], "overload")
    unsubscribe()
    for s in slots[1:5]:
        limiter.release(s, "overload")
    assert seen == [4]
    assert limiter.limit == 3


async def test_double_release_is_a_no_op() -> None:
    limiter = AdaptiveLimiter(2, max_limit=2)
    async with limiter.slot() as s:
        limiter.release(s, "success", latency_s=0.01)
    assert limiter.in_flight == 0


def test_find_limiter_walks_wrappers() -> None:
    limiter = AdaptiveLimiter(2, max_limit=2)
    from apr_mcp.llm.base import WrapperModel

    wrapped = WrapperModel(LimitedModel(GatedModel(), limiter))
    assert find_limiter(wrapped) is limiter
    assert find_limiter(GatedModel()) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_limit": 0, "max_limit": 4},
        {"min_limit": 5, "max_limit": 4},
        {"max_limit": 4, "decrease_factor": 1.0},
        {"max_limit": 4, "latency_factor": 1.0},
        {"max_limit": 4, "increase": 0},
    ],
)
def test_bad_parameters_are_config_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        AdaptiveLimiter(2, **kwargs)  # type: ignore[arg-type]


async def test_weak_subscription_ends_with_its_subscriber() -> None:
    import gc

    class Run:
        def __init__(self) -> None:
            self.seen: list[int] = []

        def on_change(self, old: int, new: int, reason: str) -> None:
            self.seen.append(new)

    limiter = AdaptiveLimiter(8, max_limit=8)
    run = Run()
    limiter.subscribe(run.on_change, weak=True)
    slots = [await limiter.acquire() for _ in range(8)]
    limiter.release(slots[0], "overload")
    assert run.seen == [4]
    del run
    gc.collect()
    for s in slots[1:5]:
        limiter.release(s, "overload")
    assert limiter.limit == 3
    assert limiter._listeners == []


# ----- scripted regimes: load, quota, jitter, recovery -----


def refusal(retry_after: float = 1.0) -> RateLimitError:
    return RateLimitError("rate limited", retry_after=retry_after, status_code=429, backend="fake")


async def test_load_correlated_refusals_lower_the_limit_and_keep_it_at_capacity() -> None:
    # A provider that serves three at once: every call beyond the third is refused at once.
    changes: list[tuple[int, int, str]] = []
    limiter = AdaptiveLimiter(8, max_limit=8, on_change=lambda o, n, r: changes.append((o, n, r)))
    slots = [await limiter.acquire() for _ in range(8)]
    for s in slots[3:]:  # refused while three (and more, not yet refused) were running
        limiter.release(s, "overload", retry_after=1.0, detail="rate limited (HTTP 429)")
    assert limiter.limit == 3
    for s in slots[:3]:
        limiter.release(s, "success", latency_s=0.01)
    assert limiter.served_level == 2  # second highest: one coincidence cannot raise it
    # Clean calls at the sustained level, until the limiter probes a fourth.
    while limiter.limit == 3:
        s = await limiter.acquire()
        limiter.release(s, "success", latency_s=0.01)
    assert limiter.limit == 4
    probe = [await limiter.acquire() for _ in range(4)]
    limiter.release(probe[-1], "overload", retry_after=1.0, detail="rate limited (HTTP 429)")
    assert limiter.limit == 3
    for s in probe[:-1]:
        limiter.release(s, "success", latency_s=0.01)
    assert not limiter.policy_mode
    assert limiter.stats.policy_refusals == 0 and limiter.stats.load_refusals == 6
    backoffs = [r for o, n, r in changes if n < o]
    assert len(backoffs) == 3 and all("(load)" in r for r in backoffs)  # 8->4->3, 4->3


async def test_quota_refusals_restore_and_then_hold_the_limit() -> None:
    # Every third request refused, whatever the load. The first burst cannot be told from load
    # (it lowers the limit); refusals while fewer calls ran than the provider served give it away.
    changes: list[tuple[int, int, str]] = []
    limiter = AdaptiveLimiter(8, max_limit=8, on_change=lambda o, n, r: changes.append((o, n, r)))
    slots = [await limiter.acquire() for _ in range(8)]
    limiter.release(slots[2], "overload", retry_after=1.0, detail="rate limited (HTTP 429)")
    limiter.release(slots[5], "overload", retry_after=1.0, detail="rate limited (HTTP 429)")
    assert limiter.limit < 8  # looks like load so far
    for s in slots[:2] + slots[3:5] + slots[6:]:
        limiter.release(s, "success", latency_s=0.01)  # six served at once
    assert limiter.served_level is not None and limiter.served_level >= 5
    count = 8
    for _ in range(12):  # rounds at whatever the limit is: every third request refused
        round_ = [await limiter.acquire() for _ in range(limiter.limit)]
        for s in round_:
            count += 1
            if count % 3 == 0:
                limiter.release(s, "overload", retry_after=1.0, detail="rate limited (HTTP 429)")
        for s in round_:
            limiter.release(s, "success", latency_s=0.01)
    assert limiter.policy_mode
    assert limiter.limit == 8  # restored, and held through every later refusal
    assert changes[-1][1] == 8 and "policy" in changes[-1][2] and "Retry-After" in changes[-1][2]
    assert limiter.stats.policy_refusals > 10
    assert [h.limit for h in limiter.history][-1] == 8


class QuotaModel(Model):
    """Refuses every ``every``-th request with 429 + Retry-After, whatever the load; the others
    are answered once ``gate`` is set (so calls really overlap)."""

    backend = "fake"
    model_name = "quota"

    def __init__(self, every: int = 3, retry_after: float = 1.0) -> None:
        self.every = every
        self.retry_after = retry_after
        self.count = 0
        self.current = 0
        self.peak = 0
        self.gate = anyio.Event()

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        self.count += 1
        if self.count % self.every == 0:
            await anyio.lowlevel.checkpoint()
            raise refusal(self.retry_after)
        self.current += 1
        self.peak = max(self.peak, self.current)
        try:
            await self.gate.wait()
            return ModelResponse(text="ok", latency_s=0.01)
        finally:
            self.current -= 1


async def test_quota_endpoint_through_the_stack_waits_retry_after_per_request() -> None:
    from apr_mcp.llm.retry import RetryingModel

    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # records the wait; the test does not wait
        waits.append(seconds)
        await anyio.lowlevel.checkpoint()

    endpoint = QuotaModel()
    limiter = AdaptiveLimiter(8, max_limit=8)
    model = RetryingModel(LimitedModel(endpoint, limiter), max_retries=10, sleep=sleep)
    done: list[str] = []

    async def call() -> None:
        done.append((await model.complete(REQ)).text)

    with anyio.fail_after(10):
        for _ in range(2):  # two consecutive "calls" of 16 requests at concurrency 8
            endpoint.gate = anyio.Event()
            async with anyio.create_task_group() as tg:
                for _ in range(16):
                    tg.start_soon(call)
                await anyio.wait_all_tasks_blocked()
                endpoint.gate.set()
    assert done == ["ok"] * 32
    assert waits and all(w >= 1.0 for w in waits)  # each refused request waited Retry-After
    assert limiter.limit == 8 and limiter.policy_mode
    assert endpoint.peak == 8  # the full configured concurrency was used


@pytest.mark.parametrize(("mean", "seed"), [(0.2, 1), (0.2, 2), (1.0, 3), (1.0, 4)])
async def test_latency_jitter_below_the_threshold_changes_nothing(mean: float, seed: int) -> None:
    import random

    rng = random.Random(seed)
    limiter = AdaptiveLimiter(64, max_limit=64)
    for i in range(2000):
        # +-50% noise, and one call in ten twice as slow as usual (a busy event loop, GC, ...).
        latency = mean * rng.uniform(0.5, 1.5) * (2.0 if i % 10 == 9 else 1.0)
        s = await limiter.acquire()
        limiter.release(s, "success", latency_s=latency)
    assert limiter.limit == 64
    assert [h.reason for h in limiter.history] == ["initial"]


async def test_recovery_between_calls_returns_to_the_configured_level() -> None:
    t = FakeTime()
    changes: list[tuple[int, int, str]] = []
    limiter = AdaptiveLimiter(
        8,
        max_limit=8,
        clock=t.clock,
        recover_after_s=10,
        on_change=lambda o, n, r: changes.append((o, n, r)),
    )
    slots = [await limiter.acquire() for _ in range(8)]
    for s in slots[2:]:
        limiter.release(s, "overload", retry_after=1.0, detail="rate limited (HTTP 429)")
    for s in slots[:2]:
        limiter.release(s, "success", latency_s=0.01)
    assert limiter.limit == 2 and limiter.in_flight == 0
    t.advance(5)
    s = await limiter.acquire()  # too soon: the provider may still be full
    assert limiter.limit == 2
    limiter.release(s, "success", latency_s=0.01)
    t.advance(6)  # 11 s without pushback, nothing running: the next call starts at full width
    s = await limiter.acquire()
    assert limiter.limit == 8
    limiter.release(s, "success", latency_s=0.01)
    assert changes[-1][:2] == (2, 8) and "configured 8" in changes[-1][2]


async def test_recovery_within_a_call_doubles_once_the_pushback_stops() -> None:
    t = FakeTime()
    limiter = AdaptiveLimiter(16, max_limit=16, clock=t.clock, recover_after_s=10)
    slots = [await limiter.acquire() for _ in range(16)]
    for s in slots[1:]:
        limiter.release(s, "overload", detail="overloaded (HTTP 529)")
    assert limiter.limit == 1
    held = slots[0]  # a call still running: this is within a call
    seen = [limiter.limit]
    for _ in range(4):
        t.advance(10)
        s = await limiter.acquire()
        limiter.release(s, "success", latency_s=0.01)
        seen.append(limiter.limit)
    limiter.release(held, "success", latency_s=0.01)
    assert seen == [1, 2, 4, 8, 16]
    assert all("doubling" in h.reason for h in limiter.history[-4:])


async def test_quiet_period_is_at_least_twice_retry_after() -> None:
    t = FakeTime()
    limiter = AdaptiveLimiter(4, max_limit=4, clock=t.clock, recover_after_s=10)
    slots = [await limiter.acquire() for _ in range(4)]
    for s in slots[1:]:
        limiter.release(s, "overload", retry_after=30.0, detail="rate limited (HTTP 429)")
    limiter.release(slots[0], "success", latency_s=0.01)
    assert limiter.limit == 1
    t.advance(20)
    limiter.release(await limiter.acquire(), "success", latency_s=0.01)
    assert limiter.limit == 1  # the provider asked for 30 s
    t.advance(41)
    limiter.release(await limiter.acquire(), "success", latency_s=0.01)
    assert limiter.limit == 4


async def test_policy_mode_ends_after_a_quiet_period_and_load_is_seen_again() -> None:
    t = FakeTime()
    limiter = AdaptiveLimiter(4, max_limit=4, clock=t.clock, recover_after_s=10)
    for _ in range(3):  # served four at once, then refused while fewer ran: a policy
        round_ = [await limiter.acquire() for _ in range(4)]
        for s in round_:
            limiter.release(s, "success", latency_s=0.01)
    for _ in range(2):
        s = await limiter.acquire()
        limiter.release(s, "overload", detail="rate limited (HTTP 429)")
    assert limiter.policy_mode and limiter.limit == 4
    t.advance(11)
    slots = [await limiter.acquire() for _ in range(4)]
    assert not limiter.policy_mode
    for s in slots[2:]:  # now a burst at full width, refused beyond two: load
        limiter.release(s, "overload", detail="rate limited (HTTP 429)")
    assert limiter.limit == 2
    for s in slots[:2]:
        limiter.release(s, "success", latency_s=0.01)


async def test_policy_recovery_is_a_visible_recover_decision() -> None:
    from apr_mcp.config import Settings
    from apr_mcp.engine.meta import MetaController

    limiter = AdaptiveLimiter(8, max_limit=8)
    controller = MetaController(Settings(backend="simulated"), limiter=limiter)
    slots = [await limiter.acquire() for _ in range(8)]
    limiter.release(slots[0], "overload", detail="rate limited (HTTP 429)")  # 8 -> 4
    for s in slots[1:]:
        limiter.release(s, "success", latency_s=0.01)
    for _ in range(2):  # refused with nothing else running, though seven were served at once
        s = await limiter.acquire()
        limiter.release(s, "overload", detail="rate limited (HTTP 429)")
    notes = controller.limiter_notes()
    kinds = [(n.kind, n.reason.split(":")[0]) for n in notes]
    assert kinds[0] == ("backoff", "concurrency limit 8 -> 4")
    assert kinds[-1][0] == "recover" and kinds[-1][1].endswith("-> 8")
    assert "rate or quota policy" in notes[-1].reason


async def test_a_run_that_starts_throttled_is_told_why_when_it_asks() -> None:
    limiter = AdaptiveLimiter(8, max_limit=8)
    slots = [await limiter.acquire() for _ in range(8)]
    for s in slots[3:]:
        limiter.release(s, "overload", detail="rate limited (HTTP 429)")
    for s in slots[:3]:
        limiter.release(s, "success", latency_s=0.01)
    assert limiter.limit == 3
    seen: list[tuple[int, int, str]] = []
    limiter.subscribe(lambda o, n, r: seen.append((o, n, r)))  # no replay: only new changes
    assert seen == []
    limiter.subscribe(lambda o, n, r: seen.append((o, n, r)), replay=True)
    assert len(seen) == 1 and seen[0][:2] == (8, 3)
    assert "still lowered" in seen[0][2] and "(load)" in seen[0][2]
