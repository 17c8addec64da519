"""The cache wrapper: answer repeated requests from the disk cache.

The key holds everything that changes the answer — purpose, backend, model id, prompt version,
the messages (whitespace-normalised), sampling parameters and the JSON schema — so a prompt edit
(which bumps its version) or another model never reuses a stale answer.

Only usable answers are stored, and an entry is checked again each time it is read (one that no
longer passes is dropped and asked again): never errors, cancellations or empty text. Where the
caller declared what it can use (:func:`~apr_mcp.llm.usable.usable_when`: structured output with
its pydantic type; a caller that bounds a reply on purpose, with
:func:`~apr_mcp.llm.usable.any_text`), that check decides. Otherwise an answer cut at the token
limit is not stored, and a structured one (``json_schema`` set) must contain JSON valid against
the request's schema.
"""

from __future__ import annotations

from collections.abc import Callable
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
from .structured import iter_json_candidates
from .usable import TextCheck, usable_check

__all__ = ["CachedModel", "cache_status", "is_complete", "matches_schema"]

#: Finish reasons of answers that are never stored.
_NEVER = frozenset({"content_filter", "cancelled", "error"})
#: ... and without a declared check, neither is an answer cut at max_tokens.
_INCOMPLETE = _NEVER | {"length"}


def _normalise(text: str) -> str:
    # Trailing spaces and line-ending style never change an answer; indentation can (code).
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).strip()


def is_complete(response: ModelResponse) -> bool:
    """True for outputs worth storing: non-empty text that was not cut or filtered."""
    return bool(response.text.strip()) and response.finish_reason not in _INCOMPLETE


def matches_schema(text: str, schema: dict[str, Any]) -> bool:
    """True when ``text`` holds a JSON value (tolerantly extracted) valid against ``schema``."""
    # Imported here: ~50 ms at start-up, and only calls without a declared check need it.
    import jsonschema  # type: ignore[import-untyped]

    try:
        validator = jsonschema.validators.validator_for(schema)(schema)
    except Exception:  # noqa: BLE001 - a schema jsonschema cannot read: trust nothing
        return False
    return any(validator.is_valid(value) for value in iter_json_candidates(text))


def _usable(request: ModelRequest, check: TextCheck | None) -> Callable[[ModelResponse], bool]:
    """The test an answer to ``request`` must pass to be stored or served from the cache."""
    if check is not None:
        # The caller says what it can use. That may include a reply cut at max_tokens (a lead
        # line bounded on purpose); cut JSON never passes a structured check anyway.
        return lambda response: (
            bool(response.text.strip())
            and response.finish_reason not in _NEVER
            and check(response.text)
        )
    schema = request.json_schema
    if schema is None:
        return is_complete
    return lambda response: is_complete(response) and matches_schema(response.text, schema)


def cache_status(model: Model) -> str:
    """``on`` / ``off (<reason>)`` for the cache under ``model``'s wrappers (``off (none)``
    without one): what a run reports in its metrics."""
    m: Model | None = model
    while m is not None:
        if isinstance(m, CachedModel):
            return m.cache.status
        m = m.inner
    return "off (none)"


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
        usable = _usable(request, usable_check())

        async def compute() -> ModelResponse:
            return await self._inner.complete(request, on_token=on_token)

        response, hit = await self.cache.get_or_compute(
            self.key_for(request),
            compute,
            valid=usable,
            encode=_encode,
            decode=ModelResponse.model_validate,
        )
        if not hit:
            return response
        response = response.model_copy(
            update={"cached": True, "latency_s": anyio.current_time() - start, "ttft_s": None}
        )
        # One delta with the whole text, so progress and token counters still move.
        await call_token_callback(on_token, response.text)
        return response
