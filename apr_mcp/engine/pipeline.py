"""The Engine: plan → parallel solve → merge, as four async methods.

``decompose``, ``parallel_solve`` and ``merge`` are the three stages the MCP tools expose one by
one (their inputs and outputs chain unchanged); ``solve`` runs the whole pipeline with a strategy:

* ``adaptive`` — plan (heuristics may skip the planner); a question not worth splitting is one
  solver call; otherwise the subtasks run as a DAG under the controller and are merged.
* ``sequential`` — the baseline: one chain-of-thought call, no structure.
* ``fixed`` — a fixed-width baseline: always ``settings.max_threads`` subtasks.

Time budget of ``solve`` (``deadline_s``, default ``settings.deadline_s``): planning may use a
quarter of it, threads stop early enough to leave a reserve for the merge, and a merge that would
overrun falls back to the most relevant result, so a host with a hard timeout gets an answer.
``deadline_s=math.inf`` means no deadline (a command-line run that may take as long as it needs).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

import anyio

from ..config import Settings
from ..errors import AprError, ConfigError, ModelError, PlanError
from ..limits import MAX_CONCURRENCY, MAX_PROMPT_CHARS
from ..llm.base import Model, ModelRequest
from ..llm.cached import cache_status
from ..llm.limiter import find_limiter
from ..prompts import load_prompt
from ..schemas import (
    Decision,
    MergeResult,
    MergeStrategy,
    Plan,
    RunMetrics,
    SolveResult,
    SolveRun,
    StageUsage,
    Subtask,
    ThreadResult,
    ThreadStatus,
    run_status,
)
from ..tokens import count_messages, count_tokens
from ..trace import RunStore, new_run_id
from .controller import Controller, Note
from .debug import DebugStrategy
from .events import EventCallback, EventSink, event_sink
from .merge import MERGE_LATE, bounded_merge, merge_usage
from .meta import MetaController
from .plan import (
    HOST_MAX_SUBTASKS,
    estimate_complexity,
    find_duplicates,
    make_plan,
    single_task_plan,
    validate_plan,
)
from .scheduler import TIMEOUT_GRACE_S, DagOutcome, Scheduler
from .strategy import GeneralStrategy, Strategy

__all__ = ["Engine", "EventCallback"]

log = logging.getLogger(__name__)

#: Share of the deadline planning may take before falling back to one task.
PLAN_SHARE = 0.25
#: Share of the deadline (at most MERGE_RESERVE_MAX_S) kept free for the merge after the threads.
MERGE_SHARE = 0.2
MERGE_RESERVE_MAX_S = 10.0

#: Who made a plan, as the decisions say it.
_SOURCE_NAME = {
    "model": "planner",
    "heuristic": "heuristics",
    "fallback": "fallback",
    "host": "host",
}
#: Where a plan's complexity came from, as the width decision says it.
_COMPLEXITY_BY = {
    "model": "estimated by the planner",
    "heuristic": "estimated by the heuristics",
    "fallback": "fallback plan",
    "host": "estimated from the question",
}

ControllerFactory = Callable[[Settings, "Model | None"], Controller]


class _Clock:
    """Seconds since the run started (monotonic), the time base of every trace field."""

    def __init__(self) -> None:
        self.t0 = anyio.current_time()

    def __call__(self) -> float:
        return anyio.current_time() - self.t0


class Engine:
    """One engine per configuration. Safe to use for many concurrent runs.

    ``controller`` is the optional meta-controller model; ``controller_factory`` builds the
    per-run :class:`~apr_mcp.engine.controller.Controller` (override it to plug in a subclass;
    the default is a :class:`~apr_mcp.engine.meta.MetaController` that also reports the
    concurrency limiter's backoff/recover decisions when the solver is wrapped in a
    :class:`~apr_mcp.llm.limiter.LimitedModel`); ``run_store`` saves every ``parallel_solve`` and
    ``solve`` result as a trace.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        planner: Model,
        solver: Model,
        merger: Model,
        controller: Model | None = None,
        run_store: RunStore | None = None,
        controller_factory: ControllerFactory | None = None,
    ) -> None:
        self.settings = settings
        self.planner = planner
        self.solver = solver
        self.merger = merger
        self.controller = controller
        self.run_store = run_store
        self.controller_factory: ControllerFactory = controller_factory or self._default_controller

    def _default_controller(self, settings: Settings, model: Model | None) -> Controller:
        # Found per run: the limiter belongs to the solver's wrapper chain, if there is one.
        return MetaController(settings, model, limiter=find_limiter(self.solver))

    # ----- stage 1 -----

    async def decompose(
        self,
        question: str,
        *,
        context: str = "",
        max_subtasks: int | None = None,
        deadline_s: float | None = None,
    ) -> Plan:
        """Plan ``question``: whether to split, why, and the subtasks (always at least one).

        A planner slower than the deadline (default ``settings.deadline_s``) gives a one-task
        fallback plan that says so, never a timeout."""
        plan, _ = await self._plan(
            question, context, max_subtasks, self._deadline(deadline_s), _Clock(), share=PLAN_SHARE
        )
        return plan

    # ----- stage 2 -----

    async def parallel_solve(
        self,
        question: str,
        subtasks: list[Subtask] | None = None,
        *,
        context: str = "",
        max_concurrency: int | None = None,
        deadline_s: float | None = None,
        on_event: EventCallback | None = None,
        complexity: int | None = None,
    ) -> SolveRun:
        """Solve ``subtasks`` (planned first when None) concurrently; never raises for a thread's
        failure. Raises :class:`PlanError` for invalid host subtasks (before anything runs).

        ``complexity`` (1..10) of host subtasks is only reported in the width decision; when
        None it is estimated from the question by the heuristics."""
        clock = _Clock()
        deadline = self._deadline(deadline_s)
        decisions: list[Decision] = []
        stages: dict[str, StageUsage] = {}
        extra: list[ThreadResult] = []
        host: Plan | None = None
        if subtasks is not None:
            # Validated outside any task group, so a bad plan raises PlanError itself.
            host, extra = self._host_plan(subtasks, question, context, complexity)
        controller = self.controller_factory(self.settings, self.controller)
        async with event_sink(on_event) as sink:
            _, plan_usage, outcome, plan_latency = await self._plan_and_run(
                question,
                context,
                sink,
                clock,
                decisions,
                controller,
                host=host,
                max_subtasks=None,
                max_concurrency=max_concurrency,
                plan_until=PLAN_SHARE * deadline,
                threads_until=deadline,
                complexity_by="given by the caller" if complexity is not None else None,
            )
            if plan_usage is not None:
                stages["plan"] = plan_usage
            results = outcome.results
            partial = outcome.partial
            critical = plan_latency + outcome.critical_path_s
            if not results:  # not split: one call, in the same form as the sequential baseline
                thread, stages["solve"], _ = await self._single_call(
                    question, context, deadline - clock(), sink, clock, label="unsplit"
                )
                results, partial = [thread], thread.status is ThreadStatus.cancelled
                critical = plan_latency + thread.latency_s
            else:
                stages["solve"] = outcome.usage
            results = results + extra
            _record_notes(controller.pending_notes(), decisions, sink, clock)
            sink.emit("finished", _finished_message(results, clock()))
        metrics = _metrics(results, stages, clock(), partial, critical)
        run = SolveRun(
            run_id=new_run_id(),
            status=run_status(results, partial),
            question=question,
            results=results,
            metrics=metrics,
            decisions=decisions,
            partial=partial,
        )
        await self._save(run)
        return run

    # ----- stage 3 -----

    async def merge(
        self,
        question: str,
        results: list[ThreadResult],
        *,
        context: str = "",
        strategy: MergeStrategy = MergeStrategy.compose,
        context_budget_tokens: int | None = None,
        priorities: dict[str, int] | None = None,
        deadline_s: float | None = None,
    ) -> MergeResult:
        """Merge thread results (e.g. ``SolveRun.results``) into one answer within a budget.

        A merge call slower than the deadline (default ``settings.deadline_s``) gives the most
        relevant result with a note instead of a timeout."""
        return await bounded_merge(
            self.merger,
            question,
            results,
            context=context,
            strategy=strategy,
            budget_tokens=context_budget_tokens or self.settings.merge_budget_tokens,
            settings=self.settings,
            seconds=self._deadline(deadline_s),
            priorities=priorities,
        )

    # ----- the whole pipeline -----

    async def solve(
        self,
        question: str,
        *,
        context: str = "",
        strategy: Literal["adaptive", "sequential", "fixed"] = "adaptive",
        mode: Literal["general", "debug"] = "general",
        max_subtasks: int | None = None,
        max_concurrency: int | None = None,
        deadline_s: float | None = None,
        merge_strategy: MergeStrategy | None = None,
        on_event: EventCallback | None = None,
    ) -> SolveResult:
        """Answer ``question`` end to end. ``mode="debug"`` runs parallel-hypotheses debugging."""
        plan_strategy: Strategy = GeneralStrategy()
        if mode == "debug":
            if not question.strip():
                raise PlanError(
                    "nothing to debug: pass the error message, stack trace or wrong behaviour"
                )
            plan_strategy = DebugStrategy(error=question, code=context)
            strategy = "adaptive"
        if strategy == "sequential":
            result = await self._sequential(question, context, deadline_s, on_event)
        elif strategy in ("adaptive", "fixed"):
            result = await self._pipeline(
                question,
                context,
                strategy,
                plan_strategy,
                max_subtasks=max_subtasks,
                max_concurrency=max_concurrency,
                deadline_s=deadline_s,
                merge_strategy=merge_strategy,
                on_event=on_event,
            )
        else:
            raise AprError(f"unknown strategy {strategy!r}: use adaptive, sequential or fixed")
        await self._save(result)
        return result

    async def _pipeline(
        self,
        question: str,
        context: str,
        strategy: Literal["adaptive", "fixed"],
        plan_strategy: Strategy,
        *,
        max_subtasks: int | None,
        max_concurrency: int | None,
        deadline_s: float | None,
        merge_strategy: MergeStrategy | None,
        on_event: EventCallback | None,
    ) -> SolveResult:
        clock = _Clock()
        deadline = self._deadline(deadline_s)
        decisions: list[Decision] = []
        stages: dict[str, StageUsage] = {}
        controller = self.controller_factory(self.settings, self.controller)
        reserve = min(MERGE_RESERVE_MAX_S, MERGE_SHARE * deadline)
        async with event_sink(on_event) as sink:
            force = self.settings.max_threads if strategy == "fixed" else None
            plan, plan_usage, outcome, plan_latency = await self._plan_and_run(
                question,
                context,
                sink,
                clock,
                decisions,
                controller,
                host=None,
                max_subtasks=max_subtasks,
                max_concurrency=max_concurrency,
                plan_until=PLAN_SHARE * deadline,
                threads_until=deadline - reserve,
                force_width=force,
                plan_strategy=plan_strategy,
                run_deadline=deadline,
            )
            stages["plan"] = plan_usage or StageUsage()
            if not outcome.results:
                # Not split: exactly one call, the same as the sequential strategy's.
                thread, stages["solve"], answer = await self._single_call(
                    question, context, deadline - clock(), sink, clock, label="unsplit"
                )
                _record_notes(controller.pending_notes(), decisions, sink, clock)
                sink.emit("finished", _finished_message([thread], clock()))
                return self._one_call_result(
                    question,
                    plan_strategy.name or strategy,
                    thread,
                    answer,
                    stages,
                    clock,
                    decisions,
                    plan_latency + thread.latency_s,
                    plan=plan,
                )
            stages["solve"] = outcome.usage
            if (
                merge_strategy is None
                and force is not None
                and plan.reason.startswith("fixed baseline")
            ):
                merge_strategy = MergeStrategy.vote
            merge_strategy = plan_strategy.merge_strategy(plan, merge_strategy)
            priorities = {s.id: s.priority for s in outcome.state.subtasks.values()}
            merge_started = clock()
            sink.emit(
                "merging",
                f"merging {sum(r.status is ThreadStatus.done for r in outcome.results)} "
                f"result(s) ({merge_strategy.value})",
            )

            def stream_answer(delta: str) -> None:
                sink.emit("answer", delta)

            merged = await plan_strategy.merge(
                self.merger,
                self.settings,
                question,
                context,
                outcome.results,
                strategy=merge_strategy,
                seconds=deadline - clock(),
                priorities=priorities,
                on_token=stream_answer,
            )
            merge_latency = clock() - merge_started if merged.context_tokens else 0.0
            stages["merge"] = merge_usage(merged)
            # Limit changes after the last thread event (e.g. the merge call was rate limited).
            _record_notes(controller.pending_notes(), decisions, sink, clock)
            sink.emit("finished", _finished_message(outcome.results, clock()))
        partial = outcome.partial or merged.note.startswith(MERGE_LATE)
        metrics = _metrics(
            outcome.results,
            stages,
            clock(),
            partial,
            plan_latency + outcome.critical_path_s + merge_latency,
        )
        return SolveResult(
            run_id=new_run_id(),
            status=run_status(outcome.results, partial),
            question=question,
            strategy=plan_strategy.name or strategy,
            answer=merged.answer,
            confidence=merged.confidence,
            plan=plan,
            results=outcome.results,
            merge=merged,
            metrics=metrics,
            decisions=decisions,
            partial=partial,
            backend=self.solver.backend,
            model=self.solver.model_name,
        )

    # ----- pieces -----

    def _deadline(self, deadline_s: float | None) -> float:
        """The run's deadline: the caller's, else the settings'; ``math.inf`` for none."""
        deadline = self.settings.deadline_s if deadline_s is None else deadline_s
        if not deadline > 0:  # also NaN
            raise ConfigError(
                f"deadline_s must be > 0 seconds (inf for no deadline), got {deadline_s}"
            )
        return deadline

    async def _plan(
        self,
        question: str,
        context: str,
        max_subtasks: int | None,
        deadline: float,
        clock: _Clock,
        *,
        force_width: int | None = None,
        share: float = PLAN_SHARE,
    ) -> tuple[Plan, StageUsage]:
        """Plan with no consumer of streamed subtasks (``decompose``), within ``share`` of the
        deadline: the same planning budget ``solve`` has."""
        seconds = share * deadline
        with anyio.move_on_after(seconds) as scope:
            return await make_plan(
                self.planner,
                question,
                context,
                self.settings,
                max_subtasks=max_subtasks,
                force_width=force_width,
            )
        assert scope.cancelled_caught
        plan = single_task_plan(
            question, reason=f"planning took longer than {seconds:.3g}s; answering with one call"
        )
        return plan, StageUsage(calls=1)

    def _concurrency(self, max_concurrency: int | None) -> tuple[int, str]:
        """How many threads may run at once. A resource decision: only the caller (and, at run
        time, the limiter and dependencies) may lower it; a planner's suggestion never does."""
        cap = self.settings.max_concurrency
        if max_concurrency is not None:
            return max(1, min(max_concurrency, MAX_CONCURRENCY)), "requested by the caller"
        return max(
            1, min(cap, MAX_CONCURRENCY)
        ), f"one per subtask, capped by max_concurrency {cap}"

    async def _plan_and_run(
        self,
        question: str,
        context: str,
        sink: EventSink,
        clock: _Clock,
        decisions: list[Decision],
        controller: Controller,
        *,
        host: Plan | None,
        max_subtasks: int | None,
        max_concurrency: int | None,
        plan_until: float,
        threads_until: float,
        force_width: int | None = None,
        complexity_by: str | None = None,
        plan_strategy: Strategy | None = None,
        run_deadline: float | None = None,
    ) -> tuple[Plan, StageUsage | None, DagOutcome, float]:
        """Plan and run the threads as one pipeline: each subtask of a streaming plan starts the
        moment its JSON object is complete, while the planner is still writing the rest.

        Returns the plan, planning's usage (None for a host plan), the threads' outcome (no
        results when the plan does not split: the caller answers with one call) and when the
        plan was complete (seconds since the run started)."""
        limit, why = self._concurrency(max_concurrency)
        mode = plan_strategy or GeneralStrategy()
        scheduler = Scheduler(
            solver=self.solver,
            settings=self.settings,
            question=mode.thread_question(question),
            context=mode.thread_context(context),
            subtasks=host.subtasks if host is not None else [],
            max_concurrency=limit,
            sink=sink,
            elapsed=clock,
            controller=controller,
            deadline_s=max(0.0, threads_until - clock()),
            decisions=decisions,
            open_input=host is None,
            deadline_label=_deadline_label(threads_until, run_deadline),
        )
        box: dict[str, Any] = {}

        def width_decision(plan: Plan) -> None:
            width = len(plan.subtasks)
            if width > 1:
                by = complexity_by or _COMPLEXITY_BY[plan.source]
                scheduler.decide(
                    "width",
                    f"{width} {mode.parts_name}, up to {min(limit, width)} at once "
                    f"({why}); complexity {plan.complexity}/10 ({by})",
                )

        async def planning() -> None:
            seconds = max(0.0, plan_until - clock())
            plan: Plan | None = None
            usage = StageUsage()
            with anyio.move_on_after(seconds):
                plan, usage = await mode.plan(
                    self.planner,
                    self.settings,
                    question,
                    context,
                    max_subtasks=max_subtasks,
                    force_width=force_width,
                    on_subtask=scheduler.add_subtask,
                    on_tokens=scheduler.charge_planning,
                )
            if plan is None:
                usage.calls = max(usage.calls, 1)
                streamed = list(scheduler.state.subtasks.values())
                if streamed:
                    plan = Plan(
                        should_split=True,
                        source="model",
                        subtasks=streamed,
                        reason=f"planning took longer than {plan_until:.3g}s; kept the "
                        f"{len(streamed)} subtask(s) that streamed before it",
                    )
                else:
                    plan = mode.fallback_plan(
                        question,
                        context,
                        f"planning took longer than {plan_until:.3g}s",
                        self.settings,
                    )
            if force_width is not None and not plan.should_split:
                plan = _attempts_plan(question, force_width, plan)
            box.update(plan=plan, usage=usage, at=clock())
            self._plan_decisions(plan, decisions, sink, clock, mode.parts_name)
            # Limit changes during planning (the planner call was rate limited), in time order.
            _record_notes(controller.pending_notes(), decisions, sink, clock)
            width_decision(plan)
            if plan.should_split:
                for sub in plan.subtasks:
                    scheduler.add_subtask(sub)
            scheduler.charge_planning(usage.tokens_in + usage.tokens_out, final=True)
            scheduler.close_input()

        if host is not None:
            self._plan_decisions(host, decisions, sink, clock)
            width_decision(host)
            return host, None, await scheduler.run(), 0.0
        async with anyio.create_task_group() as tg:
            tg.start_soon(planning, name="apr-plan")
            outcome = await scheduler.run()
            tg.cancel_scope.cancel()  # the run stopped (early stop, deadline) before the plan ended
        if "plan" not in box:
            subs = list(scheduler.state.subtasks.values())
            box.update(
                usage=StageUsage(calls=1),
                at=clock(),
                plan=Plan(
                    should_split=True,
                    source="model",
                    subtasks=subs,
                    reason=f"the run stopped before the planner finished; {len(subs)} "
                    "subtask(s) ran",
                ),
            )
        return box["plan"], box["usage"], outcome, box["at"]

    async def _single_call(
        self,
        question: str,
        context: str,
        seconds: float,
        sink: EventSink,
        clock: _Clock,
        *,
        label: str,
    ) -> tuple[ThreadResult, StageUsage, str]:
        """One chain-of-thought call answering the whole question (the sequential baseline, and
        the unsplit path, which is the same call). At the deadline, what streamed is kept as a
        partial answer."""
        prompt = load_prompt("sequential")
        request = ModelRequest(
            messages=prompt.render(question=question, context=context),
            max_tokens=min(8192, self.settings.max_tokens * 2),
            temperature=self.settings.temperature,
            timeout_s=None if seconds == math.inf else max(seconds, 0.0) + TIMEOUT_GRACE_S,
            purpose="sequential",
            prompt_version=prompt.key,
        )
        usage = StageUsage(calls=1)
        streamed: list[str] = []
        sink.add_threads(1)
        started = clock()
        sink.emit("started", f"t1 started ({label})", thread_id="t1")
        text: str | None = None
        error: str | None = None
        response = None

        def on_token(delta: str) -> None:
            streamed.append(delta)
            sink.emit("answer", delta, thread_id="t1")

        with anyio.move_on_after(max(0.0, seconds)):
            try:
                response = await self.solver.complete(request, on_token=on_token)
                text = response.text
            except ModelError as exc:
                error = str(exc)
        finished = clock()
        common: dict[str, Any] = {
            "id": "t1",
            "prompt": question[:MAX_PROMPT_CHARS] or "-",
            "started_s": round(started, 6),
            "finished_s": round(finished, 6),
            "latency_s": round(finished - started, 6),
        }
        if response is not None and text is not None:
            usage.tokens_in, usage.tokens_out = (
                response.usage.input_tokens,
                response.usage.output_tokens,
            )
            usage.cached_calls = int(response.cached)
            usage.max_context_tokens = response.max_context_tokens
            answer = final_answer(text)
            thread = ThreadResult(
                status=ThreadStatus.done,
                answer=text,
                summary=answer,
                tokens_in=usage.tokens_in,
                tokens_out=usage.tokens_out,
                cached=response.cached,
                **common,
            )
            sink.emit(
                "cached" if response.cached else "done",
                "t1 served from cache"
                if response.cached
                else f"t1 done ({usage.tokens_in + usage.tokens_out} tokens, {finished:.1f}s)",
                thread_id="t1",
                completes=True,
            )
        elif error is not None:
            answer = f"No answer: {error}"
            if streamed:  # as for a thread: a failed call's prompt counts only if it streamed
                _spent(usage, common, count_messages(request.messages), streamed)
            thread = ThreadResult(status=ThreadStatus.failed, error=error, **common)
            sink.emit("failed", f"t1 failed: {error[:160]}", thread_id="t1", completes=True)
        else:
            _spent(usage, common, count_messages(request.messages), streamed)
            partial_text = "".join(streamed).strip()
            answer = (
                f"{partial_text}\n\n[cut at the deadline after {finished:.1f}s]"
                if partial_text
                else "No answer: the deadline passed before the model wrote anything."
            )
            thread = ThreadResult(
                status=ThreadStatus.cancelled,
                reason="deadline",
                answer=partial_text or None,
                **common,
            )
            sink.emit("cancelled", "t1 cancelled: deadline", thread_id="t1", completes=True)
        return thread, usage, answer

    def _host_plan(
        self, subtasks: Sequence[Subtask], question: str, context: str, complexity: int | None
    ) -> tuple[Plan, list[ThreadResult]]:
        """Validate subtasks a host wrote. Identical prompts run once; the duplicates get a
        ``skipped`` result naming the one that ran, so every given id has a result."""
        if not subtasks:
            raise PlanError(
                "subtasks is empty: pass at least one subtask, or omit it to let the planner split"
            )
        if len(subtasks) > HOST_MAX_SUBTASKS:
            raise PlanError(f"{len(subtasks)} subtasks given; at most {HOST_MAX_SUBTASKS} per call")
        subs = [Subtask.model_validate(s) if not isinstance(s, Subtask) else s for s in subtasks]
        if complexity is not None and not 1 <= complexity <= 10:
            raise PlanError(f"complexity must be between 1 and 10, got {complexity}")
        plan = validate_plan(
            Plan(
                should_split=len(subs) > 1,
                reason="subtasks given by the host",
                subtasks=subs,
                source="host",
                complexity=complexity or estimate_complexity(question, context, self.settings),
            ),
            max_subtasks=HOST_MAX_SUBTASKS,
        )
        extra = [
            ThreadResult(
                id=dup,
                status=ThreadStatus.skipped,
                prompt=s.prompt,
                reason=f"duplicate of {kept}; see its result",
                depends_on=list(s.depends_on),
            )
            for dup, kept in find_duplicates(subs).items()
            for s in subs
            if s.id == dup
        ]
        return plan, extra

    def _plan_decisions(
        self,
        plan: Plan,
        decisions: list[Decision],
        sink: EventSink,
        clock: _Clock,
        parts: str = "subtasks",
    ) -> None:
        kind: Literal["fallback", "split", "no_split"] = (
            "fallback"
            if plan.source == "fallback"
            else "split"
            if plan.should_split
            else "no_split"
        )
        what = (
            f"split into {len(plan.subtasks)} {parts}"
            if plan.should_split
            else "answering with one call"
        )
        by = _SOURCE_NAME[plan.source]
        # The plan's reason is written to stand alone; here it follows "<what> (<by>):".
        why = (plan.reason or "no reason given").removeprefix(f"{by}: ")
        why = why.removesuffix(f"; {what}") or "no reason given"
        reason = f"{what} ({by}): {why}"
        decisions.append(Decision(at_s=round(clock(), 6), kind=kind, reason=reason))
        n = len(plan.subtasks)
        noun = parts if n != 1 else {"hypotheses": "hypothesis"}.get(parts, parts.removesuffix("s"))
        sink.emit("planned", f"plan ready: {n} {noun} ({plan.source})")
        sink.emit("decision", reason)

    async def _sequential(
        self, question: str, context: str, deadline_s: float | None, on_event: EventCallback | None
    ) -> SolveResult:
        """The baseline: one chain-of-thought call; the answer follows "Final answer:"."""
        clock = _Clock()
        deadline = self._deadline(deadline_s)
        controller = self.controller_factory(self.settings, self.controller)
        decisions: list[Decision] = []
        async with event_sink(on_event) as sink:
            thread, usage, answer = await self._single_call(
                question, context, deadline, sink, clock, label="sequential baseline"
            )
            _record_notes(controller.pending_notes(), decisions, sink, clock)
            sink.emit("finished", _finished_message([thread], clock()))
        return self._one_call_result(
            question,
            "sequential",
            thread,
            answer,
            {"solve": usage},
            clock,
            decisions,
            thread.latency_s,
        )

    def _one_call_result(
        self,
        question: str,
        strategy: str,
        thread: ThreadResult,
        answer: str,
        stages: dict[str, StageUsage],
        clock: _Clock,
        decisions: list[Decision],
        critical_path_s: float,
        *,
        plan: Plan | None = None,
    ) -> SolveResult:
        """The result of a run answered by one call (sequential, or not split)."""
        partial = thread.status is ThreadStatus.cancelled
        return SolveResult(
            run_id=new_run_id(),
            status=run_status([thread], partial),
            question=question,
            strategy=strategy,
            answer=answer,
            confidence=thread.confidence,
            plan=plan,
            results=[thread],
            metrics=_metrics([thread], stages, clock(), partial, critical_path_s),
            decisions=decisions,
            partial=partial,
            backend=self.solver.backend,
            model=self.solver.model_name,
        )

    async def _save(self, run: SolveResult | SolveRun) -> None:
        run.metrics.cache = cache_status(self.solver)  # "off (reason)" when it degraded
        if self.run_store is None:
            return
        try:
            await anyio.to_thread.run_sync(self.run_store.save, run)
        except AprError as exc:  # a full disk must not lose the answer
            log.warning("could not save run %s: %s", run.run_id, exc)


# ----- helpers -----

_FINAL = re.compile(r"final answer\s*[:：]", re.IGNORECASE)


def final_answer(text: str) -> str:
    """The text after the last "Final answer:" (markdown emphasis stripped), else all of it."""
    matches = list(_FINAL.finditer(text))
    if not matches:
        return text.strip()
    tail = text[matches[-1].end() :].strip().strip("*_ ").strip()
    return tail or text.strip()


def _attempts_plan(question: str, width: int, original: Plan) -> Plan:
    subtasks = [
        Subtask(
            id=f"a{k}",
            prompt=f"Attempt {k} of {width}: answer independently, checking your "
            f"own work.\n\n{question}"[:MAX_PROMPT_CHARS],
        )
        for k in range(1, width + 1)
    ]
    return Plan(
        should_split=True,
        reason=f"fixed baseline: the planner did not split ({original.reason}); running {width} "
        "independent attempts merged by vote",
        complexity=original.complexity,
        subtasks=subtasks,
        max_concurrency=width,
        source="heuristic",
        signals=original.signals,
    )


_DECISION_KINDS = frozenset(get_args(Decision.model_fields["kind"].annotation))


def note_decision(note: Note, at_s: float) -> Decision:
    """A controller's :class:`Note` as a recorded :class:`Decision` (unknown kinds → meta)."""
    kind = note.kind if note.kind in _DECISION_KINDS else "meta"
    return Decision(
        at_s=round(at_s, 6),
        kind=kind,  # type: ignore[arg-type]
        thread_id=note.thread_id,
        reason=note.reason,
    )


def _record_notes(
    notes: Sequence[Note], decisions: list[Decision], sink: EventSink, clock: _Clock
) -> None:
    """Record notes that arrived outside the scheduler (it records the ones during threads)."""
    for note in notes:
        decisions.append(note_decision(note, clock()))
        sink.emit("decision", note.reason, thread_id=note.thread_id)


def _deadline_label(threads_until: float, run_deadline: float | None) -> str:
    """The deadline as a decision names it: the run's figure, and when threads stop earlier to
    leave time for the merge, that too."""
    if run_deadline is None or abs(run_deadline - threads_until) < 1e-9:
        return f"the deadline of {threads_until:.3g}s"
    return (
        f"the run's deadline of {run_deadline:.3g}s (threads stop at {threads_until:.3g}s "
        "to leave time for the merge)"
    )


def _spent(
    usage: StageUsage, common: dict[str, Any], prompt_tokens: int, streamed: list[str]
) -> None:
    """Count a call that ended without a response: its prompt and what it had streamed."""
    usage.tokens_in = prompt_tokens
    usage.tokens_out = count_tokens("".join(streamed)) if streamed else 0
    usage.max_context_tokens = usage.tokens_in + usage.tokens_out
    common.update(tokens_in=usage.tokens_in, tokens_out=usage.tokens_out)


def _finished_message(results: Sequence[ThreadResult], wall: float) -> str:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status.value] = counts.get(r.status.value, 0) + 1
    parts = ", ".join(f"{n} {k}" for k, n in counts.items())
    return f"finished in {wall:.1f}s ({parts or 'no threads'})"


def _metrics(
    results: Sequence[ThreadResult],
    stages: dict[str, StageUsage],
    wall: float,
    partial: bool,
    critical_path_s: float,
) -> RunMetrics:
    by = {s: sum(r.status is s for r in results) for s in ThreadStatus}
    return RunMetrics(
        wall_s=round(wall, 6),
        critical_path_s=round(critical_path_s, 6),
        tokens_in=sum(s.tokens_in for s in stages.values()),
        tokens_out=sum(s.tokens_out for s in stages.values()),
        max_context_tokens=max((s.max_context_tokens for s in stages.values()), default=0),
        model_calls=sum(s.calls for s in stages.values()),
        cache_hits=sum(s.cached_calls for s in stages.values()),
        threads=len(results),
        threads_done=by[ThreadStatus.done],
        threads_failed=by[ThreadStatus.failed],
        threads_cancelled=by[ThreadStatus.cancelled],
        threads_skipped=by[ThreadStatus.skipped],
        partial=partial,
        stages=stages,
    )
