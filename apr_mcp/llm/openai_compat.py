"""Any OpenAI-compatible Chat Completions endpoint over httpx.

Works with OpenAI, Ollama (``/v1``), vLLM, llama.cpp server, LM Studio and OpenRouter. Answers
stream as server-sent events by default, so that each delta reaches ``on_token`` as it arrives
and cancelling the calling task closes the HTTP stream (which makes those servers stop
generating). Compatible servers differ in small ways; this backend adapts once per instance:

* a 400 that complains about ``stream_options`` → resend without it (and never send it again);
* a 400 that asks for ``max_completion_tokens`` (newer OpenAI models) → rename ``max_tokens``;
* an error that refuses ``response_format``/``json_schema`` (400/422, or the 500 that
  llama-cpp-python sends; the body decides) → :class:`~apr_mcp.errors.SchemaUnsupported` is
  raised and the endpoint (base URL + model id) is remembered for the rest of the process, so
  that :func:`~apr_mcp.llm.structured.complete_structured` uses JSON instructions in the prompt
  now and every later call skips the attempt. ``structured="prompt"`` never sends a schema,
  ``"schema"`` always does (``APR_STRUCTURED``);
* a server that ignores ``stream: true`` and answers with plain JSON is read as non-streamed.

``finish_reason: "length"`` on a free-text answer that has text is returned as is (with
``finish_reason="length"``), because a long but cut answer is still useful and the caller can see
the flag; it is a :class:`~apr_mcp.errors.ModelOutputError` when the text is empty or structured
output was asked for (cut JSON is never valid).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx

from ..errors import ModelOutputError
from ._http import (
    DEFAULT_MAX_CONNECTIONS,
    HTTPBackend,
    JSONStream,
    Reply,
    emit,
    log,
)
from ._http_errors import refuses_schema, stream_error
from .base import ModelRequest, TokenCallback

__all__ = ["OpenAICompatModel", "forget_schema_refusals"]

_BACKEND = "openai"

StructuredMode = Literal["auto", "schema", "prompt"]

#: (base URL, model id) of endpoints that refused native structured output in this process.
_SCHEMA_REFUSED: set[tuple[str, str]] = set()


def forget_schema_refusals() -> None:
    """Forget which endpoints refused native structured output (tests; a restarted server)."""
    _SCHEMA_REFUSED.clear()


class OpenAICompatModel(HTTPBackend):
    """An OpenAI-compatible ``/chat/completions`` endpoint.

    ``base_url`` is the API root including the version (``https://api.openai.com/v1``,
    ``http://localhost:11434/v1``). ``transport`` replaces the network (tests pass
    ``httpx.MockTransport``). ``timeout_s`` bounds each read: for a stream, the gap between two
    chunks; without streaming, the whole generation. ``max_connections`` caps the keep-alive
    pool; waiting for a free connection never times out.
    """

    backend = _BACKEND
    path = "/chat/completions"
    models_path = "/models"
    base_url_hint = "the API root, usually ending in /v1"
    reason_field = "finish_reason"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        model: str,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        extra_headers: dict[str, str] | None = None,
        stream: bool = True,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        idle_timeout_s: float | None = None,
        structured: StructuredMode = "auto",
    ) -> None:
        self.structured: StructuredMode = structured
        super().__init__(
            base_url=base_url.rstrip("/"),
            model=model,
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            extra_headers=extra_headers,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            transport=transport,
            stream=stream,
            max_connections=max_connections,
            idle_timeout_s=idle_timeout_s,
        )
        self._send_stream_options = True
        self._max_tokens_field = "max_tokens"

    @property
    def supports_json_schema(self) -> bool:
        """Whether a schema travels as ``response_format`` for the default model id."""
        return self.native_schema_for(self.model_name)

    @supports_json_schema.setter
    def supports_json_schema(self, value: bool) -> None:
        key = (self.base_url, self.model_name)
        if value:
            _SCHEMA_REFUSED.discard(key)
        else:
            _SCHEMA_REFUSED.add(key)

    def native_schema_for(self, model: str) -> bool:
        """Whether a schema for ``model`` travels as ``response_format`` (``APR_STRUCTURED``)."""
        if self.structured == "auto":
            return (self.base_url, model) not in _SCHEMA_REFUSED
        return self.structured == "schema"

    def build_body(self, request: ModelRequest) -> dict[str, Any]:
        """The JSON body for ``request`` (public so tests and ``doctor`` can inspect it)."""
        body: dict[str, Any] = {
            "model": self.model_for(request),
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            self._max_tokens_field: request.max_tokens,
            "temperature": request.temperature,
        }
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = request.stop
        if request.seed is not None:
            body["seed"] = request.seed
        if request.json_schema is not None and self.native_schema_for(str(body["model"])):
            body["response_format"] = {
                "type": "json_schema",
                # strict=False: strict mode rejects common schema features (defaults, optional
                # fields); we validate with pydantic ourselves anyway.
                "json_schema": {
                    "name": request.schema_name,
                    "schema": request.json_schema,
                    "strict": False,
                },
            }
        if self.stream:
            body["stream"] = True
            if self._send_stream_options:
                body["stream_options"] = {"include_usage": True}
        return body

    def _adapt(self, status: int, text: str, body: dict[str, Any]) -> bool:
        if "response_format" in body and refuses_schema(status, text):
            # Not resent here: structured.py owns the fallback (it must add JSON instructions).
            log.info("%s rejects response_format json_schema; using JSON-in-prompt", self.base_url)
            _SCHEMA_REFUSED.add((self.base_url, str(body["model"])))
            return False
        if status not in (400, 422):
            return False
        lowered = text.lower()
        if "stream_options" in lowered and "stream_options" in body:
            log.info("%s does not accept stream_options; counting usage locally", self.base_url)
            self._send_stream_options = False
            del body["stream_options"]
            return True
        if "max_completion_tokens" in lowered and "max_tokens" in body:
            self._max_tokens_field = "max_completion_tokens"
            body["max_completion_tokens"] = body.pop("max_tokens")
            return True
        return False

    async def _parse_json(self, raw: str, model: str, on_token: TokenCallback | None) -> Reply:
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("error") and not data.get("choices"):
            raise stream_error(data, backend=_BACKEND, model=model)  # an error inside a 200
        try:
            choice = data["choices"][0]
            message = choice.get("message") or {}
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ModelOutputError(
                "response is not a chat completion JSON", backend=_BACKEND, model=model, body=raw
            ) from None
        text = message.get("content") or ""
        if not isinstance(text, str):  # some servers return content parts
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        if not text and message.get("refusal"):
            raise ModelOutputError(
                f"model refused: {message['refusal']}", backend=_BACKEND, model=model
            )
        await emit(on_token, text)
        usage = data.get("usage") or {}
        return Reply(
            text,
            choice.get("finish_reason"),
            usage.get("prompt_tokens"),
            usage.get("completion_tokens"),
            data.get("model") or model,
        )

    async def _read_stream(
        self, response: httpx.Response, model: str, started: float, on_token: TokenCallback | None
    ) -> Reply:
        finish_reason: str | None = None
        usage: dict[str, Any] = {}
        served_model = model
        async with JSONStream(
            response, started=started, backend=_BACKEND, model=model, end_data="[DONE]"
        ) as stream:
            async for _, chunk in stream:
                if chunk.get("error"):
                    raise stream_error(chunk, backend=_BACKEND, model=model)
                served_model = chunk.get("model") or served_model
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    if choice.get("index", 0) != 0:
                        continue
                    piece = (choice.get("delta") or {}).get("content")
                    if isinstance(piece, str):
                        await stream.add(piece, on_token)
                    if choice.get("finish_reason"):
                        finish_reason = choice["finish_reason"]
        text = stream.text(
            stopped=finish_reason is not None,
            unit="chunk",
            end="the answer finished",
            reason="finish_reason",
        )
        return Reply(
            text,
            finish_reason,
            usage.get("prompt_tokens"),
            usage.get("completion_tokens"),
            served_model,
            stream.ttft,
        )
