"""Planning: should a question be split, and into which subtasks.

:func:`make_plan` asks the planner model for a :class:`~apr_mcp.schemas.Plan` through a JSON
schema, after cheap heuristics (``engine.heuristics``) had their say: when they are sure the
question is simple or sequential the planner is not called at all. Every plan goes through
:func:`validate_plan`; an invalid one is re-asked once with the error, and if that fails too the
question is answered as a single task (``source="fallback"``, the reason says why). Planning never
raises for a bad model answer: a plan of one task is always a valid answer.
"""

from __future__ import annotations

import logging
from typing import Protocol

from ..config import Settings
from ..errors import ModelError, ModelOutputError, PlanError
from ..limits import MAX_PROMPT_CHARS as _MAX_PROMPT
from ..limits import MAX_SUBTASKS as HOST_MAX_SUBTASKS
from ..llm.base import Message, Model, ModelRequest, ModelResponse
from ..prompts import load_prompt
from ..schemas import Plan, StageUsage, Subtask

# Imported eagerly: compiling its patterns takes ~50 ms, better at start-up than in a first call.
from . import heuristics
from .controller import normalise_prompt
from .schema_text import schema_text

__all__ = [
    "HOST_MAX_SUBTASKS",
    "SplitHints",
    "add_usage",
    "estimate_complexity",
    "find_duplicates",
    "make_plan",
    "single_task_plan",
    "validate_plan",
]

log = logging.getLogger(__name__)



class SplitHints(Protocol):
    """What :func:`apr_mcp.engine.heuristics.analyze` returns (only these fields are used)."""

    signals: list[str]
    should_split_hint: bool | None
    complexity: int
    suggested_width: int


def find_duplicates(subtasks: list[Subtask]) -> dict[str, str]:
    """``{duplicate id: kept id}`` for subtasks whose prompts are equal after normalisation
    (case, punctuation, whitespace). The first occurrence is kept."""
    seen: dict[str, str] = {}
    dups: dict[str, str] = {}
    for sub in subtasks:
        key = normalise_prompt(sub.prompt)
        if key in seen:
            dups[sub.id] = seen[key]
        else:
            seen[key] = sub.id
    return dups


def validate_plan(plan: Plan, *, max_subtasks: int) -> Plan:
    """Check a plan and return a cleaned copy.

    Raises :class:`PlanError` for duplicate ids, self-dependencies, unknown dependencies and
    cycles (naming the cycle). Repairs what has one obvious repair, and says so in ``reason``:
    identical prompts are merged (dependencies re-pointed to the kept one), and a plan wider than
    ``max_subtasks`` keeps its highest-priority subtasks together with everything they depend on.
    """
    subtasks = [s.model_copy(deep=True) for s in plan.subtasks]
    ids = [s.id for s in subtasks]
    dup_ids = sorted({i for i in ids if ids.count(i) > 1})
    if dup_ids:
        raise PlanError(f"duplicate subtask ids: {', '.join(dup_ids)}; every id must be unique")
    known = set(ids)
    for s in subtasks:
        if s.id in s.depends_on:
            raise PlanError(f"subtask {s.id} depends on itself")
        unknown = [d for d in s.depends_on if d not in known]
        if unknown:
            raise PlanError(
                f"subtask {s.id} depends on unknown id(s) {', '.join(unknown)}; "
                f"known ids: {', '.join(ids)}"
            )
        s.depends_on = list(dict.fromkeys(s.depends_on))
    cycle = _find_cycle(subtasks)
    if cycle:
        raise PlanError(f"dependency cycle: {' -> '.join(cycle)}; dependencies must form a DAG")

    notes: list[str] = []
    dups = find_duplicates(subtasks)
    if dups:
        subtasks = [s for s in subtasks if s.id not in dups]
        for s in subtasks:
            s.depends_on = list(dict.fromkeys(dups.get(d, d) for d in s.depends_on if dups.get(d, d) != s.id))
        notes.append(
            "merged identical subtasks: " + ", ".join(f"{d} = {k}" for d, k in dups.items())
        )
    if max_subtasks < 1:
        raise PlanError(f"max_subtasks must be at least 1, got {max_subtasks}")
    if len(subtasks) > max_subtasks:
        subtasks, trimmed = _trim(subtasks, max_subtasks)
        notes.append(
            f"fan-out capped at {max_subtasks}: dropped {', '.join(trimmed)} (lowest priority)"
        )
    reason = plan.reason
    if notes:
        reason = (reason + "; " if reason else "") + "; ".join(notes)
    return plan.model_copy(update={"subtasks": subtasks, "reason": reason})


def _find_cycle(subtasks: list[Subtask]) -> list[str] | None:
    deps = {s.id: s.depends_on for s in subtasks}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in deps.get(node, []):
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for s in subtasks:
        if s.id not in state:
            found = visit(s.id)
            if found:
                return found
    return None


def _trim(subtasks: list[Subtask], cap: int) -> tuple[list[Subtask], list[str]]:
    """Keep the highest-priority subtasks (ties: plan order) with their dependency closures."""
    by_id = {s.id: s for s in subtasks}
    order = sorted(range(len(subtasks)), key=lambda i: (-subtasks[i].priority, i))
    keep: set[str] = set()

    def closure(sid: str) -> set[str]:
        out = {sid}
        for d in by_id[sid].depends_on:
            out |= closure(d)
        return out

    for i in order:
        need = closure(subtasks[i].id) - keep
        if len(keep) + len(need) <= cap:
            keep |= need
    kept = [s for s in subtasks if s.id in keep]
    return kept, [s.id for s in subtasks if s.id not in keep]


def single_task_plan(question: str, *, reason: str, source: str = "fallback", complexity: int = 1,
                     signals: list[str] | None = None) -> Plan:
    """A plan that answers the question with one call (one subtask ``t1``: the question)."""
    return Plan(
        should_split=False,
        reason=reason,
        complexity=max(1, min(10, complexity)),
        subtasks=[Subtask(id="t1", prompt=(question.strip() or "(empty question)")[:_MAX_PROMPT])],
        max_concurrency=1,
        source=source,  # type: ignore[arg-type]
        signals=signals or [],
    )


def estimate_complexity(question: str, context: str, settings: Settings) -> int:
    """The heuristics' complexity (1..10) of a question; 1 when they are unavailable."""
    hints = _analyze(question, context, settings)
    return max(1, min(10, hints.complexity)) if hints is not None else 1


def _analyze(question: str, context: str, settings: Settings) -> SplitHints | None:
    try:
        return heuristics.analyze(
            question, context, min_threads=settings.min_threads, max_threads=settings.max_threads
        )
    except Exception:
        log.warning("heuristics failed; planning without them", exc_info=True)
        return None


def _signal_text(hints: SplitHints | None, force_width: int | None) -> str:
    parts: list[str] = []
    if hints is not None:
        parts += list(hints.signals)
        parts.append(f"heuristic complexity {hints.complexity}/10")
        if hints.suggested_width > 1:
            parts.append(f"suggested width {hints.suggested_width}")
    text = "; ".join(parts) or "none"
    if force_width is not None:
        text += (
            f"\nINSTRUCTION: split this question into exactly {force_width} self-contained, "
            "independent subtasks (should_split = true), even if you would not split it otherwise."
        )
    return text


async def make_plan(
    planner: Model,
    question: str,
    context: str,
    settings: Settings,
    *,
    max_subtasks: int | None = None,
    signals: SplitHints | None = None,
    force_width: int | None = None,
) -> tuple[Plan, StageUsage]:
    """Plan ``question``; return the plan and what planning spent.

    ``signals`` are precomputed heuristics (computed here when None). ``force_width`` asks for
    exactly that many subtasks (the "fixed" baseline); heuristics then never skip the planner.
    Never raises for a bad planner answer or a failing planner backend: falls back to one task.
    """
    from ..llm.structured import complete_structured  # helper module; imported late on purpose

    usage = StageUsage()
    hints = signals if signals is not None else _analyze(question, context, settings)
    hint_signals = list(hints.signals) if hints is not None else []
    complexity = hints.complexity if hints is not None else 1
    if hints is not None and hints.should_split_hint is False and force_width is None:
        why = "; ".join(hint_signals) or "simple question"
        return (
            single_task_plan(
                question,
                reason=f"heuristics: not worth splitting ({why}); answering with one call",
                source="heuristic",
                complexity=complexity,
                signals=hint_signals,
            ),
            usage,
        )

    cap = max(1, max_subtasks or settings.max_threads)
    if force_width is not None:
        cap = max(cap, force_width)
    prompt = load_prompt("planner")
    messages = prompt.render(
        min_threads=min(settings.min_threads, cap),
        max_threads=cap,
        schema=schema_text(Plan),
        question=question,
        context=context,
        signals=_signal_text(hints, force_width),
    )
    request = ModelRequest(
        messages=messages,
        max_tokens=max(settings.max_tokens, 1024),
        temperature=settings.temperature,
        purpose="planner",
        prompt_version=prompt.key,
    )
    problem = ""
    for attempt in range(2):
        usage.calls += 1
        try:
            plan, response = await complete_structured(planner, request, Plan)
        except ModelOutputError as exc:
            problem = f"planner output unusable: {exc}"
            break  # structured output already tried a repair; a second ask rarely helps
        except ModelError as exc:
            problem = f"planner call failed: {exc}"
            break
        add_usage(usage, response)
        try:
            plan = validate_plan(plan, max_subtasks=cap)
        except PlanError as exc:
            problem = f"invalid plan: {exc}"
            if attempt == 0:
                # Re-ask once, showing the model its plan and what is wrong with it.
                request = request.model_copy(
                    update={
                        "messages": [
                            *request.messages,
                            Message(role="assistant", content=plan.model_dump_json()),
                            Message(
                                role="user",
                                content=f"That plan is invalid: {exc}. Reply with a corrected plan "
                                "as JSON only.",
                            ),
                        ]
                    }
                )
                continue
            break
        return _normalise(plan, question, hint_signals), usage

    log.info("planning fell back to a single task: %s", problem)
    return (
        single_task_plan(
            question, reason=f"{problem}; answering with one call", complexity=complexity,
            signals=hint_signals,
        ),
        usage,
    )


def _normalise(plan: Plan, question: str, hint_signals: list[str]) -> Plan:
    """Make "do not split" plans uniform: exactly one subtask, the question itself, so that a
    host can pass ``Plan.subtasks`` to ``parallel_solve`` whatever the planner decided."""
    signals = list(dict.fromkeys([*plan.signals, *hint_signals]))
    if not plan.should_split or len(plan.subtasks) <= 1:
        reason = plan.reason or "the planner chose not to split"
        if plan.should_split:
            reason += "; the plan had fewer than two subtasks, so one call answers it"
        return single_task_plan(
            question, reason=reason, source=plan.source, complexity=plan.complexity, signals=signals
        )
    return plan.model_copy(update={"signals": signals})


def add_usage(usage: StageUsage, response: ModelResponse) -> None:
    """Count one finished call (or one structured-output exchange) into a stage's usage."""
    usage.tokens_in += response.usage.input_tokens
    usage.tokens_out += response.usage.output_tokens
    usage.cached_calls += 1 if response.cached else 0
    usage.max_context_tokens = max(usage.max_context_tokens, response.max_context_tokens)
