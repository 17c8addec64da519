"""Plain-text digests of plans, runs and answers, for people and for hosts that read text.

The MCP tools send these as their text content next to the structured content, and the CLI may
print them too. A digest is what a reader needs, not a second copy of the JSON: the structured
content (and the run trace at ``apr://runs/<run_id>``) carries every field.
"""

from __future__ import annotations

from typing import Literal

from .schemas import Decision, MergeResult, Plan, SolveResult, SolveRun, ThreadResult, ThreadStatus

__all__ = [
    "RunStatus",
    "decisions_text",
    "merge_text",
    "plan_text",
    "run_status",
    "run_text",
    "solve_text",
]

RunStatus = Literal["answered", "partial", "failed"]

#: Decisions listed in a digest (the structured content and the trace have them all).
MAX_DECISIONS = 12
#: Characters of one thread's answer shown in a run digest, and of all of them together (a wide
#: run shows less of each); the structured content has every answer in full.
MAX_ANSWER_CHARS = 6000
MAX_ANSWERS_CHARS = 24_000
_CUT = " […; the full answer is in `results`]"
#: Characters of one subtask's prompt shown in a plan digest, on one line.
MAX_PROMPT_CHARS = 400


def _usable(r: ThreadResult) -> bool:
    # A thread cut by the deadline may still have streamed an answer worth keeping.
    finished = r.status is ThreadStatus.done or (r.status is ThreadStatus.cancelled and r.answer)
    return bool(finished and (r.answer or r.summary or "").strip())


def run_status(run: SolveRun | SolveResult) -> RunStatus:
    """``failed`` when no thread produced a usable result, ``partial`` when a deadline or budget
    cut the run short, else ``answered``. The engine's own ``status`` wins when it sets one."""
    status = getattr(run, "status", None)
    if status in ("answered", "partial", "failed"):
        return status  # type: ignore[no-any-return]
    if not any(_usable(r) for r in run.results):
        return "failed"
    return "partial" if run.partial else "answered"


def _why_stopped(decisions: list[Decision]) -> str:
    kinds = [d.kind for d in decisions]
    if "budget" in kinds:
        return "the token budget was spent"
    if "deadline" in kinds:
        return "the deadline was reached"
    return "the deadline or budget was hit"


def _status_note(run: SolveRun | SolveResult) -> str:
    status = run_status(run)
    if status == "failed":
        why = f"; {_why_stopped(run.decisions)}" if run.partial else ""
        return f"FAILED: no thread produced a usable result{why}"
    if status == "partial":
        return f"PARTIAL: {_why_stopped(run.decisions)}"
    return ""


def _clip(text: str, limit: int, cut: str = "…") -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit].rstrip() + cut


def plan_text(plan: Plan) -> str:
    """The plan as a short list: the split (or why not) and one line per subtask."""
    if plan.should_split and plan.subtasks:
        head = (
            f"Split into {len(plan.subtasks)} self-contained subtasks (complexity "
            f"{plan.complexity}/10, by {plan.source}): {plan.reason}"
        )
    else:
        head = (
            f"Not worth splitting ({plan.reason or 'simple or sequential question'}): answer it "
            f"directly or call solve. Complexity {plan.complexity}/10, planned by {plan.source}."
        )
    lines = [head]
    for s in plan.subtasks:
        after = f" (after {', '.join(s.depends_on)})" if s.depends_on else ""
        lines.append(f"- {s.id}{after}: {_clip(' '.join(s.prompt.split()), MAX_PROMPT_CHARS)}")
    if plan.subtasks:
        lines.append("Next: parallel_solve with `subtasks` (edit them first if you like).")
    return "\n".join(lines)


def decisions_text(decisions: list[Decision]) -> list[str]:
    """Why the run split (or not), stopped, cancelled, spawned or backed off: one line each."""
    if not decisions:
        return []
    lines = ["Decisions:"]
    for d in decisions[:MAX_DECISIONS]:
        lines.append(f"- [{d.at_s:.1f}s] {d.kind}: {_clip(d.reason, 300)}")
    if len(decisions) > MAX_DECISIONS:
        lines.append(f"- … {len(decisions) - MAX_DECISIONS} more in the trace")
    return lines


def _thread_text(r: ThreadResult, limit: int) -> str:
    notes = [r.status.value]
    if r.confidence is not None:
        notes.append(f"confidence {r.confidence:.2f}")
    if r.cached:
        notes.append("cached")
    if r.depends_on:
        notes.append(f"after {', '.join(r.depends_on)}")
    head = f"## {r.id} ({', '.join(notes)})"
    body = r.answer or r.summary
    if body and body.strip():
        return f"{head}\n{_clip(body, limit, _CUT)}"
    return f"{head}: {r.error or r.reason or 'no answer'}"


def run_text(run: SolveRun) -> str:
    """A run for a reader: one status line, the decisions, then each thread's answer."""
    m = run.metrics
    note = _status_note(run)
    head = (
        f"Run {run.run_id}: {m.threads_done}/{m.threads or len(run.results)} threads done"
        + (f", {m.threads_failed} failed" if m.threads_failed else "")
        + (f", {m.threads_cancelled} cancelled" if m.threads_cancelled else "")
        + (f", {m.threads_skipped} skipped" if m.threads_skipped else "")
        + f" in {m.wall_s:.1f} s (critical path {m.critical_path_s:.1f} s), "
        f"{m.tokens_in + m.tokens_out} tokens, {m.cache_hits} cache hits"
        + (f" — {note}" if note else "")
    )
    lines = [head, *decisions_text(run.decisions)]
    limit = min(MAX_ANSWER_CHARS, max(500, MAX_ANSWERS_CHARS // max(1, len(run.results))))
    lines += [_thread_text(r, limit) for r in run.results]
    if run_status(run) != "failed":
        lines.append("Answer from these results yourself, or call merge with `results`.")
    return "\n".join(lines)


def merge_text(merged: MergeResult) -> str:
    """The merged answer, then one line of provenance."""
    conf = f", confidence {merged.confidence:.2f}" if merged.confidence is not None else ""
    dropped = f"; dropped {', '.join(merged.dropped)}" if merged.dropped else ""
    note = f" ({merged.note})" if merged.note else ""
    return (
        f"{merged.answer}\n\n— {merged.strategy.value} of {', '.join(merged.used) or 'no threads'}"
        f"{dropped}{conf}{note}"
    )


def solve_text(result: SolveResult) -> str:
    """The answer, then one line on the run (status, size, where its trace is) and the decisions."""
    m = result.metrics
    conf = f", confidence {result.confidence:.2f}" if result.confidence is not None else ""
    note = _status_note(result)
    tail = "\n".join(decisions_text(result.decisions))
    lines = [result.answer.strip()] if result.answer.strip() else []
    if run_status(result) == "failed":
        # Why each thread failed, unless the answer already says so.
        lines += [
            f"- {r.id} {r.status.value}: {why}"
            for r in result.results
            if (why := r.error or r.reason or "no answer") not in result.answer
        ]
    threads = f"{m.threads} thread{'' if m.threads == 1 else 's'}"
    return (
        "\n".join(lines)
        + f"\n\n—{' ' + note + ';' if note else ''} run {result.run_id}: {result.strategy}, "
        f"{threads}, {m.wall_s:.1f} s, {m.tokens_in + m.tokens_out} tokens{conf}"
        + (f", {result.backend}/{result.model}" if result.backend else "")
        + f". Trace: apr://runs/{result.run_id}"
        + (f"\n{tail}" if tail else "")
    )
