"""Command line: ``apr-mcp [serve|solve|doctor|bench|trace|cache|simulate]``.

Every command is one module of this package with the same two functions: ``register(subparsers)``
declares its flags, ``run(args) -> int`` does it and returns the exit code. A bare ``apr-mcp`` is
``apr-mcp serve`` (the MCP server on stdio, which is what hosts launch).

Start-up is part of the interface: hosts spawn the server on every launch and people type
``--help``. So the parser is built from argparse alone, and each ``run`` imports what its command
needs (the engine, the MCP SDK, rich) when it runs — not to dodge an import cycle: this package
imports the rest of apr_mcp, and nothing in apr_mcp imports it.

Exit codes: 0 answered, 1 no usable result, 2 usage or configuration error, 3 partial answer,
130 interrupted. Everything human-readable goes to stderr except a command's result (the
answer, a JSON document, a table); in stdio server mode stdout belongs to the protocol alone.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from . import bench, cache, doctor, serve, simulate, solve, trace
from ._common import EXIT_NO_RESULT, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, silence_stdout

__all__ = ["EXIT_NO_RESULT", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "build_parser", "main"]

# In the order `apr-mcp --help` lists them.
COMMANDS = (serve, solve, doctor, bench, trace, cache, simulate)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (every command and flag), without running anything."""
    parser = argparse.ArgumentParser(
        prog="apr-mcp",
        description="Adaptive parallel reasoning: decompose → parallel solve → merge. "
        "With no command, runs the MCP server over stdio.",
        epilog="exit codes: 0 answered, 1 no usable result, 2 usage or configuration error, "
        "3 partial answer",
    )
    parser.add_argument("--version", action="version", version=f"apr-mcp {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (stderr)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    parser.set_defaults(func=serve.run)  # bare `apr-mcp`: the stdio server
    return parser


_build_parser = build_parser  # the name older tests and scripts use


def main(argv: Sequence[str] | None = None) -> None:
    """Run one command and exit with its code."""
    args = build_parser().parse_args(argv)  # bad flags: argparse prints usage and exits 2
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    from ..redact import install_log_redaction  # light: re only, no mcp

    install_log_redaction()  # -vv logs request URLs and provider replies: no credentials in them
    raise SystemExit(_run(args))


def _run(args: argparse.Namespace) -> int:
    from ..errors import AprError, ConfigError

    name = "apr-mcp" + (f" {args.command}" if args.command else "")
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AprError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return EXIT_NO_RESULT
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        silence_stdout()  # the reader went away; it has what it wanted
        return EXIT_OK
