"""The one model interface every backend implements, and the base of every wrapper.

A backend turns a :class:`ModelRequest` into a :class:`ModelResponse`. Wrappers (retry, adaptive
concurrency limit, cache) are themselves ``Model``s around an inner model, so behaviour is added
by composition, never by flags inside the backends. Backends know nothing of plans or merges.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "Message",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "TokenCallback",
    "Usage",
    "WrapperModel",
    "call_token_callback",
]

Role = Literal["system", "user", "assistant"]

#: Called with each streamed text delta; lets callers count tokens and show progress.
TokenCallback = Callable[[str], Awaitable[None] | None]


async def call_token_callback(on_token: TokenCallback | None, delta: str) -> None:
    """Call ``on_token`` with ``delta`` whether it is a plain function or a coroutine function
    (the one place that knows both kinds)."""
    if on_token is None or not delta:
        return
    result = on_token(delta)
    if inspect.isawaitable(result):
        await result


class Message(BaseModel):
    role: Role
    content: str


class ModelRequest(BaseModel):
    """One call to a model.

    ``purpose`` (planner/solver/merger/...) and ``prompt_version`` are metadata: backends ignore
    them, the cache puts them in its key, traces and metrics group by them.
    """

    messages: list[Message]
    max_tokens: int = Field(default=1024, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    #: JSON schema the answer must follow (structured output); ``None`` for free text.
    json_schema: dict[str, Any] | None = None
    schema_name: str = "output"
    purpose: str = "solver"
    prompt_version: str = ""
    #: Model id override for this call (roles may use different models); ``None`` = backend default.
    model: str | None = None
    #: Seconds this call may take in all, retries included (the engine passes what is left of
    #: the run's deadline); ``None`` = only the backend's own limit. Not part of the cache key.
    timeout_s: float | None = Field(default=None, gt=0)


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    #: True when the provider reported the numbers; False when we counted them with tiktoken.
    reported: bool = False


class ModelResponse(BaseModel):
    text: str
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    backend: str = ""
    finish_reason: str | None = None
    latency_s: float = 0.0
    #: Time to first token (streaming backends), seconds.
    ttft_s: float | None = None
    cached: bool = False
    #: True when a simulated model served this (in process, or an ``apr-mcp simulate`` endpoint,
    #: whose model ids start with ``sim-``): its text is a placeholder, not an answer.
    simulated: bool = False
    #: Set only where one response sums several calls (structured output's repair): the largest
    #: :attr:`max_context_tokens` of any one of them. None: ``usage`` is a single call's.
    peak_context_tokens: int | None = None

    @property
    def max_context_tokens(self) -> int:
        """The context this call held on the model: its prompt plus what it generated (the KV
        cache holds both). 0 for a cache hit, which held nothing on the model."""
        if self.peak_context_tokens is not None:
            return self.peak_context_tokens
        if self.cached:
            return 0
        return self.usage.input_tokens + self.usage.output_tokens


class Model(abc.ABC):
    """An async text model. Implementations must be safe to call concurrently."""

    #: Backend name, used in errors and metrics (``openai``, ``anthropic``, ``simulated``, ...).
    backend: str = "unknown"
    #: Default model id.
    model_name: str = ""
    #: Whether ``json_schema`` is sent to the provider as native structured output. The
    #: structured-output helper turns to JSON-in-prompt where this is False or the provider refuses.
    supports_json_schema: bool = False
    #: Changes when the same backend and model id would answer differently (a simulated model's
    #: reply rules or script); part of every cache key, so stale answers are never replayed.
    revision: str = ""

    @abc.abstractmethod
    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        """Run one request. Raise a :class:`~apr_mcp.errors.ModelError` subclass on failure.

        Cancelling the calling task must stop generation (close the stream) promptly.
        """

    async def aclose(self) -> None:
        """Release connections. Safe to call more than once."""

    def model_for(self, request: ModelRequest) -> str:
        return request.model or self.model_name

    @property
    def inner(self) -> Model | None:
        return None

    def unwrap(self) -> Model:
        """The backend under all wrappers."""
        m: Model = self
        while m.inner is not None:
            m = m.inner
        return m


class WrapperModel(Model):
    """A model that delegates to ``inner`` and adds one behaviour."""

    def __init__(self, inner: Model) -> None:
        self._inner = inner
        self.backend = inner.backend
        self.model_name = inner.model_name

    @property
    def inner(self) -> Model:
        return self._inner

    @property
    def supports_json_schema(self) -> bool:
        return self._inner.supports_json_schema

    @supports_json_schema.setter
    def supports_json_schema(self, value: bool) -> None:
        self._inner.supports_json_schema = value

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        return await self._inner.complete(request, on_token=on_token)

    async def aclose(self) -> None:
        await self._inner.aclose()
