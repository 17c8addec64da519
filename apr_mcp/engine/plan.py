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
import re
from collections.abc import Callable
from typing import Protocol

import pydantic_core
from pydantic import BaseModel, Field, ValidationError

from ..config import Settings
from ..errors import ModelError, ModelOutputError, PlanError
from ..limits import MAX_PROMPT_CHARS as _MAX_PROMPT
from ..limits import MAX_SUBTASKS as HOST_MAX_SUBTASKS
from ..llm.base import Message, Model, ModelRequest, ModelResponse
from ..prompts import load_prompt
from ..schemas import Plan, StageUsage, Subtask
from ..tokens import count_messages

# Imported eagerly: compiling its patterns takes ~50 ms, better at start-up than in a first call.
from . import heuristics
from .controller import normalise_prompt
from .schema_text import schema_text

__all__ = [
    "HOST_MAX_SUBTASKS",
    "PlanDraft",
    "PlanStream",
    "SplitHints",
    "add_usage",
    "estimate_complexity",
    "find_duplicates",
    "heuristic_plan",
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
    part_kind: str | None
    parts: list[str]


class DraftSubtask(BaseModel):
    """One subtask as the planner writes it: only what dispatch needs, dependencies before the
    prompt so that an object whose prompt is complete is complete."""

    id: str = Field(max_length=16, description="Short unique id: t1, t2, ...")
    depends_on: list[str] = Field(default_factory=list, max_length=8)
    prompt: str = Field(min_length=1, max_length=2_000)


class PlanDraft(BaseModel):
    """The planner model's whole output: a lean plan (complexity, priorities and width are the
    engine's business, not tokens the planner should spend)."""

    should_split: bool
    subtasks: list[DraftSubtask] = Field(default_factory=list, max_length=16)
    reason: str = Field(default="", max_length=300)


#: Called with each subtask the moment the streamed plan has it complete and valid.
SubtaskCallback = Callable[[Subtask], None]


class PlanStream:
    """Parse a planner's streamed JSON as it arrives (pydantic-core's partial mode) and hand on
    every subtask whose object is complete: it is complete once the next object has begun, or
    the list has closed. Each one is validated and de-duplicated on the way; nothing that comes
    later in the plan holds back one already known."""

    _CLOSED = re.compile(r"\}\s*\]")

    def __init__(self, on_subtask: SubtaskCallback | None, cap: int) -> None:
        self.on_subtask = on_subtask
        self.cap = cap
        self.text = ""
        self.should_split: bool | None = None
        self.emitted: list[Subtask] = []
        self.notes: list[str] = []
        self._seen = 0  # draft objects already handled (emitted or rejected)
        self._prompts: dict[str, str] = {}

    def feed(self, delta: str) -> None:
        self.text += delta
        start = self.text.find("{")
        if start < 0:
            return
        try:
            data = pydantic_core.from_json(self.text[start:], allow_partial=True)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        if isinstance(data.get("should_split"), bool):
            self.should_split = data["should_split"]
        items = data.get("subtasks")
        if not isinstance(items, list) or self.should_split is not True:
            return
        complete = len(items) - 1
        if items and self._CLOSED.search(self.text[-80:]):
            complete = len(items)
        self._take(items[:complete])

    def finish(self, draft: PlanDraft) -> None:
        """The stream ended with ``draft`` (validated, maybe repaired): hand on what is left."""
        self.should_split = draft.should_split
        if draft.should_split:
            # Everything again (a repaired plan may differ from what streamed); known ids are
            # the ones already handed on.
            self._seen = 0
            self._take([d.model_dump() for d in draft.subtasks], final=True)

    def _take(self, items: list[object], *, final: bool = False) -> None:
        for item in items[self._seen :]:
            self._seen += 1
            try:
                draft = DraftSubtask.model_validate(item)
                sub = Subtask(id=draft.id, prompt=draft.prompt, depends_on=draft.depends_on)
            except ValidationError as exc:
                self.notes.append(f"dropped an invalid subtask ({_first_error(exc)})")
                continue
            known = {e.id: e for e in self.emitted}
            if final and sub.id in known and known[sub.id].prompt == sub.prompt:
                continue
            if sub.id in known:
                self.notes.append(f"dropped a second subtask with id {sub.id}")
                continue
            key = normalise_prompt(sub.prompt)
            if key in self._prompts:
                self.notes.append(f"merged identical subtasks: {sub.id} = {self._prompts[key]}")
                continue
            if len(self.emitted) >= self.cap:
                self.notes.append(f"fan-out capped at {self.cap}: dropped {sub.id}")
                continue
            self._prompts[key] = sub.id
            self.emitted.append(sub)
            if self.on_subtask is not None:
                self.on_subtask(sub)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"


#: How a part of each kind becomes a self-contained subtask (the solver also sees the question).
_TEMPLATES = {
    "enumeration": "Part {k} of {n}: {part}",
    "questions": "{part}",
    "comparison": "Assess {part} on its own, as one of the options compared ({all}): its "
    "strengths, weaknesses and fit for what the question asks.",
    "list": "Answer the question for {part} only (one of: {all}).",
    "conditions": "Consider only this condition of the question, on its own: {part}. Say which "
    "candidates satisfy it and why.",
}


def heuristic_plan(question: str, hints: SplitHints, *, cap: int) -> Plan | None:
    """A plan built from the parts the heuristics counted, with no model call; None when the
    parts are not countable. More parts than ``cap`` are grouped, never dropped."""
    parts = list(hints.parts)
    kind = hints.part_kind
    if kind not in _TEMPLATES or len(parts) < 2:
        return None
    groups: list[list[int]] = [[] for _ in range(min(cap, len(parts)))]
    for i in range(len(parts)):
        groups[i * len(groups) // len(parts)].append(i)
    subtasks = []
    for g, members in enumerate(groups, start=1):
        prompt = "\n".join(
            _TEMPLATES[kind].format(k=i + 1, n=len(parts), part=parts[i], all=", ".join(parts))
            for i in members
        )
        subtasks.append(Subtask(id=f"t{g}", prompt=prompt[:_MAX_PROMPT]))
    grouped = f", grouped into {len(groups)}" if len(groups) < len(parts) else ""
    return Plan(
        should_split=True,
        reason=f"heuristics: {len(parts)} independent parts ({kind}){grouped}; no planner call",
        complexity=max(1, min(10, hints.complexity)),
        subtasks=subtasks,
        source="heuristic",
        signals=list(hints.signals),
    )


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
            s.depends_on = list(
                dict.fromkeys(dups.get(d, d) for d in s.depends_on if dups.get(d, d) != s.id)
            )
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
                return [*path[path.index(dep) :], dep]
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


def single_task_plan(
    question: str,
    *,
    reason: str,
    source: str = "fallback",
    complexity: int = 1,
    signals: list[str] | None = None,
) -> Plan:
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
    on_subtask: SubtaskCallback | None = None,
    on_tokens: Callable[[int], None] | None = None,
) -> tuple[Plan, StageUsage]:
    """Plan ``question``; return the plan and what planning spent.

    ``settings.planner`` picks who plans: ``auto`` builds the plan from the heuristics' countable
    parts with no model call, answers clearly simple or sequential questions with one call, and
    asks the planner model only for the uncertain middle; ``model`` always asks the model;
    ``heuristic`` never does. The model's plan streams: ``on_subtask`` gets each subtask the
    moment its JSON object is complete (the caller may start it at once). ``force_width`` asks
    for exactly that many subtasks (the "fixed" baseline). Never raises for a bad planner answer
    or a failing planner backend: falls back to one task.
    """
    from ..llm.structured import complete_structured  # helper module; imported late on purpose

    usage = StageUsage()
    hints = signals if signals is not None else _analyze(question, context, settings)
    hint_signals = list(hints.signals) if hints is not None else []
    complexity = hints.complexity if hints is not None else 1
    cap = max(1, max_subtasks or settings.max_threads)
    mode = settings.planner if force_width is None else "model"
    if hints is not None and mode != "model":
        if hints.should_split_hint is False:
            why = "; ".join(hint_signals) or "simple question"
            return single_task_plan(
                question,
                reason=f"heuristics: not worth splitting ({why}); answering with one call",
                source="heuristic",
                complexity=complexity,
                signals=hint_signals,
            ), usage
        if hints.should_split_hint:
            plan = heuristic_plan(question, hints, cap=cap)
            if plan is not None:
                return plan, usage
    if mode == "heuristic":
        why = "; ".join(hint_signals) or "no countable parts"
        return single_task_plan(
            question,
            reason=f"heuristics: no countable independent parts ({why}); "
            "APR_PLANNER=heuristic never asks the model; answering with one call",
            source="heuristic",
            complexity=complexity,
            signals=hint_signals,
        ), usage

    if force_width is not None:
        cap = max(cap, force_width)
    prompt = load_prompt("planner")
    messages = prompt.render(
        min_threads=min(settings.min_threads, cap),
        max_threads=cap,
        schema=schema_text(PlanDraft),
        question=question,
        context=context,
        signals=_signal_text(hints, force_width),
    )
    request = ModelRequest(
        messages=messages,
        # A lean plan is short: a few dozen tokens a subtask.
        max_tokens=min(max(settings.max_tokens, 512), 120 + 160 * cap),
        temperature=settings.temperature,
        purpose="planner",
        prompt_version=prompt.key,
    )
    stream = PlanStream(on_subtask, cap)
    problem = ""
    prompt_tokens = count_messages(request.messages)

    def on_token(delta: str) -> None:
        stream.feed(delta)
        if on_tokens is not None:  # an estimate while streaming, for a live token budget
            on_tokens(usage.tokens_in + usage.tokens_out + prompt_tokens + len(stream.text) // 4)

    for attempt in range(2):
        usage.calls += 1
        if on_tokens is not None:
            on_tokens(usage.tokens_in + usage.tokens_out + prompt_tokens)
        try:
            draft, response = await complete_structured(
                planner, request, PlanDraft, on_token=on_token
            )
        except ModelOutputError as exc:
            problem = f"planner output unusable: {exc}"
            break  # structured output already tried a repair; a second ask rarely helps
        except ModelError as exc:
            problem = f"planner call failed: {exc}"
            break
        add_usage(usage, response)
        stream.finish(draft)
        reason = "; ".join([draft.reason.strip() or "planner", *stream.notes])
        plan = Plan(
            should_split=draft.should_split,
            reason=reason,
            complexity=complexity,
            subtasks=list(stream.emitted),
            source="model",
            signals=hint_signals,
        )
        if stream.emitted and on_subtask is not None:
            # Already running: dependencies on unknown ids are the scheduler's to skip.
            return plan, usage
        try:
            plan = validate_plan(plan, max_subtasks=cap)
        except PlanError as exc:
            problem = f"invalid plan: {exc}"
            if attempt == 0:
                # Re-ask once, showing the model its plan and what is wrong with it.
                stream = PlanStream(on_subtask, cap)
                request = request.model_copy(
                    update={
                        "messages": [
                            *request.messages,
                            Message(role="assistant", content=draft.model_dump_json()),
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
    plan = single_task_plan(
        question,
        reason=f"{problem}; answering with one call",
        complexity=complexity,
        signals=hint_signals,
    )
    if stream.emitted:
        # Some subtasks were already handed on (and may be running): they are the plan.
        plan = Plan(
            should_split=True,
            reason=f"{problem}; kept the {len(stream.emitted)} subtask(s) that streamed before it",
            complexity=complexity,
            subtasks=list(stream.emitted),
            source="model",
            signals=hint_signals,
        )
    return plan, usage


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
