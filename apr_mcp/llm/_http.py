"""What the HTTP backends (openai_compat, anthropic) share: SSE parsing, error mapping, usage.

Private to ``apr_mcp.llm``: the public surface is the backend classes. Everything here turns
provider-specific HTTP facts into the one exception tree of :mod:`apr_mcp.errors`, so that an
error always says which backend and model failed, with which status, and what to do about it.
"""

from __future__ import annotations

import email.utils
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx

from ..errors import (
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelTimeoutError,
    RateLimitError,
    ServerError,
    StreamInterrupted,
)
from ..tokens import count_messages, count_tokens
from .base import Message, TokenCallback, Usage

log = logging.getLogger("apr_mcp.llm")

#: Hints appended to HTTP errors whose usual cause is configuration, per backend.
_KEY_VARS = {
    "openai": "APR_API_KEY or OPENAI_API_KEY",
    "anthropic": "APR_API_KEY or ANTHROPIC_API_KEY",
}


@dataclass(frozen=True)
class SSEEvent:
    """One server-sent event: its ``event:`` name (empty if none) and joined ``data:`` lines."""

    event: str
    data: str


async def iter_sse(response: httpx.Response) -> AsyncIterator[SSEEvent]:
    """Parse a ``text/event-stream`` body as the SSE spec says, tolerating sloppy servers.

    Events end at a blank line; a stream that ends without one still yields its last event.
    Comment lines (``:``) and unknown fields are ignored; lines that are not ``field: value`` at
    all are logged at debug level and skipped (the caller decides whether *nothing* parsed).
    """
    event = ""
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield SSEEvent(event, "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, sep, value = line.partition(":")
        if not sep:
            log.debug("skipping non-SSE line: %.200r", line)
            continue
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
    if data:
        yield SSEEvent(event, "\n".join(data))


async def emit(on_token: TokenCallback | None, delta: str) -> None:
    """Call ``on_token`` whether it is a plain function or a coroutine function."""
    if on_token is None or not delta:
        return
    result = on_token(delta)
    if inspect.isawaitable(result):
        await result


def usage_or_count(
    messages: list[Message], text: str, input_tokens: int | None, output_tokens: int | None
) -> Usage:
    """Provider-reported usage when both numbers came, else counted with tiktoken."""
    if input_tokens is not None and output_tokens is not None:
        return Usage(input_tokens=input_tokens, output_tokens=output_tokens, reported=True)
    prompt: list[object] = list(messages)
    return Usage(
        input_tokens=input_tokens if input_tokens is not None else count_messages(prompt),
        output_tokens=output_tokens if output_tokens is not None else count_tokens(text),
        reported=False,
    )


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``Retry-After`` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def provider_message(body: str) -> str | None:
    """The human message inside a provider's JSON error body, if there is one.

    Covers OpenAI (``{"error": {"message": ...}}``), Anthropic (``{"type": "error", "error":
    {"type", "message"}}``), FastAPI/vLLM (``{"detail": ...}``), Ollama (``{"error": "..."}``).
    """
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return None
    if not isinstance(data, dict):
        return None
    err = data.get("error", data)
    if isinstance(err, str):
        return err
    if isinstance(err, dict):
        msg = err.get("message") or err.get("detail")
        if isinstance(msg, str):
            kind = err.get("type")
            return f"{kind}: {msg}" if isinstance(kind, str) and kind not in msg else msg
    detail = data.get("detail")
    if isinstance(detail, str):
        return detail
    if detail is not None:
        return json.dumps(detail)[:500]
    return None


def http_error(
    status: int, body: str, headers: Mapping[str, str], *, backend: str, model: str
) -> ModelError:
    """The exception for an HTTP error status, with the provider's message and a hint."""
    message = provider_message(body) or httpx.codes.get_reason_phrase(status) or "HTTP error"
    kw: dict[str, object] = {
        "backend": backend,
        "model": model,
        "status_code": status,
        "body": body,
    }
    if status == 429 or status == 529:
        retry_after = parse_retry_after(headers)
        label = "rate limited" if status == 429 else "overloaded"
        return RateLimitError(f"{label}: {message}", retry_after=retry_after, **kw)
    if status == 408:  # the server gave up waiting (proxies, Ollama loading a model): retryable
        return ModelTimeoutError(f"request timeout: {message}", **kw)  # type: ignore[arg-type]
    if status >= 500:
        return ServerError(f"server error: {message}", **kw)  # type: ignore[arg-type]
    if status in (401, 403):
        hint = f"check the API key ({_KEY_VARS.get(backend, 'APR_API_KEY')})"
        return ModelHTTPError(f"{message} — {hint}", **kw)  # type: ignore[arg-type]
    if status == 404:
        hint = "check APR_MODEL (the model id) and APR_BASE_URL (the endpoint root, e.g. .../v1)"
        return ModelHTTPError(f"{message} — {hint}", **kw)  # type: ignore[arg-type]
    return ModelHTTPError(message, **kw)  # type: ignore[arg-type]


def transport_error(exc: httpx.HTTPError, *, backend: str, model: str, started: bool) -> ModelError:
    """Map an httpx transport exception. ``started``: response headers had already arrived."""
    if isinstance(exc, httpx.TimeoutException):
        what = (
            "connecting"
            if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))
            else "reading"
        )
        return ModelTimeoutError(
            f"timed out {what} ({type(exc).__name__}); raise APR_TIMEOUT_S if the model is slow",
            backend=backend,
            model=model,
        )
    if started and isinstance(exc, (httpx.ReadError, httpx.RemoteProtocolError)):
        return StreamInterrupted(
            f"response cut off by the server ({type(exc).__name__}: {exc})",
            backend=backend,
            model=model,
        )
    if isinstance(exc, (httpx.ConnectError, httpx.NetworkError, httpx.RemoteProtocolError)):
        return ModelConnectionError(
            f"cannot reach the endpoint ({type(exc).__name__}: {exc}); is the server running "
            "and APR_BASE_URL right?",
            backend=backend,
            model=model,
        )
    return ModelConnectionError(
        f"HTTP transport failed ({type(exc).__name__}: {exc})", backend=backend, model=model
    )


def stream_error(payload: object, *, backend: str, model: str) -> ModelError:
    """An error reported inside a 200 stream (OpenRouter, Anthropic ``error`` events)."""
    body = json.dumps(payload)[:2000]
    err = payload.get("error", payload) if isinstance(payload, dict) else payload
    kind = str(err.get("type") or err.get("code") or "") if isinstance(err, dict) else ""
    message = provider_message(body) or "error event in the response stream"
    code = err.get("code") if isinstance(err, dict) else None
    kw: dict[str, object] = {"backend": backend, "model": model, "body": body}
    if kind in ("overloaded_error", "rate_limit_error", "rate_limit_exceeded") or code == 429:
        return RateLimitError(f"stream error: {message}", retry_after=None, **kw)
    if isinstance(code, int) and 400 <= code < 500:
        return ModelHTTPError(f"stream error: {message}", status_code=code, **kw)  # type: ignore[arg-type]
    # Unknown or api_error mid-stream: the provider failed while generating; retrying may help.
    return ServerError(f"stream error: {message}", **kw)  # type: ignore[arg-type]
