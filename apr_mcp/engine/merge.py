"""Merging: turn the distilled thread results into one answer within a token budget.

The merger sees each usable thread's *summary* (the distilled result; a truncated answer when a
thread gave no summary), never the full transcripts, so the merge context stays small however
many threads ran. Results go in order of relevance and are cut from the least relevant end when
they do not fit the budget.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence

import anyio
from pydantic import BaseModel, Field

from ..config import Settings
from ..errors import ModelError
from ..llm.base import Model, ModelRequest
from ..llm.usable import any_text, usable_when
from ..prompts import load_prompt
from ..schemas import MergeResult, MergeStrategy, StageUsage, ThreadResult, ThreadStatus
from ..tokens import count_messages, count_tokens, truncate_to_tokens
from .protocol import strip_trailer
from .schema_text import schema_text
from .text import one_line

__all__ = [
    "MERGE_LATE",
    "MergeOutput",
    "bounded_merge",
    "compose",
    "merge",
    "merge_usage",
    "relevance_order",
]

log = logging.getLogger(__name__)

#: A result with no summary contributes at most this much of its full answer.
SUMMARY_FALLBACK_TOKENS = 200
#: The last entry that fits only in part is kept if at least this much of it fits.
MIN_PARTIAL_TOKENS = 64


class MergeOutput(BaseModel):
    """What the merger model returns."""

    answer: str = Field(
        description="The merged answer to the original question.",
        json_schema_extra={"maxLength": 1_000},  # what the model is shown (issue 13)
    )
    confidence: float = Field(default=0.5, ge=0.0, le=1.0, description="Confidence, 0 to 1.")


def merge_usage(merged: MergeResult) -> StageUsage:
    """The merge stage's usage: one call if a prompt was built for the merger, else none."""
    called = merged.context_tokens > 0
    return StageUsage(
        calls=int(called),
        cached_calls=int(merged.cached and called),
        tokens_in=merged.tokens_in,
        tokens_out=merged.tokens_out,
        max_context_tokens=merged.max_context_tokens,
    )


def relevance_order(
    results: Sequence[ThreadResult], priorities: Mapping[str, int] | None = None
) -> list[ThreadResult]:
    """Most relevant first.

    A result that settles the question comes first; then higher confidence (a missing
    confidence counts as 0.5); then the planner's priority for the subtask; then plan order.
    Confidence ranks above priority because it is what the thread learned, while priority is
    only what the planner expected before anything ran.
    """
    prio = priorities or {}
    indexed = list(enumerate(results))
    indexed.sort(
        key=lambda ir: (
            not ir[1].settles_question,
            -(ir[1].confidence if ir[1].confidence is not None else 0.5),
            -prio.get(ir[1].id, 0),
            ir[0],
        )
    )
    return [r for _, r in indexed]


def _distilled(result: ThreadResult) -> str:
    if result.summary.strip():
        return result.summary.strip()
    return truncate_to_tokens((result.answer or "").strip(), SUMMARY_FALLBACK_TOKENS)


def _entry(result: ThreadResult, text: str) -> str:
    conf = (
        f"confidence {result.confidence:.2f}" if result.confidence is not None else "confidence ?"
    )
    flag = ", settles the question" if result.settles_question else ""
    task = one_line(result.prompt, 160)
    return f"[{result.id}] ({conf}{flag})\nTask: {task}\nResult: {text}"


def _usable(result: ThreadResult) -> bool:
    return result.status is ThreadStatus.done and bool((result.answer or result.summary).strip())


def _nothing(
    results: Sequence[ThreadResult], strategy: MergeStrategy, dropped: list[str]
) -> MergeResult:
    lines = [
        f"{r.id} {r.status.value}" + (f" ({r.error or r.reason})" if (r.error or r.reason) else "")
        for r in results
    ]
    why = "; ".join(lines) if lines else "no results were given"
    return MergeResult(
        answer=f"No thread produced a usable result: {why}.",
        confidence=0.0,
        strategy=strategy,
        dropped=dropped,
        note="nothing to merge",
    )


def _composable(result: ThreadResult) -> bool:
    """Done with text, or cut short (deadline, budget) after writing part of an answer."""
    if result.status is ThreadStatus.cancelled:
        return bool((result.answer or "").strip())
    return _usable(result)


def _heading(result: ThreadResult) -> str:
    task = one_line(result.prompt, 100)
    cut = (
        " (cut short: " + (result.reason or "stopped") + ")"
        if (result.status is ThreadStatus.cancelled)
        else ""
    )
    return f"**[{result.id}] {task}**{cut}"


async def compose(
    merger: Model,
    question: str,
    results: Sequence[ThreadResult],
    *,
    budget_tokens: int,
    settings: Settings,
    priorities: Mapping[str, int] | None = None,
    on_token: Callable[[str], None] | None = None,
    lead_seconds: float = math.inf,
) -> MergeResult:
    """Compose the answer from what the threads wrote, plus a short lead; no rewrite.

    Parts go in :func:`relevance_order`, each under a heading that names its thread (provenance),
    and together within ``budget_tokens`` (a part over its share is replaced by its summary, or
    cut). The lead is one free-text call of at most ``settings.lead_tokens`` that sees only the
    distilled parts, so the critical path after the threads is one short call, whatever the
    number of parts. A failed lead call loses nothing: the parts are the answer.
    """
    usable = [r for r in results if _composable(r)]
    dropped = [r.id for r in results if not _composable(r)]
    if not usable:
        return _nothing(results, MergeStrategy.compose, dropped)
    ordered = relevance_order(usable, priorities)
    if len(ordered) == 1:
        only = ordered[0]
        return MergeResult(
            answer=strip_trailer(only.answer or only.summary),
            confidence=only.confidence,
            strategy=MergeStrategy.compose,
            used=[only.id],
            dropped=dropped,
            cached=only.cached,
            note=f"one usable result ({only.id}): returned as is, no merge call",
        )
    share = max(MIN_PARTIAL_TOKENS, budget_tokens // len(ordered))
    sections: list[str] = []
    used: list[str] = []
    notes: list[str] = []
    for r in ordered:
        body = strip_trailer(r.answer or "") or r.summary
        if count_tokens(body) > share:
            shorter = r.summary if r.summary and count_tokens(r.summary) <= share else ""
            body = shorter or truncate_to_tokens(body, share)
            notes.append(
                f"{r.id} {'summarised' if shorter else 'trimmed'} to fit {budget_tokens} tokens"
            )
        sections.append(f"{_heading(r)}\n{body.strip()}")
        used.append(r.id)
    prompt = load_prompt("lead")
    entries = [_entry(r, _distilled(r)) for r in ordered]
    messages = prompt.render(
        question=question, results=truncate_to_tokens("\n\n".join(entries), max(256, budget_tokens))
    )
    request = ModelRequest(
        messages=messages,
        max_tokens=settings.lead_tokens,
        temperature=settings.temperature,
        purpose="lead",
        prompt_version=prompt.key,
    )
    started = anyio.current_time()
    lead = ""
    tokens_in = tokens_out = context = 0
    cached = False
    streamed: list[str] = []

    def collect(delta: str) -> None:
        streamed.append(delta)
        if on_token is not None:
            on_token(delta)

    if lead_seconds <= 0:
        notes.append("no lead: the deadline left no time for it")
    else:
        with anyio.move_on_after(lead_seconds) as scope:
            try:
                with usable_when(any_text):  # bounded on purpose: a cut lead is a lead
                    response = await merger.complete(request, on_token=collect)
                lead = response.text.strip()
                tokens_in, tokens_out = response.usage.input_tokens, response.usage.output_tokens
                context, cached = response.max_context_tokens, response.cached
            except ModelError as exc:
                log.warning("lead call failed (%s); the composed parts stand alone", exc)
                notes.append(f"no lead: {exc}")
        if scope.cancelled_caught:
            tokens_in = count_messages(messages)
            tokens_out = count_tokens("".join(streamed))
            context = tokens_in + tokens_out
            notes.append("lead cut at the deadline")
            lead = "".join(streamed).strip()
    confidences = [r.confidence for r in ordered if r.confidence is not None]
    answer = "\n\n".join([lead, *sections] if lead else sections)
    if on_token is not None:  # the rest of the answer, for a caller that streams it
        on_token(answer[len(lead) :] if lead else answer)
    return MergeResult(
        answer=answer,
        confidence=round(min(confidences), 4) if confidences else None,
        strategy=MergeStrategy.compose,
        used=used,
        dropped=dropped,
        context_tokens=count_messages(messages),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        max_context_tokens=context,
        latency_s=round(anyio.current_time() - started, 6),
        cached=cached,
        note="; ".join([f"composed {len(used)} part(s) with a {tokens_out}-token lead", *notes]),
    )


async def merge(
    merger: Model,
    question: str,
    results: Sequence[ThreadResult],
    *,
    context: str = "",
    strategy: MergeStrategy = MergeStrategy.synthesize,
    budget_tokens: int,
    settings: Settings,
    priorities: Mapping[str, int] | None = None,
    on_token: Callable[[str], None] | None = None,
) -> MergeResult:
    """Merge ``results`` into one answer (``compose``: see :func:`compose`).

    Failed, cancelled and skipped results (and done ones without any text) are dropped and listed
    in ``dropped``. The rest are ordered by :func:`relevance_order` and packed into the budget:
    ``budget_tokens`` bounds the whole merge prompt; what the prompt needs without any result is
    subtracted first, then results are added in relevance order; the first that does not fit is
    truncated if at least :data:`MIN_PARTIAL_TOKENS` of it fit (the most relevant one always
    goes in, truncated if need be) and everything after it is dropped. With one usable result
    and ``synthesize``, no merge call is made. A failing merger falls back to the most relevant
    result rather than losing the run; ``note`` says which of these happened.
    """
    from ..llm.structured import complete_structured  # helper module; imported late on purpose

    if strategy is MergeStrategy.compose:  # no merge call to bound, only its short lead
        return await bounded_merge(
            merger,
            question,
            results,
            strategy=strategy,
            budget_tokens=budget_tokens,
            settings=settings,
            seconds=math.inf,
            priorities=priorities,
            on_token=on_token,
        )
    usable = [r for r in results if _usable(r)]
    dropped = [r.id for r in results if not _usable(r)]
    if not usable:
        return _nothing(results, strategy, dropped)
    ordered = relevance_order(usable, priorities)
    if len(ordered) == 1 and strategy is MergeStrategy.synthesize:
        only = ordered[0]
        return MergeResult(
            answer=only.answer or only.summary,
            confidence=only.confidence,
            strategy=strategy,
            used=[only.id],
            dropped=dropped,
            cached=only.cached,
            note=f"one usable result ({only.id}): returned as is, no merge call",
        )

    prompt = load_prompt("merger")
    values = {
        "mode": strategy.value,
        "schema": schema_text(MergeOutput),
        "question": question,
        "context": context,
    }
    base_tokens = count_messages(prompt.render(results="", **values))
    room = budget_tokens - base_tokens
    entries: list[str] = []
    used: list[str] = []
    truncated: str | None = None
    full = False  # once one entry does not fit, every less relevant one is dropped
    for r in ordered:
        if full:
            dropped.append(r.id)
            continue
        entry = _entry(r, _distilled(r))
        cost = count_tokens(entry) + 2  # the blank line between entries
        if cost <= room:
            entries.append(entry)
            used.append(r.id)
            room -= cost
            continue
        full = True
        if not used or room >= MIN_PARTIAL_TOKENS:
            entries.append(truncate_to_tokens(entry, max(room - 2, MIN_PARTIAL_TOKENS)))
            used.append(r.id)
            truncated = r.id
        else:
            dropped.append(r.id)
    messages = prompt.render(results="\n\n".join(entries), **values)
    context_tokens = count_messages(messages)
    request = ModelRequest(
        messages=messages,
        max_tokens=max(settings.max_tokens, 1536),
        temperature=settings.temperature,
        purpose="merger",
        prompt_version=prompt.key,
    )
    notes = [f"merged {len(used)} result(s) with {strategy.value}"]
    if truncated:
        notes.append(f"{truncated} truncated to fit {budget_tokens} tokens")
    over = [d for d in dropped if d not in {r.id for r in results if not _usable(r)}]
    if over:
        notes.append(f"over the {budget_tokens}-token budget: {', '.join(over)}")
    started = anyio.current_time()
    try:
        output, response = await complete_structured(merger, request, MergeOutput)
    except ModelError as exc:
        best = ordered[0]
        log.warning("merge call failed (%s); returning the most relevant result", exc)
        return MergeResult(
            answer=best.answer or best.summary,
            confidence=best.confidence,
            strategy=strategy,
            used=[best.id],
            dropped=[r.id for r in results if r.id != best.id],
            context_tokens=context_tokens,
            latency_s=round(anyio.current_time() - started, 6),
            note=f"merger failed ({exc}); returned the most relevant result, {best.id}",
        )
    return MergeResult(
        answer=output.answer,
        confidence=output.confidence,
        strategy=strategy,
        used=used,
        dropped=dropped,
        context_tokens=context_tokens,
        tokens_in=response.usage.input_tokens,
        tokens_out=response.usage.output_tokens,
        max_context_tokens=response.max_context_tokens,
        latency_s=round(anyio.current_time() - started, 6),
        cached=response.cached,
        note="; ".join(notes),
    )


#: How a merge cut by its deadline starts its note (the run is then partial).
MERGE_LATE = "merge ran past the deadline"


async def bounded_merge(
    merger: Model,
    question: str,
    results: Sequence[ThreadResult],
    *,
    context: str = "",
    strategy: MergeStrategy,
    budget_tokens: int,
    settings: Settings,
    seconds: float,
    priorities: Mapping[str, int] | None = None,
    on_token: Callable[[str], None] | None = None,
) -> MergeResult:
    """:func:`merge` within ``seconds``. Composing needs no call, so only its lead is bounded;
    a rewriting merge that runs out of time gives the most relevant result with a note."""
    if strategy is MergeStrategy.compose:
        return await compose(
            merger,
            question,
            results,
            budget_tokens=budget_tokens,
            settings=settings,
            priorities=priorities,
            on_token=on_token,
            lead_seconds=seconds,
        )
    with anyio.move_on_after(max(0.0, seconds)):
        return await merge(
            merger,
            question,
            results,
            context=context,
            strategy=strategy,
            budget_tokens=budget_tokens,
            settings=settings,
            priorities=priorities,
        )
    done = [r for r in results if r.status is ThreadStatus.done]
    best = max(done, key=lambda r: (r.settles_question, r.confidence or 0.0), default=None)
    return MergeResult(
        answer=(best.answer or best.summary) if best else "No thread finished before the deadline.",
        confidence=best.confidence if best else 0.0,
        strategy=strategy,
        used=[best.id] if best else [],
        dropped=[r.id for r in results if best is None or r.id != best.id],
        note=f"{MERGE_LATE}; returned the most relevant result",
    )
