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
from typing import Any, ClassVar

import httpx

from ..errors import ModelOutputError
from ._http import (
    DEFAULT_MAX_CONNECTIONS,
    HTTPBackend,
    JSONStream,
    Reply,
    emit,
)
from ._http_errors import stream_error
from .base import ModelRequest, TokenCallback

__all__ = ["ANTHROPIC_VERSION", "AnthropicModel"]

_BACKEND = "anthropic"
ANTHROPIC_VERSION = "2023-06-01"


class AnthropicModel(HTTPBackend):
    """Claude models through the Messages API.

    ``base_url`` is the API root without ``/v1`` (``https://api.anthropic.com``); a trailing
    ``/v1`` is accepted too. ``transport`` replaces the network in tests. ``max_connections``
    caps the keep-alive pool; waiting for a free connection never times out.
    """

    backend = _BACKEND
    supports_json_schema = False
    path = "/v1/messages"
    models_path = "/v1/models"
    base_url_hint = "the API root, e.g. https://api.anthropic.com"
    reason_field = "stop_reason"
    stop_reasons: ClassVar[dict[str, str]] = {
        "end_turn": "stop",
        "stop_sequence": "stop",
        "max_tokens": "length",
    }

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
        idle_timeout_s: float | None = None,
    ) -> None:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        super().__init__(
            base_url=base_url.rstrip("/").removesuffix("/v1"),
            model=model,
            headers=headers,
            extra_headers=extra_headers,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            transport=transport,
            stream=stream,
            max_connections=max_connections,
            idle_timeout_s=idle_timeout_s,
        )

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

    async def _parse_json(self, raw: str, model: str, on_token: TokenCallback | None) -> Reply:
        try:
            data = json.loads(raw)
            blocks = data["content"]
        except (ValueError, KeyError, TypeError):
            raise ModelOutputError(
                "response is not a Messages API JSON", backend=_BACKEND, model=model, body=raw
            ) from None
        if data.get("type") == "error":
            raise stream_error(data, backend=_BACKEND, model=model)
        text = "".join(
            b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"
        )
        await emit(on_token, text)
        usage = data.get("usage") or {}
        return Reply(
            text,
            data.get("stop_reason"),
            usage.get("input_tokens"),
            usage.get("output_tokens"),
            data.get("model") or model,
        )

    async def _read_stream(
        self, response: httpx.Response, model: str, started: float, on_token: TokenCallback | None
    ) -> Reply:
        stop_reason: str | None = None
        input_tokens: int | None = None
        output_tokens: int | None = None
        served_model = model
        async with JSONStream(response, started=started, backend=_BACKEND, model=model) as stream:
            async for event, data in stream:
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
                    if delta.get("type") == "text_delta" and isinstance(piece, str):
                        await stream.add(piece, on_token)
                elif kind == "message_delta":
                    stop_reason = (data.get("delta") or {}).get("stop_reason") or stop_reason
                    usage = data.get("usage") or {}
                    # message_delta's output_tokens is cumulative: it replaces, not adds.
                    output_tokens = _int(usage.get("output_tokens"), output_tokens)
                    input_tokens = _int(usage.get("input_tokens"), input_tokens)
                elif kind == "message_stop":
                    stream.done = True
                    break
        text = stream.text(
            stopped=stop_reason is not None, unit="event", end="message_stop", reason="stop_reason"
        )
        return Reply(text, stop_reason, input_tokens, output_tokens, served_model, stream.ttft)


def _int(value: object, default: int | None) -> int | None:
    return value if isinstance(value, int) else default
