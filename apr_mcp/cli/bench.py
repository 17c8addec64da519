"""``apr-mcp bench``: evaluate strategies on datasets (the work is in :mod:`apr_mcp.bench`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import Subparsers, add_model_flags, count, positive_float, setting, settings_from_args

__all__ = ["register", "run"]

# The strategy names of apr_mcp.bench.runner.STRATEGIES (a test keeps them equal): importing the
# bench package pulls in the engine, which `apr-mcp --help` should not pay for.
STRATEGIES = ("sequential", "adaptive", "fixed", "vote")


def register(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="evaluate strategies (sequential, adaptive, fixed, vote) on a dataset",
        description="Run dataset items through several strategies on the configured backend and "
        "write results.jsonl, report.md and report.html. Use a bundled dataset name (see "
        "--list-datasets), 'all' for every bundled set, or a path to your own JSONL.",
    )
    p.add_argument(
        "--dataset",
        action="append",
        required=False,
        default=None,
        help="bundled name, 'all', or a .jsonl path (repeat or comma-separate for several)",
    )
    p.add_argument(
        "--strategies",
        default=",".join(STRATEGIES),
        help=f"comma-separated, from {', '.join(STRATEGIES)} (default: all)",
    )
    p.add_argument("--limit", type=count(1), metavar="N", help="first N items of each dataset")
    p.add_argument(
        "--concurrency",
        type=count(1),
        default=4,
        metavar="N",
        help="items in flight at once (default 4; use 1 for uncontended latency figures)",
    )
    p.add_argument(
        "--out", type=Path, default=Path("apr-bench"), help="output directory (default ./apr-bench)"
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument(
        "--retry-errors", action="store_true", help="with --resume: run failed items again"
    )
    p.add_argument(
        "--vote-k",
        type=count(1),
        default=5,
        metavar="K",
        help="attempts per item for the vote strategy",
    )
    p.add_argument(
        "--vote-temperature",
        type=setting("temperature"),
        default=0.7,
        metavar="T",
        help="sampling temperature of the vote attempts (default 0.7; the merge keeps "
        "APR_TEMPERATURE)",
    )
    p.add_argument(
        "--item-timeout",
        type=positive_float,
        metavar="SECONDS",
        help="seconds before an item counts as an error",
    )
    p.add_argument("--report-only", action="store_true", help="only rebuild the reports from --out")
    p.add_argument("--list-datasets", action="store_true", help="list bundled datasets and exit")
    p.add_argument(
        "--routing-only",
        action="store_true",
        help="no model: score the routing heuristics alone on the datasets' should_split labels",
    )
    p.add_argument(
        "--seed", type=count(0), default=0, help="seed of the bootstrap confidence intervals"
    )
    add_model_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..bench.cli import run_bench

    return run_bench(args, settings_from_args(args))
