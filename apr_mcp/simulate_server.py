"""An OpenAI-compatible Chat Completions server around the simulated model, on loopback.

``apr-mcp simulate`` (flags in :mod:`apr_mcp.cli.simulate`) serves
``POST /v1/chat/completions`` (streamed SSE or not), ``GET /v1/models`` and ``GET /stats``, so the
real HTTP path of the ``openai`` backend — streaming, usage, errors, timeouts, cancellation — is
exercised without a paid API. Script faults become real HTTP behaviour: ``429`` with
``Retry-After``, ``500``, a hang until the client gives up (``timeout``), a stream closed
mid-answer without ``finish_reason`` or ``[DONE]`` (``cut``), non-JSON content (``junk``), empty
content (``empty``), ``finish_reason: "length"`` (``length``).

Every reply says it is simulated: model ids start with ``sim-`` (the ``openai`` backend marks
such responses ``simulated``, and ``apr-mcp bench`` then withholds accuracy) and every body or
chunk carries ``"simulated": true`` and ``system_fingerprint: "apr-mcp-simulated"``.

A client that disconnects stops the generation at once (a watcher reads ``http.disconnect``) and
is counted in ``/stats`` as ``streams_closed_early``. Binds 127.0.0.1 unless told otherwise.

Test helpers: ``async with serve_simulated(model) as base_url`` runs uvicorn in-process on a free
port; ``async with simulate_subprocess("--ttft", "0.01") as base_url`` runs this module in a child
process.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import pydantic
import uvicorn
from anyio.abc import Process
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ._net import listen, serve_on, shown_host, uvicorn_server
from .llm.base import Message, ModelRequest
from .llm.simulated import SimReply, SimulatedModel

__all__ = [
    "ServerStats",
    "create_app",
    "run_simulate_server",
    "serve_simulated",
    "simulate_subprocess",
]

log = logging.getLogger(__name__)

#: Marks every reply (besides the ``sim-`` model id prefix).
_MARK: dict[str, Any] = {"system_fingerprint": "apr-mcp-simulated", "simulated": True}


def infer_purpose(schema: dict[str, Any] | None) -> str:
    """The role of a request from a plain OpenAI client (no ``X-APR-Purpose`` header), read from
    the shape of its JSON schema: a plan, a thread answer, a merged answer, other JSON, or free
    text (a solver's)."""
    props = (schema or {}).get("properties", {})
    if "should_split" in props:
        return "planner"
    if "answer" in props and ({"settles_question", "follow_ups"} & props.keys()):
        return "solver"
    if "answer" in props:
        return "merger"
    return "structured" if schema is not None else "solver"


@dataclass
class ServerStats:
    """What ``GET /stats`` reports. Tests can ``await stats.wait_until(lambda s: ...)``."""

    requests: int = 0
    completed: int = 0
    streams_closed_early: int = 0
    active: int = 0
    max_active: int = 0
    faults: int = 0
    bad_requests: int = 0

    def __post_init__(self) -> None:
        self._waiters: list[tuple[Callable[[ServerStats], bool], anyio.Event]] = []

    def changed(self) -> None:
        """Wake the waiters whose condition now holds."""
        for waiter in list(self._waiters):
            if waiter[0](self):
                self._waiters.remove(waiter)
                waiter[1].set()

    async def wait_until(self, condition: Callable[[ServerStats], bool]) -> None:
        """Return once ``condition(self)`` holds (bound it with ``anyio.fail_after``)."""
        if condition(self):
            return
        event = anyio.Event()
        self._waiters.append((condition, event))
        await event.wait()

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _error(status: int, message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class _BadRequest(Exception):
    pass


def _to_model_request(body: Any, purpose_header: str | None) -> tuple[ModelRequest, bool, bool]:
    """The ModelRequest for an OpenAI request body, plus (stream, include_usage)."""
    if not isinstance(body, dict):
        raise _BadRequest("the body must be a JSON object")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise _BadRequest("'messages' must be a non-empty array")
    messages = []
    for m in raw:
        if not isinstance(m, dict):
            raise _BadRequest("each message must be an object")
        text = m.get("content") or ""
        if isinstance(text, list):  # content parts: keep the text ones
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        role = str(m.get("role"))
        role = {"developer": "system", "tool": "user", "function": "user"}.get(role, role)
        if role not in ("system", "user", "assistant"):
            raise _BadRequest(f"unknown message role {role!r}")
        messages.append(Message(role=role, content=str(text)))  # type: ignore[arg-type]
    fmt = body.get("response_format") or {}
    spec = fmt.get("json_schema") or {} if isinstance(fmt, dict) else {}
    schema = spec.get("schema") if isinstance(spec, dict) else None
    stop = body.get("stop")
    request = ModelRequest(
        messages=messages,
        max_tokens=body.get("max_completion_tokens") or body.get("max_tokens") or 1024,
        temperature=body.get("temperature", 0.0) if body.get("temperature") is not None else 0.0,
        top_p=body.get("top_p"),
        stop=[stop] if isinstance(stop, str) else stop,
        seed=body.get("seed"),
        json_schema=schema if isinstance(schema, dict) else None,
        schema_name=str(spec.get("name") or "output") if isinstance(spec, dict) else "output",
        model=body.get("model") or None,
    )
    # Replies and rules switch on purpose; a plain OpenAI client does not send one, so infer it.
    request.purpose = purpose_header or infer_purpose(request.json_schema)
    stream_options = body.get("stream_options") or {}
    return request, bool(body.get("stream")), bool(stream_options.get("include_usage"))


class _Watch:
    """Runs the response while reading ``receive``: a client disconnect cancels the response."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.final = False  # set just before the last send: a disconnect after it is normal
        self.disconnected = False

    async def run(self, respond: Callable[[], Awaitable[None]]) -> None:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while True:
                    message = await self._receive()
                    if message["type"] == "http.disconnect":
                        if not self.final:
                            self.disconnected = True
                            tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch)
            await respond()
            tg.cancel_scope.cancel()


class _ChatCompletions:
    """``POST /v1/chat/completions`` as a raw ASGI app (it needs ``receive`` for disconnects)."""

    def __init__(self, model: SimulatedModel, stats: ServerStats) -> None:
        self.model = model
        self.stats = stats
        self._ids = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stats = self.stats
        stats.requests += 1
        stats.changed()
        request = Request(scope, receive)
        try:
            body = json.loads(await request.body() or b"null")
            mreq, stream, include_usage = _to_model_request(
                body, request.headers.get("x-apr-purpose")
            )
        except (ValueError, _BadRequest, pydantic.ValidationError) as exc:
            stats.bad_requests += 1
            stats.changed()
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            await JSONResponse(
                _error(400, f"invalid request: {detail}", "invalid_request_error"), 400
            )(scope, receive, send)
            return
        self._ids += 1
        ident = f"chatcmpl-sim{self._ids}"
        stats.active += 1
        stats.max_active = max(stats.max_active, stats.active)
        stats.changed()
        watch = _Watch(receive)
        try:
            async with self.model.session(mreq) as reply:
                if reply.fault is not None:
                    stats.faults += 1
                if reply.fault in ("429", "500"):
                    await self._http_error(reply, scope, receive, send)
                elif stream:
                    await watch.run(lambda: self._stream(reply, ident, include_usage, send, watch))
                else:
                    await watch.run(lambda: self._whole(reply, ident, send, watch))
        finally:
            stats.active -= 1
            if watch.disconnected:
                stats.streams_closed_early += 1
            else:
                stats.completed += 1
            stats.changed()

    async def _http_error(
        self, reply: SimReply, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if reply.fault == "429":
            headers = {}
            if reply.retry_after is not None:
                # Seconds (may be fractional, so tests stay fast) and OpenAI's millisecond header.
                headers["Retry-After"] = f"{reply.retry_after:g}"
                headers["retry-after-ms"] = str(round(reply.retry_after * 1000))
            body = _error(
                429, "Rate limit reached (simulated)", "rate_limit_error", "rate_limit_exceeded"
            )
            await JSONResponse(body, 429, headers=headers)(scope, receive, send)
        else:
            body = _error(
                500, "The server had an error processing your request (simulated)", "server_error"
            )
            await JSONResponse(body, 500)(scope, receive, send)

    async def _stream(
        self, reply: SimReply, ident: str, include_usage: bool, send: Send, watch: _Watch
    ) -> None:
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            data: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": reply.model,
                **_MARK,
                "choices": [
                    {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
                ],
            }
            if include_usage:
                data["usage"] = None
            return b"data: " + json.dumps(data).encode() + b"\n\n"

        async def body(data: bytes, more: bool = True) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": more})

        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        if reply.fault == "timeout":
            await anyio.sleep_forever()  # headers sent, then silence: a read timeout
        first = True
        async for piece in reply.stream():
            delta = {"role": "assistant", "content": piece} if first else {"content": piece}
            first = False
            await body(chunk(delta, None))
        if first:
            await body(chunk({"role": "assistant", "content": ""}, None))
        if reply.fault == "cut":
            watch.final = True
            await body(b"", more=False)  # the stream ends with neither finish_reason nor [DONE]
            return
        await body(chunk({}, reply.finish_reason or "stop"))
        if include_usage:
            usage = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": reply.model,
                **_MARK,
                "choices": [],
                "usage": _usage(reply),
            }
            await body(b"data: " + json.dumps(usage).encode() + b"\n\n")
        watch.final = True
        await body(b"data: [DONE]\n\n", more=False)

    async def _whole(self, reply: SimReply, ident: str, send: Send, watch: _Watch) -> None:
        if reply.fault == "timeout":
            await anyio.sleep_forever()  # no response at all until the client gives up
        async for _ in reply.stream():
            pass  # same timing as a stream: ttft + tokens / tps
        data = json.dumps(
            {
                "id": ident,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": reply.model,
                **_MARK,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.text},
                        "finish_reason": reply.finish_reason or "stop",
                        "logprobs": None,
                    }
                ],
                "usage": _usage(reply),
            }
        ).encode()
        if reply.fault == "cut":
            data = data[: len(data) // 2]  # the body breaks off: not parseable JSON
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        watch.final = True
        await send({"type": "http.response.body", "body": data, "more_body": False})


def _usage(reply: SimReply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }


def create_app(model: SimulatedModel | None = None, stats: ServerStats | None = None) -> Starlette:
    """The ASGI app. ``app.state.model`` and ``app.state.stats`` expose the counters."""
    model = model if model is not None else SimulatedModel()
    stats = stats if stats is not None else ServerStats()

    async def models(_: Request) -> JSONResponse:
        entry = {
            "id": model.model_name,
            "object": "model",
            "created": 0,
            "owned_by": "apr-mcp-simulated",
            "simulated": True,
        }
        return JSONResponse({"object": "list", "data": [entry]})

    async def stats_endpoint(_: Request) -> JSONResponse:
        return JSONResponse({**stats.as_dict(), "model_calls": model.calls})

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", _ChatCompletions(model, stats), methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/stats", stats_endpoint, methods=["GET"]),
            Route("/v1/stats", stats_endpoint, methods=["GET"]),  # handy next to a base URL
        ]
    )
    app.state.model = model
    app.state.stats = stats
    return app


# ----- running it -----


def _base_url(host: str, sock: socket.socket) -> str:
    return f"http://{shown_host(host)}:{sock.getsockname()[1]}/v1"


def _server(app: Starlette, log_level: str) -> uvicorn.Server:
    return uvicorn_server(app, log_level=log_level, lifespan="off", graceful_shutdown_s=1)


@asynccontextmanager
async def serve_simulated(
    model: SimulatedModel | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    stats: ServerStats | None = None,
    log_level: str = "warning",
) -> AsyncIterator[str]:
    """Run the server in this process for the duration of the block; yields the base URL
    (``http://127.0.0.1:PORT/v1``). Pass ``stats`` to watch the server's counters."""
    sock = listen(host, port)
    server = _server(create_app(model, stats), log_level)
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_on, server, sock)
        try:
            yield _base_url(host, sock)
        finally:
            server.should_exit = True


def run_simulate_server(
    host: str, port: int, model: SimulatedModel, *, log_level: str = "warning"
) -> None:
    """Serve until interrupted (the CLI). Prints the base URL to stderr first."""

    async def main() -> None:
        sock = listen(host, port)
        url = _base_url(host, sock)
        # The first line is machine-read by simulate_subprocess: keep its shape.
        print(f"apr-mcp simulate: listening on {url}", file=sys.stderr, flush=True)
        print(
            f"  point apr-mcp at it:  export APR_BACKEND=openai APR_BASE_URL={url} "
            f"APR_MODEL={model.model_name} APR_API_KEY=sim\n  stats: {url[:-3]}/stats   stop: "
            "Ctrl-C",
            file=sys.stderr,
            flush=True,
        )
        if host not in ("127.0.0.1", "localhost", "::1"):
            print(f"  warning: listening on {host}, reachable from other machines", file=sys.stderr)
        await serve_on(_server(create_app(model), log_level), sock)

    try:
        anyio.run(main)
    except KeyboardInterrupt:
        pass


@asynccontextmanager
async def simulate_subprocess(*args: str, start_timeout: float = 30.0) -> AsyncIterator[str]:
    """Run ``apr-mcp simulate --port 0 ARGS`` in a child process; yields its base URL (read from
    the first line of its stderr) and terminates it afterwards."""
    command = [sys.executable, "-u", "-m", "apr_mcp", "simulate", "--port", "0", *args]
    process = await anyio.open_process(command)  # -u: unbuffered, so the URL line comes at once
    output: list[str] = []
    try:
        url = await _read_url(process, output, start_timeout)
        async with anyio.create_task_group() as tg:

            async def drain() -> None:  # keep reading so a full pipe never blocks the child
                assert process.stderr is not None
                async for data in process.stderr:
                    output.append(data.decode(errors="replace"))

            tg.start_soon(drain)
            try:
                yield url
            finally:
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.terminate()
                with anyio.move_on_after(5):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            await process.aclose()


async def _read_url(process: Process, output: list[str], timeout: float) -> str:
    assert process.stderr is not None
    buffer = b""
    try:
        with anyio.fail_after(timeout):
            while b"\n" not in buffer:
                buffer += await process.stderr.receive()
    except (anyio.EndOfStream, TimeoutError):
        raise RuntimeError(
            f"simulate server did not start: {buffer.decode(errors='replace')}"
        ) from None
    first, _, rest = buffer.partition(b"\n")
    output.append(rest.decode(errors="replace"))
    text = first.decode(errors="replace")
    if "listening on " not in text:
        raise RuntimeError(f"simulate server did not start: {text}")
    return text.split("listening on ", 1)[1].strip()
