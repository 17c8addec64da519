"""Engine overhead: wall time of ``parallel_solve`` against the ideal critical path.

The simulated model answers every call after a fixed latency (``--ttft``; output streams at a
practically infinite rate, so one call takes ``ttft`` seconds). It is served over loopback HTTP by
the OpenAI-compatible simulate server and consumed through the real ``openai`` backend (httpx,
SSE streaming, JSON-schema structured output), so the figures include HTTP, parsing, prompt
rendering, token counting and scheduling — everything but the model.

Scenarios: 8 independent subtasks at concurrency 8 (ideal = 1 × latency) and 64 subtasks at
concurrency 8 (ideal = 8 waves × latency). Ratio = median wall / ideal; target ≤ 1.05.
CPU/thread = process CPU time / threads; with the default in-process server it includes the
server's own work, ``--subprocess`` runs the server in a child process to exclude it. A second
set of rows ("direct") calls the simulated model in-process, without HTTP: the difference between
the two is the cost of the HTTP client, SSE parsing and the server, not of the engine.

    python -m benchmarks.overhead            # or: python benchmarks/overhead.py
    python -m benchmarks.overhead --ttft 0.5 --repeat 5 --subprocess
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from apr_mcp.config import Settings
from apr_mcp.engine import Engine
from apr_mcp.llm.openai_compat import OpenAICompatModel
from apr_mcp.llm.simulated import SimRule, SimScript, SimulatedModel
from apr_mcp.schemas import Subtask, ThreadStatus
from apr_mcp.simulate_server import serve_simulated, simulate_subprocess

# Output streams this fast, so a call's latency is its time to first token.
_TPS = 1e9
_SCENARIOS = [(8, 8), (64, 8)]
_REPLY = {
    "answer": "A fixed answer of moderate length, the same for every thread.",
    "summary": "Fixed answer.",
    "confidence": 0.7,
    "settles_question": False,
    "follow_ups": [],
}


def _script() -> SimScript:
    # A fixed solver reply keeps every call's length (and so its latency) identical.
    return SimScript(rules=[SimRule(pattern=".", reply=_REPLY)])


@asynccontextmanager
async def _endpoint(ttft: float, subprocess: bool) -> AsyncIterator[str]:
    if not subprocess:
        model = SimulatedModel(ttft_s=ttft, tokens_per_s=_TPS, script=_script())
        async with serve_simulated(model) as url:
            yield url
        return
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "script.json"
        script.write_text(json.dumps({"rules": [{"pattern": ".", "reply": _REPLY}]}), encoding="utf-8")
        async with simulate_subprocess("--ttft", str(ttft), "--tps", str(_TPS), "--script", str(script)) as url:
            yield url


def _subtasks(n: int) -> list[Subtask]:
    return [
        Subtask(id=f"t{i}", prompt=f"Independent subtask number {i}: describe item {i} briefly.")
        for i in range(1, n + 1)
    ]


async def _measure(engine: Engine, n: int, concurrency: int) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and done threads of one parallel_solve."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    run = await engine.parallel_solve("overhead benchmark", _subtasks(n), max_concurrency=concurrency)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return wall, cpu, sum(r.status is ThreadStatus.done for r in run.results)


async def _scenarios(engine: Engine, transport: str, ttft: float, repeat: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    await _measure(engine, 8, 8)  # warm up: tokenizer, connection pool
    for n, concurrency in _SCENARIOS:
        ideal = math.ceil(n / concurrency) * ttft
        walls, cpus, done = [], [], n
        for _ in range(repeat):
            wall, cpu, ok = await _measure(engine, n, concurrency)
            walls.append(wall)
            cpus.append(cpu / n)
            done = min(done, ok)
        wall = statistics.median(walls)
        rows.append({
            "transport": transport, "subtasks": n, "concurrency": concurrency, "ideal_s": ideal,
            "wall_s": wall, "best_wall_s": min(walls), "ratio": wall / ideal,
            "cpu_ms_per_thread": 1000 * statistics.median(cpus), "done": done,
        })
    return rows


async def run_benchmark(ttft: float, repeat: int, subprocess: bool) -> list[dict[str, Any]]:
    """Rows for the real HTTP path, then for the simulated model called in-process ("direct":
    the engine's own overhead without HTTP client, SSE parsing or server)."""
    settings = Settings(backend="openai", model="sim-1", max_concurrency=64, deadline_s=600, cache=False)
    async with _endpoint(ttft, subprocess) as url:
        backend = OpenAICompatModel(base_url=url, model="sim-1", timeout_s=30)
        engine = Engine(settings=settings, planner=backend, solver=backend, merger=backend)
        try:
            rows = await _scenarios(engine, "http", ttft, repeat)
        finally:
            await backend.aclose()
    direct = SimulatedModel(ttft_s=ttft, tokens_per_s=_TPS, script=_script())
    engine = Engine(settings=settings, planner=direct, solver=direct, merger=direct)
    return rows + await _scenarios(engine, "direct", ttft, repeat)


def _table(rows: list[dict[str, Any]], ttft: float, repeat: int, subprocess: bool) -> str:
    where = "child process" if subprocess else "same process (CPU includes the server)"
    lines = [
        f"engine overhead: latency {ttft:.3f}s per call, median of {repeat}, server in {where}",
        (
            f"{'path':>6} {'subtasks':>8} {'conc':>4} {'ideal s':>8} {'wall s':>8} {'best s':>8} "
            f"{'ratio':>6} {'CPU ms/thread':>13} {'done':>5}"
        ),
    ]
    for r in rows:
        lines.append(
            f"{r['transport']:>6} {r['subtasks']:>8} {r['concurrency']:>4} {r['ideal_s']:>8.3f} {r['wall_s']:>8.3f} "
            f"{r['best_wall_s']:>8.3f} {r['ratio']:>6.3f} {r['cpu_ms_per_thread']:>13.2f} {r['done']:>5}"
        )
    for path in ("http", "direct"):
        worst = max(r["ratio"] for r in rows if r["transport"] == path)
        verdict = "met" if worst <= 1.05 else "NOT met"
        lines.append(f"target ratio <= 1.05 over {path}: {verdict} (worst {worst:.3f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--ttft", type=float, default=0.2, help="latency of one call, seconds (default 0.2)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario (median reported)")
    parser.add_argument("--subprocess", action="store_true", help="run the server in a child process")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    rows = anyio.run(run_benchmark, args.ttft, max(1, args.repeat), args.subprocess)
    print(json.dumps(rows, indent=2) if args.json else _table(rows, args.ttft, args.repeat, args.subprocess))
    return 0


if __name__ == "__main__":
    sys.exit(main())
