"""Bounded retries with exponential backoff and full jitter, as a wrapper model.

Only errors that say ``retryable`` are retried: rate limits (429/529), 5xx, timeouts, connection
failures and cut streams. A 4xx, a config error or junk output fails at once, because sending the
same request again would fail the same way. ``Retry-After`` from the provider is a lower bound
on the wait (capped at ``max_delay``).

Timeouts (a stalled stream, a server that never answers) are retried once: a second stall in a
row means the endpoint is stuck, and waiting again only burns the run's time. A request's
``timeout_s`` (the run's remaining deadline) bounds all attempts and waits together: no retry
starts that could not finish in time, and each attempt gets only what is left.

A stream cut mid-answer is retried from the start. So that progress never counts a token twice,
the retried attempt forwards deltas to ``on_token`` only once it has produced more text than the
consumer already saw; the returned text is always the final attempt's complete answer. When
every attempt fails, the error raised keeps the longest ``partial_text`` any attempt streamed.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable

import anyio

from ..errors import ModelError, ModelTimeoutError, RateLimitError
from ._http import emit
from .base import Model, ModelRequest, ModelResponse, TokenCallback, WrapperModel

__all__ = ["RetryingModel"]

log = logging.getLogger(__name__)


class RetryingModel(WrapperModel):
    """Retry ``inner`` on retryable :class:`~apr_mcp.errors.ModelError`\\ s.

    ``max_retries`` is the number of *extra* attempts. The n-th retry waits a random time in
    ``[0, min(max_delay, base_delay * 2**n)]`` ("full jitter", which spreads the retries of many
    concurrent threads), or at least the provider's ``retry_after``. ``sleep`` and ``rng`` are
    injectable so tests need not wait.
    """

    def __init__(
        self,
        inner: Model,
        *,
        max_retries: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 60.0,
        max_timeout_retries: int = 1,
        sleep: Callable[[float], Awaitable[object]] = anyio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        super().__init__(inner)
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.max_retries = max_retries
        self.max_timeout_retries = max_timeout_retries
        self._clock = clock
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._rng = rng or random.Random()

    def delay_for(self, retry: int, error: ModelError) -> float:
        """Seconds to wait before retry number ``retry`` (0-based) after ``error``."""
        if isinstance(error, RateLimitError) and error.retry_after is not None:
            # The provider said when: waiting longer only loses time (measured: a growing
            # backoff on top of Retry-After cost 1.3-1.6x a client that waits exactly that).
            return min(self.max_delay, error.retry_after)
        backoff = self._rng.uniform(0.0, min(self.max_delay, self.base_delay * (2**retry)))
        return min(self.max_delay, backoff)

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        seen = 0  # characters the consumer has already received, over all attempts
        ends = None if request.timeout_s is None else self._clock() + request.timeout_s
        partial = ""  # the longest text any failed attempt streamed
        streamed: list[str] = []  # the current attempt's text, kept if the deadline cuts it

        retry = timeouts = 0
        while True:
            produced = 0
            streamed.clear()

            async def forward(delta: str) -> None:
                # Replayed prefix of a retried stream: the consumer already counted it.
                nonlocal produced, seen
                streamed.append(delta)
                before = produced
                produced += len(delta)
                if produced <= seen:
                    return
                fresh = delta[max(0, seen - before) :]
                seen = produced
                await emit(on_token, fresh)

            attempt = request
            if ends is not None and retry:
                attempt = request.model_copy(update={"timeout_s": max(ends - self._clock(), 1e-3)})
            tap = forward if on_token is not None or ends is not None else None
            try:
                if ends is None:
                    return await self._inner.complete(attempt, on_token=tap)
                # The whole attempt, a wait for a concurrency slot included, ends by the deadline.
                with anyio.fail_after(max(ends - self._clock(), 0.0)):
                    return await self._inner.complete(attempt, on_token=tap)
            except TimeoutError:
                late = ModelTimeoutError(
                    f"no complete answer within the run's deadline ({request.timeout_s:g} s)",
                    backend=self.backend,
                    model=self.model_for(request),
                )
                late.retryable = False
                late.partial_text = max(partial, "".join(streamed), key=len)
                if retry:
                    _note_attempts(late, retry + 1)
                raise late from None
            except ModelError as err:
                if len(err.partial_text) > len(partial):
                    partial = err.partial_text
                err.partial_text = partial
                timeouts += isinstance(err, ModelTimeoutError)
                delay = self.delay_for(retry, err) if err.retryable else 0.0
                if (
                    not err.retryable
                    or retry >= self.max_retries
                    or timeouts > self.max_timeout_retries
                    or (ends is not None and self._clock() + delay >= ends)
                ):
                    if retry:
                        _note_attempts(err, retry + 1)
                    raise
                retry += 1
                log.warning(
                    "%s/%s: %s; retry %d/%d in %.2fs",
                    err.backend or self.backend,
                    err.model or self.model_for(request),
                    type(err).__name__,
                    retry,
                    self.max_retries,
                    delay,
                )
                await self._sleep(delay)


def _note_attempts(err: ModelError, attempts: int) -> None:
    """Say in the error's message how many attempts were made (the object stays the same)."""
    err.attempts = attempts  # type: ignore[attr-defined]
    err.message = f"{err.message} (after {attempts} attempts)"
    err.args = (err._render(),)
