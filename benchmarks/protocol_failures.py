"""Count protocol failures in an ``apr-mcp bench`` output directory (issue 13's figure).

Not accuracy: whether every strategy completed, and whether any thread, plan or decision failed
because of how apr-mcp talks to the model server (a refused JSON schema, an interrupted stream, a
non-API answer). A plan that fell back for another reason (too slow, a model that wrote no valid
JSON) is counted as a fallback, not as a protocol failure.

    python benchmarks/protocol_failures.py apr-bench/
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path
from typing import Any

MARKERS = (
    "response_format",
    "json_schema",
    "refused",
    "interrupted",
    "without a finish_reason",
    "stream ended",
    "http 500",
    "html page",
    "not json",
)
COLUMNS = [
    "items",
    "errors",
    "empty",
    "partial",
    "threads",
    "threads_failed",
    "plan_fallback",
    "protocol",
]


def _protocol(text: str | None) -> bool:
    lowered = (text or "").lower()
    return any(marker in lowered for marker in MARKERS)


def count(out: Path) -> tuple[dict[tuple[str, str], collections.Counter[str]], list[str]]:
    table: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(
        collections.Counter
    )
    examples: list[str] = []
    for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        key = (row["dataset"], row["strategy"])
        t = table[key]
        t["items"] += 1
        t["errors"] += row.get("status") != "ok"
        t["partial"] += bool(row.get("partial"))
        t["empty"] += not (row.get("answer") or "").strip()
        run_file = out / "runs" / f"{row.get('run_id')}.json"
        if not run_file.exists():
            continue
        run: dict[str, Any] = json.loads(run_file.read_text(encoding="utf-8"))
        results = run.get("results") or []
        t["threads"] += len(results)
        for r in results:
            if r.get("status") == "failed":
                t["threads_failed"] += 1
                if _protocol(r.get("error")):
                    t["protocol"] += 1
                    examples.append(f"{key} thread {r['id']}: {r.get('error', '')[:200]}")
        plan = run.get("plan") or {}
        if plan.get("source") == "fallback":
            t["plan_fallback"] += 1
            if _protocol(plan.get("reason")):
                t["protocol"] += 1
                examples.append(f"{key} plan: {plan.get('reason', '')[:200]}")
        for decision in run.get("decisions") or []:
            if _protocol(decision.get("reason")):
                t["protocol"] += 1
                examples.append(f"{key} decision: {decision.get('reason', '')[:200]}")
    return table, examples


def main() -> None:
    table, examples = count(Path(sys.argv[1] if len(sys.argv) > 1 else "apr-bench"))
    print("| dataset | strategy | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    total: collections.Counter[str] = collections.Counter()
    for (dataset, strategy), t in sorted(table.items()):
        total.update(t)
        print(f"| {dataset} | {strategy} | " + " | ".join(str(t[c]) for c in COLUMNS) + " |")
    print("| **all** | | " + " | ".join(f"**{total[c]}**" for c in COLUMNS) + " |")
    for example in examples[:20]:
        print("protocol failure:", example)


if __name__ == "__main__":
    main()
