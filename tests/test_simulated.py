"""The simulated model fakes behaviour, not answers: placeholder replies shaped by purpose and
schema, the length model, plan width from the engine's signals, scripting, faults, latency."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from apr_mcp.bench.datasets import load_dataset
from apr_mcp.bench.graders import grade
from apr_mcp.config import Settings
from apr_mcp.engine import Engine
from apr_mcp.engine.heuristics import analyze
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
from apr_mcp.llm.simulated.replies import BASE, PER_WORD, body_tokens
from apr_mcp.prompts import load_prompt
from apr_mcp.schemas import Plan, ThreadAnswer
from apr_mcp.tokens import count_tokens

FAST: dict[str, Any] = {"ttft_s": 0.0, "tokens_per_s": 1e6}
COMPARE = "Compare Python, Go and Rust for writing a CLI tool: speed, ecosystem and learning curve."


def planner_request(question: str, signals: str = "none") -> ModelRequest:
    messages = load_prompt("planner").render(
        question=question, context="", signals=signals, schema="{}", min_threads=2, max_threads=8
    )
    return ModelRequest(
        messages=messages,
        schema_name="Plan",
        json_schema=Plan.model_json_schema(),
        purpose="planner",
    )


def solver_request(subtask: str, *, json_answer: bool = True, **kw: Any) -> ModelRequest:
    messages = load_prompt("solver").render(
        question="q", context="", dependencies="", subtask=subtask, schema="{}"
    )
    schema = ThreadAnswer.model_json_schema() if json_answer else None
    return ModelRequest(messages=messages, json_schema=schema, purpose="solver", **kw)


def user(text: str, **kw: object) -> ModelRequest:
    return ModelRequest(messages=[Message(role="user", content=text)], **kw)  # type: ignore[arg-type]


async def plan_for(question: str, signals: str = "none") -> tuple[Plan, list[str]]:
    chunks: list[str] = []
    model = SimulatedModel(**FAST, max_chunks=4)
    response = await model.complete(planner_request(question, signals), on_token=chunks.append)
    return Plan.model_validate_json(response.text), chunks


# ----- replies by purpose -----


async def test_plan_width_comes_from_the_heuristic_signals_not_from_phrases() -> None:
    plan, _ = await plan_for(
        COMPARE, "comparison of 3 entities: Python, Go, Rust; suggested width 3"
    )
    assert plan.should_split and [s.id for s in plan.subtasks] == ["t1", "t2", "t3"]
    assert all(
        s.prompt.startswith(f"[sim] part {k} of 3: ") for k, s in enumerate(plan.subtasks, 1)
    )
    # Each part carries its share of the question's words, in order.
    assert " ".join(s.prompt.split(": ", 1)[1] for s in plan.subtasks) == COMPARE
    # The same question without a suggested width is not split: the simulator has no router.
    unsplit, _ = await plan_for(COMPARE, "comparison wording; heuristic complexity 3/10")
    assert not unsplit.should_split and not unsplit.subtasks and unsplit.reason.startswith("[sim]")


async def test_an_instruction_for_exactly_n_subtasks_is_followed() -> None:
    plan, _ = await plan_for(
        "What is the capital of France?",
        "none\nINSTRUCTION: split this question into exactly 5 self-contained",
    )
    assert plan.should_split and len(plan.subtasks) == 5


async def test_a_plan_streams_a_chunk_boundary_after_every_subtask_object() -> None:
    plan, chunks = await plan_for(COMPARE * 3, "suggested width 6")
    assert len(plan.subtasks) == 6 and len(chunks) >= 6
    text, ends = "", []
    for chunk in chunks:
        text += chunk
        ends.append(len(text))
    for k in range(1, 7):
        closed = text.index(f'"id": "t{k}"')
        close = text.index("}", closed) + 1
        assert close in ends, f"t{k} closes mid-chunk"


async def test_thread_json_is_a_placeholder_with_the_flags_a_script_asks_for() -> None:
    model = SimulatedModel(
        **FAST,
        script=SimScript(
            [
                SimRule(
                    r"Your subtask:\s*ALPHA",
                    purpose="solver",
                    confidence=0.95,
                    settles=True,
                    follow_ups=["Check BETA on its own."],
                ),
            ]
        ),
    )
    scripted = ThreadAnswer.model_validate_json(
        (await model.complete(solver_request("ALPHA: 12 * 12?"))).text
    )
    assert scripted.answer.startswith("[sim]") and "ALPHA: 12 * 12?" in scripted.answer
    assert "144" not in scripted.answer and "144" not in scripted.summary  # nothing is computed
    assert (scripted.confidence, scripted.settles_question) == (0.95, True)
    assert scripted.follow_ups == ["Check BETA on its own."]
    plain = ThreadAnswer.model_validate_json((await model.complete(solver_request("GAMMA"))).text)
    assert (plain.confidence, plain.settles_question, plain.follow_ups) == (0.5, False, [])


async def test_free_text_thread_ends_with_the_protocol_trailer() -> None:
    model = SimulatedModel(
        **FAST,
        script=SimScript(
            [
                SimRule(
                    r"ALPHA",
                    purpose="solver",
                    confidence=0.8,
                    settles=True,
                    follow_ups=["one", "two"],
                ),
            ]
        ),
    )
    text = (await model.complete(solver_request("ALPHA task", json_answer=False))).text
    body, trailer = text.split("\n\nSummary: ", 1)
    assert body.startswith("[sim] solver placeholder; a real model was asked: ALPHA task")
    assert trailer.splitlines()[1:] == [
        "Confidence: 0.8",
        "Settles: yes",
        "Follow-up: one",
        "Follow-up: two",
    ]
    default = (await model.complete(solver_request("BETA task", json_answer=False))).text
    assert default.splitlines()[-2:] == ["Confidence: 0.5", "Settles: no"]


async def test_sequential_lead_and_merger_replies_are_placeholders() -> None:
    model = SimulatedModel(**FAST)
    sequential = (await model.complete(user("What is 6 * 7?", purpose="sequential"))).text
    assert (
        sequential.startswith("[sim]")
        and "\nFinal answer: [sim]" in sequential
        and "42" not in sequential
    )
    lead = await model.complete(user("Worker results: ...", purpose="lead", max_tokens=100))
    assert lead.text.startswith("[sim]") and "\n" not in lead.text
    assert lead.usage.output_tokens <= 100 and lead.finish_reason == "stop"
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
        "required": ["answer"],
    }
    merged = json.loads(
        (
            await model.complete(
                user(
                    "Original question:\nWhy?\n\nWorker results:\nx",
                    purpose="merger",
                    json_schema=schema,
                )
            )
        ).text
    )
    assert (
        merged["answer"].startswith("[sim] merged answer placeholder")
        and merged["confidence"] == 0.5
    )


async def test_a_bundled_countdown_item_gets_a_placeholder_not_a_solution() -> None:
    item = next(
        i
        for i in load_dataset("countdown").items
        if i.meta.get("rules", "countdown") == "countdown"
    )
    model = SimulatedModel(**FAST)
    sequential = (await model.complete(user(item.question, purpose="sequential"))).text
    thread = ThreadAnswer.model_validate_json(
        (await model.complete(solver_request(item.question))).text
    )
    for answer in (sequential, thread.answer):
        assert answer.startswith("[sim]")
        assert (await grade(item, answer)).correct is False


def test_the_simulated_backend_imports_no_bench_code_and_no_code_parser() -> None:
    code = (
        "import sys, apr_mcp.llm.simulated, apr_mcp.simulate_server; "
        "print(sorted(m for m in sys.modules if m.startswith('apr_mcp.bench') or m == 'ast'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "apr_mcp.bench" not in out.stdout
    package = Path(__file__).resolve().parent.parent / "apr_mcp" / "llm"
    for path in package.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert "bench" not in "".join(line for line in source.splitlines() if "import" in line), (
            path
        )
    for path in (package / "simulated").glob("*.py"):
        assert "import ast" not in path.read_text(encoding="utf-8"), path


# ----- the length model -----


async def test_reply_length_follows_the_words_of_the_task_and_the_script() -> None:
    short, long = "Name one prime.", "Explain " + "the trade-offs of caching " * 12
    assert body_tokens(long) > body_tokens(short)
    # (BASE + PER_WORD × words) × jitter in 0.8–1.2
    words = len(long.split())
    assert 0.8 * (BASE + PER_WORD * words) <= body_tokens(long) <= 1.2 * (BASE + PER_WORD * words)
    assert body_tokens(long, scale=2.0) > body_tokens(long)
    model = SimulatedModel(**FAST, script=SimScript([SimRule("EXACT", output_tokens=123)]))
    for request in (
        user("EXACT words"),
        solver_request("EXACT job"),
        solver_request("EXACT job", json_answer=False),
        user("EXACT", purpose="sequential"),
    ):
        response = await model.complete(request)
        assert response.usage.output_tokens == count_tokens(response.text) == 123, request.purpose


async def test_replies_are_deterministic_and_seeded() -> None:
    request = solver_request("Summarise the causes of the French Revolution.", json_answer=False)
    a = await SimulatedModel(**FAST).complete(request)
    b = await SimulatedModel(**FAST).complete(request)
    c = await SimulatedModel(**FAST, seed=7).complete(request)
    assert a.text == b.text and a.model == "sim-1" and a.simulated
    assert c.usage.output_tokens != a.usage.output_tokens  # the jitter depends on the seed


async def test_unknown_schema_gets_a_minimal_valid_object() -> None:
    class Verdict(BaseModel):
        label: str
        score: int
        tags: list[str]
        ok: bool
        note: str | None = None

    request = user("anything", schema_name="Verdict", json_schema=Verdict.model_json_schema())
    verdict = Verdict.model_validate_json((await SimulatedModel(**FAST).complete(request)).text)
    assert verdict.label.startswith("[sim]") and len(verdict.tags) == 2


# ----- scripting -----


async def test_script_rules_override_replies_in_order_and_by_purpose() -> None:
    script = SimScript(
        [
            SimRule(
                r"settle", reply={"answer": "done", "settles_question": True}, purpose="solver"
            ),
            SimRule(r"hello", reply="scripted hello", times=2),
            SimRule(r"hello", reply="later hello"),
        ]
    )
    model = SimulatedModel(**FAST, script=script)
    texts = [(await model.complete(user("say HELLO"))).text for _ in range(3)]
    assert texts == ["scripted hello", "scripted hello", "later hello"]
    assert (
        json.loads((await model.complete(user("please settle"))).text)["settles_question"] is True
    )
    # Same text, other purpose: the rule does not apply.
    other = await model.complete(user("please settle", purpose="merger"))
    assert "settles_question" not in other.text
    assert script.uses(1) == 2 and script.uses(2) == 1
    assert model.calls == 5 and model.calls_by_purpose == {"solver": 4, "merger": 1}


def test_script_loads_from_file_and_reports_bad_scripts(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps({"rules": [{"pattern": "x", "fault": "429", "retry_after": 1.5, "times": 1}]})
    )
    rule = SimScript.from_file(good).rules[0]
    assert rule.fault == "429" and rule.retry_after == 1.5 and rule.times == 1
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps([{"pattern": "y", "reply": "z"}]))
    assert SimScript.from_file(bare).rules[0].reply == "z"
    for name, body in [
        ("regex", '[{"pattern": "("}]'),
        ("fault", '[{"pattern": "a", "fault": "boom"}]'),
        ("json", "{not json"),
    ]:
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
    assert (
        await model.complete(user("boom: Explain the history of the printing press in detail."))
    ).text
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
    response = await model.complete(
        user("Explain the history of the printing press."), on_token=on_token
    )
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
    assert pieces[0][0] == pytest.approx(0.2) and pieces[-1][0] == pytest.approx(
        reply.planned_latency_s
    )
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


async def test_simulated_routing_is_the_engines_own_decision() -> None:
    # One router: where the heuristics are unsure, the simulated planner splits exactly as wide
    # as they suggest, and not at all when they suggest no width.
    unsure = [
        i
        for i in load_dataset("arithmetic").items
        if analyze(i.question, min_threads=2, max_threads=8).should_split_hint is None
    ]
    assert unsure
    for item in unsure[:3]:
        hints = analyze(item.question, min_threads=2, max_threads=8)
        model = SimulatedModel(**FAST)
        engine = Engine(
            settings=Settings(backend="simulated", cache=False),
            planner=model,
            solver=model,
            merger=model,
        )
        plan = await engine.decompose(item.question)
        assert model.calls_by_purpose["planner"] == 1
        expected = max(1, hints.suggested_width)
        assert len(plan.subtasks) == expected and plan.should_split == (expected > 1), item.id
