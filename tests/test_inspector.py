"""A real third-party client: the MCP Inspector CLI (Node) drives ``decompose → parallel_solve →
merge`` over stdio, each stage's structured output passed on as the next stage's argument, against
the simulated model served as an OpenAI-compatible endpoint on loopback.

The Inspector is installed by ``.ci/run`` (``npm install --prefix .ci/inspector
@modelcontextprotocol/inspector@0.15.0``). Without it the test skips on a developer machine; with
``APR_REQUIRE_INSPECTOR=1`` (set in CI) a missing Inspector is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from apr_mcp.llm.simulated import SimulatedModel
from apr_mcp.simulate_server import serve_simulated
from apr_mcp.tokens import count_tokens

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Compare Python, Go and Rust for writing a command-line tool"


def _inspector() -> str | None:
    explicit = os.environ.get("APR_INSPECTOR")
    candidates = [explicit] if explicit else []
    candidates += [str(ROOT / ".ci" / "inspector" / "node_modules" / ".bin" / "mcp-inspector")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return shutil.which("mcp-inspector")


@pytest.fixture
def inspector() -> str:
    found = _inspector()
    if found is None or shutil.which("node") is None:
        message = (
            "MCP Inspector CLI not installed: npm install --prefix .ci/inspector "
            "@modelcontextprotocol/inspector@0.15.0"
        )
        if os.environ.get("APR_REQUIRE_INSPECTOR") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


async def test_inspector_cli_runs_the_chain(inspector: str, tmp_path: Path) -> None:
    model = SimulatedModel(ttft_s=0.005, tokens_per_s=50_000)
    with anyio.fail_after(90):
        async with serve_simulated(model) as base_url:
            env_args = [
                "APR_BACKEND=openai",
                f"APR_BASE_URL={base_url}",
                "APR_MODEL=sim-1",
                "APR_API_KEY=sim",
                f"APR_CACHE_DIR={tmp_path / 'cache'}",
                f"APR_RUNS_DIR={tmp_path / 'runs'}",
            ]

            async def inspect(method: str, *extra: str) -> dict[str, Any]:
                cmd = [inspector, "--cli"]
                for e in env_args:
                    cmd += ["-e", e]
                cmd += [sys.executable, "-m", "apr_mcp", "--method", method, *extra]
                done = await anyio.run_process(cmd, cwd=tmp_path, check=False)
                assert done.returncode == 0, done.stderr.decode()[-2000:]
                result: dict[str, Any] = json.loads(done.stdout)
                return result

            async def call(tool: str, **args: Any) -> dict[str, Any]:
                extra = ["--tool-name", tool]
                for key, value in args.items():
                    text = value if isinstance(value, str) else json.dumps(value)
                    extra += ["--tool-arg", f"{key}={text}"]
                result = await inspect("tools/call", *extra)
                assert not result.get("isError"), result
                return result

            # What a host puts in its model's context on every turn, as a real client got it.
            listed = await inspect("tools/list")
            assert len(listed["tools"]) == 4 and count_tokens(json.dumps(listed)) <= 3000

            planned = await call("decompose", question=QUESTION)
            plan = planned["structuredContent"]
            assert plan["should_split"] is True and len(plan["subtasks"]) >= 2
            assert "t1" in planned["content"][0]["text"]

            solved = await call("parallel_solve", question=QUESTION, subtasks=plan["subtasks"])
            run = solved["structuredContent"]
            assert {r["id"] for r in run["results"]} >= {s["id"] for s in plan["subtasks"]}
            assert all(r["status"] == "done" for r in run["results"])

            merged = await call("merge", question=QUESTION, results=run["results"])
            out = merged["structuredContent"]
            assert out["answer"].strip() and set(out["used"]) <= {r["id"] for r in run["results"]}

    # Every model call went over HTTP to the loopback server (one per thread, the lead).
    # Countable parts are planned by the heuristics (no planner call) unless the model planned.
    planned_by_model = plan.get("source", "model") == "model"
    assert (model.calls_by_purpose["planner"] >= 1) == planned_by_model
    # Over HTTP the endpoint sees free text only: the threads and the composed merge's one short
    # lead call both count as "solver".
    assert model.calls_by_purpose["solver"] >= len(plan["subtasks"]) + 1
