"""The Engine: the four stages as async methods (CONTRACT STUB — the engine helper replaces the bodies)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from ..config import Settings
from ..llm.base import Model
from ..schemas import MergeResult, MergeStrategy, Plan, RunEvent, SolveResult, SolveRun, Subtask, ThreadResult

__all__ = ["Engine", "EventCallback"]

#: Receives every RunEvent of a run (progress for the CLI and MCP progress notifications).
EventCallback = Callable[[RunEvent], Awaitable[None]]


class Engine:
    """One engine per configuration. Safe to use for many concurrent runs."""

    def __init__(
        self,
        *,
        settings: Settings,
        planner: Model,
        solver: Model,
        merger: Model,
        controller: Model | None = None,
    ) -> None:
        self.settings = settings
        self.planner = planner
        self.solver = solver
        self.merger = merger
        self.controller = controller

    async def decompose(
        self, question: str, *, context: str = "", max_subtasks: int | None = None
    ) -> Plan:
        raise NotImplementedError

    async def parallel_solve(
        self,
        question: str,
        subtasks: list[Subtask] | None = None,
        *,
        context: str = "",
        max_concurrency: int | None = None,
        deadline_s: float | None = None,
        on_event: EventCallback | None = None,
    ) -> SolveRun:
        raise NotImplementedError

    async def merge(
        self,
        question: str,
        results: list[ThreadResult],
        *,
        context: str = "",
        strategy: MergeStrategy = MergeStrategy.synthesize,
        context_budget_tokens: int | None = None,
    ) -> MergeResult:
        raise NotImplementedError

    async def solve(
        self,
        question: str,
        *,
        context: str = "",
        strategy: Literal["adaptive", "sequential", "fixed"] = "adaptive",
        mode: Literal["general", "debug"] = "general",
        max_subtasks: int | None = None,
        max_concurrency: int | None = None,
        deadline_s: float | None = None,
        merge_strategy: MergeStrategy | None = None,
        on_event: EventCallback | None = None,
    ) -> SolveResult:
        raise NotImplementedError
