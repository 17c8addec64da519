"""Every hard limit of apr-mcp, in one place (documented in ``docs/limits.md``).

The MCP tool schemas (``server.py``), the shared models (``schemas.py``), the settings
(``config.py``), the command-line flags (``cli.py``) and the engine all import these, so a host,
a shell user and the engine can never disagree about what is allowed (``tests/test_limits.py``
checks that they agree). Defaults live in :class:`~apr_mcp.config.Settings`; these are the bounds.

This module imports nothing from the package, so anything may import it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = [
    "MAX_CONCURRENCY",
    "MAX_CONTEXT_CHARS",
    "MAX_DEADLINE_S",
    "MAX_DEPTH",
    "MAX_FOLLOWUPS",
    "MAX_MERGE_BUDGET_TOKENS",
    "MAX_MERGE_RESULTS",
    "MAX_PROMPT_CHARS",
    "MAX_QUESTION_CHARS",
    "MAX_RETRIES",
    "MAX_SUBTASKS",
    "MAX_THREADS",
    "MIN_MERGE_BUDGET_TOKENS",
    "arg_deadline",
    "arg_int",
]

#: Subtasks in one plan or one ``parallel_solve`` call (host-given or planned).
MAX_SUBTASKS = 64
#: Fan-out cap setting (``APR_MAX_THREADS``, ``APR_MIN_THREADS``): at most one thread per subtask.
MAX_THREADS = MAX_SUBTASKS
#: Model calls in flight at once (``APR_MAX_CONCURRENCY``, the ``max_concurrency`` argument).
MAX_CONCURRENCY = 64
#: Follow-up threads one run may spawn (``APR_MAX_FOLLOWUPS``).
MAX_FOLLOWUPS = 64
#: How deep follow-ups may nest (``APR_MAX_DEPTH``).
MAX_DEPTH = 8
#: Characters of one subtask prompt.
MAX_PROMPT_CHARS = 20_000
#: Characters of the question.
MAX_QUESTION_CHARS = 50_000
#: Characters of the shared context every thread sees.
MAX_CONTEXT_CHARS = 200_000
#: Seconds of a per-call deadline (the CLI also takes ``inf`` for none).
MAX_DEADLINE_S = 3600.0
#: Thread results one ``merge`` call accepts (subtasks plus follow-ups, with room to spare).
MAX_MERGE_RESULTS = 256
#: Bounds of the merge context budget (``APR_MERGE_BUDGET_TOKENS``, ``context_budget_tokens``).
MIN_MERGE_BUDGET_TOKENS = 256
MAX_MERGE_BUDGET_TOKENS = 200_000
#: Extra attempts per model call (``APR_MAX_RETRIES``).
MAX_RETRIES = 20


def arg_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers in ``[low, high]``, with a message naming the
    range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def arg_deadline(text: str) -> float:
    """An argparse ``type`` for deadlines: seconds in ``(0, MAX_DEADLINE_S]``, or ``inf`` for
    none."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or 'inf', got {text!r}") from None
    if math.isinf(value) and value > 0:
        return value
    if not 0 < value <= MAX_DEADLINE_S:
        raise argparse.ArgumentTypeError(
            f"must be more than 0 and at most {MAX_DEADLINE_S:g} seconds (or inf for none), got "
            f"{text}"
        )
    return value
