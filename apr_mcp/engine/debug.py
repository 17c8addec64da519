"""Debug mode: investigate competing root-cause hypotheses in parallel, then rank them.

From an error (message, stack trace or wrong behaviour) plus code context:

1. **Hypotheses** — the planner model proposes competing explanations
(``prompts/debug_hypotheses``);
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
from collections.abc import Callable, Mapping, Sequence

import anyio
from pydantic import BaseModel, Field

from ..config import Settings
from ..errors import ModelError
from ..limits import MAX_PROMPT_CHARS
from ..llm.base import Model, ModelRequest
from ..prompts import load_prompt
from ..schemas import (
    MergeResult,
    MergeStrategy,
    Plan,
    StageUsage,
    Subtask,
    ThreadResult,
    ThreadStatus,
)
from ..tokens import count_messages, truncate_to_tokens
from .controller import normalise_prompt
from .heuristics import analyze
from .merge import MERGE_LATE
from .plan import add_usage
from .strategy import Strategy

__all__ = [
    "DebugHypotheses",
    "DebugStrategy",
    "DebugVerdict",
    "ErrorInfo",
    "Hypothesis",
    "RankedHypothesis",
    "fallback_hypotheses",
    "parse_error",
]

log = logging.getLogger(__name__)


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
            (
                "Off-by-one in a loop bound or index arithmetic at {where}: the loop runs one step "
                "too far"
            ),
            "Compute the largest index the loop reaches and compare it with len() of the sequence",
        ),
        (
            (
                "The input is shorter than the code assumes (empty, or fewer items than the "
                "window/offset)"
            ),
            "Print len() of the sequence and the offending index just before the failing line",
        ),
        (
            (
                "The wrong variable or a stale length is used as the index (e.g. the list changed "
                "size "
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
                "A value is None because a function returned nothing (missing return, or an "
                "in-place "
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


# ----- the strategy -----


class DebugStrategy(Strategy):
    """Debug mode as a strategy of the one pipeline: hypotheses (plan), investigations
    (threads), a ranked verdict (merge). The pipeline's deadline budget, scheduler, controller,
    events, metrics and decisions apply as to any run."""

    name = "debug"
    parts_name = "hypotheses"

    def __init__(self, *, error: str, code: str = "") -> None:
        self.error = error
        self.code = code
        self.titles: dict[str, str] = {}

    def thread_question(self, question: str) -> str:
        return f"Find the root cause of this error and how to fix it:\n{self.error.strip()}"

    async def plan(
        self,
        planner: Model,
        settings: Settings,
        question: str,
        context: str,
        *,
        max_subtasks: int | None,
        force_width: int | None,
        on_subtask: Callable[[Subtask], None],
        on_tokens: Callable[[int], None],
    ) -> tuple[Plan, StageUsage]:
        from ..llm.structured import complete_structured  # helper module; imported late on purpose

        signals = analyze(
            self.error,
            self.code,
            min_threads=settings.min_threads,
            max_threads=settings.max_threads,
        )
        cap = self._cap(settings, max_subtasks, signals.suggested_width)
        usage = StageUsage(calls=1)
        prompt = load_prompt("debug_hypotheses")
        request = ModelRequest(
            messages=prompt.render(
                min_hypotheses=min(3, cap),
                max_hypotheses=cap,
                schema=json.dumps(DebugHypotheses.model_json_schema()),
                error=self.error,
                code=self.code or "(none)",
                context="(none)",
                signals="; ".join(signals.signals) or "none",
            ),
            max_tokens=max(settings.max_tokens, 1024),
            temperature=settings.temperature,
            purpose="debug_hypotheses",
            prompt_version=prompt.key,
        )
        proposed: list[Hypothesis] = []
        problem = ""
        try:
            out, response = await complete_structured(planner, request, DebugHypotheses)
            proposed = out.hypotheses
            add_usage(usage, response)
        except ModelError as exc:
            problem = f"hypothesis call failed: {exc}"
        hypotheses = _dedupe(proposed)[:cap]
        source = "model"
        if len(hypotheses) < 2:
            extra = fallback_hypotheses(self.error, self.code, limit=cap)
            source = "model" if hypotheses else "heuristic"
            hypotheses = _dedupe(hypotheses + extra)[:cap]
            why = problem or f"the model proposed {len(proposed)} usable hypothesis(es)"
            problem = f"{why}; added hypotheses read from the error type"
        return self._plan(hypotheses, source, problem, signals.complexity, signals.signals), usage

    def fallback_plan(self, question: str, context: str, reason: str, settings: Settings) -> Plan:
        """Hypotheses read from the error when the model's did not come in time."""
        signals = analyze(self.error, self.code)
        cap = self._cap(settings, None, signals.suggested_width)
        hypotheses = fallback_hypotheses(self.error, self.code, limit=cap)
        return self._plan(
            hypotheses,
            "heuristic",
            f"{reason}; hypotheses read from the error type",
            signals.complexity,
            signals.signals,
        )

    @staticmethod
    def _cap(settings: Settings, max_subtasks: int | None, width: int) -> int:
        return max(2, min(max_subtasks or max(3, width), settings.max_threads, 8))

    def _plan(
        self,
        hypotheses: list[Hypothesis],
        source: str,
        problem: str,
        complexity: int,
        signals: list[str],
    ) -> Plan:
        subtasks = [_subtask(f"h{i}", h) for i, h in enumerate(hypotheses, start=1)]
        self.titles = {s.id: h.title for s, h in zip(subtasks, hypotheses, strict=True)}
        reason = f"{len(subtasks)} competing hypotheses, each investigated in its own thread"
        if problem:
            reason += f" ({problem})"
        return Plan(
            should_split=True,
            reason=reason,
            complexity=complexity,
            subtasks=subtasks,
            source=source,  # type: ignore[arg-type]
            signals=signals,
        )

    def merge_strategy(self, plan: Plan, requested: MergeStrategy | None) -> MergeStrategy:
        return MergeStrategy.rank  # a debug verdict always ranks

    async def merge(
        self,
        merger: Model,
        settings: Settings,
        question: str,
        context: str,
        results: Sequence[ThreadResult],
        *,
        strategy: MergeStrategy,
        seconds: float,
        priorities: Mapping[str, int],
        on_token: Callable[[str], None],
    ) -> MergeResult:
        from ..llm.structured import complete_structured  # helper module; imported late on purpose

        done = [r for r in results if r.status is ThreadStatus.done]
        usage = StageUsage()
        verdict: DebugVerdict | None = None
        note = ""
        started = anyio.current_time()
        context_tokens = 0
        if done:
            prompt = load_prompt("debug_verdict")
            request = ModelRequest(
                messages=prompt.render(
                    schema=json.dumps(DebugVerdict.model_json_schema()),
                    error=self.error,
                    code=truncate_to_tokens(self.code, settings.merge_budget_tokens // 2)
                    or "(none)",
                    results=_investigations(done, self.titles, settings.merge_budget_tokens),
                ),
                max_tokens=max(settings.max_tokens, 1024),
                temperature=settings.temperature,
                purpose="debug_verdict",
                prompt_version=prompt.key,
            )
            context_tokens = count_messages(request.messages)
            usage.calls += 1
            with anyio.move_on_after(max(0.0, seconds)) as scope:
                try:
                    verdict, response = await complete_structured(merger, request, DebugVerdict)
                    add_usage(usage, response)
                except ModelError as exc:
                    note = f"verdict call failed ({exc}); ranked by the investigators' confidence"
            if scope.cancelled_caught:
                note = (
                    f"{MERGE_LATE}: the verdict call ran out of time; ranked by the "
                    "investigators' confidence"
                )
        else:
            note = "no hypothesis could be investigated; nothing to rank"
        ranking = _rank(done, verdict)
        answer = _render(verdict, ranking, self.titles, list(results))
        on_token(answer)
        return MergeResult(
            answer=answer,
            confidence=verdict.confidence
            if verdict
            else (ranking[0].likelihood if ranking else None),
            strategy=MergeStrategy.rank,
            used=[r.id for r in ranking],
            dropped=[r.id for r in results if r.status is not ThreadStatus.done],
            context_tokens=context_tokens,
            tokens_in=usage.tokens_in,
            tokens_out=usage.tokens_out,
            max_context_tokens=usage.max_context_tokens,
            cached=usage.cached_calls > 0,
            latency_s=round(anyio.current_time() - started, 6),
            note=note,
        )


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
    return Subtask(id=sid, prompt=text[:MAX_PROMPT_CHARS], priority=priority)


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
    """The verdict's ranking restricted to investigated ids, completed with the rest by
    confidence."""
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
