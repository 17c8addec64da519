"""Deadlines hold on every path: results come back within the deadline plus a small grace, with
what finished (or streamed) kept, the run marked partial and the decision naming the true figure.

The bounds are generous (a shared CI machine), but a path that ignored its deadline would take
the hung call's hour, so each test fails loudly on a regression."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from engine_helpers import engine, sim, solver_rule

from apr_mcp.engine.debug import parse_error
from apr_mcp.llm.simulated import SimRule
from apr_mcp.schemas import MergeStrategy, SolveResult, ThreadStatus

HANG = 3600.0
GRACE = 1.0  # seconds: event-loop and CI noise, never the hung call's hour
PARTS = (
    "Answer each of these parts: (1) the history of paper; (2) how ink is made; (3) why glue "
    "sticks."
)
TRACEBACK = (
    'Traceback (most recent call last):\n  File "a.py", line 3, in f\n    x = '
    "d[\"k\"]\nKeyError: 'k'"
)


async def _timed(
    coro_fn: Callable[..., Awaitable[SolveResult]], *args: Any, **kwargs: Any
) -> tuple[SolveResult, float]:
    start = anyio.current_time()
    with anyio.fail_after(10):
        result = await coro_fn(*args, **kwargs)
    return result, anyio.current_time() - start


async def test_sequential_returns_what_streamed_at_the_deadline() -> None:
    model = sim(SimRule(pattern=".", purpose="sequential", reply="word " * 5000, tokens_per_s=2000))
    result, took = await _timed(engine(model).solve, PARTS, strategy="sequential", deadline_s=0.5)
    assert took < 0.5 + GRACE
    assert result.partial and result.status == "partial"
    t1 = result.results[0]
    assert t1.status is ThreadStatus.cancelled and t1.reason == "deadline"
    # The text already streamed is the (partial) answer, not thrown away.
    assert t1.answer and t1.answer.startswith("word") and "cut at the deadline" in result.answer
    assert t1.tokens_out > 0


async def test_unsplit_path_holds_its_deadline() -> None:
    model = sim(SimRule(pattern=".", purpose="sequential", ttft_s=HANG))
    result, took = await _timed(
        engine(model).solve, "What is the capital of France?", deadline_s=0.5
    )
    assert took < 0.5 + GRACE
    assert result.partial and result.status == "failed"  # nothing streamed: no usable result
    assert model.calls_by_purpose == {"sequential": 1}


async def test_split_run_merges_what_finished_and_names_the_run_deadline() -> None:
    model = sim(solver_rule("Part 2", ttft_s=HANG))
    result, took = await _timed(engine(model).solve, PARTS, deadline_s=1.0)
    assert took < 1.0 + GRACE
    status = {r.id: r.status for r in result.results}
    assert status["t2"] is ThreadStatus.cancelled and status["t1"] is ThreadStatus.done
    assert result.partial and result.status == "partial"
    stop = next(d for d in result.decisions if d.kind == "deadline")
    assert stop.reason.startswith("the run's deadline of 1s (threads stop at 0.8s")
    assert result.merge is not None and result.merge.strategy is MergeStrategy.compose


async def test_a_hung_planner_and_a_hung_lead_still_answer_in_time() -> None:
    model = sim(
        SimRule(pattern=".", purpose="planner", ttft_s=HANG),
        SimRule(pattern=".", purpose="lead", ttft_s=HANG),
    )
    result, took = await _timed(engine(model, planner="model").solve, PARTS, deadline_s=1.0)
    assert took < 1.0 + GRACE
    assert result.plan is not None and "planning took longer than 0.25s" in result.plan.reason
    assert result.answer  # the unsplit call after the planner's fallback


async def test_debug_path_holds_its_deadline() -> None:
    assert parse_error(TRACEBACK).exc_type == "KeyError"
    model = sim(
        SimRule(pattern=".", purpose="debug_hypotheses", ttft_s=HANG),
        SimRule(pattern=".", purpose="debug_verdict", ttft_s=HANG),
    )
    result, took = await _timed(engine(model).solve, TRACEBACK, mode="debug", deadline_s=1.0)
    assert took < 1.0 + GRACE
    assert result.strategy == "debug" and result.plan is not None
    assert "hypotheses read from the error type" in result.plan.reason
    assert result.merge is not None and "ran out of time" in result.merge.note
    assert result.partial
