"""Plan validation and planning: errors, repairs, fallbacks, heuristics routing."""

from __future__ import annotations

import pytest
from engine_helpers import settings, sim

from apr_mcp.engine.heuristics import SplitSignals
from apr_mcp.engine.plan import make_plan, validate_plan
from apr_mcp.errors import PlanError
from apr_mcp.llm.simulated import SimRule
from apr_mcp.schemas import Plan, Subtask


def _plan(*subs: tuple[str, str, list[str]] | tuple[str, str, list[str], int]) -> Plan:
    return Plan(
        should_split=True,
        reason="test",
        subtasks=[
            Subtask(id=s[0], prompt=s[1], depends_on=s[2], priority=s[3] if len(s) > 3 else 0)
            for s in subs
        ],
    )


def test_duplicate_ids_are_rejected() -> None:
    with pytest.raises(PlanError, match="duplicate subtask ids: t1"):
        validate_plan(_plan(("t1", "a", []), ("t1", "b", [])), max_subtasks=8)


def test_unknown_dependency_is_rejected() -> None:
    with pytest.raises(PlanError, match="t2 depends on unknown id.*t9"):
        validate_plan(_plan(("t1", "a", []), ("t2", "b", ["t9"])), max_subtasks=8)


def test_self_dependency_is_rejected() -> None:
    with pytest.raises(PlanError, match="t1 depends on itself"):
        validate_plan(_plan(("t1", "a", ["t1"])), max_subtasks=8)


def test_cycle_is_named() -> None:
    plan = _plan(("t1", "a", ["t3"]), ("t2", "b", ["t1"]), ("t3", "c", ["t2"]), ("t4", "d", []))
    with pytest.raises(PlanError) as info:
        validate_plan(plan, max_subtasks=8)
    message = str(info.value)
    assert "dependency cycle" in message
    assert "t1 -> t3 -> t2 -> t1" in message


def test_fan_out_cap_keeps_high_priority_with_dependencies() -> None:
    plan = _plan(
        ("t1", "base facts", [], 0),
        ("t2", "uses the base", ["t1"], 9),
        ("t3", "minor", [], 1),
        ("t4", "important", [], 8),
        ("t5", "least", [], 0),
    )
    out = validate_plan(plan, max_subtasks=3)
    assert [s.id for s in out.subtasks] == ["t1", "t2", "t4"]  # t2 drags its dependency t1 along
    assert "fan-out capped at 3" in out.reason
    assert "t3, t5" in out.reason


def test_identical_prompts_are_merged_and_dependencies_repointed() -> None:
    plan = _plan(("t1", "Price of X?", []), ("t2", "  price of x ", []), ("t3", "use it", ["t2"]))
    out = validate_plan(plan, max_subtasks=8)
    assert [s.id for s in out.subtasks] == ["t1", "t3"]
    assert out.subtasks[1].depends_on == ["t1"]
    assert "t2 = t1" in out.reason


async def test_planner_junk_falls_back_to_single_task() -> None:
    model = sim(SimRule(pattern=".", fault="junk", purpose="planner"))
    plan, usage = await make_plan(
        model, "Compare Python and Go for CLIs", "", settings(planner="model")
    )
    assert plan.source == "fallback"
    assert not plan.should_split
    assert [s.prompt for s in plan.subtasks] == ["Compare Python and Go for CLIs"]
    assert "planner output unusable" in plan.reason
    assert usage.calls == 1
    assert model.calls_by_purpose["planner"] == 2  # the first answer and structured's repair


async def test_invalid_plan_is_reasked_once_with_the_error() -> None:
    cyclic = {
        "should_split": True,
        "reason": "r",
        "subtasks": [
            {"id": "a", "prompt": "A", "depends_on": ["b"]},
            {"id": "b", "prompt": "B", "depends_on": ["a"]},
        ],
    }
    fixed = {
        "should_split": True,
        "reason": "fixed",
        "subtasks": [{"id": "a", "prompt": "A"}, {"id": "b", "prompt": "B", "depends_on": ["a"]}],
    }
    model = sim(
        SimRule(pattern="That plan is invalid: dependency cycle", reply=fixed, purpose="planner"),
        SimRule(pattern="Question:", reply=cyclic, purpose="planner"),
    )
    plan, usage = await make_plan(
        model, "Compare Python and Go for CLIs", "", settings(planner="model")
    )
    assert plan.source == "model"
    assert [s.id for s in plan.subtasks] == ["a", "b"]
    assert usage.calls == 2
    assert usage.tokens_in > 0


async def test_duplicate_ids_are_dropped_as_they_stream() -> None:
    dup = {
        "should_split": True,
        "subtasks": [
            {"id": "a", "prompt": "A"},
            {"id": "a", "prompt": "B"},
            {"id": "c", "prompt": "C"},
        ],
    }
    model = sim(SimRule(pattern=".", reply=dup, purpose="planner"))
    plan, _ = await make_plan(
        model, "Compare Python and Go for CLIs", "", settings(planner="model")
    )
    assert [s.id for s in plan.subtasks] == ["a", "c"]
    assert "dropped a second subtask with id a" in plan.reason


async def test_confident_heuristics_skip_the_planner() -> None:
    model = sim()
    plan, usage = await make_plan(model, "What is the capital of France?", "", settings())
    assert plan.source == "heuristic"
    assert not plan.should_split
    assert model.calls_by_purpose["planner"] == 0
    assert usage.calls == 0
    assert "short factual question" in plan.reason


async def test_signals_reach_the_prompt_and_the_plan() -> None:
    model = sim()
    hints = SplitSignals(
        signals=["comparison of 2 entities: Python, Go"],
        should_split_hint=True,
        complexity=3,
        suggested_width=2,
    )
    plan, _ = await make_plan(
        model,
        "Compare Python and Go for writing CLI tools",
        "",
        settings(planner="model"),
        signals=hints,
    )
    sent = model.requests[-1].messages[-1].content
    assert "comparison of 2 entities" in sent
    assert "suggested width 2" in sent
    assert "comparison of 2 entities: Python, Go" in plan.signals
    assert plan.should_split and len(plan.subtasks) == 2


async def test_split_plan_respects_max_subtasks() -> None:
    wide = {
        "should_split": True,
        "subtasks": [{"id": f"t{i}", "prompt": f"part {i}", "priority": i} for i in range(6)],
    }
    model = sim(SimRule(pattern=".", reply=wide, purpose="planner"))
    plan, _ = await make_plan(
        model, "Compare A, B, C, D, E and F", "", settings(planner="model"), max_subtasks=4
    )
    # Streamed plans are capped in plan order (the planner lists the important parts first).
    assert [s.id for s in plan.subtasks] == ["t0", "t1", "t2", "t3"]
    assert "fan-out capped at 4" in plan.reason
    assert "between 2 and 4 subtasks" in model.requests[0].messages[0].content


async def test_force_width_asks_for_exactly_n() -> None:
    model = sim()
    await make_plan(model, "What is the capital of France?", "", settings(), force_width=5)
    assert model.calls_by_purpose["planner"] == 1  # heuristics do not skip a forced split
    assert "exactly 5" in model.requests[0].messages[-1].content
