"""The adaptive controller: the built-in rules, plus a meta-controller model and the
concurrency limiter's decisions.

:class:`MetaController` extends :class:`~apr_mcp.engine.controller.Controller` (plug it in with
``Engine(controller_factory=...)``) with two optional things:

* **a meta-controller model** (``settings.meta_controller`` and a model): after a new result, it
  reads a compact summary of the live run and answers ``continue``, ``merge`` (stop the rest and
  merge now) or ``split`` (new self-contained subtasks). Bounded: at most ``max_reviews`` calls per
  run, never while the rules are already stopping, each call capped by ``timeout_s``; a failing
  or slow meta model means "continue", never a failed run.
* **limiter decisions**: when given the run's :class:`~apr_mcp.llm.limiter.AdaptiveLimiter`, every
  change of the concurrency limit (a backoff on 429/overload/latency, a recovery) becomes a
  visible ``backoff``/``recover`` decision in the run, reported at the next thread event (changes
  after the last one, e.g. during the merge, when the run ends).
"""

from __future__ import annotations

import json
import logging
from typing import Literal

import anyio
from pydantic import BaseModel, Field

from ..config import Settings
from ..errors import ModelError
from ..limits import MAX_PROMPT_CHARS
from ..llm.base import Model, ModelRequest
from ..llm.limiter import AdaptiveLimiter
from ..prompts import load_prompt
from ..schemas import Subtask, ThreadResult, ThreadStatus
from ..tokens import truncate_to_tokens
from .controller import Action, Controller, Note, RunState, Spawn, Stop, normalise_prompt
from .text import one_line

__all__ = ["MetaController", "MetaDecision", "summarize_state"]

log = logging.getLogger(__name__)

#: Token cap of the live-state summary sent to the meta model.
STATE_TOKENS = 1500


class MetaDecision(BaseModel):
    """What the meta-controller model answers."""

    action: Literal["continue", "merge", "split"] = Field(
        default="continue", description="continue | merge (stop the rest, merge now) | split"
    )
    reason: str = Field(default="", description="One sentence the user will read.")
    new_subtasks: list[str] = Field(
        default_factory=list,
        description="For split: self-contained new subtask prompts.",
        json_schema_extra={"maxItems": 8},
    )


def _head(text: str, limit: int = 120) -> str:
    return one_line(text, limit)


def summarize_state(state: RunState) -> str:
    """A compact, model-readable picture of a live run (capped at :data:`STATE_TOKENS`)."""
    now = state.elapsed()
    lines = [
        f"Elapsed {now:.1f}s; tokens used {state.tokens_used}"
        + (f" of {state.settings.token_budget}" if state.settings.token_budget else "")
    ]
    done = [r for r in state.results.values() if r.status is ThreadStatus.done]
    lines.append(f"Finished ({len(done)}):")
    for r in sorted(done, key=lambda r: -(r.confidence or 0.0)):
        conf = f"{r.confidence:.2f}" if r.confidence is not None else "?"
        lines.append(
            f"- [{r.id}] {_head(r.prompt, 100)} -> (confidence {conf}) "
            f"{_head(r.summary or r.answer or '', 240)}"
        )
    other = [r for r in state.results.values() if r.status is not ThreadStatus.done]
    for r in other:
        lines.append(f"- [{r.id}] {r.status.value}: {_head(r.reason or r.error or '', 100)}")
    lines.append(f"Running ({len(state.running)}):")
    for sid, started in state.running.items():
        lines.append(f"- [{sid}] for {now - started:.1f}s: {_head(state.subtasks[sid].prompt)}")
    lines.append(f"Pending ({len(state.pending)}):")
    for sid in sorted(state.pending):
        lines.append(f"- [{sid}] {_head(state.subtasks[sid].prompt)}")
    return truncate_to_tokens("\n".join(lines), STATE_TOKENS)


class MetaController(Controller):
    """Built-in rules + an optional meta-controller model + limiter decisions (see module doc).

    Its constructor fits ``Engine(controller_factory=...)`` directly; to report the limiter's
    decisions, bind it: ``functools.partial(MetaController, limiter=runtime.limiter)``.
    """

    def __init__(
        self,
        settings: Settings,
        model: Model | None = None,
        *,
        limiter: AdaptiveLimiter | None = None,
        max_reviews: int = 3,
        max_new: int = 2,
        timeout_s: float = 15.0,
    ) -> None:
        super().__init__(settings, model)
        self.max_reviews = max_reviews
        self.max_new = max_new
        self.timeout_s = timeout_s
        self.reviews = 0
        self._reviewed_at_done = 0
        self._last: ThreadResult | None = None
        self._changes: list[tuple[int, int, str]] = []
        self._spawned = 0
        if limiter is not None:
            # Weak: one controller per run, and the limiter outlives every run.
            limiter.subscribe(self._on_limit_change, weak=True, replay=True)

    @property
    def enabled(self) -> bool:
        """Whether the meta-controller model is consulted."""
        return self.model is not None and self.settings.meta_controller

    def _on_limit_change(self, old: int, new: int, reason: str) -> None:
        self._changes.append((old, new, reason))

    def limiter_notes(self) -> list[Note]:
        """Pending limit changes as ``backoff``/``recover`` decisions (and forget them).

        Consecutive changes in one direction (a burst of 429s tightening the limit step by step)
        become one decision from the first old to the last new limit.
        """
        notes: list[Note] = []
        runs: list[list[tuple[int, int, str]]] = []
        for change in self._changes:
            down = change[1] < change[0]
            if runs and (runs[-1][-1][1] < runs[-1][-1][0]) == down:
                runs[-1].append(change)
            else:
                runs.append([change])
        for run in runs:
            old, new = run[0][0], run[-1][1]
            kind = "backoff" if new < old else "recover"
            reason = run[0][2] if len(run) == 1 else f"{run[0][2]} (+{len(run) - 1} more step(s))"
            notes.append(Note(kind=kind, reason=f"concurrency limit {old} -> {new}: {reason}"))
        self._changes.clear()
        return notes

    async def on_result(self, state: RunState, result: ThreadResult) -> list[Action]:
        self._last = result
        return self.limiter_notes() + await super().on_result(state, result)

    def pending_notes(self) -> list[Note]:
        """Limit changes since the last thread event (the engine asks once the run ends)."""
        return self.limiter_notes()

    async def review(self, state: RunState) -> list[Action]:
        """Ask the meta model once per new finished result, within the bounds."""
        if not self.enabled or state.stopping is not None or not (state.pending or state.running):
            return []
        n_done = len(state.done_results())
        if n_done == 0 or n_done == self._reviewed_at_done or self.reviews >= self.max_reviews:
            return []
        last = self._last
        if last is not None and (self.early_stop(state, last) or self.budget(state)):
            return []  # the rules are already stopping the run; don't pay for a model call
        self._reviewed_at_done = n_done
        self.reviews += 1
        with anyio.move_on_after(self.timeout_s):
            try:
                decision = await self.decide(state.question, summarize_state(state))
            except ModelError as exc:
                return [
                    Note(kind="meta", reason=f"meta-controller unavailable ({exc}); continuing")
                ]
            return self.to_actions(decision, state)
        return [
            Note(
                kind="meta",
                reason=f"meta-controller gave no answer within {self.timeout_s:g}s; continuing",
            )
        ]

    async def decide(self, question: str, state_summary: str) -> MetaDecision:
        """One meta-controller call: ``continue``, ``merge`` or ``split`` for this state."""
        from ..llm.structured import complete_structured

        assert self.model is not None
        prompt = load_prompt("controller")
        request = ModelRequest(
            messages=prompt.render(
                max_new=self.max_new,
                question=question,
                state=state_summary,
                schema=json.dumps(MetaDecision.model_json_schema()),
            ),
            max_tokens=512,
            temperature=0.0,
            purpose="controller",
            prompt_version=prompt.key,
        )
        decision, _ = await complete_structured(self.model, request, MetaDecision)
        return decision

    def to_actions(self, decision: MetaDecision, state: RunState) -> list[Action]:
        """Turn a decision into scheduler actions, within the run's follow-up budget."""
        why = decision.reason.strip() or "no reason given"
        if decision.action == "merge":
            return [
                Stop(
                    kind="meta",
                    reason=f"meta-controller: merge now ({why}); stopping the other threads",
                    thread_reason="meta-controller decided to merge now",
                )
            ]
        if decision.action == "split":
            budget = min(self.max_new, self.settings.max_followups - state.followups_spawned)
            known = {normalise_prompt(s.prompt) for s in state.subtasks.values()}
            actions: list[Action] = []
            for prompt in decision.new_subtasks:
                norm = normalise_prompt(prompt)
                if len(actions) >= budget or not norm or norm in known:
                    continue
                known.add(norm)
                self._spawned += 1
                sid = f"m{self._spawned}"
                while sid in state.subtasks:
                    self._spawned += 1
                    sid = f"m{self._spawned}"
                actions.append(
                    Spawn(
                        subtask=Subtask(id=sid, prompt=prompt[:MAX_PROMPT_CHARS], priority=5),
                        reason=f"meta-controller: split ({why}): {_head(prompt, 80)}",
                    )
                )
            if actions:
                return actions
            return [
                Note(
                    kind="meta",
                    reason=f"meta-controller asked to split ({why}), but no new, "
                    "allowed subtask was given; continuing",
                )
            ]
        return [Note(kind="meta", reason=f"meta-controller: continue ({why})")]
