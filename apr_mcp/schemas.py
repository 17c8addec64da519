"""Pydantic models shared by the engine, the MCP tools and the CLI.

The chaining contract of the MCP tools rests on these: ``Plan.subtasks`` passes unchanged as
``parallel_solve``'s ``subtasks``, and ``SolveRun.results`` passes unchanged as ``merge``'s
``results``. Fields are therefore lenient on input (defaults everywhere a host might omit them)
and strict on meaning (validated ids, bounded numbers).
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .limits import MAX_CONCURRENCY, MAX_PROMPT_CHARS

__all__ = [
    "Decision",
    "MergeResult",
    "MergeStrategy",
    "Plan",
    "RunEvent",
    "RunMetrics",
    "RunStatus",
    "SolveResult",
    "SolveRun",
    "StageUsage",
    "Subtask",
    "ThreadAnswer",
    "ThreadResult",
    "ThreadStatus",
    "run_status",
]

_ID = r"^[A-Za-z0-9_.:-]{1,64}$"


class Subtask(BaseModel):
    """One self-contained unit of work. A thread never sees its siblings, only its own prompt
    and the distilled results of the subtasks it depends on."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=_ID, description="Unique id within the plan, e.g. 't1'.")
    prompt: str = Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="A self-contained instruction; it must make sense without the other subtasks.",
    )
    depends_on: list[str] = Field(
        default_factory=list,
        description="Ids of subtasks whose results this one needs; it starts when they are done.",
    )
    priority: int = Field(
        default=0, ge=0, le=10, description="Higher runs first when concurrency is limited."
    )
    spawned_from: str | None = Field(
        default=None, description="Id of the thread whose result gave rise to this follow-up."
    )


class Plan(BaseModel):
    """The planner's answer: whether to split, why, and into what."""

    model_config = ConfigDict(extra="ignore")

    should_split: bool = Field(description="False means: answer with one call.")
    reason: str = Field(default="", description="Why the question was (or was not) split.")
    complexity: int = Field(
        default=1, ge=1, le=10, description="Estimated complexity, 1 (trivial) to 10."
    )
    subtasks: list[Subtask] = Field(default_factory=list)
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CONCURRENCY,
        description="Suggested concurrency for these subtasks.",
    )
    source: Literal["model", "heuristic", "fallback", "host"] = Field(
        default="model",
        description="Who made the plan: the planner model, heuristics, a fallback or the host.",
    )
    signals: list[str] = Field(
        default_factory=list, description="Heuristic signals seen in the question (why split)."
    )


class ThreadStatus(str, Enum):
    done = "done"
    failed = "failed"
    cancelled = "cancelled"
    skipped = "skipped"


class ThreadAnswer(BaseModel):
    """What a solver thread returns (the JSON the solver prompt asks for)."""

    model_config = ConfigDict(extra="ignore")

    # maxLength/maxItems: bounds for the schema a model sees (issue 13), not validation.
    answer: str = Field(
        description="The full answer to the subtask.", json_schema_extra={"maxLength": 1_000}
    )
    summary: str = Field(default="", description="One to three sentences distilling the answer.")
    confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    settles_question: bool = Field(
        default=False,
        description="True if this result alone answers the whole original question.",
    )
    follow_ups: list[str] = Field(
        default_factory=list,
        description="Self-contained new subproblems that emerged and are worth a thread of "
        "their own.",
        json_schema_extra={"maxItems": 8},
    )


class ThreadResult(BaseModel):
    """The outcome of one thread, done or not."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=_ID)
    status: ThreadStatus = ThreadStatus.done
    prompt: str = ""
    answer: str | None = None
    summary: str = ""
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    tokens_in: int = Field(default=0, ge=0)
    tokens_out: int = Field(default=0, ge=0)
    latency_s: float = Field(default=0.0, ge=0.0)
    started_s: float | None = Field(default=None, description="Start, seconds after run start.")
    finished_s: float | None = Field(default=None, description="End, seconds after run start.")
    cached: bool = False
    error: str | None = None
    reason: str | None = Field(default=None, description="Why it was cancelled or skipped.")
    depends_on: list[str] = Field(default_factory=list)
    spawned_from: str | None = None
    settles_question: bool = False
    follow_ups: list[str] = Field(default_factory=list)


class MergeStrategy(str, Enum):
    """How results become one answer. ``compose`` (the default for independent parts) keeps
    what the threads wrote and adds a short lead; the others rewrite it in one merge call."""

    compose = "compose"
    synthesize = "synthesize"
    vote = "vote"
    rank = "rank"


class StageUsage(BaseModel):
    """Tokens and calls spent by one stage (plan, solve, merge)."""

    calls: int = 0
    cached_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    max_context_tokens: int = Field(
        default=0,
        description="Largest context of any one call in this stage: prompt plus generated tokens "
        "(a cancelled call: its prompt and what it streamed). Cache hits hold no context on the "
        "model and are left out.",
    )


class MergeResult(BaseModel):
    answer: str
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    strategy: MergeStrategy = MergeStrategy.synthesize
    used: list[str] = Field(default_factory=list, description="Thread ids whose results were used.")
    dropped: list[str] = Field(
        default_factory=list, description="Thread ids left out (failed, cancelled, or over budget)."
    )
    context_tokens: int = Field(default=0, description="Tokens of the prompt sent to the merger.")
    max_context_tokens: int = Field(
        default=0,
        description="Context of the merge call: its prompt plus generated tokens (the larger call "
        "if the output needed a repair); 0 for a cache hit or when no call was made.",
    )
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    cached: bool = False
    note: str = Field(
        default="",
        description="How the merge was done, e.g. skipped because one result was usable.",
    )


class RunMetrics(BaseModel):
    wall_s: float = 0.0
    critical_path_s: float = Field(
        default=0.0, description="Longest chain of dependent model calls, in seconds."
    )
    tokens_in: int = 0
    tokens_out: int = 0
    max_context_tokens: int = Field(
        default=0,
        description="Largest context of any one call: prompt plus generated tokens. Cache hits "
        "are left out: they hold no context on the model.",
    )
    model_calls: int = 0
    cache_hits: int = 0
    cache: str = Field(
        default="on",
        description="The disk cache during the run: on, or off (reason), e.g. off (disabled), "
        "off (corrupt), off (locked for more than 1 s); `apr-mcp doctor` says how to fix it.",
    )
    threads: int = 0
    threads_done: int = 0
    threads_failed: int = 0
    threads_cancelled: int = 0
    threads_skipped: int = Field(
        default=0, description="Threads never run: a dependency failed, or a duplicate of another."
    )
    partial: bool = Field(
        default=False, description="True if a deadline or budget cut the run short."
    )
    stages: dict[str, StageUsage] = Field(default_factory=dict)


class Decision(BaseModel):
    """One visible decision of the adaptive controller (split, early stop, cancel, spawn, ...)."""

    at_s: float = 0.0
    kind: Literal[
        "split",
        "no_split",
        "width",
        "early_stop",
        "cancel",
        "spawn",
        "backoff",
        "recover",
        "deadline",
        "budget",
        "meta",
        "fallback",
    ]
    thread_id: str | None = None
    reason: str


class RunEvent(BaseModel):
    """Progress of a run, as the engine reports it to the CLI or the MCP server."""

    kind: Literal[
        "planned",
        "started",
        "done",
        "cached",
        "failed",
        "cancelled",
        "skipped",
        "spawned",
        "merging",
        "decision",
        "finished",
        "answer",
    ]
    thread_id: str | None = None
    message: str
    completed: int = 0
    total: int = 0


RunStatus = Literal["answered", "partial", "failed"]


def run_status(results: list[ThreadResult], partial: bool) -> RunStatus:
    """``failed`` when no thread produced a usable result, else ``partial`` or ``answered``."""
    usable = any(
        (r.status is ThreadStatus.done or (r.status is ThreadStatus.cancelled and r.answer))
        and bool((r.answer or r.summary or "").strip())
        for r in results
    )
    if not usable:
        return "failed"
    return "partial" if partial else "answered"


class SolveRun(BaseModel):
    """What ``parallel_solve`` returns."""

    run_id: str
    status: RunStatus = Field(
        default="answered",
        description="answered; partial (a deadline or budget cut it short); failed (no usable "
        "result).",
    )
    question: str
    results: list[ThreadResult]
    metrics: RunMetrics
    decisions: list[Decision] = Field(default_factory=list)
    partial: bool = False


class SolveResult(BaseModel):
    """What the whole pipeline (``solve``) returns."""

    run_id: str
    status: RunStatus = Field(
        default="answered",
        description="answered; partial (a deadline or budget cut it short); failed (no usable "
        "result).",
    )
    question: str
    strategy: str
    answer: str
    confidence: float | None = None
    plan: Plan | None = None
    results: list[ThreadResult] = Field(default_factory=list)
    merge: MergeResult | None = None
    metrics: RunMetrics
    decisions: list[Decision] = Field(default_factory=list)
    partial: bool = False
    backend: str = ""
    model: str = ""
