"""Command line: ``apr-mcp [serve|solve|bench|trace|cache|simulate|doctor]``.

A bare ``apr-mcp`` runs the MCP server over stdio, which is what MCP hosts launch. This module
only parses flags and prints; the work happens in the engine and the modules it calls.
Everything human-readable goes to stderr except a command's actual result (the answer, a JSON
document, a table) — and in stdio server mode stdout belongs to the protocol alone.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import anyio

from . import __version__
from .config import Settings, load_settings
from .errors import AprError, ConfigError
from .limits import MAX_CONCURRENCY, MAX_SUBTASKS, arg_deadline, arg_int
from .redact import install_log_redaction

__all__ = ["main"]

log = logging.getLogger("apr_mcp")


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """Flags that override the backend settings for one command."""
    g = p.add_argument_group("model (override APR_* settings)")
    g.add_argument("--backend", choices=["openai", "anthropic", "sampling", "simulated"])
    g.add_argument("--model", help="model id for every role (APR_MODEL)")
    g.add_argument("--planner-model", help="model id of the planner (APR_PLANNER_MODEL)")
    g.add_argument("--merger-model", help="model id of the merger (APR_MERGER_MODEL)")
    g.add_argument("--base-url", help="endpoint root (APR_BASE_URL)")
    g.add_argument(
        "--max-concurrency", type=arg_int(1, MAX_CONCURRENCY),
        help=f"parallel model calls, 1..{MAX_CONCURRENCY} (APR_MAX_CONCURRENCY)",
    )
    g.add_argument("--no-cache", action="store_true", help="do not read or write the disk cache")


def settings_from_args(args: argparse.Namespace) -> Settings:
    return load_settings(
        backend=getattr(args, "backend", None),
        model=getattr(args, "model", None),
        planner_model=getattr(args, "planner_model", None),
        merger_model=getattr(args, "merger_model", None),
        base_url=getattr(args, "base_url", None),
        max_concurrency=getattr(args, "max_concurrency", None),
        cache=False if getattr(args, "no_cache", False) else None,
    )


def _build_parser() -> argparse.ArgumentParser:
    from .bench import add_bench_subcommand, add_trace_subcommand
    from .cache import add_cache_subcommand
    from .server import add_serve_subcommand
    from .simulate_server import add_subcommand as add_simulate_subcommand

    parser = argparse.ArgumentParser(
        prog="apr-mcp",
        description="Adaptive parallel reasoning: decompose → parallel solve → merge. "
        "With no command, runs the MCP server over stdio.",
    )
    parser.add_argument("--version", action="version", version=f"apr-mcp {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (stderr)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    add_serve_subcommand(sub)

    solve = sub.add_parser("solve", help="answer a question with the adaptive pipeline")
    solve.add_argument("question", help="the question (use - to read it from stdin)")
    solve.add_argument("--context", default="", help="extra context passed to every thread")
    solve.add_argument("--context-file", type=Path, help="read context from a file (e.g. code)")
    solve.add_argument(
        "--strategy", choices=["adaptive", "parallel", "sequential", "fixed"], default="adaptive",
        help="adaptive/parallel = plan, fan out, merge; sequential = one chain-of-thought call",
    )
    solve.add_argument("--mode", choices=["general", "debug"], default="general",
                       help="debug: the question is an error; investigate competing hypotheses")
    solve.add_argument("--max-subtasks", type=arg_int(1, MAX_SUBTASKS),
                       help=f"cap on the fan-out, 1..{MAX_SUBTASKS}")
    solve.add_argument(
        "--deadline", type=arg_deadline,
        help="seconds before returning partial results (default APR_DEADLINE_S=55; inf for none)",
    )
    solve.add_argument("--json", action="store_true", help="print the full result as JSON")
    add_model_flags(solve)
    solve.set_defaults(func=_run_solve)

    doctor = sub.add_parser("doctor", help="show the effective configuration and check the endpoint")
    add_model_flags(doctor)
    doctor.set_defaults(func=_run_doctor)

    add_bench_subcommand(sub)
    add_trace_subcommand(sub)
    add_cache_subcommand(sub)
    add_simulate_subcommand(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = _build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    install_log_redaction()  # -vv logs request URLs and provider replies: no credentials in them
    if args.command is None:
        from .server import run_stdio

        raise SystemExit(run_stdio())
    try:
        code = args.func(args)
    except ConfigError as exc:
        print(f"apr-mcp: {exc}", file=sys.stderr)
        code = 2
    except AprError as exc:
        print(f"apr-mcp: error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("apr-mcp: interrupted", file=sys.stderr)
        code = 130
    raise SystemExit(code)


# ----- solve -----


def _run_solve(args: argparse.Namespace) -> int:
    from .console import SolveConsole

    question = sys.stdin.read() if args.question == "-" else args.question
    if not question.strip():
        raise ConfigError("the question is empty")
    context = args.context
    if args.context_file:
        try:
            context = (context + "\n\n" if context else "") + args.context_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read --context-file: {exc}") from exc
    settings = settings_from_args(args)
    settings.require_backend()
    strategy: Literal["adaptive", "sequential", "fixed"] = (
        "adaptive" if args.strategy == "parallel" else args.strategy
    )

    async def go() -> int:
        from .runtime import build_runtime

        runtime = build_runtime(settings)
        ui = SolveConsole(live=False if args.json else None)
        try:
            with ui:
                result = await runtime.engine.solve(
                    question,
                    context=context,
                    strategy=strategy,
                    mode=args.mode,
                    max_subtasks=args.max_subtasks,
                    deadline_s=args.deadline,
                    on_event=ui.on_event,
                )
        finally:
            await runtime.aclose()
        if args.json:
            print(result.model_dump_json(indent=2))
        else:
            ui.print_result(result)
        return 0

    return anyio.run(go)


# ----- doctor -----


def _run_doctor(args: argparse.Namespace) -> int:
    from .doctor import run_doctor

    settings = settings_from_args(args)
    return anyio.run(run_doctor, settings)

