"""Run subtasks as a DAG: each starts the moment its dependencies are done.

There are no waves. One dispatcher loop waits for a free concurrency slot (an adjustable
:class:`anyio.CapacityLimiter`) and, once it has one, launches the highest-priority subtask that
is ready *at that moment*; every thread that ends wakes it. A thread's failure is recorded in its
own :class:`~apr_mcp.schemas.ThreadResult` and never touches the others; dependents of a thread
that failed or was cancelled are skipped, with the reason. After every thread event the
:class:`~apr_mcp.engine.controller.Controller` may stop the run, cancel threads, spawn follow-ups
or change the width; each such decision is recorded and emitted.

Cancellation: each thread runs in its own cancel scope so the controller and the deadline can stop
it and record *why*; a cancellation of the caller (the outer scope) is never caught here and
propagates at once — backends close their streams when cancelled.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import get_args

import anyio
import anyio.lowlevel

from ..config import Settings
from ..errors import AprError, ModelOutputError
from ..llm.base import Model, ModelRequest
from ..llm.usable import usable_when
from ..prompts import load_prompt
from ..schemas import Decision, StageUsage, Subtask, ThreadAnswer, ThreadResult, ThreadStatus
from ..tokens import count_messages, count_tokens, truncate_to_tokens
from .controller import (
    Action,
    Cancel,
    Controller,
    Note,
    RunState,
    SetConcurrency,
    Spawn,
    Stop,
    budget_stop,
)
from .events import EventSink
from .protocol import parse_thread_reply, strip_trailer
from .schema_text import schema_text
from .text import one_line

__all__ = ["DagOutcome", "Scheduler", "critical_path"]

log = logging.getLogger(__name__)

_DECISION_KINDS = frozenset(get_args(Decision.model_fields["kind"].annotation))
#: How much of a dependency's full answer is passed on when it has no summary.
_DEP_FALLBACK_TOKENS = 300
#: Streamed text is counted against the token budget as ``len(text) / CHARS_PER_TOKEN`` while it
#: arrives (tiktoken per delta would cost more than the check is worth); finished threads count
#: exactly.
CHARS_PER_TOKEN = 4


@dataclass
class DagOutcome:
    """What running the DAG produced."""

    results: list[ThreadResult]
    decisions: list[Decision]
    usage: StageUsage
    partial: bool
    critical_path_s: float
    state: RunState = field(repr=False)


def critical_path(results: Sequence[ThreadResult]) -> float:
    """Longest chain of thread latencies through ``depends_on`` edges, in seconds.

    Follow-ups depend on their parent, so they extend their parent's chain. Threads that never
    started count 0.
    """
    by_id = {r.id: r for r in results}
    memo: dict[str, float] = {}

    def chain(rid: str) -> float:
        if rid not in memo:
            memo[rid] = 0.0  # cycle guard; validated plans have none
            r = by_id[rid]
            memo[rid] = r.latency_s + max(
                (chain(d) for d in r.depends_on if d in by_id), default=0.0
            )
        return memo[rid]

    return max((chain(rid) for rid in by_id), default=0.0)


class Scheduler:
    """Runs one set of subtasks to completion (or until stopped). One instance per run."""

    def __init__(
        self,
        *,
        solver: Model,
        settings: Settings,
        question: str,
        context: str,
        subtasks: Sequence[Subtask],
        max_concurrency: int,
        sink: EventSink,
        elapsed: Callable[[], float],
        controller: Controller | None = None,
        deadline_s: float | None = None,
        decisions: list[Decision] | None = None,
        tokens_before: int = 0,
        open_input: bool = False,
        deadline_label: str | None = None,
    ) -> None:
        self.solver = solver
        self.settings = settings
        self.sink = sink
        self.controller = controller or Controller(settings)
        self.deadline_s = deadline_s
        #: How the deadline decision names it, e.g. "the run's deadline of 1s (threads stop at
        #: 0.8s to leave time for the merge)"; default: the threads' own figure.
        self.deadline_label = deadline_label
        self.state = RunState(
            question=question,
            context=context,
            settings=settings,
            elapsed=elapsed,
            concurrency=max(1, max_concurrency),
            decisions=decisions if decisions is not None else [],
            tokens_before=tokens_before,
        )
        self.usage = StageUsage()
        self.partial = False
        self._limiter = anyio.CapacityLimiter(self.state.concurrency)
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._cancel_reasons: dict[str, str] = {}
        self._order: dict[str, int] = {}  # plan order, then spawn order: the priority tie-break
        self._system_tokens: dict[str, int] = {}
        self._active = 0  # threads launched and not yet through the controller
        # Estimated tokens of running threads (prompt + streamed so far), for the live budget.
        self._inflight: dict[str, int] = {}
        self._changed = anyio.Event()
        self._deadline_at = math.inf  # on the run's clock; set when the run starts
        # While open, more subtasks may arrive (a plan still streaming): the run does not end.
        self._input_open = open_input
        self.state.more_coming = open_input
        for sub in subtasks:
            self._add(sub, depth=0)

    def add_subtask(self, sub: Subtask) -> None:
        """Add a subtask while the run is going (from a streaming plan); it starts as soon as a
        slot is free and its dependencies are done. Ignored once the run is stopping."""
        if sub.id in self.state.subtasks or self.state.stopping is not None:
            return
        self._add(sub, depth=0)
        self.sink.add_threads(1)
        self._notify()

    def charge_planning(self, tokens: int, *, final: bool = False) -> None:
        """Count the streaming planner's tokens against the run's token budget: an estimate
        while it streams, the exact figure once it is done (``final``)."""
        if final:
            self._inflight.pop("\0plan", None)
            self.state.tokens_before += tokens
            self._check_budget()
        else:
            self._charge("\0plan", tokens)

    def close_input(self) -> None:
        """No more subtasks will be added; dependencies on ids never added are skipped."""
        self._input_open = False
        self.state.more_coming = False
        st = self.state
        for sid in sorted(st.pending, key=self._order.__getitem__):
            unknown = [d for d in st.subtasks[sid].depends_on if d not in st.subtasks]
            if unknown:
                self._end_unstarted(
                    sid, ThreadStatus.skipped, f"depends on unknown subtask {', '.join(unknown)}"
                )
        self._notify()

    # ----- public -----

    async def run(self) -> DagOutcome:
        """Run until every subtask has ended; returns results in plan order (spawned last)."""
        self.sink.add_threads(len(self.state.subtasks))
        if self.deadline_s is not None and self.deadline_s != math.inf:
            self._deadline_at = self.state.elapsed() + self.deadline_s
        async with anyio.create_task_group() as tg:
            if self.deadline_s is not None and self.deadline_s != math.inf:
                tg.start_soon(self._deadline_watch, self.deadline_s)
            await self._dispatch(tg)
            tg.cancel_scope.cancel()  # every thread has ended; only the deadline watcher is left
        st = self.state
        results = [st.results[sid] for sid in st.subtasks if sid in st.results]
        return DagOutcome(
            results=results,
            decisions=st.decisions,
            usage=self.usage,
            partial=self.partial,
            critical_path_s=critical_path(results),
            state=st,
        )

    def set_concurrency(self, limit: int) -> None:
        """Change the width; more slots wake waiting launches, fewer never pre-empt running ones."""
        self.state.concurrency = max(1, limit)
        self._limiter.total_tokens = self.state.concurrency
        self._notify()

    # ----- dispatching -----

    def _add(self, sub: Subtask, *, depth: int) -> None:
        self.state.subtasks[sub.id] = sub
        self.state.pending.add(sub.id)
        self.state.depth[sub.id] = depth
        self._order[sub.id] = len(self._order)

    def _notify(self) -> None:
        self._changed.set()

    async def _wait_change(self) -> None:
        self._changed = anyio.Event()
        await self._changed.wait()

    def _ready(self) -> list[str]:
        st = self.state
        ready = [
            sid
            for sid in st.pending
            if all(
                d in st.results and st.results[d].status is ThreadStatus.done
                for d in st.subtasks[sid].depends_on
            )
        ]
        ready.sort(key=lambda sid: (-st.subtasks[sid].priority, self._order[sid]))
        return ready

    async def _dispatch(self, tg: anyio.abc.TaskGroup) -> None:
        st = self.state
        while True:
            self._settle()
            if not self._ready():
                if self._active == 0 and (not self._input_open or st.stopping is not None):
                    self._orphans()
                    return
                await self._wait_change()
                continue
            borrower = object()
            await self._limiter.acquire_on_behalf_of(borrower)
            ready = self._ready()  # the world may have changed while we waited for a slot
            if not ready or st.stopping is not None:
                self._limiter.release_on_behalf_of(borrower)
                continue
            sid = ready[0]
            st.pending.discard(sid)
            st.running[sid] = st.elapsed()
            self._active += 1
            tg.start_soon(self._thread, sid, borrower, name=f"apr-thread-{sid}")

    def _settle(self) -> None:
        """Skip pending subtasks whose dependency ended without a result."""
        st = self.state
        changed = True
        while changed:
            changed = False
            for sid in sorted(st.pending, key=self._order.__getitem__):
                sub = st.subtasks[sid]
                bad = [
                    d
                    for d in sub.depends_on
                    if d in st.results and st.results[d].status is not ThreadStatus.done
                ]
                if bad:
                    dep = st.results[bad[0]]
                    self._end_unstarted(
                        sid, ThreadStatus.skipped, f"dependency {dep.id} {dep.status.value}"
                    )
                    changed = True

    def _orphans(self) -> None:
        # Unreachable with a validated plan; kept so a bug can never hang a run.
        for sid in sorted(self.state.pending, key=self._order.__getitem__):
            self._end_unstarted(sid, ThreadStatus.skipped, "its dependencies never finished")

    def _end_unstarted(self, sid: str, status: ThreadStatus, reason: str) -> None:
        st = self.state
        st.pending.discard(sid)
        sub = st.subtasks[sid]
        st.results[sid] = ThreadResult(
            id=sid,
            status=status,
            prompt=sub.prompt,
            reason=reason,
            depends_on=list(sub.depends_on),
            spawned_from=sub.spawned_from,
        )
        self.sink.emit(
            status.value, f"{sid} {status.value}: {reason}", thread_id=sid, completes=True
        )

    async def _deadline_watch(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))
        st = self.state
        n_run, n_pend = len(st.running), len(st.pending)
        if n_run or n_pend:
            self._apply(
                [
                    Stop(
                        kind="deadline",
                        reason=f"{self.deadline_label or f'deadline of {seconds:.3g}s'} reached: "
                        f"cancelled {n_run} running and "
                        f"{n_pend} pending thread(s); returning partial results",
                        thread_reason="deadline",
                    )
                ]
            )
        self._notify()

    # ----- one thread -----

    async def _thread(self, sid: str, borrower: object) -> None:
        try:
            result = await self._call(sid)
            await self._finish(result)
        finally:
            # The slot is freed only after the controller has seen the result, so a width
            # change or a stop it decides applies before the next launch.
            self._limiter.release_on_behalf_of(borrower)
            self._active -= 1
            self._notify()

    def _request(self, sub: Subtask) -> ModelRequest:
        st = self.state
        deps = []
        for d in sub.depends_on:
            r = st.results[d]
            text = r.summary or truncate_to_tokens(r.answer or "", _DEP_FALLBACK_TOKENS)
            deps.append(f"[{d}] {_short(st.subtasks[d].prompt)}\n{text}")
        as_json = self.settings.thread_format == "json"
        prompt = load_prompt("solver_json" if as_json else "solver")
        values = {"schema": schema_text(ThreadAnswer)} if as_json else {}
        return ModelRequest(
            messages=prompt.render(
                question=st.question,
                context=st.context,
                dependencies="\n\n".join(deps) or "(none)",
                subtask=sub.prompt,
                **values,
            ),
            max_tokens=self.settings.max_tokens,
            temperature=self.settings.temperature,
            # No call (or retry of it) outlives the threads' deadline.
            timeout_s=_remaining(self._deadline_at - st.elapsed()),
            purpose="solver",
            prompt_version=prompt.key,
        )

    def _prompt_tokens(self, request: ModelRequest) -> int:
        """``count_messages(request.messages)``, with the system prompt (the same for every
        thread, and the longest part) counted once per run: tiktoken is the engine's largest
        per-thread CPU cost."""
        empty = count_messages([])
        total = empty
        for m in request.messages:
            if m.role == "system" and m.content in self._system_tokens:
                total += self._system_tokens[m.content]
                continue
            tokens = count_messages([(str(m.role), m.content)]) - empty
            if m.role == "system":
                self._system_tokens[m.content] = tokens
            total += tokens
        return total

    async def _call(self, sid: str) -> ThreadResult:
        from ..llm.structured import complete_structured  # helper module; imported late on purpose

        st = self.state
        sub = st.subtasks[sid]
        started = st.running[sid]
        self.sink.emit("started", f"{sid} started", thread_id=sid)
        scope = anyio.CancelScope()
        self._scopes[sid] = scope
        answer: ThreadAnswer | None = None
        cached = False
        tokens_in = tokens_out = prompt_tokens = context = 0
        error: str | None = None
        # What streamed before a cancel or failure: tokens spent that no response will report.
        streamed: list[str] = []
        chars = 0
        sent = False

        def on_token(delta: str) -> None:
            nonlocal chars
            streamed.append(delta)
            chars += len(delta)
            self._charge(sid, prompt_tokens + chars // CHARS_PER_TOKEN)

        try:
            with scope:
                request = self._request(sub)
                self.usage.calls += 1
                prompt_tokens = self._prompt_tokens(request)
                self._charge(sid, prompt_tokens)  # may stop the run before this prompt is sent
                if scope.cancel_called:
                    await anyio.lowlevel.checkpoint()  # raises: the stop cancelled this thread
                sent = True
                if self.settings.thread_format == "json":
                    answer, response = await complete_structured(
                        self.solver, request, ThreadAnswer, on_token=on_token
                    )
                else:
                    # Only a reply the protocol accepts may be cached (never an echo or junk).
                    with usable_when(partial(_parses, prompt=sub.prompt)):
                        response = await self.solver.complete(request, on_token=on_token)
                    answer = parse_thread_reply(response.text, prompt=sub.prompt)
                cached = response.cached
                tokens_in, tokens_out = response.usage.input_tokens, response.usage.output_tokens
                context = response.max_context_tokens
        except AprError as exc:
            error = str(exc)
        except Exception as exc:
            log.exception("thread %s crashed", sid)
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self._scopes.pop(sid, None)
            self._inflight.pop(sid, None)
            st.running.pop(sid, None)
        finished = st.elapsed()
        common: dict[str, object] = {
            "id": sid,
            "prompt": sub.prompt,
            "depends_on": list(sub.depends_on),
            "spawned_from": sub.spawned_from,
            "started_s": round(started, 6),
            "finished_s": round(finished, 6),
            "latency_s": round(max(0.0, finished - started), 6),
        }
        if answer is None:
            # A cancelled call was sent, so its prompt counts; a failed one only if it streamed.
            cancelled = error is None or sid in self._cancel_reasons
            tokens_in = prompt_tokens if sent and (cancelled or streamed) else 0
            tokens_out = count_tokens("".join(streamed)) if streamed else 0
            common.update(tokens_in=tokens_in, tokens_out=tokens_out)
            context = tokens_in + tokens_out  # what the model held when the call ended
        self.usage.max_context_tokens = max(self.usage.max_context_tokens, context)
        self.usage.tokens_in += tokens_in
        self.usage.tokens_out += tokens_out
        st.tokens_in += tokens_in
        st.tokens_out += tokens_out
        if answer is not None:
            self.usage.cached_calls += int(cached)
            return ThreadResult(
                status=ThreadStatus.done,
                answer=answer.answer,
                summary=answer.summary,
                confidence=answer.confidence,
                settles_question=answer.settles_question,
                follow_ups=list(answer.follow_ups),
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                cached=cached,
                **common,  # type: ignore[arg-type]
            )
        if sid in self._cancel_reasons:
            # What streamed before the cut is kept (marked partial by the status): at a deadline
            # it is often most of an answer.
            text = strip_trailer("".join(streamed)).strip() if streamed else ""
            return ThreadResult(
                status=ThreadStatus.cancelled,
                reason=self._cancel_reasons[sid],
                answer=text or None,
                **common,  # type: ignore[arg-type]
            )
        if error is None:  # cancelled without a recorded reason (should not happen)
            return ThreadResult(status=ThreadStatus.cancelled, reason="cancelled", **common)  # type: ignore[arg-type]
        return ThreadResult(status=ThreadStatus.failed, error=error, **common)  # type: ignore[arg-type]

    def _charge(self, sid: str, estimate: int) -> None:
        """Record a running thread's estimated spend; stop the run once the budget is crossed."""
        self._inflight[sid] = estimate
        self._check_budget()

    def _check_budget(self) -> None:
        limit = self.settings.token_budget
        st = self.state
        if limit is None or st.stopping is not None:
            return
        used = st.tokens_used + sum(self._inflight.values())
        if used >= limit:
            self._apply([budget_stop(st, used, limit)])

    async def _finish(self, result: ThreadResult) -> None:
        st = self.state
        st.results[result.id] = result
        sid = result.id
        if result.status is ThreadStatus.done and result.cached:
            self.sink.emit("cached", f"{sid} served from cache", thread_id=sid, completes=True)
        elif result.status is ThreadStatus.done:
            tokens = result.tokens_in + result.tokens_out
            self.sink.emit(
                "done",
                f"{sid} done ({tokens} tokens, {result.latency_s:.1f}s)",
                thread_id=sid,
                completes=True,
            )
        elif result.status is ThreadStatus.failed:
            self.sink.emit(
                "failed",
                f"{sid} failed: {_short(result.error or '', 160)}",
                thread_id=sid,
                completes=True,
            )
        else:
            self.sink.emit(
                "cancelled", f"{sid} cancelled: {result.reason}", thread_id=sid, completes=True
            )
        self._settle()
        try:
            actions = await self.controller.on_result(st, result)
        except Exception as exc:
            log.warning("controller failed after %s", sid, exc_info=True)
            actions = [Note(kind="meta", reason=f"controller failed after {sid}: {exc}")]
        self._apply(actions)

    # ----- applying the controller's actions -----

    def decide(self, kind: str, reason: str, thread_id: str | None = None) -> Decision:
        """Record a decision and emit it as a ``decision`` event."""
        if kind not in _DECISION_KINDS:
            kind = "meta"
        decision = Decision(
            at_s=round(self.state.elapsed(), 6),
            kind=kind,  # type: ignore[arg-type]
            thread_id=thread_id,
            reason=reason,
        )
        self.state.decisions.append(decision)
        self.sink.emit("decision", reason, thread_id=thread_id)
        return decision

    def _cancel(self, sid: str, reason: str) -> bool:
        st = self.state
        if sid in st.pending:
            self._end_unstarted(sid, ThreadStatus.cancelled, reason)
            return True
        if sid in self._scopes:
            self._cancel_reasons[sid] = reason
            self._scopes[sid].cancel()
            return True
        return False

    def _apply(self, actions: list[Action]) -> None:
        st = self.state
        for action in actions:
            if isinstance(action, Cancel):
                if self._cancel(action.thread_id, action.reason):
                    self.decide("cancel", action.reason, action.thread_id)
            elif isinstance(action, Stop):
                if st.stopping is not None:
                    continue
                st.stopping = action.kind
                self.partial = self.partial or action.kind in ("deadline", "budget")
                self.decide(action.kind, action.reason, action.thread_id)
                why = action.thread_reason or action.reason
                for sid in sorted(st.pending, key=self._order.__getitem__):
                    self._cancel(sid, why)
                if action.cancel_running:
                    for sid in list(st.running):
                        self._cancel(sid, why)
            elif isinstance(action, Spawn):
                sub = action.subtask
                if st.stopping is not None or sub.id in st.subtasks:
                    continue
                parent_depth = st.depth.get(sub.spawned_from or "", 0)
                self._add(sub, depth=parent_depth + 1)
                st.followups_spawned += 1
                self.sink.add_threads(1)
                self.sink.emit(
                    "spawned",
                    f"{sub.id} spawned from {sub.spawned_from}: {_short(sub.prompt)}",
                    thread_id=sub.id,
                )
                self.decide("spawn", action.reason, sub.spawned_from)
            elif isinstance(action, SetConcurrency):
                self.set_concurrency(action.limit)
                self.decide("width", action.reason)
            elif isinstance(action, Note):
                self.decide(action.kind, action.reason, action.thread_id)
        self._settle()
        self._notify()


#: A request's own timeout runs this much past the deadline, so the deadline's cancellation (which
#: keeps what streamed and marks the run partial) wins; the timeout only stops retries from
#: outliving the run.
TIMEOUT_GRACE_S = 0.5


def _remaining(seconds: float) -> float | None:
    """A request's ``timeout_s`` for ``seconds`` left: None when there is no deadline."""
    return None if seconds == math.inf else max(seconds, 0.0) + TIMEOUT_GRACE_S


def _parses(text: str, *, prompt: str) -> bool:
    try:
        parse_thread_reply(text, prompt=prompt)
    except ModelOutputError:
        return False
    return True


def _short(text: str, limit: int = 80) -> str:
    return one_line(text, limit)
