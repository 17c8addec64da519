"""``apr-mcp trace view|list``: saved runs and their thread timelines."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import Subparsers, count

__all__ = ["register", "run"]


def register(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("trace", help="show saved runs and their thread timelines")
    sub = p.add_subparsers(dest="trace_command", metavar="ACTION", required=True)
    view = sub.add_parser("view", help="timeline of one run (text; --html for a page)")
    view.add_argument("run", help="run id (see `apr-mcp trace list`) or a path to a run JSON file")
    view.add_argument("--html", type=Path, help="write a self-contained HTML timeline to this file")
    view.add_argument("--open", action="store_true", help="open the HTML file in a browser")
    view.add_argument(
        "--runs-dir",
        type=Path,
        help="run store directory (default: APR_RUNS_DIR or the user data dir)",
    )
    lst = sub.add_parser("list", help="the newest saved runs")
    lst.add_argument("--limit", type=count(1), default=20, metavar="N")
    lst.add_argument("--runs-dir", type=Path)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..bench.cli import run_trace

    return run_trace(args)
