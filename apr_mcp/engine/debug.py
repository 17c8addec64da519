"""Debug mode: investigate competing root-cause hypotheses in parallel, then rank them.

From an error (message, stack trace or wrong behaviour) plus code context:

1. **Hypotheses** — the planner model proposes competing explanations (``prompts/debug_hypotheses``);
   when it gives fewer than two usable ones, hypotheses derived from the exception type and the
   failing frame top the list up (so a weak model or the simulated one still yields a real run).
2. **Investigation** — each hypothesis is one subtask (``prompts/debug_investigate``) run by
   :meth:`Engine.parallel_solve`: evidence for, evidence against, how to confirm, the fix. The
   controller's rules apply, so an investigation that confirms its hypothesis stops the others.
3. **Verdict** — the merger ranks the hypotheses (``prompts/debug_verdict``). If that call fails
   the ranking falls back to the investigators' own confidences, and the note says so.

The answer is a ranked verdict in Markdown; ``merge.used`` lists the thread ids in rank order.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
from pydantic import BaseModel, Field

from ..errors import ModelError, PlanError
from ..llm.base import ModelRequest
from ..prompts import load_prompt
from ..schemas import (
    Decision,
    MergeResult,
    MergeStrategy,
    Plan,
    RunEvent,
    SolveResult,
    SolveRun,
    StageUsage,
    Subtask,
    ThreadResult,
    ThreadStatus,
)
from ..tokens import count_messages, truncate_to_tokens
from .controller import normalise_prompt
from .heuristics import analyze, concurrency_for
from .pipeline import note_decision
from .plan import add_usage

if TYPE_CHECKING:
    from .pipeline import Engine

__all__ = [
    "DebugHypotheses",
    "DebugVerdict",
    "ErrorInfo",
    "Hypothesis",
    "RankedHypothesis",
    "debug",
    "fallback_hypotheses",
    "parse_error",
    "run_debug",
]

log = logging.getLogger(__name__)

EventCallback = Callable[[RunEvent], Awaitable[None]]

#: Share of the deadline kept back for the verdict call.
_VERDICT_RESERVE = 0.2


class Hypothesis(BaseModel):
    """One suspected root cause."""

    title: str = Field(description="The suspected root cause: what, where, and the mechanism.")
    rationale: str = Field(default="", description="Why it is plausible given the error and code.")
    check: str = Field(
        default="", description="What to look at or run first to confirm or refute it."
    )
    prior: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Rough probability before investigating."
    )


class DebugHypotheses(BaseModel):
    """What the hypotheses prompt asks for."""

    symptom: str = Field(default="", description="One line: what fails, where.")
    hypotheses: list[Hypothesis] = Field(default_factory=list, json_schema_extra={"maxItems": 8})


class RankedHypothesis(BaseModel):
    id: str = Field(description="The worker id of the hypothesis (e.g. h2).")
    likelihood: float = Field(default=0.5, ge=0.0, le=1.0)
    evidence_for: str = ""
    evidence_against: str = ""
    how_to_confirm: str = ""
    fix: str = ""


class DebugVerdict(BaseModel):
    """What the verdict prompt asks for."""

    answer: str = Field(
        description="The verdict: most likely root cause, the fix, how to confirm.",
        json_schema_extra={"maxLength": 1_000},  # what the model is shown (issue 13)
    )
    confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    ranking: list[RankedHypothesis] = Field(
        default_factory=list, description="Most likely first.", json_schema_extra={"maxItems": 8}
    )


# ----- reading the error -----


class ErrorInfo(BaseModel):
    """What can be read from an error text without a model."""

    exc_type: str = ""
    message: str = ""
    #: Innermost frame last: (file, line, function, source line).
    frames: list[tuple[str, int, str, str]] = Field(default_factory=list)

    @property
    def where(self) -> str:
        if not self.frames:
            return ""
        file, line, func, src = self.frames[-1]
        at = f"`{func}` ({file}, line {line})"
        return f"{at}: `{src}`" if src else at


_PY_FRAME = re.compile(
    r'^\s*File "([^"]+)", line (\d+), in (\S+)[ \t]*\n(?:[ \t]*([^\n]*))?', re.MULTILINE
)
_EXC_LINE = re.compile(
    r"^((?:[A-Za-z_][\w.]*)?(?:Error|Exception)|[A-Za-z_][\w.]*(?:Exit|Interrupt|Warning)|panic)\s*:\s*(.*)$",
    re.MULTILINE,
)


def parse_error(error: str) -> ErrorInfo:
    """Exception type, message and Python frames of an error text (best effort)."""
    frames = []
    for m in _PY_FRAME.finditer(error):
        src = (m.group(4) or "").strip()
        if src.startswith("File ") or set(src) <= set("^~ "):
            src = ""
        frames.append((m.group(1), int(m.group(2)), m.group(3), src))
    found = list(_EXC_LINE.finditer(error))
    exc_type, message = (found[-1].group(1), found[-1].group(2).strip()) if found else ("", "")
    if not exc_type:
        first = next((ln.strip() for ln in error.splitlines() if ln.strip()), "")
        message = first[:200]
    return ErrorInfo(exc_type=exc_type.rsplit(".", 1)[-1], message=message, frames=frames)


# Generic causes per exception type: (title, check). "{where}" is the failing frame.
_CAUSES: dict[str, list[tuple[str, str]]] = {
    "IndexError": [
        (
            "Off-by-one in a loop bound or index arithmetic at {where}: the loop runs one step too far",
            "Compute the largest index the loop reaches and compare it with len() of the sequence",
        ),
        (
            "The input is shorter than the code assumes (empty, or fewer items than the window/offset)",
            "Print len() of the sequence and the offending index just before the failing line",
        ),
        (
            (
                "The wrong variable or a stale length is used as the index (e.g. the list changed size "
                "while being iterated)"
            ),
            "Check which names feed the index and whether the list is mutated",
        ),
    ],
    "KeyError": [
        (
            "The key is missing because of a spelling, case or type mismatch ('1' vs 1)",
            "Print the key and the dict's keys just before the failing line",
        ),
        (
            "The mapping was never populated on this path (initialisation order)",
            "Trace where the dict is filled and whether that code ran",
        ),
        (
            "Shared state is mutated elsewhere (another call, thread or a mutable default)",
            "Look for other writers of the same dict",
        ),
    ],
    "TypeError": [
        (
            (
                "A value is None because a function returned nothing (missing return, or an in-place "
                "method such as list.sort())"
            ),
            "Find where the None value was produced",
        ),
        (
            "Arguments are passed in the wrong order or with the wrong type at {where}",
            "Compare the call site with the function signature",
        ),
        (
            "Input data has an unexpected type (str instead of int, list instead of dict)",
            "Print type() of the operands at the failing line",
        ),
    ],
    "AttributeError": [
        (
            "The object is None or of another type than expected at {where}",
            "Print type() of the object before the failing access",
        ),
        (
            "The attribute name is misspelt or belongs to another version of the library",
            "Check the library version and its API for that attribute",
        ),
    ],
    "ZeroDivisionError": [
        (
            "An empty collection reaches an average or ratio without a guard",
            "Check the denominator's value and where it comes from",
        ),
        (
            "A parameter that should never be zero is zero (default value or bad input)",
            "Trace the denominator back to its source",
        ),
    ],
    "RecursionError": [
        ("The base case is missing or never reached", "Log the argument on each call"),
        ("The data is cyclic (a node refers back to an ancestor)", "Track visited nodes"),
    ],
}
_GENERIC: list[tuple[str, str]] = [
    (
        "A logic error in {where}: the code does not do what its docstring or name promises",
        "Write the smallest failing test for that function",
    ),
    (
        "The input data violates an assumption of the code (shape, range, type, emptiness)",
        "Log the inputs of the failing call",
    ),
    (
        "The environment differs from what the code expects (library version, config, platform)",
        "Compare versions and configuration with a working setup",
    ),
]
_MUTABLE_DEFAULT = re.compile(r"def \w+\([^)]*=\s*(?:\[\]|\{\}|set\(\))")
_THREADS = re.compile(
    r"\b(?:threading|Thread\(|asyncio|concurrent\.futures|multiprocessing|async def)\b"
)


def fallback_hypotheses(error: str, code: str = "", *, limit: int = 4) -> list[Hypothesis]:
    """Hypotheses read from the exception type, the failing frame and code smells, no model."""
    info = parse_error(error)
    if not info.exc_type and not info.frames:
        # Hosts may ask "what causes this error?" and put the traceback in the context instead.
        in_code = parse_error(code)
        if in_code.exc_type or in_code.frames:
            info = in_code
    where = info.where or "the failing function"
    picks = list(_CAUSES.get(info.exc_type, []))
    if _MUTABLE_DEFAULT.search(code):
        picks.insert(
            1,
            (
                "A mutable default argument keeps state between calls",
                "Call the function twice in a fresh process and compare",
            ),
        )
    if _THREADS.search(code):
        picks.append(
            (
                "A race between concurrent tasks or threads sharing state",
                "Run with one worker; add a lock around the shared state",
            )
        )
    picks += _GENERIC
    seen: set[str] = set()
    out: list[Hypothesis] = []
    for title, check in picks:
        text = title.format(where=where)
        if text in seen:
            continue
        seen.add(text)
        rationale = (
            f"{info.exc_type}: {info.message}".strip(": ") if info.exc_type else info.message
        )
        out.append(
            Hypothesis(
                title=text,
                rationale=rationale,
                check=check,
                prior=round(max(0.1, 0.6 - 0.1 * len(out)), 2),
            )
        )
        if len(out) >= limit:
            break
    return out


# ----- the pipeline -----


async def debug(
    engine: Engine,
    error: str,
    code: str = "",
    *,
    context: str = "",
    max_hypotheses: int | None = None,
    max_concurrency: int | None = None,
    deadline_s: float | None = None,
    on_event: EventCallback | None = None,
) -> SolveResult:
    """Debug ``error`` (message, traceback or symptom) given ``code``: hypotheses in parallel,
    then a ranked verdict. Returns a :class:`SolveResult` with ``strategy="debug"``; partial
    failures (a failed investigation, a failed verdict call) give partial results, not errors.
    """
    from ..llm.structured import complete_structured

    if not error.strip():
        raise PlanError("nothing to debug: pass the error message, stack trace or wrong behaviour")
    settings = engine.settings
    start = anyio.current_time()
    budget = engine._deadline(deadline_s)
    # Reports concurrency-limit changes outside the investigations (hypotheses, verdict); the
    # investigations' own run reports those during its threads.
    watch = engine.controller_factory(settings, None)

    def limit_notes() -> list[Decision]:
        now = anyio.current_time() - start
        return [note_decision(n, now) for n in watch.pending_notes()]

    def remaining() -> float:
        return max(0.0, budget - (anyio.current_time() - start))

    code_context = "\n\n".join(p for p in (code.strip(), context.strip()) if p)
    signals = analyze(
        error, code_context, min_threads=settings.min_threads, max_threads=settings.max_threads
    )
    cap = max(2, min(max_hypotheses or max(3, signals.suggested_width), settings.max_threads, 8))

    # 1. hypotheses
    plan_usage = StageUsage()
    proposed: list[Hypothesis] = []
    problem = ""
    prompt = load_prompt("debug_hypotheses")
    request = ModelRequest(
        messages=prompt.render(
            min_hypotheses=min(3, cap),
            max_hypotheses=cap,
            schema=json.dumps(DebugHypotheses.model_json_schema()),
            error=error,
            code=code or "(none)",
            context=context or "(none)",
            signals="; ".join(signals.signals) or "none",
        ),
        max_tokens=max(settings.max_tokens, 1024),
        temperature=settings.temperature,
        purpose="planner",
        prompt_version=prompt.key,
    )
    plan_usage.calls += 1
    with anyio.move_on_after(remaining() * (1 - _VERDICT_RESERVE) / 2) as scope:
        try:
            out, response = await complete_structured(engine.planner, request, DebugHypotheses)
            proposed = out.hypotheses
            add_usage(plan_usage, response)
        except ModelError as exc:
            problem = f"hypothesis call failed: {exc}"
    if scope.cancelled_caught:
        problem = "hypothesis call timed out"
    hypotheses = _dedupe(proposed)[:cap]
    source = "model"
    if len(hypotheses) < 2:
        extra = fallback_hypotheses(error, code_context, limit=cap)
        source = "model" if hypotheses else "heuristic"
        hypotheses = _dedupe(hypotheses + extra)[:cap]
        why = problem or f"the model proposed {len(proposed)} usable hypothesis(es)"
        problem = f"{why}; added hypotheses read from the error type"

    subtasks = [_subtask(f"h{i}", h) for i, h in enumerate(hypotheses, start=1)]
    titles = {s.id: h.title for s, h in zip(subtasks, hypotheses, strict=True)}
    reason = (
        f"debug mode: {len(subtasks)} competing hypotheses, each investigated in its own thread"
    )
    if problem:
        reason += f" ({problem})"
    plan = Plan(
        should_split=True,
        reason=reason,
        complexity=signals.complexity,
        subtasks=subtasks,
        max_concurrency=concurrency_for(len(subtasks), max_concurrency or settings.max_concurrency),
        source=source,  # type: ignore[arg-type]
        signals=signals.signals,
    )
    split = Decision(at_s=round(anyio.current_time() - start, 6), kind="split", reason=reason)
    # As in the general pipeline: "planned" says the plan is ready, the decision says why; the
    # reason once, not twice in the progress output.
    n = len(subtasks)
    await _emit(on_event, RunEvent(kind="planned", message=f"plan ready: {n} hypotheses ({source})",
                                   total=n))
    await _emit(on_event, RunEvent(kind="decision", message=reason, total=n))

    # 2. investigations
    question = f"Find the root cause of this error and how to fix it:\n{error.strip()}"
    plan_latency = anyio.current_time() - start
    held: list[RunEvent] = []

    async def forward(event: RunEvent) -> None:
        # parallel_solve reports "finished" when its threads end; the run ends after the verdict.
        if event.kind == "finished":
            held.append(event)
        elif on_event is not None:
            await on_event(event)

    before = limit_notes()
    for d in before:
        await _emit(on_event, RunEvent(kind="decision", message=d.reason, total=len(subtasks)))
    run = await engine.parallel_solve(
        question,
        subtasks,
        context=code_context,
        max_concurrency=plan.max_concurrency,
        deadline_s=max(0.001, remaining() * (1 - _VERDICT_RESERVE)),
        on_event=forward,
        complexity=plan.complexity,
    )
    watch.pending_notes()  # already reported by the run
    run = _shift(run, plan_latency)
    done = [r for r in run.results if r.status is ThreadStatus.done]
    total = len(run.results)
    await _emit(
        on_event,
        RunEvent(
            kind="merging",
            message=f"ranking {len(done)} investigated hypotheses",
            completed=total,
            total=total,
        ),
    )

    # 3. verdict
    merge_usage = StageUsage()
    verdict: DebugVerdict | None = None
    note = ""
    merge_start = anyio.current_time()
    context_tokens = 0
    if done:
        vprompt = load_prompt("debug_verdict")
        vrequest = ModelRequest(
            messages=vprompt.render(
                schema=json.dumps(DebugVerdict.model_json_schema()),
                error=error,
                code=truncate_to_tokens(code_context, settings.merge_budget_tokens // 2)
                or "(none)",
                results=_investigations(done, titles, settings.merge_budget_tokens),
            ),
            max_tokens=max(settings.max_tokens, 1024),
            temperature=settings.temperature,
            purpose="merger",
            prompt_version=vprompt.key,
        )
        context_tokens = _prompt_tokens(vrequest)
        merge_usage.calls += 1
        with anyio.move_on_after(max(0.001, remaining())) as vscope:
            try:
                verdict, vresponse = await complete_structured(
                    engine.merger, vrequest, DebugVerdict
                )
                add_usage(merge_usage, vresponse)
            except ModelError as exc:
                note = f"verdict call failed ({exc}); ranked by the investigators' confidence"
        if vscope.cancelled_caught:
            note = "verdict call ran out of time; ranked by the investigators' confidence"
    else:
        note = "no hypothesis could be investigated; nothing to rank"

    after = limit_notes()
    for d in after:
        await _emit(on_event, RunEvent(kind="decision", message=d.reason, completed=total,
                                       total=total))
    ranking = _rank(done, verdict)
    answer = _render(verdict, ranking, titles, run.results)
    confidence = verdict.confidence if verdict else (ranking[0].likelihood if ranking else None)
    merge = MergeResult(
        answer=answer,
        confidence=confidence,
        strategy=MergeStrategy.rank,
        used=[r.id for r in ranking],
        dropped=[r.id for r in run.results if r.status is not ThreadStatus.done],
        context_tokens=context_tokens,
        tokens_in=merge_usage.tokens_in,
        tokens_out=merge_usage.tokens_out,
        max_context_tokens=merge_usage.max_context_tokens,
        cached=merge_usage.cached_calls > 0,
        latency_s=round(anyio.current_time() - merge_start, 6),
        note=note,
    )
    metrics = run.metrics.model_copy(deep=True)
    metrics.stages = {"plan": plan_usage, **metrics.stages, "merge": merge_usage}
    for stage in (plan_usage, merge_usage):
        metrics.tokens_in += stage.tokens_in
        metrics.tokens_out += stage.tokens_out
        metrics.model_calls += stage.calls
        metrics.cache_hits += stage.cached_calls
        metrics.max_context_tokens = max(metrics.max_context_tokens, stage.max_context_tokens)
    metrics.wall_s = round(anyio.current_time() - start, 6)
    metrics.critical_path_s = round(plan_latency + metrics.critical_path_s + merge.latency_s, 6)
    unwrapped = engine.solver.unwrap()
    result = SolveResult(
        run_id=run.run_id,
        question=error,
        strategy="debug",
        answer=answer,
        confidence=confidence,
        plan=plan,
        results=run.results,
        merge=merge,
        metrics=metrics,
        decisions=[split, *before, *run.decisions, *after],
        partial=run.partial or not done,
        backend=unwrapped.backend,
        model=unwrapped.model_name,
    )
    finished = held[-1].message if held else f"{total} thread(s)"
    await _emit(
        on_event,
        RunEvent(
            kind="finished",
            message=f"debug verdict ready; threads {finished}",
            completed=total,
            total=total,
        ),
    )
    return result


async def run_debug(
    engine: Engine,
    question: str,
    *,
    context: str = "",
    max_subtasks: int | None = None,
    max_concurrency: int | None = None,
    deadline_s: float | None = None,
    merge_strategy: object = None,
    on_event: EventCallback | None = None,
) -> SolveResult:
    """``Engine.solve(mode="debug")``'s entry point: the question is the error, the context the
    code. ``merge_strategy`` is ignored: a debug verdict always ranks."""
    return await debug(
        engine,
        question,
        code=context,
        max_hypotheses=max_subtasks,
        max_concurrency=max_concurrency,
        deadline_s=deadline_s,
        on_event=on_event,
    )


def _shift(run: SolveRun, offset: float) -> SolveRun:
    """The investigations' run on the debug run's clock (its times start at the hypotheses)."""
    results = [
        r.model_copy(update={"started_s": round(r.started_s + offset, 6),
                             "finished_s": round(r.finished_s + offset, 6)})
        if r.started_s is not None and r.finished_s is not None else r
        for r in run.results
    ]
    decisions = [d.model_copy(update={"at_s": round(d.at_s + offset, 6)}) for d in run.decisions]
    return run.model_copy(update={"results": results, "decisions": decisions})


def _subtask(sid: str, h: Hypothesis) -> Subtask:
    text = (
        load_prompt("debug_investigate")
        .render(
            id=sid,
            title=h.title.strip(),
            rationale=h.rationale.strip() or "(not given)",
            check=h.check.strip() or "(your choice)",
        )[-1]
        .content
    )
    priority = max(0, min(10, round(h.prior * 10)))
    return Subtask(id=sid, prompt=text[:20_000], priority=priority)


def _dedupe(hypotheses: list[Hypothesis]) -> list[Hypothesis]:
    seen: set[str] = set()
    out = []
    for h in hypotheses:
        key = normalise_prompt(h.title)
        # "[sim] title"-style placeholders carry no hypothesis.
        if len(key.split()) < 2 or key in seen:
            continue
        seen.add(key)
        out.append(h)
    return out


def _investigations(done: list[ThreadResult], titles: dict[str, str], budget: int) -> str:
    ordered = sorted(done, key=lambda r: (not r.settles_question, -(r.confidence or 0.0)))
    per = max(120, budget // max(1, len(ordered)))
    parts = []
    for r in ordered:
        conf = f"{r.confidence:.2f}" if r.confidence is not None else "?"
        flag = ", investigator says this settles it" if r.settles_question else ""
        body = truncate_to_tokens((r.answer or r.summary).strip(), per)
        parts.append(
            f"[{r.id}] Hypothesis: {titles.get(r.id, r.prompt[:160])}\n"
            f"(investigator confidence {conf}{flag})\n{body}"
        )
    return "\n\n".join(parts)


def _rank(done: list[ThreadResult], verdict: DebugVerdict | None) -> list[RankedHypothesis]:
    """The verdict's ranking restricted to investigated ids, completed with the rest by confidence."""
    by_id = {r.id: r for r in done}
    ranked: list[RankedHypothesis] = []
    for item in verdict.ranking if verdict else []:
        if item.id in by_id and all(x.id != item.id for x in ranked):
            ranked.append(item)
    rest = sorted(
        (r for r in done if all(x.id != r.id for x in ranked)),
        key=lambda r: (not r.settles_question, -(r.confidence or 0.0)),
    )
    for r in rest:
        sections = _sections(r.answer or "")
        ranked.append(
            RankedHypothesis(
                id=r.id,
                likelihood=r.confidence if r.confidence is not None else 0.5,
                evidence_for=sections.get("evidence for", ""),
                evidence_against=sections.get("evidence against", ""),
                how_to_confirm=sections.get("how to confirm", ""),
                fix=sections.get("fix", ""),
            )
        )
    if not verdict or not verdict.ranking:
        ranked.sort(key=lambda x: (not by_id[x.id].settles_question, -x.likelihood))
    return ranked


_HEADING = re.compile(
    r"^\s*(evidence for|evidence against|how to confirm|fix)\s*:\s*", re.IGNORECASE | re.MULTILINE
)


def _sections(answer: str) -> dict[str, str]:
    """The investigator's headed sections (see prompts/debug_investigate.toml)."""
    parts = _HEADING.split(answer)
    out: dict[str, str] = {}
    for i in range(1, len(parts) - 1, 2):
        out[parts[i].lower()] = " ".join(parts[i + 1].split())
    return out


def _render(
    verdict: DebugVerdict | None,
    ranking: list[RankedHypothesis],
    titles: dict[str, str],
    results: list[ThreadResult],
) -> str:
    lines: list[str] = []
    if verdict and verdict.answer.strip():
        lines += ["## Verdict", verdict.answer.strip(), ""]
    elif ranking:
        top = ranking[0]
        lines += [
            "## Verdict",
            f"Most likely: {titles.get(top.id, top.id)} (likelihood {top.likelihood:.2f}).",
            "",
        ]
    lines.append("## Ranked hypotheses")
    for n, item in enumerate(ranking, start=1):
        lines.append(
            f"{n}. [{item.id}] {titles.get(item.id, item.id)} — likelihood {item.likelihood:.2f}"
        )
        for label, text in (
            ("Evidence for", item.evidence_for),
            ("Evidence against", item.evidence_against),
            ("How to confirm", item.how_to_confirm),
            ("Fix", item.fix),
        ):
            if text.strip():
                lines.append(f"   - {label}: {text.strip()}")
    skipped = [r for r in results if r.status is not ThreadStatus.done]
    if skipped:
        lines += ["", "## Not investigated"]
        for r in skipped:
            why = r.reason or r.error or r.status.value
            lines.append(f"- [{r.id}] {titles.get(r.id, r.id)} — {r.status.value}: {why}")
    return "\n".join(lines).strip()


def _prompt_tokens(request: ModelRequest) -> int:
    messages: list[object] = list(request.messages)
    return count_messages(messages)


async def _emit(on_event: EventCallback | None, event: RunEvent) -> None:
    if on_event is None:
        return
    try:
        await on_event(event)
    except Exception:
        log.warning("progress callback failed on %s event", event.kind, exc_info=True)
