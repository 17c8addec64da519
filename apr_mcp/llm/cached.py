"""The cache wrapper: answer repeated requests from the disk cache.

The key holds everything that changes the answer — purpose, backend, model id, prompt version,
the messages (whitespace-normalised), sampling parameters and the JSON schema — so a prompt edit
(which bumps its version) or another model never reuses a stale answer. Only complete, successful
outputs are stored: errors, cancellations, empty text and ``finish_reason == "length"`` never are.
"""

from __future__ import annotations

from typing import Any

import anyio

from ..cache import ResultCache, make_key
from .base import (
    Model,
    ModelRequest,
    ModelResponse,
    TokenCallback,
    WrapperModel,
    call_token_callback,
)

__all__ = ["CachedModel", "is_complete"]


def _normalise(text: str) -> str:
    # Trailing spaces and line-ending style never change an answer; indentation can (code).
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).strip()


def is_complete(response: ModelResponse) -> bool:
    """True for outputs worth storing: non-empty text that was not cut by the token limit."""
    return bool(response.text.strip()) and response.finish_reason != "length"


def _encode(response: ModelResponse) -> dict[str, Any]:
    # Plain JSON-able data, not a pickled pydantic object: survives upgrades of the class.
    return response.model_dump(mode="json")


class CachedModel(WrapperModel):
    """Wraps a model with a :class:`ResultCache`; hits come back with ``cached=True``."""

    def __init__(self, inner: Model, cache: ResultCache) -> None:
        super().__init__(inner)
        self.cache = cache

    def key_for(self, request: ModelRequest) -> str:
        """The cache key of ``request`` (see the module docstring for what it contains)."""
        return make_key(
            kind="model-response",
            purpose=request.purpose,
            backend=self.backend,
            model=self.model_for(request),
            revision=self.unwrap().revision,
            prompt_version=request.prompt_version,
            messages=[[m.role, _normalise(m.content)] for m in request.messages],
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=request.stop,
            seed=request.seed,
            schema_name=request.schema_name if request.json_schema is not None else None,
            json_schema=request.json_schema,
        )

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        if not self.cache.enabled:
            return await self._inner.complete(request, on_token=on_token)
        start = anyio.current_time()

        async def compute() -> ModelResponse:
            return await self._inner.complete(request, on_token=on_token)

        response, hit = await self.cache.get_or_compute(
            self.key_for(request),
            compute,
            store_if=is_complete,
            encode=_encode,
            decode=ModelResponse.model_validate,
        )
        if not hit:
            return response
        response = response.model_copy(
            update={"cached": True, "latency_s": anyio.current_time() - start, "ttft_s": None}
        )
        if on_token is not None:
            # One delta with the whole text, so progress and token counters still move.
            await call_token_callback(on_token, response.text)
        return response
