"""A real stdio subprocess: ``python -m apr_mcp`` (what a bare ``apr-mcp`` runs) with the simulated
backend, driven by the SDK's stdio client in both protocol eras."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

QUESTION = "Compare Python, Go and Rust for writing a command-line tool"


def _params(tmp: Path) -> StdioServerParameters:
    env = dict(os.environ)
    env.update(
        APR_BACKEND="simulated",
        APR_SIM_TTFT_S="0.005",
        APR_SIM_TOKENS_PER_S="50000",
        APR_CACHE_DIR=str(tmp / "cache"),
        APR_RUNS_DIR=str(tmp / "runs"),
    )
    return StdioServerParameters(
        command=sys.executable, args=["-m", "apr_mcp"], env=env, cwd=str(tmp)
    )


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_stdio_subprocess_runs_the_chain(tmp_path: Path, mode: str) -> None:
    with anyio.fail_after(30):
        async with Client(_params(tmp_path), mode=mode) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert tools == {"decompose", "parallel_solve", "merge", "solve"}
            plan = (await client.call_tool("decompose", {"question": QUESTION})).structured_content
            assert plan is not None and len(plan["subtasks"]) >= 2
            run = await client.call_tool(
                "parallel_solve", {"question": QUESTION, "subtasks": plan["subtasks"]}
            )
            assert not run.is_error and run.structured_content is not None
            results = run.structured_content["results"]
            assert {r["id"] for r in results} >= {s["id"] for s in plan["subtasks"]}
            merged = await client.call_tool("merge", {"question": QUESTION, "results": results})
            assert not merged.is_error and merged.structured_content["answer"]
            runs = await client.read_resource("apr://runs")
            assert run.structured_content["run_id"] in runs.contents[0].text  # type: ignore[union-attr]
    # The run trace was written where APR_RUNS_DIR points (not into the user's data dir).
    assert any((tmp_path / "runs").iterdir())


async def test_example_client_script_runs_the_chain(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "examples" / "client.py"
    env = {**_params(tmp_path).env, "PATH": os.environ.get("PATH", "")}  # type: ignore[dict-item]
    with anyio.fail_after(30):
        done = await anyio.run_process(
            [sys.executable, str(script), QUESTION], env=env, cwd=tmp_path, check=False
        )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, err[-2000:]
    assert "plan: 3 subtasks" in out and "answer:" in out and '"used": [' in out
    assert "t1" in err  # per-thread progress went to stderr


async def test_stdout_carries_only_protocol_messages_even_with_debug_logs(tmp_path: Path) -> None:
    """Raw wire check: with -vv (debug logging) every stdout line is JSON-RPC; logs go to stderr."""
    env = _params(tmp_path).env
    requests = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "decompose", "arguments": {"question": QUESTION}},
        },
    ]
    wire = "".join(json.dumps(r) + "\n" for r in requests).encode()
    stderr = bytearray()
    lines: list[dict[str, Any]] = []
    with anyio.fail_after(30):
        process = await anyio.open_process(
            [sys.executable, "-m", "apr_mcp", "-vv"], env=env, cwd=tmp_path
        )
        assert process.stdin and process.stdout and process.stderr
        async with process, anyio.create_task_group() as tg:

            async def drain() -> None:
                async for chunk in process.stderr:  # type: ignore[union-attr]
                    stderr.extend(chunk)

            tg.start_soon(drain)
            await process.stdin.send(wire)
            buffer = b""
            while not any(m.get("id") == 2 for m in lines):
                buffer += await process.stdout.receive()
                *complete, buffer = buffer.split(b"\n")
                lines += [json.loads(line) for line in complete if line.strip()]
            await process.stdin.aclose()  # EOF: the server exits
            await process.wait()
    assert all(m.get("jsonrpc") == "2.0" for m in lines)
    answer = next(m for m in lines if m.get("id") == 2)
    assert answer["result"]["structuredContent"]["should_split"] is True
    assert b"DEBUG" in stderr  # the logs exist, and they went to stderr
