"""``apr-mcp solve``: answer one question with the adaptive pipeline, from a shell.

The answer and the tables go to stdout, progress to stderr. The exit code says how it went:
0 answered, 1 no usable result, 3 a partial answer (see :func:`exit_code`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..limits import arg_deadline
from ._common import (
    EXIT_NO_RESULT,
    EXIT_OK,
    EXIT_PARTIAL,
    Subparsers,
    add_model_flags,
    setting,
    settings_from_args,
    silence_stdout,
)

if TYPE_CHECKING:
    from ..schemas import SolveResult, SolveRun

__all__ = ["exit_code", "register", "run", "run_status"]

Status = Literal["answered", "partial", "failed"]


def register(subparsers: Subparsers) -> None:
    solve = subparsers.add_parser(
        "solve",
        help="answer a question with the adaptive pipeline",
        description="Answer a question: split it into independent parts, solve them in parallel, "
        "merge. Exit code 0 answered, 1 no usable result, 2 usage or configuration error, "
        "3 partial answer.",
    )
    solve.add_argument("question", help="the question (use - to read it from stdin)")
    solve.add_argument("--context", default="", help="extra context passed to every thread")
    solve.add_argument("--context-file", type=Path, help="read context from a file (e.g. code)")
    solve.add_argument(
        "--strategy",
        choices=["adaptive", "parallel", "sequential", "fixed"],
        default="adaptive",
        help="adaptive/parallel = plan, fan out, merge; sequential = one chain-of-thought call",
    )
    solve.add_argument(
        "--mode",
        choices=["general", "debug"],
        default="general",
        help="debug: the question is an error; investigate competing hypotheses",
    )
    solve.add_argument(
        "--max-subtasks",
        type=setting("max_threads"),
        metavar="N",
        help="cap on the fan-out (same bounds as APR_MAX_THREADS)",
    )
    solve.add_argument(
        "--deadline",
        type=arg_deadline,
        metavar="SECONDS",
        help="seconds before returning partial results (default APR_DEADLINE_S=55; inf for none)",
    )
    solve.add_argument("--json", action="store_true", help="print the full result as JSON")
    add_model_flags(solve)
    solve.set_defaults(func=run)


def run_status(result: SolveResult | SolveRun) -> Status:
    """answered / partial / failed: the engine's own verdict when it gives one, else the same rule
    applied here: no thread produced a usable result → failed; a deadline or budget cut the run
    short → partial."""
    status = getattr(result, "status", None)
    if status in ("answered", "partial", "failed"):
        return status  # type: ignore[no-any-return]
    results = result.results
    usable = [
        r for r in results if r.status.value in ("done", "cancelled") and (r.answer or r.summary)
    ]
    if results and not usable:
        return "failed"
    return "partial" if result.partial else "answered"


def exit_code(result: SolveResult | SolveRun) -> int:
    codes = {"answered": EXIT_OK, "partial": EXIT_PARTIAL, "failed": EXIT_NO_RESULT}
    return codes[run_status(result)]


def _question(args: argparse.Namespace) -> tuple[str, str]:
    from ..errors import ConfigError

    question = sys.stdin.read() if args.question == "-" else args.question
    if not question.strip():
        raise ConfigError("the question is empty")
    context = args.context
    if args.context_file:
        try:
            text = args.context_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read --context-file: {exc}") from exc
        context = (context + "\n\n" if context else "") + text
    return question, context


def run(args: argparse.Namespace) -> int:
    import anyio

    from ..console import SolveConsole
    from ..runtime import build_runtime

    question, context = _question(args)
    settings = settings_from_args(args)
    settings.require_backend()
    strategy: Literal["adaptive", "sequential", "fixed"] = (
        "adaptive" if args.strategy == "parallel" else args.strategy
    )

    async def go() -> int:
        runtime = build_runtime(settings)
        ui = SolveConsole(live=False if args.json else None, stream_answer=not args.json)
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
        code = exit_code(result)
        try:
            if args.json:
                print(result.model_dump_json(indent=2), flush=True)
            else:
                ui.print_result(result, status=run_status(result))
                sys.stdout.flush()
        except BrokenPipeError:  # `apr-mcp solve … | head`: the reader has what it wanted
            silence_stdout()
        return code

    return anyio.run(go)
