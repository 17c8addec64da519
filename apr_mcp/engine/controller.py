"""The feedback loop: rules that run after every thread event and steer the run.

The scheduler calls :meth:`Controller.on_result` each time a thread ends (done, failed, cancelled
or skipped) and applies the :data:`Action`s it returns; every action carries a human reason that
becomes a visible :class:`~apr_mcp.schemas.Decision`. The built-in rules are deliberately simple
so a user can check them against the trace:

* **early stop** — a done result with ``settles_question`` and confidence at least
  ``settings.early_stop_confidence`` cancels everything else; the run goes to merge.
* **redundancy** — a pending or running subtask is cancelled when a finished, confident result
  already covers it: its normalised prompt equals the finished one's, or every content word of it
  appears in the finished subtask's prompt (the finished subtask asked a superset question).
* **follow-ups** — ``ThreadAnswer.follow_ups`` become new subtasks ``<parent>.f<n>`` that depend on
  their parent (so they receive its summary), bounded by ``settings.max_followups`` per run and
  ``settings.max_depth`` levels; duplicates of known subtasks are not spawned.
* **token budget** — ``settings.token_budget`` caps the tokens planning and the threads spend
  (prompts plus streamed output; the merge of what was found still runs). The scheduler counts
  streamed tokens as they arrive and stops the run the moment
  the budget is crossed: nothing new is launched, running threads are cancelled, the results so far
  are kept and the run is partial. This rule is the backstop after each result (exact counts).

A meta-controller (a model that decides continue / merge / split from the live state) plugs in by
subclassing :class:`Controller` and overriding :meth:`Controller.review`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ..config import Settings
from ..limits import MAX_PROMPT_CHARS
from ..llm.base import Model
from ..schemas import Decision, Subtask, ThreadResult, ThreadStatus
from .text import one_line

__all__ = [
    "Action",
    "Cancel",
    "Controller",
    "Note",
    "RunState",
    "SetConcurrency",
    "Spawn",
    "Stop",
    "budget_stop",
    "content_words",
    "normalise_prompt",
]

StopKind = Literal["early_stop", "budget", "deadline", "meta"]


@dataclass(frozen=True)
class Cancel:
    """Cancel one pending or running thread (it ends with status cancelled and this reason)."""

    thread_id: str
    reason: str


@dataclass(frozen=True)
class Stop:
    """Launch nothing more; cancel what is pending (and, if ``cancel_running``, what runs)."""

    kind: StopKind
    reason: str
    thread_id: str | None = None
    cancel_running: bool = True
    #: Short reason stored on each cancelled thread (``ThreadResult.reason``).
    thread_reason: str | None = None


@dataclass(frozen=True)
class Spawn:
    """Add a new subtask to the run."""

    subtask: Subtask
    reason: str


@dataclass(frozen=True)
class SetConcurrency:
    """Change how many threads may run at once (running threads are never pre-empted)."""

    limit: int
    reason: str


@dataclass(frozen=True)
class Note:
    """Only record a decision (e.g. a meta-controller's "continue")."""

    kind: str
    reason: str
    thread_id: str | None = None


Action = Cancel | Stop | Spawn | SetConcurrency | Note


@dataclass
class RunState:
    """The live state of a run, as the controller sees it. The scheduler owns and mutates it;
    controllers should only read it and return actions."""

    question: str
    context: str
    settings: Settings
    elapsed: Callable[[], float]
    #: Every subtask known so far, in plan order, then spawned ones.
    subtasks: dict[str, Subtask] = field(default_factory=dict)
    #: Threads that have ended, by id.
    results: dict[str, ThreadResult] = field(default_factory=dict)
    #: Running threads: id → started_s.
    running: dict[str, float] = field(default_factory=dict)
    #: Subtasks not started yet.
    pending: set[str] = field(default_factory=set)
    depth: dict[str, int] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    #: Tokens the run spent before its threads (the planner's), counted against the budget.
    tokens_before: int = 0
    #: True while a streaming plan may still add subtasks.
    more_coming: bool = False
    followups_spawned: int = 0
    concurrency: int = 1
    #: Set once the run stops launching threads: the Stop kind.
    stopping: str | None = None

    @property
    def tokens_used(self) -> int:
        return self.tokens_before + self.tokens_in + self.tokens_out

    def done_results(self) -> list[ThreadResult]:
        return [r for r in self.results.values() if r.status is ThreadStatus.done]


_WORD = re.compile(r"[a-z0-9]+")
# Words that carry no content when comparing what two subtasks ask.
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "for",
        "to",
        "and",
        "or",
        "with",
        "by",
        "from",
        "at",
        "as",
        "is",
        "are",
        "be",
        "was",
        "were",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "what",
        "which",
        "who",
        "whom",
        "how",
        "why",
        "when",
        "where",
        "does",
        "do",
        "did",
        "can",
        "could",
        "should",
        "would",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "about",
        "into",
        "than",
        "then",
        "so",
        "such",
        "their",
        "there",
        "them",
        "they",
        "we",
        "you",
        "your",
        "our",
        "i",
        "me",
        "my",
        "please",
        "explain",
        "describe",
        "give",
        "list",
        "find",
        "determine",
    ]
)


def normalise_prompt(text: str) -> str:
    """Lower case, punctuation and extra whitespace removed: what "the same prompt" means."""
    return " ".join(_WORD.findall(text.lower()))


def content_words(text: str) -> frozenset[str]:
    return frozenset(w for w in _WORD.findall(text.lower()) if w not in _STOP)


class Controller:
    """The built-in rules (see the module docstring). One instance per run.

    ``model`` is the optional meta-controller model; the base class does not use it.
    """

    #: Containment needs at least this many content words, so tiny prompts never match by chance.
    min_covered_words = 3

    def __init__(self, settings: Settings, model: Model | None = None) -> None:
        self.settings = settings
        self.model = model

    async def on_result(self, state: RunState, result: ThreadResult) -> list[Action]:
        """All rules for one ended thread, then the :meth:`review` hook."""
        actions: list[Action] = []
        if state.stopping is None:
            actions += self.early_stop(state, result)
        if state.stopping is None and not any(isinstance(a, Stop) for a in actions):
            actions += self.redundancy(state, result)
            actions += self.follow_ups(state, result)
            actions += self.budget(state)
        actions += await self.review(state)
        return actions

    async def review(self, state: RunState) -> list[Action]:
        """Hook for a meta-controller; called after every thread event. Default: no actions."""
        return []

    def pending_notes(self) -> list[Note]:
        """Decisions that arose outside thread events (e.g. concurrency-limit changes during the
        merge); the engine records them when the run ends. Default: none."""
        return []

    # ----- rules -----

    def early_stop(self, state: RunState, result: ThreadResult) -> list[Action]:
        threshold = self.settings.early_stop_confidence
        if (
            result.status is ThreadStatus.done
            and result.settles_question
            and (result.confidence or 0.0) >= threshold
            and (state.pending or state.running or state.more_coming)
        ):
            return [
                Stop(
                    kind="early_stop",
                    thread_id=result.id,
                    reason=(
                        f"{result.id} settles the question with confidence {result.confidence:.2f}"
                        f" (>= {threshold:.2f}); cancelling the other threads"
                    ),
                    thread_reason=f"early stop: {result.id} settled the question",
                )
            ]
        return []

    def redundancy(self, state: RunState, result: ThreadResult) -> list[Action]:
        if result.status is not ThreadStatus.done:
            return []
        if (result.confidence or 0.0) < self.settings.early_stop_confidence:
            return []  # only a confident answer may make other work unnecessary
        done_prompt = (
            state.subtasks[result.id].prompt if result.id in state.subtasks else result.prompt
        )
        done_norm = normalise_prompt(done_prompt)
        done_words = content_words(done_prompt)
        actions: list[Action] = []
        for other_id in [*state.running, *sorted(state.pending)]:
            other = state.subtasks.get(other_id)
            if other is None or result.id in other.depends_on or other.spawned_from == result.id:
                continue  # it builds on this result, so this result cannot replace it
            if normalise_prompt(other.prompt) == done_norm:
                why = f"{other_id} asks the same as {result.id}, which is done"
            else:
                words = content_words(other.prompt)
                if len(words) < self.min_covered_words or not words <= done_words:
                    continue
                why = (
                    f"{other_id} is covered by {result.id}: every key term of {other_id} "
                    f"appears in {result.id}'s task, and {result.id} finished with confidence "
                    f"{result.confidence:.2f}"
                )
            actions.append(Cancel(thread_id=other_id, reason=why))
        return actions

    def follow_ups(self, state: RunState, result: ThreadResult) -> list[Action]:
        if result.status is not ThreadStatus.done or not result.follow_ups:
            return []
        depth = state.depth.get(result.id, 0) + 1
        if depth > self.settings.max_depth:
            return [
                Note(
                    kind="spawn",
                    thread_id=result.id,
                    reason=f"{result.id} proposed {len(result.follow_ups)} follow-up(s); not "
                    "spawned: "
                    f"depth {depth} exceeds max_depth {self.settings.max_depth}",
                )
            ]
        known = {normalise_prompt(s.prompt) for s in state.subtasks.values()}
        parent = state.subtasks.get(result.id)
        actions: list[Action] = []
        budget = self.settings.max_followups - state.followups_spawned
        taken = set(state.subtasks)
        n = 0
        for prompt in result.follow_ups:
            norm = normalise_prompt(prompt)
            if not norm or norm in known:
                continue
            if n >= budget:
                actions.append(
                    Note(
                        kind="spawn",
                        thread_id=result.id,
                        reason=f"follow-up of {result.id} not spawned: the run's limit of "
                        f"{self.settings.max_followups} follow-ups is reached",
                    )
                )
                break
            n += 1
            known.add(norm)
            new_id = _follow_up_id(result.id, taken)
            taken.add(new_id)
            sub = Subtask(
                id=new_id,
                prompt=prompt[:MAX_PROMPT_CHARS],
                depends_on=[result.id],
                priority=max(0, (parent.priority if parent else 0) - 1),
                spawned_from=result.id,
            )
            actions.append(
                Spawn(subtask=sub, reason=f"{result.id} found a new subproblem: {_short(prompt)}")
            )
        return actions

    def budget(self, state: RunState) -> list[Action]:
        limit = self.settings.token_budget
        if limit is None or state.tokens_used < limit or not (state.pending or state.running):
            return []
        return [budget_stop(state, state.tokens_used, limit)]


def budget_stop(state: RunState, used: int, limit: int) -> Stop:
    """The :class:`Stop` of a spent token budget: pending and running threads are cancelled."""
    return Stop(
        kind="budget",
        reason=f"token budget spent (about {used} of {limit} tokens): cancelled "
        f"{len(state.running)} running and {len(state.pending)} pending thread(s); "
        "keeping the results so far",
        thread_reason="token budget",
    )


def _follow_up_id(parent: str, taken: set[str]) -> str:
    k = 1
    while f"{parent}.f{k}"[:64] in taken:
        k += 1
    return f"{parent}.f{k}"[:64]


def _short(text: str, limit: int = 80) -> str:
    return one_line(text, limit)
