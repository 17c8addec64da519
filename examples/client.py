"""Drive apr-mcp from Python over stdio: decompose → parallel_solve → merge.

    python examples/client.py "Compare Python, Go and Rust for writing a command-line tool"

It launches ``apr-mcp`` (or ``python -m apr_mcp`` if the script is not on PATH) with the offline
simulated model unless APR_BACKEND is already set, prints per-thread progress on stderr, and passes
each stage's structured output unchanged to the next stage — the chaining contract a host model
relies on.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import anyio
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

DEFAULT_QUESTION = "Compare Python, Go and Rust for writing a command-line tool"


async def progress(done: float, total: float | None, message: str | None) -> None:
    print(
        f"  [{done:.0f}/{total or '?':.0f}] {message}" if total else f"  [{done:.0f}] {message}",
        file=sys.stderr,
    )


async def main(question: str) -> None:
    exe = shutil.which("apr-mcp")
    server = StdioServerParameters(
        command=exe or sys.executable,
        args=[] if exe else ["-m", "apr_mcp"],
        env={**os.environ, "APR_BACKEND": os.environ.get("APR_BACKEND", "simulated")},
    )
    async with Client(server) as client:
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
            progress_callback=progress,
        )
        if run.is_error or run.structured_content is None:
            sys.exit(f"parallel_solve failed: {run.content}")
        results = run.structured_content["results"]
        metrics = run.structured_content["metrics"]
        print(
            f"solved: {metrics['threads_done']}/{metrics['threads']} threads in {metrics['wall_s']:.2f} s"
        )

        merged = await client.call_tool("merge", {"question": question, "results": results})
        if merged.is_error or merged.structured_content is None:
            sys.exit(f"merge failed: {merged.content}")
        print("\nanswer:\n" + merged.structured_content["answer"])
        print(
            "\nprovenance: "
            + json.dumps({k: merged.structured_content[k] for k in ("used", "dropped")})
        )


if __name__ == "__main__":
    anyio.run(main, " ".join(sys.argv[1:]) or DEFAULT_QUESTION)
