"""Anthropic's Messages API over httpx (``POST {base}/v1/messages``).

System messages are sent as the top-level ``system`` field; consecutive messages of one role are
joined, since the API wants user and assistant turns to alternate. Streaming reads the SSE events
(``message_start`` → ``content_block_delta`` … → ``message_delta`` → ``message_stop``); an
``error`` event inside a 200 stream (e.g. ``overloaded_error``) becomes the same exception as the
matching HTTP status would. Stop reasons are normalised to the OpenAI vocabulary (``end_turn`` →
``stop``, ``max_tokens`` → ``length``) so callers check one set of values; ``max_tokens`` follows
the same rule as the OpenAI backend (see :mod:`apr_mcp.llm.openai_compat`).

The Messages API has no JSON-schema response format, so ``supports_json_schema`` is False and
:func:`~apr_mcp.llm.structured.complete_structured` puts the schema in the prompt.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from ..errors import ModelOutputError, StreamInterrupted
from ._http import (
    DEFAULT_MAX_CONNECTIONS,
    client_pool,
    emit,
    finish_stream,
    http_error,
    iter_sse,
    log,
    stream_error,
    transport_error,
    usage_or_count,
)
from .base import Model, ModelRequest, ModelResponse, TokenCallback

__all__ = ["ANTHROPIC_VERSION", "AnthropicModel"]

_BACKEND = "anthropic"
ANTHROPIC_VERSION = "2023-06-01"
_STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


class AnthropicModel(Model):
    """Claude models through the Messages API.

    ``base_url`` is the API root without ``/v1`` (``https://api.anthropic.com``); a trailing
    ``/v1`` is accepted too. ``transport`` replaces the network in tests. ``max_connections``
    caps the keep-alive pool; waiting for a free connection never times out.
    """

    backend = _BACKEND
    supports_json_schema = False

    def __init__(
        self,
        *,
        base_url: str = "https://api.anthropic.com",
        api_key: str | None = None,
        model: str,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        extra_headers: dict[str, str] | None = None,
        stream: bool = True,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        root = base_url.rstrip("/")
        self.base_url = root.removesuffix("/v1")
        self.model_name = model
        self.stream = stream
        headers = {
            "anthropic-version": ANTHROPIC_VERSION,
            "Accept": "application/json, text/event-stream",
        }
        if api_key:
            headers["x-api-key"] = api_key
        headers.update(extra_headers or {})
        self._clients = client_pool(
            base_url=self.base_url,
            headers=headers,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            transport=transport,
            max_connections=max_connections,
        )

    def __repr__(self) -> str:
        return f"AnthropicModel(base_url={self.base_url!r}, model={self.model_name!r})"

    async def aclose(self) -> None:
        await self._clients.aclose()

    def build_body(self, request: ModelRequest) -> dict[str, Any]:
        """The JSON body for ``request``."""
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        turns: list[dict[str, str]] = []
        for m in request.messages:
            if m.role == "system":
                continue
            if turns and turns[-1]["role"] == m.role:
                turns[-1]["content"] += "\n\n" + m.content
            else:
                turns.append({"role": m.role, "content": m.content})
        if not turns:
            turns.append({"role": "user", "content": system or "."})
            system = ""
        body: dict[str, Any] = {
            "model": self.model_for(request),
            "max_tokens": request.max_tokens,
            "messages": turns,
            # The Messages API accepts 0..1; our requests allow up to 2 (OpenAI's range).
            "temperature": min(request.temperature, 1.0),
        }
        if system:
            body["system"] = system
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = request.stop
        if self.stream:
            body["stream"] = True
        return body

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        """Run one Messages API call (streamed unless ``stream=False``)."""
        body = self.build_body(request)
        model = str(body["model"])
        started = time.monotonic()
        try:
            if self.stream:
                return await self._streamed(request, body, model, started, on_token)
            async with self._clients.lease() as client:
                response = await client.post("/v1/messages", json=body)
        except httpx.HTTPError as exc:
            raise transport_error(exc, backend=_BACKEND, model=model, started=False) from exc
        if response.status_code >= 400:
            raise http_error(
                response.status_code, response.text, response.headers, backend=_BACKEND, model=model
            )
        try:
            data = response.json()
            blocks = data["content"]
        except (ValueError, KeyError, TypeError):
            raise ModelOutputError(
                "response is not a Messages API JSON",
                backend=_BACKEND,
                model=model,
                body=response.text,
            ) from None
        if data.get("type") == "error":
            raise stream_error(data, backend=_BACKEND, model=model)
        text = "".join(
            b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"
        )
        await emit(on_token, text)
        usage = data.get("usage") or {}
        return _finish(
            request,
            text,
            data.get("stop_reason"),
            usage.get("input_tokens"),
            usage.get("output_tokens"),
            data.get("model") or model,
            started,
            None,
        )

    async def _streamed(
        self,
        request: ModelRequest,
        body: dict[str, Any],
        model: str,
        started: float,
        on_token: TokenCallback | None,
    ) -> ModelResponse:
        parts: list[str] = []
        stop_reason: str | None = None
        input_tokens: int | None = None
        output_tokens: int | None = None
        served_model = model
        done = False
        events = junk = 0
        ttft: float | None = None
        async with (
            self._clients.lease() as client,
            client.stream("POST", "/v1/messages", json=body) as response,
        ):
            if response.status_code >= 400:
                text = (await response.aread()).decode("utf-8", errors="replace")
                raise http_error(
                    response.status_code, text, response.headers, backend=_BACKEND, model=model
                )
            sse = iter_sse(response)
            try:
                async for event in sse:
                    try:
                        data = json.loads(event.data)
                    except ValueError:
                        data = None
                    if not isinstance(data, dict):
                        junk += 1
                        log.debug("%s: skipping non-JSON SSE data: %.200r", model, event.data)
                        continue
                    events += 1
                    kind = data.get("type") or event.event
                    if kind == "error":
                        raise stream_error(data, backend=_BACKEND, model=model)
                    if kind == "message_start":
                        message = data.get("message") or {}
                        served_model = message.get("model") or served_model
                        usage = message.get("usage") or {}
                        input_tokens = _int(usage.get("input_tokens"), input_tokens)
                        output_tokens = _int(usage.get("output_tokens"), output_tokens)
                    elif kind == "content_block_delta":
                        delta = data.get("delta") or {}
                        piece = delta.get("text")
                        if delta.get("type") == "text_delta" and isinstance(piece, str) and piece:
                            if ttft is None:
                                ttft = time.monotonic() - started
                            parts.append(piece)
                            await emit(on_token, piece)
                    elif kind == "message_delta":
                        stop_reason = (data.get("delta") or {}).get("stop_reason") or stop_reason
                        usage = data.get("usage") or {}
                        # message_delta's output_tokens is cumulative: it replaces, not adds.
                        output_tokens = _int(usage.get("output_tokens"), output_tokens)
                        input_tokens = _int(usage.get("input_tokens"), input_tokens)
                    elif kind == "message_stop":
                        done = True
                        break
            except httpx.HTTPError as exc:
                raise transport_error(exc, backend=_BACKEND, model=model, started=True) from exc
            finally:
                if not done:
                    await sse.aclose()
            if done:
                # Read to the body's end so that the keep-alive connection goes back to the pool.
                await finish_stream(sse)
        text = "".join(parts)
        if events == 0 and junk > 0:
            raise ModelOutputError(
                f"stream contained no valid JSON event ({junk} unparseable events)",
                backend=_BACKEND,
                model=model,
            )
        if not done and stop_reason is None:
            raise StreamInterrupted(
                f"stream ended before message_stop ({len(text)} characters received)",
                backend=_BACKEND,
                model=model,
            )
        return _finish(
            request, text, stop_reason, input_tokens, output_tokens, served_model, started, ttft
        )


def _int(value: object, default: int | None) -> int | None:
    return value if isinstance(value, int) else default


def _finish(
    request: ModelRequest,
    text: str,
    stop_reason: str | None,
    input_tokens: object,
    output_tokens: object,
    model: str,
    started: float,
    ttft: float | None,
) -> ModelResponse:
    finish = _STOP_REASONS.get(stop_reason or "", stop_reason)
    if finish == "length" and (not text.strip() or request.json_schema is not None):
        what = "structured output" if text.strip() else "answer"
        raise ModelOutputError(
            f"{what} cut off at max_tokens={request.max_tokens} (stop_reason=max_tokens); raise max_tokens",
            backend=_BACKEND,
            model=model,
            body=text or None,
        )
    if not text.strip():
        raise ModelOutputError(
            f"empty answer (stop_reason={stop_reason})", backend=_BACKEND, model=model
        )
    return ModelResponse(
        text=text,
        usage=usage_or_count(
            request.messages, text, _int(input_tokens, None), _int(output_tokens, None)
        ),
        model=model,
        backend=_BACKEND,
        finish_reason=finish,
        latency_s=time.monotonic() - started,
        ttft_s=ttft,
    )
