"""Drive apr-mcp from Python over stdio.

    python examples/client.py "Compare Python, Go and Rust for writing a command-line tool"
    python examples/client.py --parts "Assess Python for a CLI" "Assess Go for a CLI" -- "Python or
    Go?"

The first form lets the server plan and merge: decompose → parallel_solve → merge, each stage's
structured output passed unchanged to the next (the chaining contract a host model relies on).
The second is the fastest path, where the caller is planner and merger: its own subtasks go
straight to parallel_solve and it reads the threads' answers itself (no plan or merge call).

It launches ``apr-mcp`` (or ``python -m apr_mcp`` if the script is not on PATH) with the offline
simulated model unless APR_BACKEND is already set, and prints per-thread progress on stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any

import anyio
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

DEFAULT_QUESTION = "Compare Python, Go and Rust for writing a command-line tool"


async def show_progress(progress: float, total: float | None, message: str | None) -> None:
    shown = f"{progress:.0f}/{total:.0f}" if total else f"{progress:.0f}"
    print(f"  [{shown}] {message}", file=sys.stderr)


def _server() -> StdioServerParameters:
    exe = shutil.which("apr-mcp")
    return StdioServerParameters(
        command=exe or sys.executable,
        args=[] if exe else ["-m", "apr_mcp"],
        env={**os.environ, "APR_BACKEND": os.environ.get("APR_BACKEND", "simulated")},
    )


async def chain(client: Client, question: str) -> None:
    """The server plans, solves and merges; the caller passes structured content along."""
    plan = await client.call_tool("decompose", {"question": question})
    if plan.is_error or plan.structured_content is None:
        sys.exit(f"decompose failed: {plan.content}")
    subtasks = plan.structured_content["subtasks"]
    print(f"plan: {len(subtasks)} subtasks — {plan.structured_content['reason']}")
    for s in subtasks:
        print(f"  {s['id']}: {s['prompt']}")

    run = await client.call_tool(
        "parallel_solve",
        {"question": question, "subtasks": subtasks or None},
        progress_callback=show_progress,
    )
    if run.is_error or run.structured_content is None:
        sys.exit(f"parallel_solve failed: {run.content}")
    results = run.structured_content["results"]
    metrics = run.structured_content["metrics"]
    print(
        f"solved: {metrics['threads_done']}/{metrics['threads']} threads in "
        f"{metrics['wall_s']:.2f} s"
    )

    merged = await client.call_tool("merge", {"question": question, "results": results})
    if merged.is_error or merged.structured_content is None:
        sys.exit(f"merge failed: {merged.content}")
    print("\nanswer:\n" + merged.structured_content["answer"])
    print(
        "\nprovenance: "
        + json.dumps({k: merged.structured_content[k] for k in ("used", "dropped")})
    )


async def fast(client: Client, question: str, parts: list[str]) -> None:
    """The caller plans and merges itself: one parallel_solve call, no planner or merger."""
    subtasks: list[dict[str, Any]] = [
        {"id": f"p{i}", "prompt": part} for i, part in enumerate(parts, 1)
    ]
    run = await client.call_tool(
        "parallel_solve",
        {"question": question, "subtasks": subtasks},
        progress_callback=show_progress,
    )
    if run.structured_content is None:
        sys.exit(f"parallel_solve failed: {run.content}")
    print(f"status: {run.structured_content['status']}")
    for r in run.structured_content["results"]:
        print(f"\n{r['id']} ({r['status']}):\n{r['answer'] or r.get('error') or ''}")
    if run.is_error:  # no thread produced a usable result
        sys.exit(1)


async def main(argv: list[str]) -> None:
    async with Client(_server()) as client:
        if argv[:1] == ["--parts"]:
            args = argv[1:]
            at = args.index("--") if "--" in args else len(args)
            await fast(client, " ".join(args[at + 1 :]) or DEFAULT_QUESTION, args[:at])
        else:
            await chain(client, " ".join(argv) or DEFAULT_QUESTION)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:])
