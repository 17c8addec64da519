"""What a mode plugs into the one pipeline: its plan, what its threads see, and its join.

The pipeline (``Engine.solve``) owns everything else — the deadline budget, the scheduler and
controller, events, metrics, decisions, the unsplit single call — so a mode never copies the loop.
:class:`GeneralStrategy` plans with :func:`~apr_mcp.engine.plan.make_plan` and joins with
:func:`~apr_mcp.engine.merge.bounded_merge`; debug mode
(:class:`~apr_mcp.engine.debug.DebugStrategy`) plans hypotheses and joins with a ranked verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ..config import Settings
from ..llm.base import Model
from ..schemas import MergeResult, MergeStrategy, Plan, StageUsage, Subtask, ThreadResult
from .merge import bounded_merge
from .plan import make_plan, single_task_plan

__all__ = ["GeneralStrategy", "Strategy"]


class Strategy:
    """The base of every mode; subclasses override what differs."""

    #: ``SolveResult.strategy`` of a run in this mode (None: the caller's strategy name).
    name: str | None = None
    #: Noun for the plan's parts in progress messages.
    parts_name = "subtasks"

    def thread_question(self, question: str) -> str:
        """The "original question" each thread sees for orientation."""
        return question

    def thread_context(self, context: str) -> str:
        return context

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
        return await make_plan(
            planner,
            question,
            context,
            settings,
            max_subtasks=max_subtasks,
            force_width=force_width,
            on_subtask=on_subtask,
            on_tokens=on_tokens,
        )

    def fallback_plan(self, question: str, context: str, reason: str, settings: Settings) -> Plan:
        """The plan when planning ran out of time with nothing streamed: one call."""
        return single_task_plan(question, reason=f"{reason}; answering with one call")

    def merge_strategy(self, plan: Plan, requested: MergeStrategy | None) -> MergeStrategy:
        return requested or MergeStrategy.compose

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
        return await bounded_merge(
            merger,
            question,
            results,
            context=context,
            strategy=strategy,
            budget_tokens=settings.merge_budget_tokens,
            settings=settings,
            seconds=seconds,
            priorities=priorities,
            on_token=on_token,
        )


class GeneralStrategy(Strategy):
    """Split into independent parts, compose (or synthesize, vote, rank) the results."""
