"""What every command shares: exit codes, the model flags, and validated numeric flag types.

Nothing here imports pydantic, the engine or the MCP SDK: the parser is built for every
command, ``--help`` included, and must stay cheap. Flag values are checked when argparse converts
them; settings-backed flags check against the setting's own bounds (imported only then).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "BACKENDS",
    "EXIT_NO_RESULT",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "Subparsers",
    "add_model_flags",
    "count",
    "positive_float",
    "setting",
    "settings_from_args",
    "silence_stdout",
]

# Exit codes (docs/development.md, README troubleshooting). argparse itself exits 2 on bad flags.
EXIT_OK = 0  # answered (or the command did what it was asked)
EXIT_NO_RESULT = 1  # no usable result: every thread failed, the endpoint is down, a check failed
EXIT_USAGE = 2  # usage or configuration error: nothing was attempted
EXIT_PARTIAL = 3  # an answer from part of the work: a deadline or token budget cut the run

# The values of config.Backend (a test keeps the two equal; importing config here costs ~0.1 s).
BACKENDS = ("openai", "anthropic", "sampling", "simulated")

# argparse's subparsers action type is private; anything with add_parser will do.
Subparsers = Any


def setting(field: str) -> Callable[[str], Any]:
    """A flag type that accepts what the setting ``field`` accepts (same bounds, same message)."""

    def convert(text: str) -> Any:
        from ..config import parse_setting

        try:
            return parse_setting(field, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None

    convert.__name__ = field  # argparse names the type in some messages
    return convert


def count(minimum: int = 1) -> Callable[[str], int]:
    """A flag type for a whole number ≥ ``minimum``."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number ≥ {minimum}")
        return value

    convert.__name__ = "count"
    return convert


def positive_float(text: str) -> float:
    """A flag type for a number of seconds (or a rate) > 0; ``inf`` allowed."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number more than 0")
    return value


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """Flags that override the backend settings for one command."""
    g = p.add_argument_group("model (override APR_* settings)")
    g.add_argument("--backend", choices=BACKENDS)
    g.add_argument("--model", help="model id for every role (APR_MODEL)")
    g.add_argument("--planner-model", help="model id of the planner (APR_PLANNER_MODEL)")
    g.add_argument("--merger-model", help="model id of the merger (APR_MERGER_MODEL)")
    g.add_argument("--base-url", help="endpoint root (APR_BASE_URL)")
    g.add_argument(
        "--max-concurrency",
        type=setting("max_concurrency"),
        metavar="N",
        help="parallel model calls (APR_MAX_CONCURRENCY)",
    )
    g.add_argument("--no-cache", action="store_true", help="do not read or write the disk cache")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings with this command's model flags on top (flags that are absent change nothing)."""
    from ..config import load_settings

    return load_settings(
        backend=getattr(args, "backend", None),
        model=getattr(args, "model", None),
        planner_model=getattr(args, "planner_model", None),
        merger_model=getattr(args, "merger_model", None),
        base_url=getattr(args, "base_url", None),
        max_concurrency=getattr(args, "max_concurrency", None),
        cache=False if getattr(args, "no_cache", False) else None,
    )


def silence_stdout() -> None:
    """After a BrokenPipeError (``apr-mcp solve … | head``): the reader is gone, so send the rest of
    stdout to /dev/null, and the interpreter's final flush does not complain either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
