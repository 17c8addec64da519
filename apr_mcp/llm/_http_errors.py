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
    SchemaUnsupported,
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


def refuses_schema(status: int, text: str) -> bool:
    """Whether an error answer to a request carrying ``response_format`` refuses the schema.

    Servers say so with 400/422 (OpenAI, vLLM, LM Studio), but llama-cpp-python's server answers
    a 500 whose body names ``response_format``, and llama.cpp's says it cannot build a grammar:
    the body decides, not the status alone.
    """
    if status not in (400, 422, 500, 501):
        return False
    lowered = text.lower()
    return any(word in lowered for word in ("response_format", "json_schema", "grammar"))


def http_error(
    status: int,
    body: str,
    headers: Mapping[str, str],
    *,
    backend: str,
    model: str,
    hint: str | None = None,
) -> ModelError:
    """The exception for an HTTP error status, with the provider's message and a hint.

    ``hint`` replaces the default hint of a 404 (the caller may have asked the server which
    models it serves).
    """
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
        hint = f"set {_KEY_VARS.get(backend, 'APR_API_KEY')} to a valid key"
        return ModelHTTPError(f"{message} — {hint}", **kw)  # type: ignore[arg-type]
    if status == 404:
        hint = hint or (
            "check APR_MODEL (the model id) and APR_BASE_URL (the endpoint root, e.g. .../v1)"
        )
        return ModelHTTPError(f"{message} — {hint}", **kw)  # type: ignore[arg-type]
    if hint:
        return ModelHTTPError(f"{message} — {hint}", **kw)  # type: ignore[arg-type]
    return ModelHTTPError(message, **kw)  # type: ignore[arg-type]


def schema_error(status: int, body: str, *, backend: str, model: str) -> SchemaUnsupported:
    """The endpoint refused native structured output (see :func:`refuses_schema`)."""
    message = provider_message(body) or httpx.codes.get_reason_phrase(status) or "HTTP error"
    return SchemaUnsupported(
        f"structured output (response_format json_schema) refused: {message.splitlines()[0]}"
        " — apr-mcp uses JSON instructions in the prompt for this endpoint (APR_STRUCTURED=prompt"
        " skips the attempt)",
        backend=backend,
        model=model,
        status_code=status,
        body=body,
    )


def not_served_hint(
    model: str,
    ids: list[str] | None,
    base_url: str,
    *,
    names_model: bool = False,
    root: str = "the API root, usually ending in /v1",
) -> str:
    """What to fix after a 404 (or "model not found"), given the ids ``GET /models`` listed.

    ``ids`` is None when the model list could not be read either: then the model id or the URL
    is wrong (the model, if the error itself says so: ``names_model``). ``root`` says what
    ``APR_BASE_URL`` should look like.
    """
    if ids is None and names_model:
        return f"model {model!r} not served: check APR_MODEL (the server lists no models)"
    if ids is None:
        return f"check APR_MODEL ({model!r}) and APR_BASE_URL (should be {root}; is {base_url})"
    if model in ids:
        return (
            f"the server serves {model!r}, so the path is wrong: APR_BASE_URL should be "
            f"{root} (is {base_url})"
        )
    shown = ", ".join(ids[:8]) + (", ..." if len(ids) > 8 else "") if ids else "none"
    return f"model {model!r} not served; available: {shown} (set APR_MODEL)"


def transport_error(exc: httpx.HTTPError, *, backend: str, model: str, started: bool) -> ModelError:
    """Map an httpx transport exception. ``started``: response headers had already arrived."""
    if isinstance(exc, httpx.TimeoutException):
        what = (
            "connecting"
            if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))
            else "reading"
        )
        if what == "reading" and started:
            advice = "the stream stalled: no data for APR_IDLE_TIMEOUT_S"
        elif what == "reading":
            advice = "no answer in time; raise APR_TIMEOUT_S if the model is slow"
        else:
            advice = "check APR_BASE_URL and that the server is up (APR_CONNECT_TIMEOUT_S)"
        return ModelTimeoutError(
            f"timed out {what} ({type(exc).__name__}); {advice}",
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
        return ModelHTTPError(
            f"stream error: {message}",
            status_code=code,
            **kw,  # type: ignore[arg-type]
        )
    # Unknown or api_error mid-stream: the provider failed while generating; retrying may help.
    return ServerError(f"stream error: {message}", **kw)  # type: ignore[arg-type]
