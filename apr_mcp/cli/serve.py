"""``apr-mcp serve``: the MCP server over stdio (what hosts launch) or streamable HTTP.

A bare ``apr-mcp`` is ``apr-mcp serve``. The server itself lives in :mod:`apr_mcp.server`
(``run_server``); this module only parses flags and chooses the transport.
"""

from __future__ import annotations

import argparse
import sys
from typing import Literal

from ._common import BACKENDS, EXIT_OK, Subparsers, setting

__all__ = ["TTY_HINT", "register", "run"]

TTY_HINT = (
    "apr-mcp: this is an MCP server on stdio, waiting for a host to speak JSON-RPC on stdin.\n"
    '  Try `apr-mcp solve "your question"`, or add apr-mcp to your host (Claude Desktop, VS Code, '
    "Cursor, Claude Code).\n  `apr-mcp --help` lists the commands; Ctrl-C or Ctrl-D stops."
)


def register(subparsers: Subparsers) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the MCP server (stdio by default; --http for streamable HTTP)",
        description="Run the apr-mcp MCP server. Without --http it speaks MCP over stdin/stdout, "
        "which is what Claude Desktop, Claude Code, VS Code and Cursor launch.",
    )
    p.add_argument(
        "--http", action="store_true", help="serve streamable HTTP at http://HOST:PORT/mcp"
    )
    p.add_argument("--host", help="HTTP bind address (default APR_HTTP_HOST or 127.0.0.1)")
    p.add_argument(
        "--port",
        type=setting("http_port"),
        metavar="N",
        help="HTTP port (default APR_HTTP_PORT or 8765; 0 = any free port)",
    )
    p.add_argument(
        "--allow-insecure",
        action="store_true",
        help="serve HTTP on a non-loopback --host without APR_HTTP_TOKEN (refused otherwise)",
    )
    p.add_argument("--backend", choices=BACKENDS)
    p.add_argument("--model", help="model id (default APR_MODEL)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import load_settings
    from ..server import run_server

    settings = load_settings(
        backend=getattr(args, "backend", None), model=getattr(args, "model", None)
    )
    transport: Literal["stdio", "http"] = "http" if getattr(args, "http", False) else "stdio"
    if transport == "stdio" and sys.stdin.isatty():
        print(TTY_HINT, file=sys.stderr, flush=True)
    try:
        run_server(
            settings,
            transport,
            getattr(args, "host", None),
            getattr(args, "port", None),
            allow_insecure=getattr(args, "allow_insecure", False),
        )
    except KeyboardInterrupt:
        pass
    return EXIT_OK
