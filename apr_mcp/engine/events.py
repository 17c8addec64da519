"""Progress events of one run, delivered in order by a single task.

Threads emit events without awaiting (``emit`` never blocks), and one delivery task hands them to
the caller's callback one after another. That keeps ``completed`` monotonic on the wire even when
many threads finish at once and the callback itself awaits (an MCP progress notification does),
and a slow or broken callback never stalls or fails a thread.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..schemas import RunEvent

__all__ = ["EventCallback", "EventKind", "EventSink", "event_sink"]

log = logging.getLogger(__name__)

#: Receives every RunEvent of a run (progress for the CLI and MCP progress notifications).
EventCallback = Callable[[RunEvent], Awaitable[None]]

EventKind = str


class EventSink:
    """Counts threads (``total`` known so far, ``completed`` finished) and queues events."""

    def __init__(self, send: MemoryObjectSendStream[RunEvent] | None = None) -> None:
        self._send = send
        self.completed = 0
        self.total = 0
        self.history: list[RunEvent] = []

    def add_threads(self, n: int) -> None:
        self.total += n

    def emit(
        self,
        kind: EventKind,
        message: str,
        *,
        thread_id: str | None = None,
        completes: bool = False,
    ) -> RunEvent:
        """Queue one event; ``completes=True`` counts a thread as finished first."""
        if completes:
            self.completed = (
                min(self.total, self.completed + 1) if self.total else self.completed + 1
            )
        event = RunEvent(
            kind=kind,  # type: ignore[arg-type]
            thread_id=thread_id,
            message=message,
            completed=self.completed,
            total=max(self.total, self.completed),
        )
        self.history.append(event)
        if self._send is not None:
            try:
                self._send.send_nowait(event)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # the run is over; late events only go to history
        log.debug("event %s: %s", kind, message)
        return event


async def _deliver(receive: MemoryObjectReceiveStream[RunEvent], callback: EventCallback) -> None:
    async with receive:
        async for event in receive:
            try:
                await callback(event)
            except Exception:
                log.warning("progress callback failed on %s event", event.kind, exc_info=True)


@asynccontextmanager
async def event_sink(callback: EventCallback | None) -> AsyncIterator[EventSink]:
    """An :class:`EventSink` whose events reach ``callback`` in order; drained on exit."""
    if callback is None:
        yield EventSink()
        return
    send, receive = anyio.create_memory_object_stream[RunEvent](math.inf)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_deliver, receive, callback)
            with send:
                yield EventSink(send)
    except BaseExceptionGroup as group:
        # The delivery task never raises, so a lone error is the caller's own (a PlanError, a
        # KeyboardInterrupt): re-raise it as such instead of wrapped in a task-group group.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
