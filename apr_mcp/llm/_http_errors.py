"""Provider HTTP failures → the one exception tree of :mod:`apr_mcp.errors`.

Private to ``apr_mcp.llm``, used by the HTTP backends (through :mod:`._http`): an error always
says which backend and model failed, with which status and the provider's own message, and what
to do about it.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping

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

#: Hints appended to HTTP errors whose usual cause is configuration, per backend.
_KEY_VARS = {
    "openai": "APR_API_KEY or OPENAI_API_KEY",
    "anthropic": "APR_API_KEY or ANTHROPIC_API_KEY",
}


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
