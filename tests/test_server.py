"""The MCP surface end to end through the SDK's in-memory client, in both protocol eras.

``mode="auto"`` connects with the 2026-07-28 protocol (no handshake), ``mode="legacy"`` with the
2025-11-25 initialize handshake most hosts still speak. The engine is real; the model is the
simulated one with tiny latencies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError
from mcp_types import CreateMessageRequestParams, CreateMessageResult, Implementation, TextContent

from apr_mcp.cache import ResultCache
from apr_mcp.config import Settings
from apr_mcp.engine import Engine
from apr_mcp.llm.base import Message, Model, ModelRequest
from apr_mcp.llm.cached import CachedModel
from apr_mcp.llm.simulated import SimRule, SimScript, SimulatedModel
from apr_mcp.render import run_text
from apr_mcp.schemas import MergeStrategy, RunMetrics, SolveRun, ThreadResult
from apr_mcp.server import close_server, create_server
from apr_mcp.tokens import count_tokens
from apr_mcp.trace import RunStore

MODES = ["auto", "legacy"]
QUESTION = "Compare Python, Go and Rust for writing a command-line tool"


class Rig:
    """A server over a real engine and a simulated model, plus what the tests look at."""

    def __init__(self, tmp: Path, *, script: SimScript | None = None, **overrides: Any) -> None:
        self.settings = Settings(
            **{"backend": "simulated", "cache_dir": tmp / "cache", **overrides}
        )
        self.model = SimulatedModel(ttft_s=0.005, tokens_per_s=50_000, script=script)
        self.cache = ResultCache(tmp / "cache")
        self.store = RunStore(tmp / "runs")
        self.host_models: list[Model | None] = []
        self.server = create_server(
            self.settings, engine_factory=self.engine, run_store=self.store, cache=self.cache
        )

    def close(self) -> None:
        self.cache.close()

    def engine(self, host_model: Model | None) -> Engine:
        self.host_models.append(host_model)
        inner: Model = host_model if host_model is not None else self.model
        model = CachedModel(inner, self.cache)
        return Engine(
            settings=self.settings, planner=model, solver=model, merger=model, run_store=self.store
        )


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(**kw: Any) -> Rig:
        made.append(Rig(tmp_path, **kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    return make_rig()


def _text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


@pytest.mark.parametrize("mode", MODES)
async def test_tools_are_listed_with_output_schemas_and_honest_annotations(
    rig: Rig, mode: str
) -> None:
    async with Client(rig.server, mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {"decompose", "parallel_solve", "merge", "solve"}
    expected_output = {
        "decompose": "subtasks",
        "parallel_solve": "results",
        "merge": "answer",
        "solve": "answer",
    }
    for name, tool in tools.items():
        assert (
            tool.output_schema is not None
            and expected_output[name] in tool.output_schema["properties"]
        )
        assert tool.annotations is not None
        assert tool.annotations.open_world_hint is True  # it calls an external model
        assert (
            tool.annotations.read_only_hint is True and tool.annotations.destructive_hint is False
        )
        assert tool.description and len(tool.description) > 80
    assert "simple" in (tools["solve"].description or "")  # tells the host when not to use it
    assert tools["parallel_solve"].input_schema["required"] == ["question"]
    assert tools["merge"].input_schema["required"] == ["question", "results"]


@pytest.mark.parametrize("mode", MODES)
async def test_tools_list_fits_in_3000_tokens(rig: Rig, mode: str) -> None:
    # Every host puts the whole tools/list reply in its model's context, on every turn.
    async with Client(rig.server, mode=mode) as client:
        listed = await client.list_tools()
    wire = listed.model_dump(mode="json", by_alias=True, exclude_none=True)
    tokens = count_tokens(json.dumps(wire))  # json.dumps' spaced separators: the larger count
    assert tokens <= 3000, f"tools/list is {tokens} tokens"


@pytest.mark.parametrize("mode", MODES)
async def test_descriptions_offer_the_host_the_fast_path(rig: Rig, mode: str) -> None:
    async with Client(rig.server, mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        instructions = client.instructions or ""
    fast = tools["parallel_solve"].description or ""
    assert "your own `subtasks`" in fast and "no plan or merge call" in fast
    assert "yourself" in (tools["decompose"].description or "")
    assert "yourself" in (tools["merge"].description or "")
    assert "`parallel_solve`" in instructions and "no plan or merge call" in instructions
    # The published schemas still name what chains one tool into the next.
    subtask = tools["parallel_solve"].input_schema["properties"]["subtasks"]["items"]
    assert {"id", "prompt", "depends_on"} <= set(subtask["properties"])
    result = tools["merge"].input_schema["properties"]["results"]["items"]
    assert {"id", "status", "answer"} <= set(result["properties"])
    # Every MergeStrategy value is accepted, whatever the engine adds.
    assert tools["merge"].input_schema["properties"]["strategy"]["enum"] == [
        s.value for s in MergeStrategy
    ]


@pytest.mark.parametrize("mode", MODES)
async def test_host_plans_and_merges_itself_with_no_extra_model_call(rig: Rig, mode: str) -> None:
    subtasks = [
        {"id": "py", "prompt": "Assess Python for a command-line tool"},
        {"id": "go", "prompt": "Assess Go for a command-line tool"},
    ]
    async with Client(rig.server, mode=mode) as client:
        solved = await client.call_tool(
            "parallel_solve", {"question": QUESTION, "subtasks": subtasks}
        )
    assert not solved.is_error, _text(solved)
    assert rig.model.calls_by_purpose["planner"] == 0 and rig.model.calls_by_purpose["merger"] == 0
    run = solved.structured_content
    assert run is not None and run["status"] == "answered"
    assert "metrics" in run and "decisions" in run  # the full record, beyond the lean schema
    text = _text(solved)
    for r in run["results"]:
        # The digest carries each thread's answer, readable as it is...
        assert f"## {r['id']} (done" in text and r["answer"].strip()[:60] in text
    # ...and is not a second copy of the JSON (fields only a serialized ThreadResult has).
    assert '"status"' not in text and '"tokens_in"' not in text and '"latency_s"' not in text


@pytest.mark.parametrize("mode", MODES)
async def test_plan_digest_lists_the_subtasks_without_a_json_copy(rig: Rig, mode: str) -> None:
    async with Client(rig.server, mode=mode) as client:
        planned = await client.call_tool("decompose", {"question": QUESTION})
    text = _text(planned)
    plan = planned.structured_content
    assert plan is not None and plan["subtasks"]
    assert all(f"- {s['id']}: " in text for s in plan["subtasks"])
    assert '"prompt"' not in text and '"depends_on"' not in text


_ALL_THREADS_FAIL = SimScript(rules=[SimRule(pattern=".", purpose="solver", fault="500")])


@pytest.mark.parametrize("mode", MODES)
async def test_no_usable_result_is_an_error_with_the_threads_errors(
    make_rig: Callable[..., Rig], mode: str
) -> None:
    rig = make_rig(script=_ALL_THREADS_FAIL)
    subtasks = [{"id": "a", "prompt": "What is 2 + 3?"}, {"id": "b", "prompt": "What is 7 * 6?"}]
    async with Client(rig.server, mode=mode) as client:
        run = await client.call_tool("parallel_solve", {"question": "sums", "subtasks": subtasks})
        solved = await client.call_tool("solve", {"question": QUESTION})
    assert run.is_error and solved.is_error
    for result in (run, solved):
        out = result.structured_content
        assert out is not None and out["status"] == "failed"  # every thread's error, still there
        assert all(r["status"] == "failed" and r["error"] for r in out["results"])
        text = _text(result)
        assert "FAILED: no thread produced a usable result" in text
        assert all(f"{r['id']} " in text for r in out["results"]), text
    assert "500" in _text(run)  # why each thread failed


@pytest.mark.parametrize("mode", MODES)
async def test_chain_passes_structured_content_unchanged(rig: Rig, mode: str) -> None:
    async with Client(rig.server, mode=mode) as client:
        planned = await client.call_tool("decompose", {"question": QUESTION})
        assert not planned.is_error, _text(planned)
        plan = planned.structured_content
        assert plan is not None and plan["should_split"] is True and len(plan["subtasks"]) >= 2
        ids = [s["id"] for s in plan["subtasks"]]
        assert all(i in _text(planned) for i in ids)  # the text mirror lists the plan

        # The host passes JSON through, exactly as it received it.
        subtasks = json.loads(json.dumps(plan["subtasks"]))
        solved = await client.call_tool(
            "parallel_solve", {"question": QUESTION, "subtasks": subtasks}
        )
        assert not solved.is_error, _text(solved)
        run = solved.structured_content
        assert run is not None
        assert [r["id"] for r in run["results"]][: len(ids)] == ids or {
            r["id"] for r in run["results"]
        } >= set(ids)
        assert all(r["status"] == "done" for r in run["results"])
        assert run["partial"] is False and run["metrics"]["threads_done"] >= len(ids)

        results = json.loads(json.dumps(run["results"]))
        merged = await client.call_tool("merge", {"question": QUESTION, "results": results})
        assert not merged.is_error, _text(merged)
        out = merged.structured_content
        assert out is not None and out["answer"].strip()
        assert set(out["used"]) <= {r["id"] for r in results} and out["used"]
        assert out["answer"].strip()[:40] in _text(merged)


async def test_a_simple_question_is_not_split_and_the_chain_still_works(rig: Rig) -> None:
    question = "What is the capital of France?"
    async with Client(rig.server) as client:
        planned = await client.call_tool("decompose", {"question": question})
        plan = planned.structured_content
        assert plan is not None and plan["should_split"] is False
        assert "Not worth splitting" in _text(planned)
        run = await client.call_tool(
            "parallel_solve", {"question": question, "subtasks": plan["subtasks"]}
        )
        assert not run.is_error, _text(run)
        assert len(run.structured_content["results"]) <= 1


@pytest.mark.parametrize("mode", MODES)
async def test_parallel_solve_without_subtasks_plans_first(rig: Rig, mode: str) -> None:
    async with Client(rig.server, mode=mode) as client:
        solved = await client.call_tool("parallel_solve", {"question": QUESTION})
    assert not solved.is_error, _text(solved)
    assert solved.structured_content is not None
    assert len(solved.structured_content["results"]) >= 2
    # The server planned (with the planner model or heuristics) before solving.
    assert any(d["kind"] == "split" for d in solved.structured_content["decisions"])


@pytest.mark.parametrize("mode", MODES)
async def test_solve_runs_the_pipeline_and_reports_progress(rig: Rig, mode: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with Client(rig.server, mode=mode) as client:
        result = await client.call_tool(
            "solve", {"question": QUESTION}, progress_callback=on_progress
        )
    assert not result.is_error, _text(result)
    out = result.structured_content
    assert out is not None and out["answer"].strip() and out["metrics"]["threads"] >= 2
    assert seen, "no progress notifications"
    progress = [p for p, _, _ in seen]
    assert progress == sorted(progress) and len(set(progress)) == len(
        progress
    )  # strictly increasing
    assert all(t is None or t >= p for p, t, _ in seen)
    totals = [t for _, t, _ in seen if t is not None]
    assert totals == sorted(totals)  # threads known so far only grow
    assert totals and max(totals) <= out["metrics"]["threads"]  # a count of threads, not made up
    assert all(m for _, _, m in seen)  # every event says what happened
    assert max(progress) >= out["metrics"]["threads_done"]
    assert f"apr://runs/{out['run_id']}" in _text(result)


@pytest.mark.parametrize("mode", MODES)
async def test_repeated_parallel_solve_is_served_from_the_cache(rig: Rig, mode: str) -> None:
    subtasks = [{"id": "a", "prompt": "What is 2 + 3?"}, {"id": "b", "prompt": "What is 7 * 6?"}]
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with Client(rig.server, mode=mode) as client:
        first = await client.call_tool("parallel_solve", {"question": "sums", "subtasks": subtasks})
        calls = rig.model.calls
        messages.clear()
        again = await client.call_tool(
            "parallel_solve",
            {"question": "sums", "subtasks": subtasks},
            progress_callback=on_progress,
        )
    assert not first.is_error and not again.is_error
    assert rig.model.calls == calls  # no new model call
    assert all(r["cached"] for r in again.structured_content["results"])
    assert any("cache" in m for m in messages), messages
    assert re.search(r"^## a \(done, [^)]*cached\)$", _text(again), re.MULTILINE), _text(again)


@pytest.mark.parametrize("mode", MODES)
async def test_bad_arguments_come_back_as_errors(rig: Rig, mode: str) -> None:
    async with Client(rig.server, mode=mode) as client:
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("decompose", {}, "question"),
            ("decompose", {"question": ""}, "question"),
            ("decompose", {"question": "q", "max_subtasks": 0}, "max_subtasks"),
            ("parallel_solve", {"question": "q", "subtasks": [{"id": "a b", "prompt": "x"}]}, "id"),
            ("parallel_solve", {"question": "q", "deadline_s": -1}, "deadline_s"),
            ("merge", {"question": "q", "results": []}, "results"),
            (
                "merge",
                {"question": "q", "results": [{"id": "t1"}], "strategy": "coinflip"},
                "strategy",
            ),
            ("solve", {"question": "q", "mode": "panic"}, "mode"),
        ]
        for tool, args, field in cases:
            result = await client.call_tool(tool, args)
            assert result.is_error, (tool, args)
            assert field in _text(result), (tool, args, _text(result))
            # One readable line per field, not pydantic's report with links and input dumps.
            assert "input_value" not in _text(result) and "errors.pydantic" not in _text(result)
        empty = await client.call_tool("solve", {"question": ""})
        assert _text(empty).startswith("Invalid arguments for solve: question: ")
        # The server is still fine afterwards.
        ok = await client.call_tool("decompose", {"question": QUESTION})
        assert not ok.is_error


@pytest.mark.parametrize("mode", MODES)
async def test_engine_errors_are_tool_errors_not_crashes(rig: Rig, mode: str) -> None:
    bad_plan = [{"id": "t1", "prompt": "a"}, {"id": "t2", "prompt": "b", "depends_on": ["nope"]}]
    async with Client(rig.server, mode=mode) as client:
        result = await client.call_tool("parallel_solve", {"question": "q", "subtasks": bad_plan})
        assert result.is_error
        assert "PlanError" in _text(result) and "nope" in _text(result)
        assert (await client.call_tool("decompose", {"question": QUESTION})).is_error is False


async def test_unconfigured_backend_explains_how_to_configure(tmp_path: Path) -> None:
    server = create_server(Settings(cache_dir=tmp_path / "cache"))
    async with Client(server) as client:
        assert len((await client.list_tools()).tools) == 4  # lists tools even when misconfigured
        result = await client.call_tool("decompose", {"question": QUESTION})
    assert result.is_error
    assert "ConfigError" in _text(result) and "APR_BACKEND=openai" in _text(result)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["argument", "settings"])
async def test_deadline_returns_finished_threads_marked_partial(
    make_rig: Callable[..., Rig], mode: str, where: str
) -> None:
    slow = SimScript(rules=[SimRule(pattern="STRAGGLER", ttft_s=30.0)])
    # The deadline comes from the call, or from APR_DEADLINE_S when the host passes none.
    rig = make_rig(script=slow, **({"deadline_s": 0.5} if where == "settings" else {}))
    subtasks = [
        {"id": "fast", "prompt": "What is 2 + 2?"},
        {"id": "slow", "prompt": "STRAGGLER: what is 3 + 3?"},
    ]
    args: dict[str, Any] = {"question": "two sums", "subtasks": subtasks}
    if where == "argument":
        args["deadline_s"] = 0.5
    with anyio.fail_after(10):
        async with Client(rig.server, mode=mode) as client:
            result = await client.call_tool("parallel_solve", args)
    assert not result.is_error, _text(result)
    run = result.structured_content
    assert run is not None and run["partial"] is True and run["metrics"]["partial"] is True
    status = {r["id"]: r["status"] for r in run["results"]}
    assert status["fast"] == "done" and status["slow"] in {"cancelled", "skipped", "failed"}
    assert run["status"] == "partial" and "PARTIAL" in _text(result)  # partial is not an error


@pytest.mark.parametrize("mode", MODES)
async def test_a_partial_answer_is_not_an_error_and_says_partial(
    make_rig: Callable[..., Rig], mode: str
) -> None:
    slow = SimScript(rules=[SimRule(pattern="Assess Rust", purpose="solver", ttft_s=30.0)])
    rig = make_rig(script=slow)
    with anyio.fail_after(10):
        async with Client(rig.server, mode=mode) as client:
            result = await client.call_tool("solve", {"question": QUESTION, "deadline_s": 3.0})
    assert not result.is_error, _text(result)
    out = result.structured_content
    assert out is not None and out["status"] == "partial" and out["answer"].strip()
    assert "PARTIAL" in _text(result)


def test_a_wide_run_digest_shows_less_of_each_answer() -> None:
    results = [
        ThreadResult(id=f"t{i}", answer=f"answer {i} " + "x" * 5000, confidence=0.5)
        for i in range(40)
    ]
    run = SolveRun(run_id="r", question="q", results=results, metrics=RunMetrics(threads=40))
    text = run_text(run)
    assert all(f"## t{i} (done" in text and f"answer {i} " in text for i in range(40))
    assert text.count("the full answer is in `results`") == 40
    assert len(text) < 40 * 1000  # bounded, not 40 answers of 5,000 characters


def _sim_sampler(model: SimulatedModel, calls: list[CreateMessageRequestParams]) -> Any:
    """A host that answers sampling requests with the simulated model."""

    async def sample(context: Any, params: CreateMessageRequestParams) -> CreateMessageResult:
        calls.append(params)
        messages = (
            [Message(role="system", content=params.system_prompt)] if params.system_prompt else []
        )
        messages += [
            Message(role=m.role, content=m.content.text)  # type: ignore[union-attr]
            for m in params.messages
        ]
        meta = params.metadata or {}
        request = ModelRequest(
            messages=messages,
            max_tokens=params.max_tokens,
            purpose=str(meta.get("purpose", "solver")),
            schema_name=str(meta.get("schema_name", "output")),
        )
        reply = await model.complete(request)
        return CreateMessageResult(
            role="assistant",
            content=TextContent(type="text", text=reply.text),
            model="host-sim",
            stop_reason="endTurn",
        )

    return sample


async def test_sampling_backend_uses_the_hosts_model_on_2025_connections(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(backend="sampling")
    host = SimulatedModel(ttft_s=0.001, tokens_per_s=50_000)
    calls: list[CreateMessageRequestParams] = []
    async with Client(
        rig.server, mode="legacy", sampling_callback=_sim_sampler(host, calls)
    ) as client:
        result = await client.call_tool("solve", {"question": QUESTION})
    assert not result.is_error, _text(result)
    assert result.structured_content is not None and result.structured_content["answer"].strip()
    assert rig.model.calls == 0  # everything went through the host
    assert len(calls) >= 3 and host.calls == len(calls)  # plan + threads + merge
    purposes = {str((c.metadata or {}).get("purpose")) for c in calls}
    assert "solver" in purposes


async def test_sampling_on_2026_connections_fails_with_the_alternatives(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(backend="sampling")
    calls: list[CreateMessageRequestParams] = []
    async with Client(
        rig.server, sampling_callback=_sim_sampler(SimulatedModel(), calls)
    ) as client:
        result = await client.call_tool("solve", {"question": QUESTION})
    assert result.is_error
    text = _text(result)
    assert "SamplingUnavailable" in text and "2026-07-28" in text
    assert "APR_BACKEND=openai" in text and "APR_BACKEND=simulated" in text
    assert calls == []


async def test_sampling_without_the_capability_fails_clearly(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(backend="sampling")
    async with Client(rig.server, mode="legacy") as client:  # no sampling_callback: no capability
        result = await client.call_tool("decompose", {"question": QUESTION})
    assert result.is_error
    assert "sampling capability" in _text(result) and "APR_BACKEND=anthropic" in _text(result)


@pytest.mark.parametrize("mode", MODES)
async def test_run_traces_and_cache_stats_are_resources(rig: Rig, mode: str) -> None:
    async with Client(rig.server, mode=mode) as client:
        solved = await client.call_tool("solve", {"question": QUESTION})
        run_id = solved.structured_content["run_id"]
        listing = await client.read_resource("apr://runs")
        assert run_id in listing.contents[0].text  # type: ignore[union-attr]
        trace = json.loads((await client.read_resource(f"apr://runs/{run_id}")).contents[0].text)  # type: ignore[union-attr]
        assert trace["run_id"] == run_id and trace["results"]
        stats = json.loads((await client.read_resource("apr://cache/stats")).contents[0].text)  # type: ignore[union-attr]
        assert isinstance(stats, dict) and stats
        templates = (await client.list_resource_templates()).resource_templates
        assert any(t.uri_template == "apr://runs/{run_id}" for t in templates)
        with pytest.raises(MCPError, match="no run"):
            await client.read_resource("apr://runs/does-not-exist")


@pytest.mark.parametrize("mode", MODES)
async def test_prompts_for_debugging_and_research(rig: Rig, mode: str) -> None:
    async with Client(rig.server, mode=mode) as client:
        names = {p.name for p in (await client.list_prompts()).prompts}
        assert {"debug_with_hypotheses", "research", "compare"} <= names
        got = await client.get_prompt(
            "debug_with_hypotheses", {"error": "KeyError: 'user_id'", "code": "d['user_id']"}
        )
        text = got.messages[0].content.text  # type: ignore[union-attr]
        assert "KeyError: 'user_id'" in text and 'mode="debug"' in text and "d['user_id']" in text
        # The error is the question and the code the context (debug mode's shape), in that order.
        assert "`question` set to the error" in text and "`context` set to the code" in text
        assert text.index("as `question`") < text.index("KeyError") < text.index("as `context`")
        research = await client.get_prompt(
            "research", {"question": "Why did the Bronze Age collapse?"}
        )
        assert "Bronze Age" in research.messages[0].content.text  # type: ignore[union-attr]


class _HangingEngine(Engine):
    """An engine that never answers: the server's safety net must still end the call."""

    async def decompose(self, question: str, **kwargs: Any) -> Any:
        await anyio.sleep_forever()


async def test_a_hung_engine_is_stopped_shortly_after_the_deadline(tmp_path: Path) -> None:
    settings = Settings(backend="simulated", deadline_s=0.05, cache_dir=tmp_path / "cache")
    model = SimulatedModel()
    server = create_server(
        settings,
        engine_factory=lambda _: _HangingEngine(
            settings=settings, planner=model, solver=model, merger=model
        ),
    )
    with anyio.fail_after(15):
        async with Client(server) as client:
            result = await client.call_tool("decompose", {"question": QUESTION})
    assert result.is_error and "deadline" in _text(result)


async def test_sampling_through_the_production_runtime(tmp_path: Path) -> None:
    """No engine factory: the server builds a per-call engine around the host's model
    (limiter, retry and cache wrappers included) and closes it after the call."""
    server = create_server(Settings(backend="sampling", cache_dir=tmp_path / "cache"))
    host = SimulatedModel(ttft_s=0.001, tokens_per_s=50_000)
    calls: list[CreateMessageRequestParams] = []
    try:
        async with Client(
            server, mode="legacy", sampling_callback=_sim_sampler(host, calls)
        ) as client:
            first = await client.call_tool("solve", {"question": QUESTION})
            asked = len(calls)
            again = await client.call_tool("solve", {"question": QUESTION})
    finally:
        await close_server(server)
    assert not first.is_error and not again.is_error, _text(first)
    assert asked >= 3 and first.structured_content["backend"] == "sampling"
    assert len(calls) == asked  # the second run was answered from the disk cache
    assert first.structured_content["model"] == "host:mcp"


async def test_sampling_cache_is_per_host_application(tmp_path: Path) -> None:
    """The host chooses the model: another host application never gets this host's cached
    answers (the cache key names the client), the same application does."""
    server = create_server(Settings(backend="sampling", cache_dir=tmp_path / "cache"))
    host = SimulatedModel(ttft_s=0.001, tokens_per_s=50_000)
    calls: list[CreateMessageRequestParams] = []

    async def ask(client_name: str) -> int:
        before = len(calls)
        async with Client(
            server,
            mode="legacy",
            sampling_callback=_sim_sampler(host, calls),
            client_info=Implementation(name=client_name, version="1"),
        ) as client:
            result = await client.call_tool("solve", {"question": QUESTION})
        assert not result.is_error, _text(result)
        assert result.structured_content["model"] == f"host:{client_name}"
        return len(calls) - before

    try:
        assert await ask("Visual Studio Code") >= 3
        assert await ask("Claude Desktop") >= 3  # a different host: asked again
        assert await ask("Visual Studio Code") == 0  # the same host: from the cache
        async with Client(server) as client:
            stats = json.loads((await client.read_resource("apr://cache/stats")).contents[0].text)  # type: ignore[union-attr]
        # One cache for every call, so its counters see the per-call engines' hits.
        assert stats["hits"] >= 3 and stats["misses"] >= 6
    finally:
        await close_server(server)


async def test_text_mirrors_say_why_the_run_split_and_stopped(make_rig: Callable[..., Rig]) -> None:
    # A host that reads only the text still learns why the run split, and why it is partial.
    rig = make_rig()
    async with Client(rig.server) as client:
        solved = await client.call_tool("solve", {"question": QUESTION})
    text = _text(solved)
    assert not solved.is_error and "\nDecisions:\n" in text
    assert re.search(r"\] split: split into 3 subtasks \(\w+\):", text), text
    assert "] width: 3 subtasks" in text

    tight = make_rig(token_budget=50)  # below one prompt: every thread is cut by the budget
    subtasks = [{"id": "py", "prompt": "Assess Python"}, {"id": "go", "prompt": "Assess Go"}]
    async with Client(tight.server) as client:
        run = await client.call_tool("parallel_solve", {"question": QUESTION, "subtasks": subtasks})
    text = _text(run)
    # Nothing usable came back: an error, with the reason in the text.
    assert run.is_error and "FAILED: no thread produced a usable result; the token budget" in text
    assert "] budget: token budget spent" in text and "0/2 threads done, 2 cancelled" in text
