"""The pipeline pays: threads start while the plan streams, countable parts need no planner,
a planner's suggestion never serialises independent work, and unsplit means one call."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from engine_helpers import Gates, engine, sim

from apr_mcp.llm.base import Model, ModelRequest, ModelResponse, TokenCallback, WrapperModel
from apr_mcp.llm.simulated import SimRule
from apr_mcp.schemas import MergeStrategy, ThreadStatus

PARTS = (
    "Answer each of these parts: (1) the history of paper; (2) how ink is made; (3) why glue "
    "sticks."
)
PLAN = {
    "should_split": True,
    "max_concurrency": 1,
    "subtasks": [
        {"id": "t1", "prompt": "ALPHA part"},
        {"id": "t2", "prompt": "BETA part"},
        {"id": "t3", "prompt": "GAMMA part"},
    ],
}


class Log(WrapperModel):
    """Records when each call starts and ends, by purpose (and subtask name)."""

    def __init__(self, inner: Model) -> None:
        super().__init__(inner)
        self.log: list[tuple[str, str]] = []

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        user = request.messages[-1].content
        name = user.rsplit("Your subtask:", 1)[-1].split()[0] if request.purpose == "solver" else ""
        self.log.append(("start", f"{request.purpose}:{name}"))
        try:
            return await self._inner.complete(request, on_token=on_token)
        finally:
            self.log.append(("end", f"{request.purpose}:{name}"))


async def test_a_subtask_starts_before_the_plan_stream_ends() -> None:
    # The planner streams its plan slowly; the first subtask must not wait for the rest of it.
    model = Log(sim(SimRule(pattern=".", purpose="planner", reply=PLAN, tokens_per_s=200)))
    with anyio.fail_after(10):
        result = await engine(model, planner="model").solve(PARTS)
    assert [r.id for r in result.results] == ["t1", "t2", "t3"]
    log = model.log
    plan_end = log.index(("end", "planner:"))
    assert log.index(("start", "solver:ALPHA")) < plan_end
    assert all(r.status is ThreadStatus.done for r in result.results)
    assert result.plan is not None and result.plan.source == "model"


@pytest.mark.parametrize(
    ("mode", "planner_calls", "source"),
    [("auto", 0, "heuristic"), ("heuristic", 0, "heuristic"), ("model", 1, "model")],
)
async def test_planner_mode_decides_who_plans(mode: str, planner_calls: int, source: str) -> None:
    model = sim(SimRule(pattern=".", purpose="planner", reply=PLAN))
    result = await engine(model, planner=mode).solve(PARTS)
    assert model.calls_by_purpose.get("planner", 0) == planner_calls
    assert result.plan is not None and result.plan.source == source
    assert result.metrics.stages["plan"].calls == planner_calls
    assert len(result.results) == 3


async def test_heuristic_mode_never_calls_the_planner_for_the_uncertain_middle() -> None:
    model = sim(SimRule(pattern=".", purpose="planner", reply=PLAN))
    question = (
        "Our nightly data import has become slow over the last month and the team "
        "disagrees about why; what should we look at first?"
    )
    result = await engine(model, planner="heuristic").solve(question)
    assert model.calls_by_purpose.get("planner", 0) == 0
    assert result.plan is not None and "APR_PLANNER=heuristic" in result.plan.reason
    assert model.calls_by_purpose == {"sequential": 1}


async def test_a_planner_suggestion_of_one_does_not_serialise_independent_work() -> None:
    gates = Gates()
    release = anyio.Event()
    for name in ("ALPHA", "BETA", "GAMMA"):
        gates.block[name] = release
    model = sim(SimRule(pattern=".", purpose="planner", reply=PLAN), gates=gates)

    async def release_when_all_started() -> None:
        for name in ("ALPHA", "BETA", "GAMMA"):
            await gates.started[name].wait()  # all three running at once, or this never returns
        release.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(release_when_all_started)
            result = await engine(model, planner="model").solve(PARTS)
    assert all(r.status is ThreadStatus.done for r in result.results)
    width = next(d for d in result.decisions if d.kind == "width")
    assert "up to 3 at once" in width.reason and "planner suggested" not in width.reason


async def test_composed_merge_keeps_every_part_and_adds_one_short_lead() -> None:
    model = sim()
    result = await engine(model, lead_tokens=32).solve(PARTS)
    assert result.merge is not None and result.merge.strategy is MergeStrategy.compose
    assert model.calls_by_purpose == {"solver": 3, "lead": 1}
    lead = next(r for r in model.requests if r.purpose == "lead")
    assert lead.max_tokens == 32 and lead.json_schema is None
    for r in result.results:
        body = (r.answer or "").splitlines()[0]
        assert f"[{r.id}]" in result.answer and body in result.answer
    assert result.merge.used == [r.id for r in result.results]


async def test_an_unsplit_question_costs_exactly_the_sequential_call() -> None:
    adaptive_model, sequential_model = sim(), sim()
    question = "What is the capital of France?"
    adaptive = await engine(adaptive_model).solve(question)
    sequential = await engine(sequential_model).solve(question, strategy="sequential")
    assert adaptive_model.calls_by_purpose == sequential_model.calls_by_purpose == {"sequential": 1}
    a, s = adaptive_model.requests[0], sequential_model.requests[0]
    assert a.messages == s.messages and a.max_tokens == s.max_tokens and a.json_schema is None
    assert adaptive.answer == sequential.answer


async def test_a_streamed_plan_stops_with_the_run() -> None:
    # A settling first thread stops the run; a planner still writing is cancelled with it.
    settle = "42\nConfidence: 0.99\nSettles: yes"
    plan: dict[str, Any] = {
        "should_split": True,
        "subtasks": [{"id": f"t{i}", "prompt": f"ALPHA{i} part"} for i in range(1, 9)],
    }
    model = Log(
        sim(
            SimRule(pattern=".", purpose="planner", reply=plan, tokens_per_s=100),
            SimRule(pattern=r"Your subtask:\s*ALPHA1\b", purpose="solver", reply=settle),
        )
    )
    with anyio.fail_after(20):
        result = await engine(model, planner="model").solve(PARTS)
    assert any(d.kind == "early_stop" for d in result.decisions)
    assert result.results[0].settles_question
    assert len(result.results) < 8  # the planner did not get to write them all
