"""Memory: RSS growth over many distinct ``solve`` calls with the disk cache on.

Each call asks a different question, so every model call misses the cache and writes a new entry:
the worst case for anything that grows per key (SQLite's page cache and memory map, in-flight
maps, per-key locks, run stores). The simulated model answers at once (ttft 0), so the figure is
the engine's and the cache's memory, not the model's. RSS is read from ``/proc/self/status``
(Linux) after a ``gc.collect()``; the first ``--warmup`` calls are not counted (imports, the
tokenizer, first-use caches). Target (issue 11.9): growth ≤ 20 MB over 3,000 calls.

    python -m benchmarks.memory                    # 3,000 calls, cache on (~2-4 min on 2 cores)
    python -m benchmarks.memory --calls 500 --no-cache
    python -m benchmarks.memory --tracemalloc 15   # also print the 15 biggest Python growths
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Literal

import anyio

from apr_mcp.config import Settings
from apr_mcp.runtime import build_runtime
from apr_mcp.trace import RunStore


def rss_mb() -> float:
    """Resident set size of this process in MB (0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def run(
    calls: int, warmup: int, cache: bool, top: int, strategy: Literal["adaptive", "sequential"]
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="apr-mem-") as tmp:
        settings = Settings(
            backend="simulated",
            cache=cache,
            cache_dir=Path(tmp) / "cache",
            sim_ttft_s=0.0,
            sim_tokens_per_s=1e9,
        )
        runtime = build_runtime(settings, run_store=RunStore(Path(tmp) / "runs"))
        try:
            question = "Compare {n} and {m}: which is faster for workload {n}?"
            for i in range(warmup):
                await runtime.engine.solve(question.format(n=-i - 1, m=i), strategy=strategy)
            gc.collect()
            before = rss_mb()
            if top:
                tracemalloc.start()
                snap0 = tracemalloc.take_snapshot()
            start = time.perf_counter()
            for i in range(calls):
                await runtime.engine.solve(question.format(n=i, m=i * 7 + 3), strategy=strategy)
                if (i + 1) % 500 == 0:
                    gc.collect()
                    print(f"  {i + 1:5d} calls: RSS {rss_mb():7.1f} MB", file=sys.stderr)
            elapsed = time.perf_counter() - start
            gc.collect()
            after = rss_mb()
            if top:
                stats = tracemalloc.take_snapshot().compare_to(snap0, "lineno")
                for stat in stats[:top]:
                    print(f"  {stat}", file=sys.stderr)
            entries = runtime.cache.stats()["entries"] if cache else 0
        finally:
            await runtime.aclose()
    return {"before": before, "after": after, "elapsed": elapsed, "entries": entries}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--strategy", default="adaptive", choices=["adaptive", "sequential"])
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    r = anyio.run(run, args.calls, args.warmup, not args.no_cache, args.tracemalloc, args.strategy)
    growth = r["after"] - r["before"]
    print(
        f"cache {'off' if args.no_cache else 'on'}: {args.calls} distinct solve calls in "
        f"{r['elapsed']:.1f} s; RSS {r['before']:.1f} -> {r['after']:.1f} MB "
        f"(growth {growth:+.1f} MB, target <= 20 MB); cache entries {int(r['entries'])}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
