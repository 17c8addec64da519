"""What the HTTP backends (openai_compat, anthropic) share: the call, SSE, errors, usage.

Private to ``apr_mcp.llm``: the public surface is the backend classes. Failures become the one
exception tree of :mod:`apr_mcp.errors` through :mod:`._http_errors`.
"""

from __future__ import annotations

import abc
import codecs
import json
import logging
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Self

import anyio
import httpx

from ..errors import (
    ModelError,
    ModelHTTPError,
    ModelOutputError,
    ModelTimeoutError,
    StreamInterrupted,
)
from ..tokens import count_messages, count_tokens
from ._http_errors import (
    http_error,
    not_served_hint,
    refuses_schema,
    schema_error,
    transport_error,
)
from .base import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    TokenCallback,
    Usage,
    call_token_callback,
)

log = logging.getLogger("apr_mcp.llm")


#: Connections per backend instance. Concurrency is bounded by the engine (at most 64 threads
#: per run), so the pool must never be the bottleneck: room for two full runs at once.
DEFAULT_MAX_CONNECTIONS = 128


#: Default idle-stream timeout: a stream that sends no byte for this long has stalled.
DEFAULT_IDLE_TIMEOUT_S = 30.0

#: How long asking the server for its model list (to explain a 404) may take.
_MODELS_TIMEOUT_S = 5.0

#: Connections per httpx client: httpcore's pool does O(connections²) bookkeeping on every
#: request start and end (encode/httpcore#1035); at 64 concurrent streams in one pool that was
#: most of the client's CPU. Small pools, one client per 16 concurrent calls, keep it flat.
SHARD_SIZE = 16


class ClientPool:
    """The httpx clients of one backend: calls go to the first client with a free connection.

    Clients are made on demand by ``make_client(max_connections)``, so up to :data:`SHARD_SIZE`
    concurrent calls share one client and its keep-alive connections; more concurrent calls
    open further clients, up to ``max_connections`` connections in all. With ``shard=False``
    (an injected transport, which has its own pool) there is a single client.
    """

    def __init__(
        self,
        make_client: Callable[[int], httpx.AsyncClient],
        max_connections: int,
        *,
        shard: bool = True,
    ) -> None:
        total = max(1, max_connections)
        shards = -(-total // SHARD_SIZE) if shard else 1
        self._make = make_client
        self._size = -(-total // shards)
        self._max_clients = shards
        self._clients: list[httpx.AsyncClient] = []
        self._in_flight: list[int] = []
        self._closed = False

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client for one call (counted as in flight until the block exits)."""
        index = self._pick()
        self._in_flight[index] += 1
        try:
            yield self._clients[index]
        finally:
            self._in_flight[index] -= 1

    def _pick(self) -> int:
        if self._closed:  # as httpx does for a closed client: a programming error, not a retry
            raise RuntimeError("cannot send a request: the backend has been closed (aclose)")
        # Lowest index first, so a quiet backend keeps reusing the same warm connections.
        for index, count in enumerate(self._in_flight):
            if count < self._size:
                return index
        if len(self._clients) < self._max_clients:
            self._clients.append(self._make(self._size))
            self._in_flight.append(0)
            return len(self._clients) - 1
        return min(range(len(self._clients)), key=self._in_flight.__getitem__)

    def warm(self) -> None:
        """Open the first client now: setting up its transport costs tens of ms of CPU, better
        spent when the backend is built than inside a run, where it stalls the event loop just
        as the first threads start (measured: the 2nd and 3rd thread of a cold run ~55 ms late)."""
        if not self._clients:
            self._clients.append(self._make(self._size))
            self._in_flight.append(0)

    @property
    def clients(self) -> int:
        """How many clients have been opened so far."""
        return len(self._clients)

    async def aclose(self) -> None:
        """Close every client (and so its connections)."""
        self._closed = True
        clients, self._clients, self._in_flight = self._clients, [], []
        for client in clients:
            await client.aclose()


def client_pool(
    *,
    base_url: str,
    headers: dict[str, str],
    timeout_s: float,
    connect_timeout_s: float,
    transport: httpx.AsyncBaseTransport | None,
    max_connections: int,
) -> ClientPool:
    """The :class:`ClientPool` of an HTTP backend (sharded unless a transport is injected)."""
    # One TLS context for all the clients, built now: building one loads the CA bundle (~20-60 ms
    # of CPU), which inside a run would stall the event loop just as the first threads start.
    # An injected transport (tests, loopback) needs none.
    ssl_context: ssl.SSLContext | bool = httpx.create_ssl_context() if transport is None else True

    def make(size: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=pool_timeout(timeout_s, connect_timeout_s),
            transport=transport,
            limits=pool_limits(size),
            verify=ssl_context,
        )

    pool = ClientPool(make, max_connections, shard=transport is None)
    if transport is None:
        pool.warm()
    return pool


def pool_limits(max_connections: int) -> httpx.Limits:
    """Keep every connection alive between calls: a wave of threads reuses the previous wave's
    connections instead of reconnecting (idle ones still close after httpx's 5 s expiry)."""
    n = max(1, max_connections)
    return httpx.Limits(max_connections=n, max_keepalive_connections=n)


def pool_timeout(read_s: float, connect_s: float) -> httpx.Timeout:
    """``read_s`` for each read, ``connect_s`` to connect, no limit on waiting for a pool slot:
    a call queued behind long generations is not a network failure (httpx would otherwise raise
    PoolTimeout after ``read_s``); the engine's deadline and cancellation bound the wait."""
    return httpx.Timeout(read_s, connect=connect_s, pool=None)


def set_idle_timeout(response: httpx.Response, idle_s: float) -> None:
    """Bound the gap between two body chunks of ``response`` by ``idle_s`` from now on.

    Until the headers arrive a call may wait as long as its total limit (a busy local server
    queues requests, and llama-cpp-python sends headers only with the first token); once the
    body streams, a silence of ``idle_s`` is a stall. httpcore reads the body's read timeout
    from the request's ``timeout`` extension when the body starts, so changing it here (after
    the headers, before the first body read) applies to the body only, at no cost per chunk.
    """
    timeouts = response.request.extensions.get("timeout")
    if isinstance(timeouts, dict):
        read = timeouts.get("read")
        timeouts["read"] = idle_s if read is None else min(read, idle_s)


@dataclass(frozen=True)
class SSEEvent:
    """One server-sent event: its ``event:`` name (empty if none) and joined ``data:`` lines."""

    event: str
    data: str


class SSEParser:
    """Incremental ``text/event-stream`` parser: feed text as it arrives, get whole events.

    Follows the SSE spec while tolerating sloppy servers: lines end in LF, CRLF or CR (also when
    split across network chunks); events end at a blank line; comment lines (``:``) and unknown
    fields are ignored; lines that are not ``field: value`` at all are logged at debug level and
    skipped (the caller decides whether *nothing* parsed).
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._event = ""
        self._data: list[str] = []

    def feed(self, text: str) -> list[SSEEvent]:
        """The events completed by ``text``."""
        buffer = self._buffer + text
        if "\r" in buffer:
            # A CR at the very end may be the first half of a CRLF: wait for the next chunk.
            held = buffer.endswith("\r")
            buffer = buffer[:-1] if held else buffer
            buffer = buffer.replace("\r\n", "\n").replace("\r", "\n") + ("\r" if held else "")
        lines = buffer.split("\n")
        self._buffer = lines.pop()
        events: list[SSEEvent] = []
        for line in lines:
            self._line(line, events)
        return events

    def close(self) -> list[SSEEvent]:
        """The last event of a stream that ended without a blank line, if any."""
        events: list[SSEEvent] = []
        rest, self._buffer = self._buffer.rstrip("\r"), ""
        if rest:
            self._line(rest, events)
        self._line("", events)
        return events

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                events.append(SSEEvent(self._event, "\n".join(self._data)))
            self._event, self._data = "", []
            return
        if line[0] == ":":
            return
        field, sep, value = line.partition(":")
        if not sep:
            log.debug("skipping non-SSE line: %.200r", line)
            return
        if value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value


async def iter_sse(response: httpx.Response) -> AsyncGenerator[SSEEvent, None]:
    """The events of a ``text/event-stream`` response body, parsed by :class:`SSEParser`.

    Reads ``aiter_bytes`` (content-decoded) and decodes UTF-8 itself, as the SSE spec fixes the
    charset: httpx's line iterator would add two generator layers per network chunk, and a stream
    has one chunk per token.
    """
    parser = SSEParser()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    async for chunk in response.aiter_bytes():
        for event in parser.feed(decoder.decode(chunk)):
            yield event
    for event in parser.feed(decoder.decode(b"", final=True)) + parser.close():
        yield event


#: After the end marker, how long and how many events to wait for the body's end. Servers end it
#: in the same breath (microseconds); a buggy one that holds it open costs the caller at most
#: this much, and then only its connection (the next call reconnects).
_DRAIN_S = 0.1
_DRAIN_EVENTS = 16


async def finish_stream(events: AsyncGenerator[SSEEvent, None]) -> None:
    """Read what is left of a stream after its end marker (``[DONE]``, ``message_stop``).

    Leaving the ``async with client.stream(...)`` block before the body has ended makes httpx
    drop the connection, so every call would open a new one (a TCP handshake, and a TLS one for
    real providers). Servers end the body right after the marker, so this is normally one read.
    A server that keeps sending or keeps the body open is cut off after a short bound: the answer
    is already complete, only the connection is lost. Errors here are ignored for the same
    reason. Cancelling the caller still cancels at once (no shielding).
    """
    try:
        with anyio.move_on_after(_DRAIN_S):
            extra = 0
            async for _ in events:
                extra += 1
                if extra >= _DRAIN_EVENTS:
                    break
    except httpx.HTTPError as exc:
        log.debug("ignoring an error after the end of a complete stream: %r", exc)
    finally:
        await events.aclose()


async def emit(on_token: TokenCallback | None, delta: str) -> None:
    """Pass a non-empty ``delta`` to ``on_token`` (see
    :func:`~apr_mcp.llm.base.call_token_callback`)."""
    if delta:
        await call_token_callback(on_token, delta)


def usage_or_count(
    messages: list[Message], text: str, input_tokens: object, output_tokens: object
) -> Usage:
    """Provider-reported usage when both numbers came (as ints), else counted with tiktoken."""
    input_tokens = input_tokens if isinstance(input_tokens, int) else None
    output_tokens = output_tokens if isinstance(output_tokens, int) else None
    if input_tokens is not None and output_tokens is not None:
        return Usage(input_tokens=input_tokens, output_tokens=output_tokens, reported=True)
    prompt: list[object] = list(messages)
    return Usage(
        input_tokens=input_tokens if input_tokens is not None else count_messages(prompt),
        output_tokens=output_tokens if output_tokens is not None else count_tokens(text),
        reported=False,
    )


class HTTPBackend(Model):
    """What an HTTP backend does around its wire format.

    One call: build the body, POST it (streamed unless ``stream=False``) on a client leased from
    the :class:`ClientPool`, turn HTTP failures into :mod:`apr_mcp.errors`, and check the parsed
    :class:`Reply` (cut or empty answers) before making it a ModelResponse. A subclass says
    where to POST (``path``), what to send (:meth:`build_body`) and how to read a JSON body
    (:meth:`_parse_json`) or an SSE stream (:meth:`_read_stream`). It may adapt the body to a
    server that rejected part of it (:meth:`_adapt`); the call is then sent again.
    """

    #: The endpoint below ``base_url``.
    path: ClassVar[str]
    #: The reply field that errors name for the stop reason.
    reason_field: ClassVar[str]
    #: Provider stop reasons → the OpenAI vocabulary that callers check (``stop``, ``length``).
    stop_reasons: ClassVar[Mapping[str, str]] = {}
    #: The model list below ``base_url`` (asked to explain a 404).
    models_path: ClassVar[str]
    #: What ``APR_BASE_URL`` should look like, for errors that suggest it is wrong.
    base_url_hint: ClassVar[str] = "the API root"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        headers: dict[str, str],
        extra_headers: dict[str, str] | None,
        timeout_s: float,
        connect_timeout_s: float,
        transport: httpx.AsyncBaseTransport | None,
        stream: bool,
        max_connections: int,
        idle_timeout_s: float | None = None,
    ) -> None:
        self.base_url = base_url
        self.model_name = model
        self.stream = stream
        #: Total seconds one call may take (a request's ``timeout_s`` may lower it).
        self.timeout_s = timeout_s
        #: Seconds a started stream may stay silent before it counts as stalled.
        self.idle_timeout_s = (
            min(timeout_s, DEFAULT_IDLE_TIMEOUT_S) if idle_timeout_s is None else idle_timeout_s
        )
        self.connect_timeout_s = connect_timeout_s
        self._clients = client_pool(
            base_url=base_url,
            headers={"Accept": "application/json, text/event-stream", **headers}
            | (extra_headers or {}),
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            transport=transport,
            max_connections=max_connections,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model_name!r})"

    async def aclose(self) -> None:
        await self._clients.aclose()

    @abc.abstractmethod
    def build_body(self, request: ModelRequest) -> dict[str, Any]:
        """The JSON body for ``request`` (public so tests and ``doctor`` can inspect it)."""

    @abc.abstractmethod
    async def _parse_json(self, raw: str, model: str, on_token: TokenCallback | None) -> Reply:
        """The reply in a whole JSON body (``on_token`` gets its text at once)."""

    @abc.abstractmethod
    async def _read_stream(
        self, response: httpx.Response, model: str, started: float, on_token: TokenCallback | None
    ) -> Reply:
        """The reply in a streamed body (most use a :class:`JSONStream`)."""

    def _adapt(self, status: int, text: str, body: dict[str, Any]) -> bool:
        """Adapt ``body`` to a server that rejected part of it; True if worth resending."""
        return False

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        """Run one call (streamed unless ``stream=False``).

        The call may take ``timeout_s`` in all, or the request's ``timeout_s`` if that is less
        (the run's remaining deadline); a started stream may stay silent ``idle_timeout_s``. A
        failure keeps the text streamed so far in the error's ``partial_text``.
        """
        body = self.build_body(request)
        model = str(body["model"])
        started = time.monotonic()
        by_request = request.timeout_s is not None and request.timeout_s < self.timeout_s
        limit = request.timeout_s if by_request and request.timeout_s else self.timeout_s
        received: list[str] = []

        async def tap(delta: str) -> None:
            received.append(delta)
            await emit(on_token, delta)

        try:
            with anyio.fail_after(limit):
                reply = await self._attempts(body, model, started, tap, limit)
        except TimeoutError:
            err: ModelError = ModelTimeoutError(
                f"no complete answer within the {limit:g} s left of the run's deadline"
                if by_request
                else f"the call took longer than APR_TIMEOUT_S={limit:g} s",
                backend=self.backend,
                model=model,
            )
            err.retryable = False  # the same call would run out again
            err.partial_text = "".join(received)
            raise err from None
        except ModelError as err:
            if received and not err.partial_text:
                err.partial_text = "".join(received)
            raise
        return self._response(request, reply, started)

    async def _attempts(
        self,
        body: dict[str, Any],
        model: str,
        started: float,
        on_token: TokenCallback,
        limit: float,
    ) -> Reply:
        timeout = httpx.Timeout(limit, connect=min(limit, self.connect_timeout_s), pool=None)
        for _ in range(3):  # at most two adaptations, then the real answer or error
            try:
                if body.get("stream"):
                    return await self._streamed(body, model, started, on_token, timeout)
                return await self._unstreamed(body, model, on_token, timeout)
            except _Resend:
                continue
            except httpx.HTTPError as exc:
                raise transport_error(
                    exc, backend=self.backend, model=model, started=False
                ) from exc
        raise ModelHTTPError(
            "the server kept rejecting the request", backend=self.backend, model=model
        )

    async def _unstreamed(
        self,
        body: dict[str, Any],
        model: str,
        on_token: TokenCallback | None,
        timeout: httpx.Timeout,
    ) -> Reply:
        async with self._clients.lease() as client:
            response = await client.post(self.path, json=body, timeout=timeout)
            if response.status_code >= 400:
                raise await self._error_for(response, body, model, client)
        raw = response.text
        ctype = response.headers.get("content-type", "")
        if _looks_like_html(ctype, raw) or (
            "json" not in ctype.lower() and raw.lstrip()[:1] not in ("{", "[")
        ):
            raise self._not_an_api(response, raw, model)
        return await self._parse_json(raw, model, on_token)

    async def _streamed(
        self,
        body: dict[str, Any],
        model: str,
        started: float,
        on_token: TokenCallback | None,
        timeout: httpx.Timeout,
    ) -> Reply:
        # `async with` guarantees the stream is closed when the caller is cancelled mid-answer.
        async with (
            self._clients.lease() as client,
            client.stream("POST", self.path, json=body, timeout=timeout) as response,
        ):
            if response.status_code >= 400:
                raise await self._error_for(response, body, model, client)
            set_idle_timeout(response, self.idle_timeout_s)
            ctype = response.headers.get("content-type", "").lower()
            if "event-stream" not in ctype:
                # Not SSE: a server that ignores `stream` (JSON), or no API at all (an HTML page
                # from a proxy or a web UI at the wrong path). Decide on the whole body.
                raw = (await response.aread()).decode("utf-8", errors="replace")
                if _looks_like_html(ctype, raw):
                    raise self._not_an_api(response, raw, model)
                if not raw.lstrip().startswith(("data:", "event:", ":")):
                    if raw.lstrip()[:1] not in ("{", "["):
                        raise self._not_an_api(response, raw, model)
                    return await self._parse_json(raw, model, on_token)
            return await self._read_stream(response, model, started, on_token)

    def _not_an_api(self, response: httpx.Response, raw: str, model: str) -> ModelHTTPError:
        """A 2xx answer that is no API response at all: the URL is wrong; retrying cannot help."""
        ctype = response.headers.get("content-type", "") or "no content-type"
        what = "an HTML page" if _looks_like_html(ctype, raw) else f"{ctype}, not JSON"
        return ModelHTTPError(
            f"the endpoint answered {response.status_code} with {what} — APR_BASE_URL should be "
            f"{self.base_url_hint} (is {self.base_url})",
            backend=self.backend,
            model=model,
            status_code=response.status_code,
            body=raw[:2000],
        )

    async def _error_for(
        self,
        response: httpx.Response,
        body: dict[str, Any],
        model: str,
        client: httpx.AsyncClient,
    ) -> ModelError:
        status = response.status_code
        text = (await response.aread()).decode("utf-8", errors="replace")
        if self._adapt(status, text, body):
            raise _Resend
        if "response_format" in body and refuses_schema(status, text):
            return schema_error(status, text, backend=self.backend, model=model)
        hint: str | None = None
        names_model = _names_missing_model(text)
        if status == 404 or (status in (400, 422) and names_model):
            ids = await self._served_models(client)
            hint = not_served_hint(
                model, ids, self.base_url, names_model=names_model, root=self.base_url_hint
            )
        return http_error(
            status, text, response.headers, backend=self.backend, model=model, hint=hint
        )

    async def _served_models(self, client: httpx.AsyncClient) -> list[str] | None:
        try:
            response = await client.get(
                self.models_path,
                timeout=httpx.Timeout(_MODELS_TIMEOUT_S, pool=None),
            )
            if response.status_code >= 400:
                return None
            data = response.json().get("data")
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        if not isinstance(data, list):
            return None
        return [str(m["id"]) for m in data if isinstance(m, dict) and m.get("id")]

    def _response(self, request: ModelRequest, reply: Reply, started: float) -> ModelResponse:
        text, reason = reply.text, reply.reason
        finish = self.stop_reasons.get(reason or "", reason)
        if finish == "length" and (not text.strip() or request.json_schema is not None):
            what = "structured output" if text.strip() else "answer"
            raise ModelOutputError(
                f"{what} cut off at max_tokens={request.max_tokens} "
                f"({self.reason_field}={reason}); raise max_tokens",
                backend=self.backend,
                model=reply.model,
                body=text or None,
            )
        if not text.strip():
            raise ModelOutputError(
                f"empty answer ({self.reason_field}={reason})",
                backend=self.backend,
                model=reply.model,
            )
        return ModelResponse(
            text=text,
            usage=usage_or_count(request.messages, text, reply.input_tokens, reply.output_tokens),
            model=reply.model,
            backend=self.backend,
            finish_reason=finish,
            latency_s=time.monotonic() - started,
            ttft_s=reply.ttft,
            simulated=reply.model.startswith("sim-"),  # `apr-mcp simulate` serves sim-* ids only
        )


@dataclass(frozen=True)
class Reply:
    """An answer as a backend read it, before :meth:`HTTPBackend._response` checks it.

    ``reason`` is the provider's own stop reason; token counts are whatever the provider sent
    (anything but an int means "not reported").
    """

    text: str
    reason: str | None
    input_tokens: object
    output_tokens: object
    model: str
    ttft: float | None = None


class _Resend(Exception):
    """Internal: the request body was adapted after a rejection; send it again."""


class JSONStream:
    """The JSON events of one streamed answer, and the text they carry.

    ``async with JSONStream(...) as stream: async for event, data in stream`` yields each event
    whose data is a JSON object, skipping (and counting) any other. The stream is done at an
    event whose data is ``end_data`` (OpenAI's ``[DONE]``), or when the caller sets ``done`` and
    breaks at its own end event. Leaving the block drains a done stream (:func:`finish_stream`,
    so that the connection stays alive) and closes any other; it maps transport errors raised
    inside it with :func:`transport_error`.
    """

    def __init__(
        self,
        response: httpx.Response,
        *,
        started: float,
        backend: str,
        model: str,
        end_data: str | None = None,
    ) -> None:
        self._events = iter_sse(response)
        self._started = started
        self._backend = backend
        self._model = model
        self._end_data = end_data
        self._parts: list[str] = []
        self._parsed = 0
        self._junk = 0
        self.done = False
        #: Seconds from the call's start to the first piece of text.
        self.ttft: float | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.done and exc is None:
            await finish_stream(self._events)
        else:
            await self._events.aclose()
        if isinstance(exc, httpx.HTTPError):
            raise transport_error(
                exc, backend=self._backend, model=self._model, started=True
            ) from exc

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> tuple[SSEEvent, dict[str, Any]]:
        # A class, not an async generator: breaking out of the loop then leaves nothing
        # suspended for the garbage collector to finalise.
        while True:
            event = await self._events.__anext__()
            if self._end_data is not None and event.data.strip() == self._end_data:
                self.done = True
                raise StopAsyncIteration
            try:
                data = json.loads(event.data)
            except ValueError:
                data = None
            if isinstance(data, dict):
                self._parsed += 1
                return event, data
            self._junk += 1
            log.debug("%s: skipping non-JSON SSE data: %.200r", self._model, event.data)

    async def add(self, piece: str, on_token: TokenCallback | None) -> None:
        """Record a piece of the answer's text and pass it to ``on_token``."""
        if not piece:
            return
        if self.ttft is None:
            self.ttft = time.monotonic() - self._started
        self._parts.append(piece)
        await emit(on_token, piece)

    def text(self, *, stopped: bool, unit: str, end: str, reason: str) -> str:
        """The answer's text; raises if the stream had only junk or ended early.

        ``stopped``: the provider gave a stop reason. Only that makes an answer whole: an end
        marker without one (llama-cpp-python ends a running stream with ``[DONE]`` when another
        request waits) or a stream that just ends is :class:`StreamInterrupted`, whose
        ``partial_text`` holds what came. ``unit``, ``end`` and ``reason`` name the provider's
        event, end marker and stop-reason field in errors.
        """
        text = "".join(self._parts)
        if self._parsed == 0 and self._junk > 0:
            raise ModelOutputError(
                f"stream contained no valid JSON {unit} ({self._junk} unparseable events)",
                backend=self._backend,
                model=self._model,
            )
        if not stopped:
            why = (
                f"stream ended without a {reason} (the server interrupted the answer)"
                if self.done
                else f"stream ended before {end}"
            )
            err = StreamInterrupted(
                f"{why}; {len(text)} characters received",
                backend=self._backend,
                model=self._model,
            )
            err.partial_text = text
            err.by_server = self.done
            raise err
        return text


def _looks_like_html(content_type: str, text: str) -> bool:
    if "html" in content_type.lower():
        return True
    head = text.lstrip()[:15].lower()
    return head.startswith(("<!doctype html", "<html"))


def _names_missing_model(text: str) -> bool:
    """A 400/422 body that says the model does not exist (servers differ in status)."""
    lowered = text.lower()
    return "model" in lowered and any(
        phrase in lowered for phrase in ("not found", "does not exist", "unknown model", "no such")
    )
