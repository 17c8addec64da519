"""MCP over stdin/stdout that answers every malformed message instead of dropping it.

The SDK's stdio reader (``mcp.server.stdio``) validates each line and, when that fails, passes
the exception to the session, which logs it at debug level and moves on: the client gets no reply
and waits out its own timeout. Worse, ``{"id": null, ...}`` and ``{"id": true, ...}`` validate as
*notifications*, so they are silently ignored too; a line of a few hundred megabytes is read whole.
Upstream: modelcontextprotocol/python-sdk#2751 (fixes #2755 and #2766 were closed unmerged).
JSON-RPC 2.0 asks for an error reply, so this transport reads the lines itself, checks each one
before the SDK sees it, and answers what it will not forward:

===============================================  ======  ====================================
line                                             code    id of the reply
===============================================  ======  ====================================
not UTF-8, not JSON, NaN/Infinity                -32700  null
larger than ``max_bytes`` (rest skipped unread)  -32600  the request's, if it opens the line
nested deeper than ``max_depth``                 -32600  the request's when it can be read
a lone surrogate (``"\\ud800"``) in a string     -32600  the request's
a batch array; a non-object                      -32600  null
``id`` null, boolean, fractional or structured   -32600  null
any other shape the JSON-RPC schema refuses      -32600  the request's, if it has a usable id
===============================================  ======  ====================================

Blank lines are ignored. Valid messages reach the SDK unchanged and the server keeps serving after
every bad line. As with the SDK transport, file descriptors 0 and 1 are diverted while serving
(to the null device and to stderr), so a library or child process that prints cannot corrupt the
wire; they are restored on exit.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.mcpserver import MCPServer
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "Rejection",
    "check_line",
    "serve_stdio",
    "stdio_transport",
]

logger = logging.getLogger(__name__)

#: The same cap the SDK puts on an HTTP request body.
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
#: Real MCP messages nest a dozen levels at most; pydantic gives up at about 255.
DEFAULT_MAX_DEPTH = 128
#: Longest error message text a reply carries (the detail of a JSON error can quote input).
MAX_ERROR_CHARS = 300

PARSE_ERROR = -32700
INVALID_REQUEST = -32600

#: A request id near the start of an oversized line (typical writers put it before params).
_HEAD_ID = re.compile(rb'^\s*\{[^{\[]*?"id"\s*:\s*(-?\d{1,18}|"(?:[^"\\]|\\.){0,200}")\s*[,}]')


@dataclass(frozen=True)
class Rejection:
    """Why a line is not forwarded, and the JSON-RPC error reply it gets."""

    code: int
    message: str
    id: int | str | None = None

    def reply(self) -> bytes:
        text = (
            self.message
            if len(self.message) <= MAX_ERROR_CHARS
            else (self.message[: MAX_ERROR_CHARS - 1] + "…")
        )
        frame = {"jsonrpc": "2.0", "id": self.id, "error": {"code": self.code, "message": text}}
        return json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _usable_id(value: Any) -> int | str | None:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: it could not be echoed back
            return None
    return value


def _shape_problem(value: Any, max_depth: int) -> str | None:
    """What makes a parsed value unfit beyond JSON syntax: too deep, or a lone surrogate."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > max_depth:
                return f"nested deeper than {max_depth} levels"
            for key, child in item.items():
                stack.append((key, depth))
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > max_depth:
                return f"nested deeper than {max_depth} levels"
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a string holds a lone UTF-16 surrogate (not a Unicode character)"
    return None


def check_line(
    line: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> SessionMessage | Rejection | None:
    """Classify one line of input: a message to forward, a rejection to answer, or ``None``
    (a blank line, ignored). ``line`` is already within the size cap."""
    if not line.strip():
        return None
    try:
        text = line.decode("utf-8").removeprefix("\ufeff")  # a BOM some writers put first
    except UnicodeDecodeError as exc:
        return Rejection(PARSE_ERROR, f"Parse error: the line is not UTF-8 ({exc.reason})")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        return Rejection(INVALID_REQUEST, f"Invalid Request: nested deeper than {max_depth} levels")
    except ValueError as exc:
        return Rejection(PARSE_ERROR, f"Parse error: {exc}")
    if isinstance(value, list):
        return Rejection(INVALID_REQUEST, "Invalid Request: batch arrays are not supported by MCP")
    if not isinstance(value, dict):
        return Rejection(INVALID_REQUEST, "Invalid Request: a message must be a JSON object")
    is_request = "method" in value
    request_id = _usable_id(value.get("id")) if is_request else None
    if "id" in value and request_id is None and is_request:
        # The SDK would read these as notifications and never answer.
        return Rejection(
            INVALID_REQUEST, "Invalid Request: id must be a string or an integer (not null)"
        )
    problem = _shape_problem(value, max_depth)
    if problem is not None:
        return Rejection(INVALID_REQUEST, f"Invalid Request: {problem}", request_id)
    try:
        message = types.jsonrpc_message_adapter.validate_json(text, by_name=False)
    except ValidationError as exc:
        error = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"])
        detail = f"{where}: {error['msg']}" if where else error["msg"]
        return Rejection(INVALID_REQUEST, f"Invalid Request: {detail}", request_id)
    return SessionMessage(message)


def _oversized(head: bytes, max_bytes: int) -> Rejection:
    match = _HEAD_ID.match(head)
    request_id: int | str | None = None
    if match:
        with suppress(ValueError):
            request_id = _usable_id(json.loads(match.group(1)))
    return Rejection(
        INVALID_REQUEST,
        f"Invalid Request: message larger than {max_bytes} bytes (APR_MAX_MESSAGE_BYTES)",
        request_id,
    )


class _LineReader:
    """Reads newline-terminated lines of at most ``max_bytes`` from a blocking binary stream;
    a longer line is skipped unread (only its head is kept, to find the request id)."""

    _CHUNK = 1 << 16

    def __init__(self, stream: BinaryIO, max_bytes: int) -> None:
        self.stream = stream
        self.max_bytes = max_bytes

    def read(self) -> tuple[bytes, bool] | None:
        """The next line and whether it was too long; ``None`` at end of input."""
        line = self.stream.readline(self.max_bytes + 1)
        if not line:
            return None
        if line.endswith(b"\n") or len(line) <= self.max_bytes:
            return line, False
        while True:  # discard the rest of the oversized line without keeping it
            rest = self.stream.readline(self._CHUNK)
            if not rest or rest.endswith(b"\n"):
                return line[:4096], True


# ----- file descriptors: keep stray prints off the wire -----


def _claim(fd: int, stream: Any, mode: str) -> tuple[BinaryIO, Callable[[], None]]:
    """A private duplicate of ``fd`` for the wire, with ``fd`` itself pointed elsewhere
    (stdin: the null device, stdout: stderr). Falls back to the stream's own buffer."""
    buffer: BinaryIO = stream.buffer

    def nothing() -> None:
        return None

    try:
        if stream.fileno() != fd:
            return buffer, nothing
        private = os.dup(fd)
    except (AttributeError, OSError, ValueError):
        return buffer, nothing
    try:
        target = os.open(os.devnull, os.O_RDONLY) if fd == 0 else os.dup(2)
        try:
            os.dup2(target, fd)
        finally:
            os.close(target)
    except OSError:
        os.close(private)
        return buffer, nothing

    def restore() -> None:
        with suppress(OSError):
            os.dup2(private, fd)
        # The private descriptor stays open: a reader thread may still be blocked on it.

    # closefd=False for the same reason.
    return cast(BinaryIO, os.fdopen(private, mode, closefd=False)), restore


# ----- the transport -----


@asynccontextmanager
async def stdio_transport(
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> AsyncIterator[
    tuple[
        MemoryObjectReceiveStream[SessionMessage | Exception],
        MemoryObjectSendStream[SessionMessage],
    ]
]:
    """The (read, write) stream pair a low-level MCP server runs on, over stdin/stdout (or the
    binary streams given). Malformed lines are answered here and never reach the server."""
    restores: list[Callable[[], None]] = []
    if stdin is None:
        stdin, restore = _claim(0, sys.stdin, "rb")
        restores.append(restore)
    if stdout is None:
        stdout, restore = _claim(1, sys.stdout, "wb")
        restores.append(restore)
    wire_in, wire_out = stdin, stdout
    reader = _LineReader(wire_in, max_bytes)
    write_lock = anyio.Lock()
    wire_broken = False

    async def write(frame: bytes) -> None:
        def blocking() -> None:
            nonlocal wire_broken
            if wire_broken:
                return
            try:
                wire_out.write(frame + b"\n")
                wire_out.flush()
            except OSError as exc:  # the client is gone (EPIPE); stdin's EOF ends the server
                wire_broken = True
                logger.warning("stdout is closed, dropping replies: %s", exc)

        async with write_lock:  # one frame at a time: replies never interleave
            await anyio.to_thread.run_sync(blocking)

    to_server, server_reads = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    server_writes, from_server = anyio.create_memory_object_stream[SessionMessage](0)

    async def _read_lines() -> None:
        while True:
            got = await anyio.to_thread.run_sync(reader.read, abandon_on_cancel=True)
            if got is None:
                return  # EOF: the client went away; closing the stream ends the server
            line, too_long = got
            verdict = (
                _oversized(line, max_bytes) if too_long else check_line(line, max_depth=max_depth)
            )
            if isinstance(verdict, Rejection):
                logger.warning("answered a malformed message: %s", verdict.message)
                await write(verdict.reply())
            elif verdict is not None:
                await to_server.send(verdict)

    read_scope = anyio.CancelScope()

    async def read_loop() -> None:
        with read_scope:
            async with to_server:
                await _read_lines()

    async def write_loop() -> None:
        async with from_server:
            async for item in from_server:
                frame = item.message.model_dump_json(by_alias=True, exclude_unset=True)
                await write(frame.encode())

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_loop)
            tg.start_soon(write_loop)
            try:
                yield server_reads, server_writes
            finally:
                # The server is done: stop reading (a thread blocked on stdin is abandoned) and
                # let the writer drain what the server already sent.
                read_scope.cancel()
                server_writes.close()
    finally:
        for restore in reversed(restores):
            restore()


async def serve_stdio(
    server: MCPServer[Any],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
) -> None:
    """Serve ``server`` over stdio until the client closes stdin (replaces
    ``MCPServer.run_stdio_async``, which uses the SDK transport)."""
    # The SDK's own run_stdio_async does exactly this with its transport; there is no public
    # hook to hand it another one.
    lowlevel = server._lowlevel_server
    async with stdio_transport(stdin, stdout, max_bytes=max_bytes, max_depth=max_depth) as (
        read_stream,
        write_stream,
    ):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
