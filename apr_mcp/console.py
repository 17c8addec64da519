"""Terminal rendering for ``apr-mcp solve``: live per-thread progress and the result tables.

Progress goes to stderr (a live table on a terminal, one plain line per event otherwise); the
answer and the tables go to stdout so they can be piped. Counters count threads, as this console
saw them start and end, never a stage's own bookkeeping: ``[2/3]`` means two of the three
threads known so far are over, and the count never goes down. Tokens served from the cache are
shown as saved, not spent.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Literal, Self

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from .schemas import RunEvent, SolveResult, ThreadStatus

__all__ = ["SolveConsole", "thread_table", "token_totals"]

_FINAL = frozenset({"done", "cached", "failed", "cancelled", "skipped"})
# Answer text as it streams: not progress. It goes to stdout as it is produced (above the live
# table on a terminal); the result then prints only what the stream did not already show.
_STREAMED = frozenset({"answer"})
_STREAM_TAIL = 160
_STYLE = {
    "done": "green",
    "cached": "cyan",
    "failed": "red",
    "cancelled": "yellow",
    "skipped": "dim",
    "started": "blue",
    "spawned": "magenta",
}


class _PipeConsole(Console):
    """A console that lets a closed pipe reach the caller (rich's default exits with status 1)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


class SolveConsole:
    """Receives RunEvents while a run goes; prints the result when it is done."""

    def __init__(self, *, live: bool | None = None, stream_answer: bool = True) -> None:
        self.err = Console(file=sys.stderr, highlight=False)
        # Piped output gets a wide table instead of rich's 80-column default, so headers and
        # figures stay on one line for whoever reads or greps it.
        self.out = _PipeConsole(
            file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 140
        )
        self.live_enabled = self.err.is_terminal if live is None else live
        self._threads: dict[str, tuple[str, str]] = {}
        # Per thread: when it started and (once over) when it ended, for the elapsed column.
        self._started: dict[str, float] = {}
        self._ended: dict[str, float] = {}
        self._t0 = time.monotonic()
        self._last = "planning…"
        self._total = 0  # threads known: seen, or announced by the engine's own total
        self._streamed = ""  # the tail of the answer streamed so far
        self.stream_answer = stream_answer
        self._answer: list[str] = []  # everything streamed to stdout
        self._live: Live | None = None

    def __enter__(self) -> Self:
        if self.live_enabled:
            # get_renderable: re-rendered on every refresh, so the clocks tick between events.
            self._live = Live(
                console=self.err, refresh_per_second=8, transient=True, get_renderable=self._render
            )
            self._live.__enter__()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.__exit__(et, ev, tb)
            self._live = None

    def counter(self) -> str:
        """``[done/total]`` over threads, or ``[plan]`` before any thread is known."""
        if self._total == 0:
            return "[plan]"
        return f"[{len(self._ended)}/{self._total}]"

    async def on_event(self, event: RunEvent) -> None:
        if event.kind in _STREAMED:
            self._streamed = (self._streamed + event.message)[-_STREAM_TAIL:]
            if self.stream_answer:
                self._answer.append(event.message)
                try:
                    # Through the live display's proxy on a terminal, so it scrolls above it.
                    sys.stdout.write(event.message)
                    sys.stdout.flush()
                except BrokenPipeError:  # `solve … | head`: the reader has what it wanted
                    self.stream_answer = False
                    self.out.quiet = True
            if self._live is not None:
                self._live.refresh()
            return
        if event.thread_id:
            now = time.monotonic()
            self._threads[event.thread_id] = (event.kind, event.message)
            if event.kind in ("started", "spawned"):
                self._started.setdefault(event.thread_id, now)
            elif event.kind in _FINAL:
                self._ended.setdefault(event.thread_id, now)
        # Monotonic: a later event with a smaller (or zero) total never shrinks the count.
        self._total = max(self._total, len(self._threads), event.total)
        self._last = event.message
        if self._live is not None:
            self._live.refresh()
        else:
            # Plain text, one line per event: no wrapping, so each line is one greppable record.
            line = " ".join(event.message.split())
            sys.stderr.write(f"{self.counter()} {line}\n")
            sys.stderr.flush()

    def _render(self) -> Table:
        now = time.monotonic()
        count = "planning" if self._total == 0 else f"threads {len(self._ended)}/{self._total}"
        table = Table(
            title=f"{count} · {now - self._t0:.1f}s",
            caption=escape(" ".join(self._streamed.split()) or self._last),
            expand=False,
        )
        table.add_column("thread")
        table.add_column("state")
        table.add_column("time", justify="right")
        table.add_column("latest")
        for tid, (kind, message) in self._threads.items():
            start = self._started.get(tid)
            elapsed = "" if start is None else f"{self._ended.get(tid, now) - start:.1f}s"
            table.add_row(
                escape(tid),
                f"[{_STYLE.get(kind, 'white')}]{kind}[/]",
                elapsed,
                escape(message[:80]),
            )
        return table

    def print_result(
        self, result: SolveResult, *, status: Literal["answered", "partial", "failed"] = "answered"
    ) -> None:
        streamed = "".join(self._answer).strip()
        answer = result.answer.strip()
        if not streamed:
            self.out.print(result.answer, markup=False, soft_wrap=True)
        elif streamed.endswith(answer):
            self.out.print()  # the stream ended with the answer: end its line only
        else:
            # The stream was cut short, or is not the answer itself: say what the answer is.
            self.out.print()
            self.out.print()
            self.out.print(f"Answer: {result.answer}", markup=False, soft_wrap=True)
        self.out.print()
        if result.results:
            self.out.print(thread_table(result))
        m = result.metrics
        spent_in, spent_out, saved_in, saved_out = token_totals(result)
        tokens = f"tokens spent {spent_in}→{spent_out} (in→out)"
        if saved_in or saved_out:
            tokens += f" · cached {saved_in}→{saved_out} (saved, not spent)"
        tail = {
            "answered": "",
            "partial": " · PARTIAL answer",
            "failed": " · FAILED: no usable result",
        }
        self.out.print(
            f"run {result.run_id} · {result.strategy} · {m.threads} "
            f"thread{'' if m.threads == 1 else 's'} · "
            f"wall {m.wall_s:.2f}s · critical path {m.critical_path_s:.2f}s · "
            f"{tokens} · max context {m.max_context_tokens} · "
            f"cache hits {m.cache_hits}/{m.model_calls} calls{tail[status]}",
            markup=False,
            soft_wrap=True,
        )
        for d in result.decisions:
            who = f" {d.thread_id}" if d.thread_id else ""
            self.out.print(f"  · {d.kind}{who}: {d.reason}", markup=False, soft_wrap=True)


def token_totals(result: SolveResult) -> tuple[int, int, int, int]:
    """(spent in, spent out, cached in, cached out) of a run.

    The metrics count every call's tokens, cache hits included; a cache hit costs nothing, so its
    tokens are moved to the "cached" side: cached threads, a cached merge, a cached plan stage.
    """
    m = result.metrics
    cached_in = cached_out = 0
    for r in result.results:
        if r.cached:
            cached_in, cached_out = cached_in + r.tokens_in, cached_out + r.tokens_out
    if result.merge is not None and result.merge.cached:
        cached_in += result.merge.tokens_in
        cached_out += result.merge.tokens_out
    plan = m.stages.get("plan")
    if plan is not None and plan.calls and plan.cached_calls == plan.calls:
        cached_in, cached_out = cached_in + plan.tokens_in, cached_out + plan.tokens_out
    if m.model_calls and m.cache_hits >= m.model_calls:  # every call was a hit, whatever the split
        cached_in, cached_out = max(cached_in, m.tokens_in), max(cached_out, m.tokens_out)
    return (
        max(0, m.tokens_in - cached_in),
        max(0, m.tokens_out - cached_out),
        min(cached_in, m.tokens_in),
        min(cached_out, m.tokens_out),
    )


def thread_table(result: SolveResult) -> Table:
    table = Table(title="threads")
    for col in ("id", "status", "tokens in", "tokens out", "latency", "cached", "summary / error"):
        table.add_column(col, justify="right" if col.startswith(("tokens", "latency")) else "left")
    for r in result.results:
        status = r.status.value if isinstance(r.status, ThreadStatus) else str(r.status)
        detail = r.error or r.reason or r.summary or (r.answer or "")
        table.add_row(
            escape(r.id),
            f"[{_STYLE.get(status, 'white')}]{status}[/]",
            str(r.tokens_in),
            str(r.tokens_out),
            f"{r.latency_s:.2f}s",
            "yes" if r.cached else "",
            escape(detail[:70]),
        )
    return table
