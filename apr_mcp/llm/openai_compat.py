"""Any OpenAI-compatible Chat Completions endpoint over httpx.

Works with OpenAI, Ollama (``/v1``), vLLM, llama.cpp server, LM Studio and OpenRouter. Answers
stream as server-sent events by default, so that each delta reaches ``on_token`` as it arrives
and cancelling the calling task closes the HTTP stream (which makes those servers stop
generating). Compatible servers differ in small ways; this backend adapts once per instance:

* a 400 that complains about ``stream_options`` → resend without it (and never send it again);
* a 400 that asks for ``max_completion_tokens`` (newer OpenAI models) → rename ``max_tokens``;
* a 400/422 that rejects ``response_format``/``json_schema`` → ``supports_json_schema`` is turned
  off and the error raised, so that :func:`~apr_mcp.llm.structured.complete_structured` falls
  back to JSON instructions in the prompt;
* a server that ignores ``stream: true`` and answers with plain JSON is read as non-streamed.

``finish_reason: "length"`` on a free-text answer that has text is returned as is (with
``finish_reason="length"``), because a long but cut answer is still useful and the caller can see
the flag; it is a :class:`~apr_mcp.errors.ModelOutputError` when the text is empty or structured
output was asked for (cut JSON is never valid).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from ..errors import ModelError, ModelHTTPError, ModelOutputError, StreamInterrupted
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

__all__ = ["OpenAICompatModel"]

_BACKEND = "openai"


class OpenAICompatModel(Model):
    """An OpenAI-compatible ``/chat/completions`` endpoint.

    ``base_url`` is the API root including the version (``https://api.openai.com/v1``,
    ``http://localhost:11434/v1``). ``transport`` replaces the network (tests pass
    ``httpx.MockTransport``). ``timeout_s`` bounds each read: for a stream, the gap between two
    chunks; without streaming, the whole generation. ``max_connections`` caps the keep-alive
    pool; waiting for a free connection never times out.
    """

    backend = _BACKEND

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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model_name = model
        self.stream = stream
        self.supports_json_schema = True
        self._send_stream_options = True
        self._max_tokens_field = "max_tokens"
        headers = {"Accept": "application/json, text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
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
        return f"OpenAICompatModel(base_url={self.base_url!r}, model={self.model_name!r})"

    async def aclose(self) -> None:
        await self._clients.aclose()

    # ----- request -----

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
        if request.json_schema is not None and self.supports_json_schema:
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
        """Adapt ``body`` to a server that rejected part of it; True if worth resending."""
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
        if "response_format" in body and ("response_format" in lowered or "json_schema" in lowered):
            # Not resent here: structured.py owns the fallback (it must add JSON instructions).
            log.info("%s rejects response_format json_schema; using JSON-in-prompt", self.base_url)
            self.supports_json_schema = False
        return False

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        """Run one chat completion (streamed unless ``stream=False``)."""
        body = self.build_body(request)
        model = str(body["model"])
        started = time.monotonic()
        for _ in range(3):  # at most two compatibility adaptations, then the real answer or error
            try:
                if body.get("stream"):
                    result = await self._streamed(request, body, model, started, on_token)
                else:
                    result = await self._unstreamed(request, body, model, started, on_token)
            except _Resend:
                continue
            except httpx.HTTPError as exc:
                raise transport_error(exc, backend=_BACKEND, model=model, started=False) from exc
            return result
        raise ModelHTTPError("the server kept rejecting the request", backend=_BACKEND, model=model)

    async def _error_for(
        self, response: httpx.Response, body: dict[str, Any], model: str
    ) -> ModelError:
        text = (await response.aread()).decode("utf-8", errors="replace")
        if self._adapt(response.status_code, text, body):
            raise _Resend
        return http_error(
            response.status_code, text, response.headers, backend=_BACKEND, model=model
        )

    # ----- non-streamed -----

    async def _unstreamed(
        self,
        request: ModelRequest,
        body: dict[str, Any],
        model: str,
        started: float,
        on_token: TokenCallback | None,
    ) -> ModelResponse:
        async with self._clients.lease() as client:
            response = await client.post("/chat/completions", json=body)
        if response.status_code >= 400:
            raise await self._error_for(response, body, model)
        return await self._from_json(request, response.text, model, started, on_token)

    async def _from_json(
        self,
        request: ModelRequest,
        raw: str,
        model: str,
        started: float,
        on_token: TokenCallback | None,
    ) -> ModelResponse:
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
        return self._finish(
            request,
            text,
            choice.get("finish_reason"),
            usage,
            data.get("model") or model,
            started,
            ttft=None,
        )

    # ----- streamed -----

    async def _streamed(
        self,
        request: ModelRequest,
        body: dict[str, Any],
        model: str,
        started: float,
        on_token: TokenCallback | None,
    ) -> ModelResponse:
        parts: list[str] = []
        finish_reason: str | None = None
        usage: dict[str, Any] = {}
        served_model = model
        done = False
        chunks = junk = 0
        ttft: float | None = None
        # `async with` guarantees the stream is closed when the caller is cancelled mid-answer.
        async with (
            self._clients.lease() as client,
            client.stream("POST", "/chat/completions", json=body) as response,
        ):
            if response.status_code >= 400:
                raise await self._error_for(response, body, model)
            ctype = response.headers.get("content-type", "")
            if "event-stream" not in ctype and "json" in ctype:
                raw = (await response.aread()).decode("utf-8", errors="replace")
                return await self._from_json(request, raw, model, started, on_token)
            events = iter_sse(response)
            try:
                async for event in events:
                    if event.data.strip() == "[DONE]":
                        done = True
                        break
                    try:
                        chunk = json.loads(event.data)
                    except ValueError:
                        chunk = None
                    if not isinstance(chunk, dict):
                        junk += 1
                        log.debug("%s: skipping non-JSON SSE data: %.200r", model, event.data)
                        continue
                    if chunk.get("error"):
                        raise stream_error(chunk, backend=_BACKEND, model=model)
                    chunks += 1
                    served_model = chunk.get("model") or served_model
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    for choice in chunk.get("choices") or []:
                        if choice.get("index", 0) != 0:
                            continue
                        piece = (choice.get("delta") or {}).get("content")
                        if isinstance(piece, str) and piece:
                            if ttft is None:
                                ttft = time.monotonic() - started
                            parts.append(piece)
                            await emit(on_token, piece)
                        if choice.get("finish_reason"):
                            finish_reason = choice["finish_reason"]
            except httpx.HTTPError as exc:
                raise transport_error(exc, backend=_BACKEND, model=model, started=True) from exc
            finally:
                if not done:
                    await events.aclose()
            if done:
                # Read to the body's end so that the keep-alive connection goes back to the pool.
                await finish_stream(events)
        text = "".join(parts)
        if chunks == 0 and junk > 0:
            raise ModelOutputError(
                f"stream contained no valid JSON chunk ({junk} unparseable events)",
                backend=_BACKEND,
                model=model,
            )
        if not done and finish_reason is None:
            raise StreamInterrupted(
                f"stream ended before the answer finished ({len(text)} characters received)",
                backend=_BACKEND,
                model=model,
            )
        return self._finish(request, text, finish_reason, usage, served_model, started, ttft=ttft)

    # ----- common -----

    def _finish(
        self,
        request: ModelRequest,
        text: str,
        finish_reason: str | None,
        usage: dict[str, Any],
        model: str,
        started: float,
        *,
        ttft: float | None,
    ) -> ModelResponse:
        if finish_reason == "length" and (not text.strip() or request.json_schema is not None):
            what = "structured output" if text.strip() else "answer"
            raise ModelOutputError(
                f"{what} cut off at max_tokens={request.max_tokens} (finish_reason=length); "
                "raise max_tokens",
                backend=_BACKEND,
                model=model,
                body=text or None,
            )
        if not text.strip():
            raise ModelOutputError(
                f"empty answer (finish_reason={finish_reason})", backend=_BACKEND, model=model
            )
        inp, out = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return ModelResponse(
            text=text,
            usage=usage_or_count(
                request.messages,
                text,
                inp if isinstance(inp, int) else None,
                out if isinstance(out, int) else None,
            ),
            model=model,
            backend=_BACKEND,
            finish_reason=finish_reason,
            latency_s=time.monotonic() - started,
            ttft_s=ttft,
        )


class _Resend(Exception):
    """Internal: the request body was adapted after a rejection; send it again."""
