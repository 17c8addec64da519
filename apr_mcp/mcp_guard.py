"""What leaves the MCP server, whatever the transport: redacted, and error texts capped.

:class:`OutputGuard` is an SDK server middleware (``MCPServer.middleware``): it sees every
request's wire-shaped result and every JSON-RPC error on the way out, over stdio, HTTP and the
in-memory client alike. Tool results, resource contents and prompts go through
:func:`apr_mcp.redact.redact_data` — in full for errors, without the ``name = value`` rule for
answers and prompts, which quote code. Error texts, which can quote the caller's own input many
times over (one validation error per bad item of a 256-item list), are cut to a bounded size.
"""

from __future__ import annotations

import re
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError

from .redact import redact, redact_data

__all__ = [
    "MAX_ERROR_MESSAGE_CHARS",
    "MAX_TOOL_ERROR_CHARS",
    "OutputGuard",
    "cap_text",
    "readable_argument_error",
]

#: Longest text of an ``isError`` tool result.
MAX_TOOL_ERROR_CHARS = 2000
#: Longest message (and string ``data``) of a JSON-RPC error reply.
MAX_ERROR_MESSAGE_CHARS = 500

#: Methods whose results carry content (answers, traces, error texts) worth redacting.
_CONTENT_METHODS = frozenset({"tools/call", "resources/read", "prompts/get"})


def cap_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    note = f"… [{len(text) - limit} more characters]"
    return text[: max(0, limit - len(note))] + note


# The SDK's text for arguments that fail validation: pydantic's multi-line report.
_ARGS_ERROR = re.compile(
    r"^Error executing tool (?P<tool>\S+): \d+ validation errors? for \S+\n(?P<body>.*)$", re.DOTALL
)
_ARG_LINE = re.compile(r"^(?P<loc>\S[^\n]*)\n\s+(?P<msg>[^\n]*?)(?: \[type=[^\n]*)?$", re.MULTILINE)


def readable_argument_error(text: str) -> str:
    """``Invalid arguments for solve: question: String should have at least 1 character`` instead
    of pydantic's report (a line per field, each saying what to fix); other texts unchanged."""
    match = _ARGS_ERROR.match(text)
    if match is None:
        return text
    problems = [
        f"{m.group('loc')}: {m.group('msg').removeprefix('Value error, ')}"
        for m in _ARG_LINE.finditer(match.group("body"))
    ]
    if not problems:
        return text
    return f"Invalid arguments for {match.group('tool')}: " + "; ".join(problems)


def _cap_tool_error(result: dict[str, Any]) -> dict[str, Any]:
    content = result.get("content")
    if not isinstance(content, list):
        return result
    capped = []
    for block in content:
        if isinstance(block, dict) and isinstance(block.get("text"), str):
            text = readable_argument_error(block["text"])
            block = {**block, "text": cap_text(text, MAX_TOOL_ERROR_CHARS)}
        capped.append(block)
    return {**result, "content": capped}


class OutputGuard:
    """Server middleware: redact content results, cap error texts (see the module docstring)."""

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        try:
            result = await call_next(ctx)
        except MCPError as exc:
            message = cap_text(redact(exc.message), MAX_ERROR_MESSAGE_CHARS)
            data = exc.data
            if isinstance(data, str):
                data = cap_text(redact(data), MAX_ERROR_MESSAGE_CHARS)
            elif data is not None:
                data = redact_data(data)
            if message == exc.message and data == exc.data:
                raise
            raise MCPError(code=exc.code, message=message, data=data) from exc
        if ctx.method not in _CONTENT_METHODS or not isinstance(result, dict):
            return result
        if result.get("isError") is True:
            return _cap_tool_error(redact_data(result))
        # Answers and prompts quote code: `password = …` lines stay as the model wrote them.
        guarded: dict[str, Any] = redact_data(result, named=False)
        return guarded
