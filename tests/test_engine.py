"""The Engine end to end on the simulated model: strategies, metrics, chaining, traces."""

from __future__ import annotations

import anyio
import pytest
from engine_helpers import Gates, Recorder, answer, engine, sim, solver_rule

from apr_mcp.engine.pipeline import final_answer
from apr_mcp.errors import PlanError
from apr_mcp.llm.simulated import SimRule
from apr_mcp.schemas import MergeStrategy, Plan, SolveRun, Subtask, ThreadResult, ThreadStatus
from apr_mcp.trace import RunStore

COMPARE = "Compare Python, Go and Rust for writing a CLI tool: speed, ecosystem and learning curve."


async def test_adaptive_solve_plans_solves_and_merges(tmp_path: object) -> None:
    model = sim()
    store = RunStore(tmp_path)  # type: ignore[arg-type]
    rec = Recorder()
    result = await engine(model, run_store=store).solve(COMPARE, on_event=rec)
    assert result.strategy == "adaptive" and result.plan is not None
    assert result.plan.should_split and len(result.results) == 3
    assert all(r.status is ThreadStatus.done for r in result.results)
    assert result.merge is not None and result.merge.used and result.answer == result.merge.answer
    m = result.metrics
    assert set(m.stages) == {"plan", "solve", "merge"}
    # Countable parts: no planner call; three threads and one short lead.
    assert m.model_calls == 4 == model.calls and m.stages["plan"].calls == 0
    assert model.calls_by_purpose["lead"] == 1 and result.merge.strategy is MergeStrategy.compose
    assert m.tokens_in == sum(s.tokens_in for s in m.stages.values()) > 0
    assert m.max_context_tokens == max(s.max_context_tokens for s in m.stages.values())
    # The merge call's context is its prompt (context_tokens) plus what the merger wrote.
    assert m.stages["merge"].max_context_tokens == result.merge.tokens_in + result.merge.tokens_out
    assert m.stages["merge"].max_context_tokens > result.merge.context_tokens
    # Critical path: planning, then the slowest thread, then the merge — never more than the wall.
    slowest = max(r.latency_s for r in result.results)
    assert slowest < m.critical_path_s <= m.wall_s
    kinds = [e.kind for e in rec.events]
    assert kinds[-1] == "finished" and "merging" in kinds
    # The composed answer keeps every part under its thread's id, after the lead.
    for r in result.results:
        assert f"[{r.id}]" in result.answer and (r.answer or "").split("\n")[0] in result.answer
    assert [d.kind for d in result.decisions][:2] == ["split", "width"]
    assert store.load(result.run_id) == result


async def test_simple_question_is_one_call_without_planner_or_merger() -> None:
    model = sim()
    result = await engine(model).solve("What is the capital of France?")
    assert result.plan is not None and result.plan.source == "heuristic"
    # Unsplit: exactly one call, the same as the sequential strategy's (no JSON, no trailer).
    assert model.calls_by_purpose == {"sequential": 1}
    assert model.requests[0].json_schema is None
    assert len(result.results) == 1 and result.merge is None
    assert result.decisions[0].kind == "no_split"
    # Says who decided and why, once: no "heuristics: ..." or "answering with one call" repeats.
    assert result.decisions[0].reason == (
        "answering with one call (heuristics): not worth splitting (short factual question)"
    )
    assert "merge" not in result.metrics.stages


async def test_planner_failure_falls_back_and_still_answers() -> None:
    model = sim(SimRule(pattern=".", fault="junk", purpose="planner"))
    result = await engine(model, planner="model").solve(COMPARE)
    assert result.plan is not None and result.plan.source == "fallback"
    assert result.decisions[0].kind == "fallback"
    assert result.results[0].status is ThreadStatus.done and result.answer


async def test_sequential_baseline_is_one_free_text_call() -> None:
    model = sim(
        SimRule(
            pattern=".",
            reply="Step 1: think.\nStep 2: more.\nFinal answer: **42**",
            purpose="sequential",
        )
    )
    result = await engine(model).solve("What is six times seven?", strategy="sequential")
    assert result.answer == "42"
    assert model.calls == 1 and model.requests[0].json_schema is None
    assert result.results[0].answer is not None and "Step 1" in result.results[0].answer
    assert result.metrics.model_calls == 1 and result.metrics.critical_path_s > 0
    # One call: its context is the whole of it, the question and the reasoning written after it.
    t = result.results[0]
    assert t.tokens_out > 0 and result.metrics.max_context_tokens == t.tokens_in + t.tokens_out


async def test_sequential_failure_is_reported_not_raised() -> None:
    model = sim(SimRule(pattern=".", fault="500"))
    result = await engine(model).solve("What?", strategy="sequential")
    assert result.results[0].status is ThreadStatus.failed
    assert result.answer.startswith("No answer:")


def test_final_answer_extraction() -> None:
    assert final_answer("blah\nFinal answer: 12 apples") == "12 apples"
    assert final_answer("final answer: 1\n...\nFINAL ANSWER: 2") == "2"
    assert final_answer("no marker here") == "no marker here"


async def test_fixed_baseline_splits_to_max_threads() -> None:
    # A planner that will not split even when told to: the engine makes 4 attempts and votes.
    model = sim(SimRule(purpose="planner", reply={"should_split": False, "reason": "simple"}))
    result = await engine(model, max_threads=4).solve(
        "What is the capital of France?", strategy="fixed"
    )
    assert result.plan is not None and result.plan.should_split
    assert len(result.results) == 4
    assert result.merge is not None and result.merge.strategy is MergeStrategy.vote
    assert "exactly 4" in model.requests[0].messages[-1].content


async def test_parallel_solve_plans_first_without_subtasks() -> None:
    model = sim()
    run = await engine(model, planner="model", max_threads=3).parallel_solve(COMPARE)
    assert len(run.results) == 3 and run.metrics.stages["plan"].calls == 1
    assert model.calls_by_purpose["merger"] == 0


async def test_chaining_contract_through_json() -> None:
    # decompose → parallel_solve → merge, each output passed on as a host would (as JSON).
    model = sim()
    eng = engine(model)
    plan = Plan.model_validate_json((await eng.decompose(COMPARE)).model_dump_json())
    run = SolveRun.model_validate_json(
        (await eng.parallel_solve(COMPARE, plan.subtasks, max_concurrency=2)).model_dump_json()
    )
    merged = await eng.merge(COMPARE, run.results, strategy=MergeStrategy.rank)
    assert merged.used and set(merged.used) <= {s.id for s in plan.subtasks}
    assert merged.strategy is MergeStrategy.rank and merged.context_tokens > 0


async def test_host_subtasks_are_validated() -> None:
    eng = engine(sim())
    with pytest.raises(PlanError, match="dependency cycle"):
        await eng.parallel_solve(
            "q",
            [
                Subtask(id="a", prompt="A", depends_on=["b"]),
                Subtask(id="b", prompt="B", depends_on=["a"]),
            ],
        )
    with pytest.raises(PlanError, match="subtasks is empty"):
        await eng.parallel_solve("q", [])


@pytest.mark.parametrize(
    ("subtasks", "match"),
    [
        ([("a", "A", ["b"]), ("b", "B", ["a"])], "dependency cycle"),
        ([("a", "A", []), ("b", "B", ["nope"])], "unknown id.*nope"),
        ([("a", "A", []), ("a", "Other", [])], "duplicate subtask ids: a"),
    ],
)
async def test_bad_host_plan_raises_plan_error_itself_with_progress_on(
    subtasks: list[tuple[str, str, list[str]]], match: str
) -> None:
    # With a progress callback the run has a task group; the error must not come out wrapped in
    # an ExceptionGroup (the MCP server and the CLI catch AprError), and nothing may have run.
    model = sim()
    rec = Recorder()
    subs = [Subtask(id=i, prompt=p, depends_on=d) for i, p, d in subtasks]
    with pytest.raises(PlanError, match=match):
        await engine(model).parallel_solve("q", subs, on_event=rec)
    assert model.calls == 0 and rec.events == []


async def test_event_sink_reraises_the_body_error_unwrapped() -> None:
    from apr_mcp.engine.events import event_sink

    with pytest.raises(PlanError, match="boom"):
        async with event_sink(Recorder()) as sink:
            sink.emit("started", "x")
            raise PlanError("boom")


async def test_duplicate_host_subtasks_run_once() -> None:
    model = sim()
    run = await engine(model).parallel_solve(
        "q", [Subtask(id="a", prompt="Price of X?"), Subtask(id="b", prompt="price of x")]
    )
    by_id = {r.id: r for r in run.results}
    assert by_id["a"].status is ThreadStatus.done
    assert (
        by_id["b"].status is ThreadStatus.skipped
        and by_id["b"].reason == "duplicate of a; see its result"
    )
    assert model.calls_by_purpose["solver"] == 1


async def test_host_subtasks_width_decision_states_a_real_complexity() -> None:
    from apr_mcp.engine.heuristics import analyze

    subs = [Subtask(id=x, prompt=f"Assess {x} for a CLI tool") for x in ("python", "go", "rust")]
    expected = analyze(COMPARE).complexity
    assert expected > 1  # a three-way comparison is not a complexity-1 question
    run = await engine(sim()).parallel_solve(COMPARE, subs)
    width = [d.reason for d in run.decisions if d.kind == "width"]
    assert len(width) == 1 and f"complexity {expected}/10 (estimated from the question)" in width[0]
    run = await engine(sim()).parallel_solve(COMPARE, subs, complexity=7)
    assert any("complexity 7/10 (given by the caller)" in d.reason for d in run.decisions)
    with pytest.raises(PlanError, match="between 1 and 10"):
        await engine(sim()).parallel_solve(COMPARE, subs, complexity=11)


async def test_metrics_count_skipped_threads() -> None:
    # b is a duplicate of a, d depends on c which fails: two skipped threads, one failed.
    model = sim(solver_rule("C", fault="500"))
    subs = [
        Subtask(id="a", prompt="A task"),
        Subtask(id="b", prompt="a task"),
        Subtask(id="c", prompt="C task"),
        Subtask(id="d", prompt="D task", depends_on=["c"]),
    ]
    run = await engine(model, max_retries=0).parallel_solve("q", subs)
    m = run.metrics
    assert (m.threads, m.threads_done, m.threads_failed, m.threads_skipped) == (4, 1, 1, 2)
    assert m.threads_cancelled == 0


async def test_solve_deadline_still_merges_what_finished() -> None:
    gates = Gates()
    gates.block["HANG"] = anyio.Event()
    plan = {
        "should_split": True,
        "reason": "r",
        "subtasks": [
            {"id": "t1", "prompt": "FAST one"},
            {"id": "t2", "prompt": "HANG forever"},
            {"id": "t3", "prompt": "QUICK two"},
        ],
    }
    model = sim(
        SimRule(pattern=".", reply=plan, purpose="planner"),
        solver_rule("FAST", answer("fast result")),
        gates=gates,
    )
    with anyio.fail_after(5):
        result = await engine(model, planner="model").solve(COMPARE, deadline_s=1.0)
    by_id = {r.id: r for r in result.results}
    assert by_id["t2"].status is ThreadStatus.cancelled and by_id["t2"].reason == "deadline"
    assert result.partial and result.metrics.partial
    assert result.merge is not None and set(result.merge.used) == {"t1", "t3"}
    assert "t2" in result.merge.dropped
    assert result.metrics.wall_s < 1.0  # the merge ran inside the deadline


async def test_debug_mode_delegates_to_debug_engine(tmp_path: object) -> None:
    store = RunStore(tmp_path)  # type: ignore[arg-type]
    result = await engine(sim(), run_store=store).solve(
        "TypeError: unsupported operand type(s) for +: 'int' and 'str'",
        context="def total(xs):\n    return sum(xs) + ' items'",
        mode="debug",
    )
    assert result.strategy == "debug" and len(result.results) >= 2
    assert store.load(result.run_id).strategy == "debug"  # type: ignore[union-attr]


def test_thread_results_round_trip_for_merge() -> None:
    r = ThreadResult(id="t1", prompt="p", answer="a", started_s=0.1, finished_s=0.2)
    assert ThreadResult.model_validate_json(r.model_dump_json()) == r


async def test_infinite_deadline_means_none_and_zero_is_refused() -> None:
    import math

    from apr_mcp.errors import ConfigError

    eng = engine(sim(), deadline_s=0.001)  # a settings deadline that would cut every run short
    for strategy in ("adaptive", "sequential", "fixed"):
        with anyio.fail_after(5):
            result = await eng.solve(COMPARE, strategy=strategy, deadline_s=math.inf)
        assert not result.partial and result.answer, strategy
        assert all(r.status is ThreadStatus.done for r in result.results), strategy
    run = await eng.parallel_solve(COMPARE, deadline_s=math.inf)
    assert not run.partial and run.metrics.threads_done == run.metrics.threads > 1
    with pytest.raises(ConfigError, match="deadline_s must be > 0"):
        await eng.solve(COMPARE, deadline_s=0)


async def test_token_budget_counts_the_planner() -> None:
    # The planner's tokens are part of the run's budget: with only a few tokens left after it, no
    # thread prompt is sent, and the run says so instead of overspending.
    probe = await engine(sim(), planner="model").solve(COMPARE)
    plan = probe.metrics.stages["plan"]
    assert plan.calls == 1 and plan.tokens_in > 0
    model = sim()
    limit = plan.tokens_in + plan.tokens_out + 10
    result = await engine(model, token_budget=limit, planner="model").solve(COMPARE)
    assert model.calls_by_purpose["planner"] == 1 and model.calls_by_purpose["solver"] == 0
    assert result.partial and all(r.reason == "token budget" for r in result.results)
    assert any(d.kind == "budget" and f"of {limit} tokens" in d.reason for d in result.decisions)
    assert result.answer  # still an answer (it says nothing finished), not an exception


async def test_decompose_past_its_deadline_gives_a_fallback_plan() -> None:
    # The planner hangs (until cancelled); decompose answers at its deadline with one task.
    model = sim(SimRule(pattern=".", purpose="planner", ttft_s=3600))
    with anyio.fail_after(5):
        plan = await engine(model, planner="model").decompose(COMPARE, deadline_s=0.2)
    assert plan.source == "fallback" and not plan.should_split and len(plan.subtasks) == 1
    # The same planning budget as solve: a quarter of the deadline.
    assert "planning took longer than 0.05s" in plan.reason


async def test_merge_past_its_deadline_returns_the_most_relevant_result() -> None:
    model = sim(SimRule(pattern=".", purpose="merger", ttft_s=3600))
    results = [
        ThreadResult(id="a", prompt="A", answer="answer A", confidence=0.4),
        ThreadResult(id="b", prompt="B", answer="answer B", confidence=0.9),
    ]
    with anyio.fail_after(5):
        merged = await engine(model).merge(
            "q", results, deadline_s=0.05, strategy=MergeStrategy.synthesize
        )
    assert merged.answer == "answer B" and merged.used == ["b"] and merged.dropped == ["a"]
    assert "merge ran past the deadline" in merged.note


async def test_compose_past_its_deadline_keeps_every_part_without_a_lead() -> None:
    model = sim(SimRule(pattern=".", purpose="lead", ttft_s=3600))
    results = [
        ThreadResult(id="a", prompt="A", answer="answer A", confidence=0.4),
        ThreadResult(id="b", prompt="B", answer="answer B", confidence=0.9),
    ]
    with anyio.fail_after(5):
        merged = await engine(model).merge("q", results, deadline_s=0.05)
    assert merged.strategy is MergeStrategy.compose and merged.used == ["b", "a"]
    assert merged.answer.index("answer B") < merged.answer.index("answer A")
    assert "lead cut at the deadline" in merged.note
