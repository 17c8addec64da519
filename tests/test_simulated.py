"""The simulated model: deterministic replies per role, scripting, faults, latency model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from apr_mcp.errors import (
    ConfigError,
    ModelOutputError,
    ModelTimeoutError,
    RateLimitError,
    ServerError,
    StreamInterrupted,
)
from apr_mcp.llm.base import Message, ModelRequest
from apr_mcp.llm.simulated import SimRule, SimScript, SimulatedModel
from apr_mcp.llm.simulated_content import evaluate_arithmetic, find_arithmetic
from apr_mcp.prompts import load_prompt
from apr_mcp.schemas import Plan, ThreadAnswer

FAST: dict[str, Any] = {"ttft_s": 0.0, "tokens_per_s": 1e6}


def planner_request(question: str, *, max_threads: int = 8) -> ModelRequest:
    messages = load_prompt("planner").render(
        question=question, context="", signals="", schema="{}", min_threads=2, max_threads=max_threads
    )
    return ModelRequest(
        messages=messages, schema_name="Plan", json_schema=Plan.model_json_schema(), purpose="planner"
    )


def solver_request(subtask: str) -> ModelRequest:
    messages = load_prompt("solver").render(
        question="q", context="", dependencies="", subtask=subtask, schema="{}"
    )
    return ModelRequest(
        messages=messages, schema_name="ThreadAnswer", json_schema=ThreadAnswer.model_json_schema()
    )


def user(text: str, **kw: object) -> ModelRequest:
    return ModelRequest(messages=[Message(role="user", content=text)], **kw)  # type: ignore[arg-type]


async def plan_for(question: str, **kw: int) -> Plan:
    response = await SimulatedModel(**FAST).complete(planner_request(question, **kw))
    return Plan.model_validate_json(response.text)


# ----- replies by role -----


async def test_comparison_is_split_into_self_contained_subtasks() -> None:
    plan = await plan_for("Compare Python, Go and Rust for writing a CLI tool")
    assert plan.should_split
    assert [s.id for s in plan.subtasks] == ["t1", "t2", "t3"]
    for subtask, name in zip(plan.subtasks, ["Python", "Go", "Rust"], strict=True):
        assert name in subtask.prompt and "CLI tool" in subtask.prompt
        assert subtask.depends_on == []
    assert "comparison" in plan.reason


@pytest.mark.parametrize(
    ("question", "parts"),
    [
        ("Postgres vs MySQL for analytics?", 2),
        ("Answer these:\n1. What is 2+2?\n2. Who wrote Hamlet?\n3. Why is the sky blue?", 3),
        ("Is Redis durable? How does it replicate? Should I use it as a primary store?", 3),
        (
            (
                "The app is slow. One hypothesis is that an index is missing. Another is that the "
                "cache is cold. A third possibility is GC pauses."
            ),
            3,
        ),
    ],
)
async def test_enumerations_questions_and_hypotheses_are_split(question: str, parts: int) -> None:
    plan = await plan_for(question)
    assert plan.should_split and len(plan.subtasks) == parts
    assert plan.complexity >= 2 + parts


@pytest.mark.parametrize(
    "question",
    [
        "What is the capital of France?",
        "First find the largest prime below 100, then square it.",
        "Compute the total, and using the result estimate the tax.",
    ],
)
async def test_simple_and_sequential_questions_are_not_split(question: str) -> None:
    plan = await plan_for(question)
    assert not plan.should_split and plan.subtasks == []
    assert plan.reason


async def test_plan_respects_max_threads_from_the_prompt() -> None:
    question = "Review:\n1. logging\n2. metrics\n3. tracing\n4. alerting\n5. dashboards"
    plan = await plan_for(question, max_threads=3)
    assert len(plan.subtasks) == 3
    assert "alerting" in plan.subtasks[-1].prompt and "dashboards" in plan.subtasks[-1].prompt


async def test_replies_are_deterministic_and_seeded() -> None:
    request = solver_request("Explain the trade-offs of connection pooling.")
    a = await SimulatedModel(**FAST).complete(request)
    b = await SimulatedModel(**FAST).complete(request)
    c = await SimulatedModel(**FAST, seed=7).complete(request)
    assert a.text == b.text
    assert a.text != c.text
    answer = ThreadAnswer.model_validate_json(a.text)
    assert answer.answer.startswith("[sim] Findings on Explain the trade-offs")
    assert 0.55 <= answer.confidence <= 0.9 and not answer.settles_question


async def test_solver_and_sequential_compute_arithmetic() -> None:
    model = SimulatedModel(**FAST)
    answer = ThreadAnswer.model_validate_json((await model.complete(solver_request("Compute (12 + 8) * 3 / 4."))).text)
    assert "= 15" in answer.answer and answer.summary == "(12 + 8) * 3 / 4 = 15"
    sequential = load_prompt("sequential").render(question="What is 17 times 23 plus 4?", context="")
    text = (await model.complete(ModelRequest(messages=sequential, purpose="sequential"))).text
    assert text.splitlines()[-1] == "Final answer: 395"


def test_arithmetic_evaluator_is_safe() -> None:
    assert evaluate_arithmetic("2 * (3 + 4) - 1") == 13
    assert evaluate_arithmetic("7 / 2") == 3.5
    for bad in ("__import__('os').system('true')", "2 ** 100", "1 / 0", "True + 1", "x + 1"):
        assert evaluate_arithmetic(bad) is None
    assert find_arithmetic("ranges like 10-20 items") is not None
    assert find_arithmetic("ranges like 10-20 items", require_cue=True) is None


async def test_merge_reply_combines_worker_results() -> None:
    class MergeOutput(BaseModel):
        answer: str
        confidence: float
        used: list[str] = []

    messages = load_prompt("merger").render(
        question="Compare Python and Go", context="", mode="synthesize", schema="{}",
        results="[t1] (confidence 0.80)\nTask: Assess Python.\nResult: Python is easy to write.\n\n"
        "[t2] (confidence 0.60)\nTask: Assess Go.\nResult: Go compiles fast.",
    )
    request = ModelRequest(
        messages=messages, schema_name="MergeOutput", json_schema=MergeOutput.model_json_schema()
    )
    merged = MergeOutput.model_validate_json((await SimulatedModel(**FAST).complete(request)).text)
    assert "Python is easy to write" in merged.answer and "Go compiles fast" in merged.answer
    assert merged.confidence == pytest.approx(0.7)
    assert merged.used == ["t1", "t2"]


async def test_unknown_schema_gets_a_minimal_valid_object() -> None:
    class Verdict(BaseModel):
        label: str
        score: int
        tags: list[str]
        ok: bool
        note: str | None = None

    request = user("anything", schema_name="Verdict", json_schema=Verdict.model_json_schema())
    Verdict.model_validate_json((await SimulatedModel(**FAST).complete(request)).text)


# ----- scripting -----


async def test_script_rules_override_replies_in_order_and_by_purpose() -> None:
    script = SimScript(
        [
            SimRule(r"settle", reply={"answer": "done", "settles_question": True}, purpose="solver"),
            SimRule(r"hello", reply="scripted hello", times=2),
            SimRule(r"hello", reply="later hello"),
        ]
    )
    model = SimulatedModel(**FAST, script=script)
    texts = [(await model.complete(user("say HELLO"))).text for _ in range(3)]
    assert texts == ["scripted hello", "scripted hello", "later hello"]
    assert json.loads((await model.complete(user("please settle"))).text)["settles_question"] is True
    # Same text, other purpose: the rule does not apply.
    other = await model.complete(user("please settle", purpose="merger"))
    assert "settles_question" not in other.text
    assert script.uses(1) == 2 and script.uses(2) == 1
    assert model.calls == 5 and model.calls_by_purpose == {"solver": 4, "merger": 1}


def test_script_loads_from_file_and_reports_bad_scripts(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"rules": [{"pattern": "x", "fault": "429", "retry_after": 1.5, "times": 1}]}))
    rule = SimScript.from_file(good).rules[0]
    assert rule.fault == "429" and rule.retry_after == 1.5 and rule.times == 1
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps([{"pattern": "y", "reply": "z"}]))
    assert SimScript.from_file(bare).rules[0].reply == "z"
    for name, body in [("regex", '[{"pattern": "("}]'), ("fault", '[{"pattern": "a", "fault": "boom"}]'),
                       ("json", "{not json")]:
        path = tmp_path / f"{name}.json"
        path.write_text(body)
        with pytest.raises(ConfigError, match=name + ".json"):
            SimScript.from_file(path)
    with pytest.raises(ConfigError, match="missing.json"):
        SimScript.from_file(tmp_path / "missing.json")


# ----- faults -----


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("429", RateLimitError),
        ("500", ServerError),
        ("timeout", ModelTimeoutError),
        ("cut", StreamInterrupted),
        ("empty", ModelOutputError),
        ("length", ModelOutputError),
    ],
)
async def test_faults_raise_the_matching_error(fault: str, error: type[Exception]) -> None:
    script = SimScript([SimRule("boom", fault=fault, retry_after=2.0, times=1)])  # type: ignore[arg-type]
    model = SimulatedModel(ttft_s=0.001, tokens_per_s=1e6, script=script, model_name="sim-x")
    with pytest.raises(error) as info:
        await model.complete(user("boom: Explain the history of the printing press in detail."))
    assert "simulated/sim-x" in str(info.value)
    if fault == "429":
        assert info.value.retry_after == 2.0  # type: ignore[attr-defined]
    # times=1: the next identical call succeeds.
    assert (await model.complete(user("boom: Explain the history of the printing press in detail."))).text
    assert model.active == 0


async def test_cut_streams_part_of_the_answer_first() -> None:
    script = SimScript([SimRule("story", fault="cut")])
    model = SimulatedModel(**FAST, script=script)
    full = (await SimulatedModel(**FAST).complete(user("Tell a story about lighthouses."))).text
    seen: list[str] = []
    with pytest.raises(StreamInterrupted):
        await model.complete(user("Tell a story about lighthouses."), on_token=seen.append)
    streamed = "".join(seen)
    assert streamed and full.startswith(streamed) and len(streamed) < len(full)


async def test_junk_is_returned_as_unparseable_text() -> None:
    model = SimulatedModel(**FAST, script=SimScript([SimRule(".", fault="junk")]))
    response = await model.complete(solver_request("Summarise TCP slow start."))
    with pytest.raises(ValueError):
        json.loads(response.text)
    assert response.finish_reason == "stop"


async def test_max_tokens_truncates_with_finish_reason_length() -> None:
    response = await SimulatedModel(**FAST).complete(user("Why is the sky blue?", max_tokens=5))
    assert response.finish_reason == "length" and response.usage.output_tokens <= 6


# ----- streaming, latency, counters -----


async def test_streaming_usage_and_async_callbacks() -> None:
    seen: list[str] = []

    async def on_token(piece: str) -> None:
        seen.append(piece)

    model = SimulatedModel(ttft_s=0.001, tokens_per_s=1e5, max_chunks=4)
    response = await model.complete(user("Explain the history of the printing press."), on_token=on_token)
    assert "".join(seen) == response.text and 1 <= len(seen) <= 4
    assert response.usage.reported and response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0 and response.backend == "simulated"
    assert response.ttft_s is not None and response.ttft_s <= response.latency_s


def test_planned_latency_follows_ttft_and_tokens_per_second() -> None:
    model = SimulatedModel(ttft_s=0.2, tokens_per_s=100, max_chunks=8)
    reply = model.prepare(user("Describe the water cycle."), consume=False)
    assert reply.planned_latency_s == pytest.approx(0.2 + reply.output_tokens / 100)
    pieces = reply.pieces()
    assert 1 <= len(pieces) <= 8 and "".join(p for _, p in pieces) == reply.text
    assert pieces[0][0] == pytest.approx(0.2) and pieces[-1][0] == pytest.approx(reply.planned_latency_s)
    assert [d for d, _ in pieces] == sorted(d for d, _ in pieces)


async def test_latency_overrides_make_a_slow_reply_slower() -> None:
    script = SimScript([SimRule("slow", ttft_s=0.15)])
    model = SimulatedModel(ttft_s=0.0, tokens_per_s=1e6, script=script)
    fast = await model.complete(user("fast please"))
    slow = await model.complete(user("slow please"))
    assert slow.latency_s >= 0.15 > fast.latency_s


async def test_counters_and_on_call_hook_coordinate_concurrent_calls() -> None:
    release, all_in = anyio.Event(), anyio.Event()
    model = SimulatedModel(**FAST)

    async def on_call(request: ModelRequest) -> None:
        if model.active == 3:
            all_in.set()
        await release.wait()

    model.on_call = on_call
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(model.complete, user(f"question {i}"))
            await all_in.wait()
            assert model.active == 3
            release.set()
    assert model.calls == 3 and model.max_active == 3 and model.active == 0


async def test_cancellation_stops_a_long_call_promptly() -> None:
    started = anyio.Event()
    model = SimulatedModel(ttft_s=30.0, tokens_per_s=1.0)

    async def on_call(request: ModelRequest) -> None:
        started.set()

    model.on_call = on_call
    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(model.complete, user("never finishes"))
            await started.wait()
            tg.cancel_scope.cancel()
    assert model.active == 0
