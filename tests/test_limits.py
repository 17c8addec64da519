"""One set of limits: the MCP tool schemas, the settings, the CLI and the engine agree with
``apr_mcp.limits`` (and so with each other)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from mcp.client import Client

from apr_mcp import limits
from apr_mcp.cli import _build_parser
from apr_mcp.config import Settings
from apr_mcp.engine import Engine
from apr_mcp.errors import ConfigError, PlanError
from apr_mcp.llm.simulated import SimulatedModel
from apr_mcp.schemas import Subtask
from apr_mcp.server import create_server


def bound(schema: dict[str, Any], key: str) -> Any:
    """``key`` of a property schema, looking inside ``anyOf`` (optional arguments)."""
    if key in schema:
        return schema[key]
    for option in schema.get("anyOf", []):
        if key in option:
            return option[key]
    raise AssertionError(f"no {key} in {schema}")


async def test_tool_input_schemas_use_the_shared_limits(tmp_path: Path) -> None:
    settings = Settings(backend="simulated", cache_dir=tmp_path / "cache")
    async with Client(create_server(settings)) as client:
        tools = {t.name: t.input_schema for t in (await client.list_tools()).tools}
    props = {name: schema["properties"] for name, schema in tools.items()}
    for name in tools:
        assert bound(props[name]["question"], "maxLength") == limits.MAX_QUESTION_CHARS
    for name in ("decompose", "parallel_solve", "solve"):
        assert bound(props[name]["context"], "maxLength") == limits.MAX_CONTEXT_CHARS
    for name in ("decompose", "solve"):
        assert bound(props[name]["max_subtasks"], "maximum") == limits.MAX_SUBTASKS
    for name in ("parallel_solve", "solve"):
        assert bound(props[name]["deadline_s"], "maximum") == limits.MAX_DEADLINE_S
    solve = props["parallel_solve"]
    assert bound(solve["subtasks"], "maxItems") == limits.MAX_SUBTASKS
    assert bound(solve["max_concurrency"], "maximum") == limits.MAX_CONCURRENCY
    array = next(
        o for o in solve["subtasks"].get("anyOf", [solve["subtasks"]]) if o.get("type") == "array"
    )
    assert array["items"]["properties"]["prompt"]["maxLength"] == limits.MAX_PROMPT_CHARS
    merge = props["merge"]
    assert bound(merge["results"], "maxItems") == limits.MAX_MERGE_RESULTS
    budget = merge["context_budget_tokens"]
    assert bound(budget, "minimum") == limits.MIN_MERGE_BUDGET_TOKENS
    assert bound(budget, "maximum") == limits.MAX_MERGE_BUDGET_TOKENS


@pytest.mark.parametrize(
    ("field", "high"),
    [
        ("max_concurrency", limits.MAX_CONCURRENCY),
        ("max_threads", limits.MAX_THREADS),
        ("max_followups", limits.MAX_FOLLOWUPS),
        ("max_depth", limits.MAX_DEPTH),
        ("max_retries", limits.MAX_RETRIES),
        ("merge_budget_tokens", limits.MAX_MERGE_BUDGET_TOKENS),
    ],
)
def test_settings_accept_the_limit_and_refuse_one_more(field: str, high: int) -> None:
    assert getattr(Settings.model_validate({field: high}), field) == high
    with pytest.raises((ValueError, ConfigError)):
        Settings.model_validate({field: high + 1})


@pytest.mark.parametrize(
    ("flag", "high"),
    [("--max-subtasks", limits.MAX_SUBTASKS), ("--max-concurrency", limits.MAX_CONCURRENCY)],
)
def test_cli_flags_accept_the_limit_and_refuse_outside(
    flag: str, high: int, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = _build_parser()
    args = parser.parse_args(["solve", flag, str(high), "q"])
    assert getattr(args, flag.lstrip("-").replace("-", "_")) == high
    for bad in ("0", str(high + 1), "many"):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(["solve", flag, bad, "q"])
        assert exc.value.code == 2
        assert flag in capsys.readouterr().err


def test_cli_deadline_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    parser = _build_parser()
    assert parser.parse_args(["solve", "--deadline", "inf", "q"]).deadline == math.inf
    high = limits.MAX_DEADLINE_S
    assert parser.parse_args(["solve", "--deadline", f"{high:g}", "q"]).deadline == high
    for bad in ("0", "-1", f"{high + 1:g}", "nan", "soon"):
        with pytest.raises(SystemExit):
            parser.parse_args(["solve", "--deadline", bad, "q"])
        assert "--deadline" in capsys.readouterr().err


async def test_engine_takes_as_many_host_subtasks_as_the_tool_schema() -> None:
    model = SimulatedModel(ttft_s=0.0, tokens_per_s=1e9)
    engine = Engine(
        settings=Settings(backend="simulated"), planner=model, solver=model, merger=model
    )
    subtasks = [
        Subtask(id=f"s{i}", prompt=f"Assess option number {i}")
        for i in range(limits.MAX_SUBTASKS + 1)
    ]
    with pytest.raises(PlanError, match=str(limits.MAX_SUBTASKS)):
        await engine.parallel_solve("q", subtasks)
    run = await engine.parallel_solve("q", subtasks[:-1], deadline_s=60)
    assert len(run.results) == limits.MAX_SUBTASKS
