"""RetryingModel: which errors are retried, how long it waits, what the caller finally sees.

A fake sleep records the delays, so nothing here waits for real.
"""

from __future__ import annotations

import random

import anyio
import httpx
import pytest
from http_helpers import FakeSleep

from apr_mcp.errors import (
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelOutputError,
    ModelTimeoutError,
    RateLimitError,
    SchemaUnsupported,
    ServerError,
    StreamInterrupted,
)
from apr_mcp.llm._http import emit
from apr_mcp.llm.base import Message, Model, ModelRequest, ModelResponse, TokenCallback
from apr_mcp.llm.openai_compat import OpenAICompatModel
from apr_mcp.llm.retry import RetryingModel

REQ = ModelRequest(messages=[Message(role="user", content="q")])


class Scripted(Model):
    """Raises the scripted errors in order, then answers; streams ``stream`` before each error."""

    backend = "fake"
    model_name = "f1"

    def __init__(self, *errors: ModelError, stream: tuple[str, ...] = ()) -> None:
        self.errors = list(errors)
        self.stream = stream
        self.calls = 0

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        self.calls += 1
        for piece in self.stream:
            await emit(on_token, piece)
        if self.errors:
            raise self.errors.pop(0)
        return ModelResponse(text="".join(self.stream) or "fine", backend="fake", model="f1")


def retrying(inner: Model, **kw: object) -> tuple[RetryingModel, FakeSleep]:
    sleep = FakeSleep()
    return RetryingModel(inner, sleep=sleep, rng=random.Random(1), **kw), sleep  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        RateLimitError("429"),
        ServerError("500", status_code=500),
        ModelConnectionError("c"),
        StreamInterrupted("cut"),
    ],
)
async def test_retryable_errors_are_retried(error: ModelError) -> None:
    inner = Scripted(error, error)
    model, sleep = retrying(inner)
    resp = await model.complete(REQ)
    assert resp.text == "fine"
    assert inner.calls == 3 and len(sleep.delays) == 2


@pytest.mark.parametrize(
    "error",
    [
        ModelHTTPError("bad request", status_code=400),
        ModelOutputError("junk"),
        SchemaUnsupported("response_format refused", status_code=500),
    ],
)
async def test_non_retryable_errors_fail_at_once(error: ModelError) -> None:
    inner = Scripted(error)
    model, sleep = retrying(inner)
    with pytest.raises(type(error)) as info:
        await model.complete(REQ)
    assert info.value is error and inner.calls == 1 and sleep.delays == []
    assert "attempts" not in str(error)


async def test_gives_up_after_max_retries_with_the_original_error() -> None:
    errors = [
        ServerError(f"down {i}", status_code=503, backend="fake", model="f1") for i in range(10)
    ]
    inner = Scripted(*errors)
    model, sleep = retrying(inner, max_retries=3)
    with pytest.raises(ServerError) as info:
        await model.complete(REQ)
    assert inner.calls == 4 and len(sleep.delays) == 3
    assert info.value is errors[3]
    assert "after 4 attempts" in str(info.value) and "HTTP 503" in str(info.value)
    assert info.value.attempts == 4  # type: ignore[attr-defined]


async def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    inner = Scripted(*[ServerError("x") for _ in range(6)])
    model, sleep = retrying(inner, max_retries=6, base_delay=1.0, max_delay=8.0)
    await model.complete(REQ)
    caps = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert len(sleep.delays) == 6
    assert all(0.0 <= d <= cap for d, cap in zip(sleep.delays, caps, strict=True))
    # Full jitter: not a fixed schedule (with this seed the delays are not all equal to the caps).
    assert sleep.delays != caps


async def test_retry_after_is_honoured_and_capped() -> None:
    inner = Scripted(
        RateLimitError("slow", retry_after=7.0), RateLimitError("slow", retry_after=500.0)
    )
    model, sleep = retrying(inner, base_delay=0.1, max_delay=60.0)
    await model.complete(REQ)
    assert sleep.delays == [7.0, 60.0]


async def test_zero_retries() -> None:
    inner = Scripted(ServerError("x"))
    model, sleep = retrying(inner, max_retries=0)
    with pytest.raises(ServerError):
        await model.complete(REQ)
    assert inner.calls == 1 and sleep.delays == []


async def test_retried_stream_does_not_count_tokens_twice() -> None:
    inner = Scripted(StreamInterrupted("cut"), stream=("ab", "cd", "ef"))
    model, _ = retrying(inner)
    got: list[str] = []
    resp = await model.complete(REQ, on_token=got.append)
    # First attempt delivered abcdef then was cut; the retry replays it: nothing new to forward.
    assert "".join(got) == "abcdef" and resp.text == "abcdef" and inner.calls == 2


async def test_retry_forwards_only_text_beyond_what_was_seen() -> None:
    class Growing(Scripted):
        async def complete(
            self, request: ModelRequest, *, on_token: TokenCallback | None = None
        ) -> ModelResponse:
            self.calls += 1
            pieces = ["abc"] if self.calls == 1 else ["ab", "cde", "f"]
            for piece in pieces:
                await emit(on_token, piece)
            if self.calls == 1:
                raise StreamInterrupted("cut")
            return ModelResponse(text="abcdef")

    model, _ = retrying(Growing())
    got: list[str] = []
    await model.complete(REQ, on_token=got.append)
    assert got == ["abc", "de", "f"]


async def test_wrapper_passes_backend_facts_through() -> None:
    inner = OpenAICompatModel(
        base_url="http://x.test/v1",
        model="m",
        transport=httpx.MockTransport(lambda r: httpx.Response(500)),
    )
    model, sleep = retrying(inner, max_retries=2)
    assert model.backend == "openai" and model.model_name == "m" and model.unwrap() is inner
    assert model.supports_json_schema is True
    model.supports_json_schema = False
    assert inner.supports_json_schema is False
    with pytest.raises(ServerError):
        await model.complete(REQ)
    assert len(sleep.delays) == 2
    await model.aclose()


async def test_429_over_http_is_retried_after_retry_after() -> None:
    responses = [
        httpx.Response(429, headers={"retry-after": "2"}),
        httpx.Response(
            200, json={"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}
        ),
    ]
    inner = OpenAICompatModel(
        base_url="http://x.test/v1",
        model="m",
        stream=False,
        transport=httpx.MockTransport(lambda r: responses.pop(0)),
    )
    model, sleep = retrying(inner)
    assert (await model.complete(REQ)).text == "ok"
    assert sleep.delays == [2.0]


async def test_a_timeout_is_retried_once_then_fails() -> None:
    # A stall (idle timeout) once may be bad luck; twice in a row the endpoint is stuck, and
    # retrying four times would cost the run 5 x APR_IDLE_TIMEOUT_S.
    once = Scripted(ModelTimeoutError("stalled"))
    model, sleep = retrying(once)
    assert (await model.complete(REQ)).text == "fine" and once.calls == 2

    errors = [ModelTimeoutError(f"stalled {i}") for i in range(5)]
    stuck = Scripted(*errors)
    model, sleep = retrying(stuck)
    with pytest.raises(ModelTimeoutError) as info:
        await model.complete(REQ)
    assert stuck.calls == 2 and len(sleep.delays) == 1 and info.value is errors[1]


class FakeClock:
    """A clock that only moves when the fake sleep (or the inner model) says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Timed(Model):
    """Fails with a retryable error after ``cost`` seconds of fake time; records timeouts."""

    backend = "fake"
    model_name = "f1"

    def __init__(self, clock: FakeClock, cost: float) -> None:
        self.clock = clock
        self.cost = cost
        self.timeouts: list[float | None] = []

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        self.timeouts.append(request.timeout_s)
        # A backend honours the request's limit: it gives up when that runs out.
        self.clock.now += min(self.cost, request.timeout_s or self.cost)
        raise ServerError("busy", status_code=503)


async def test_retries_never_outlive_the_request_deadline() -> None:
    clock = FakeClock()
    inner = Timed(clock, cost=4.0)
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        clock.now += delay

    model = RetryingModel(
        inner,
        max_retries=10,
        base_delay=1.0,
        max_delay=1.0,
        sleep=sleep,
        rng=random.Random(3),
        clock=clock,
    )
    with pytest.raises(ServerError):
        await model.complete(REQ.model_copy(update={"timeout_s": 10.0}))
    # Every attempt gets only what is left of the 10 s, and nothing runs past them.
    assert clock.now - 100.0 == pytest.approx(10.0)
    assert inner.timeouts[0] == 10.0 and len(inner.timeouts) == len(delays) + 1
    spent = 0.0
    for i, timeout in enumerate(inner.timeouts[1:]):
        spent += min(4.0, inner.timeouts[i] or 4.0) + delays[i]
        assert timeout == pytest.approx(10.0 - spent)


async def test_the_longest_partial_text_survives_the_last_failure() -> None:
    first = StreamInterrupted("cut")
    first.partial_text = "a long partial answer"
    second = StreamInterrupted("cut again")
    second.partial_text = "short"
    model, _ = retrying(Scripted(first, second, first), max_retries=1)
    with pytest.raises(StreamInterrupted) as info:
        await model.complete(REQ)
    assert info.value is second and info.value.partial_text == "a long partial answer"


class Hangs(Model):
    """Streams ``text``, then waits for ever (a stalled server, or a queue for a slot)."""

    backend = "fake"
    model_name = "f1"

    def __init__(self, text: str = "") -> None:
        self.text = text

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        await emit(on_token, self.text)
        await anyio.Event().wait()
        raise AssertionError("unreachable")


@pytest.mark.parametrize("text", ["", "half an ans"])
async def test_the_deadline_bounds_an_attempt_that_never_returns(text: str) -> None:
    model = RetryingModel(Hangs(text), sleep=FakeSleep())
    with anyio.fail_after(5), pytest.raises(ModelTimeoutError) as info:
        await model.complete(REQ.model_copy(update={"timeout_s": 0.05}))
    assert not info.value.retryable and info.value.partial_text == text
    assert "run's deadline" in str(info.value)
