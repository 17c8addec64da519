"""Search branches of number puzzles on the simulated model: a branch really searches its route,
a verified expression settles the question, and the engine stops the other branches early."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from apr_mcp.bench.countdown import Rules, check_expression
from apr_mcp.bench.datasets import load_dataset
from apr_mcp.config import Settings
from apr_mcp.engine import Engine
from apr_mcp.llm.base import ModelRequest
from apr_mcp.llm.simulated import SimulatedModel
from apr_mcp.llm.simulated_content import reasoning_tokens, section, work_units
from apr_mcp.llm.simulated_plan import PART_MARK, decompose, part_core
from apr_mcp.llm.simulated_search import puzzle_rules, search_branch
from apr_mcp.prompts import load_prompt
from apr_mcp.schemas import ThreadAnswer, ThreadStatus

FAST: dict[str, Any] = {"ttft_s": 0.0, "tokens_per_s": 1e6}
PUZZLES = load_dataset("countdown").items
CD_001 = next(item for item in PUZZLES if item.id == "cd-001")


def solver_request(subtask: str, question: str) -> ModelRequest:
    messages = load_prompt("solver").render(
        question=question, context="", dependencies="", subtask=subtask, schema="{}"
    )
    return ModelRequest(messages=messages, schema_name="ThreadAnswer", purpose="solver")


def test_every_branch_the_planner_writes_is_searched_and_every_find_checks_out() -> None:
    solved = set()
    for item in PUZZLES:
        numbers, target = list(item.meta["numbers"]), int(item.meta["target"])
        rules: Rules = "24" if item.meta.get("rules") == "24" else "countdown"
        split = decompose(item.question)
        assert split.search and split.parts, item.id
        for part in split.parts:
            assert puzzle_rules(part.context) == (numbers, target, rules), item.id
            outcome = search_branch(part.core, part.context)
            assert outcome is not None, f"{item.id}: route not understood: {part.core}"
            if outcome.expression is not None:
                solved.add(item.id)
                check = check_expression(outcome.expression, numbers, target, rules=rules)
                assert check.ok, (item.id, outcome.expression, check.detail)
    assert len(solved) >= len(PUZZLES) * 3 // 4  # most puzzles have a route that works


def test_not_a_branch_or_not_a_puzzle_is_left_to_the_generic_reply() -> None:
    part = decompose(CD_001.question).parts[0]
    assert search_branch("Compare Python and Go", part.context) is None
    assert search_branch(part.core, "no numbers here") is None


async def test_a_branch_that_finds_a_checked_expression_settles_the_question() -> None:
    model = SimulatedModel(**FAST)
    replies = []
    for part in decompose(CD_001.question).parts:
        response = await model.complete(solver_request(part.prompt, CD_001.question))
        replies.append((search_branch(part.core, part.context), ThreadAnswer.model_validate_json(response.text)))
    works = [(o, a) for o, a in replies if o is not None and o.works]
    fails = [(o, a) for o, a in replies if o is not None and not o.works]
    assert works and fails
    for outcome, answer in works:
        assert answer.settles_question and answer.confidence >= 0.95
        assert answer.answer.rstrip().endswith(f"Final answer: {outcome.expression}")
    for _, answer in fails:
        assert not answer.settles_question and answer.confidence < 0.5
        assert "This route fails" in answer.summary


async def test_the_same_subtask_gets_the_same_answer() -> None:
    part = decompose(CD_001.question).parts[1]
    one = await SimulatedModel(**FAST).complete(solver_request(part.prompt, CD_001.question))
    two = await SimulatedModel(**FAST).complete(solver_request(part.prompt, CD_001.question))
    assert json.loads(one.text) == json.loads(two.text)


def test_sequential_baseline_tries_routes_until_the_first_that_really_works() -> None:
    split = decompose(CD_001.question)
    outcomes = [search_branch(p.core, p.context) for p in split.parts]
    first = next(i for i, o in enumerate(outcomes) if o is not None and o.works)
    units, _ = work_units(CD_001.question)
    assert [u for u, _ in units] == [p.core for p in split.parts[: first + 1]]
    # A route that works stops when the expression is found: less than searching it to the end.
    for unit, tokens in units[:-1]:
        assert tokens == reasoning_tokens(unit, search=True)
    assert units[-1][1] < reasoning_tokens(units[-1][0], search=True)


async def test_sequential_answer_ends_with_the_verified_expression() -> None:
    messages = load_prompt("sequential").render(question=CD_001.question, context="")
    request = ModelRequest(messages=messages, purpose="sequential", max_tokens=8192)
    text = (await SimulatedModel(**FAST).complete(request)).text
    final = text.rstrip().splitlines()[-1].removeprefix("Final answer: ")
    assert check_expression(final, list(CD_001.meta["numbers"]), int(CD_001.meta["target"])).ok


async def test_engine_stops_the_other_branches_when_one_settles_the_puzzle() -> None:
    # Failing routes are held until cancelled, so the order does not depend on wall-clock timing.
    never = anyio.Event()

    async def hold_failing_routes(request: ModelRequest) -> None:
        user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        subtask = section(user, "Your subtask:") or ""
        if request.purpose != "solver" or PART_MARK not in subtask:
            return
        outcome = search_branch(part_core(subtask), subtask.split(PART_MARK, 1)[1])
        if outcome is not None and not outcome.works:
            await never.wait()

    model = SimulatedModel(**FAST, on_call=hold_failing_routes)
    engine = Engine(settings=Settings(backend="simulated"), planner=model, solver=model, merger=model)
    with anyio.fail_after(10):
        result = await engine.solve(CD_001.question)
    kinds = [d.kind for d in result.decisions]
    assert "early_stop" in kinds, kinds
    cancelled = [r for r in result.results if r.status is ThreadStatus.cancelled]
    assert cancelled and all("early stop" in (r.reason or "") for r in cancelled)
    numbers, target = list(CD_001.meta["numbers"]), int(CD_001.meta["target"])
    final = result.answer.rstrip().splitlines()[-1].removeprefix("Final answer: ")
    assert check_expression(final, numbers, target).ok


@pytest.mark.parametrize("item_id", ["cd-002", "g24-001"])
def test_rules_are_read_from_the_branch_context(item_id: str) -> None:
    item = next(i for i in PUZZLES if i.id == item_id)
    rules = puzzle_rules(decompose(item.question).parts[0].context)
    assert rules is not None and rules[2] == item.meta.get("rules", "countdown")
