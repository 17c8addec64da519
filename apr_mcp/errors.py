"""The one exception tree of apr-mcp.

```
AprError                      everything apr-mcp raises on purpose
├── ConfigError               a setting is missing or wrong; the message says which and the fix
├── PlanError                 a plan is invalid (duplicate ids, unknown dependency, cycle, fan-out)
├── CacheError                the disk cache cannot be opened or written
├── BudgetExceeded            a token budget was spent before the run finished
└── ModelError                a model backend failed; carries backend, model, status and body
    ├── ModelHTTPError        the endpoint answered with an HTTP error status
    │   ├── RateLimitError    429 (and 529 "overloaded"); carries retry_after seconds if given
    │   ├── ServerError       5xx: the provider failed, worth retrying
    │   └── SchemaUnsupported the endpoint refused native structured output (use JSON-in-prompt)
    ├── ModelTimeoutError     connect or read timed out
    ├── ModelConnectionError  the endpoint could not be reached
    ├── StreamInterrupted     the response stream was cut before it finished
    ├── ModelOutputError      the model answered, but with junk: empty, truncated or unparseable
    └── SamplingUnavailable   the host cannot lend its model (no sampling capability)
```

Every message names what failed and, where there is one, what to do about it. ``retryable``
tells the retry wrapper whether trying again may help. ``partial_text`` is whatever answer text
had streamed before a call failed (empty if none), so a caller at its deadline can keep it.
"""

from __future__ import annotations

from .redact import redact

__all__ = [
    "AprError",
    "BudgetExceeded",
    "CacheError",
    "ConfigError",
    "ModelConnectionError",
    "ModelError",
    "ModelHTTPError",
    "ModelOutputError",
    "ModelTimeoutError",
    "PlanError",
    "RateLimitError",
    "SamplingUnavailable",
    "SchemaUnsupported",
    "ServerError",
    "StreamInterrupted",
]


class AprError(Exception):
    """Base class of every error apr-mcp raises on purpose."""


class ConfigError(AprError):
    """A setting is missing or invalid."""


class PlanError(AprError):
    """A plan (a list of subtasks) is invalid."""


class CacheError(AprError):
    """The disk cache could not be used."""


class BudgetExceeded(AprError):
    """A token budget was spent before the run finished."""


class ModelError(AprError):
    """A model backend failed.

    ``backend`` is the backend name (``openai``, ``anthropic``, ``sampling``, ``simulated``),
    ``model`` the model id, ``status_code`` and ``body`` the HTTP status and (truncated) body when
    there was a response.
    """

    retryable: bool = False
    #: Text streamed before the failure (a cut stream, a stall, a deadline); never an answer.
    partial_text: str = ""

    def __init__(
        self,
        message: str,
        *,
        backend: str = "",
        model: str = "",
        status_code: int | None = None,
        body: str | None = None,
    ) -> None:
        # Providers echo request headers (the API key) in error bodies, and URLs carry userinfo:
        # redacted here, where every model error is born, so no surface ever sees them. Capped
        # too: a message can quote a whole reply, and it is copied into every thread result.
        self.message = _capped(redact(message), 2000)
        self.backend = backend
        self.model = model
        self.status_code = status_code
        self.body = redact(body[:8000])[:2000] if body else body
        super().__init__(self._render())

    def _render(self) -> str:
        where = "/".join(p for p in (self.backend, self.model) if p)
        text = f"{where}: {self.message}" if where else self.message
        if self.status_code is not None:
            text += f" (HTTP {self.status_code})"
        if self.body:
            text += f": {self.body[:300]}"
        return text


def _capped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ModelHTTPError(ModelError):
    """The endpoint answered with an HTTP error status."""


class RateLimitError(ModelHTTPError):
    """The provider rate-limited or is overloaded (429/529)."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class ServerError(ModelHTTPError):
    """The provider failed with a 5xx status."""

    retryable = True


class SchemaUnsupported(ModelHTTPError):
    """The endpoint refused ``response_format``/``json_schema`` (400, 422, or a 500 that names
    it, as llama-cpp-python sends). Not retried: the structured-output helper switches that
    endpoint to JSON instructions in the prompt instead."""


class ModelTimeoutError(ModelError):
    """Connecting to or reading from the endpoint timed out."""

    retryable = True


class ModelConnectionError(ModelError):
    """The endpoint could not be reached."""

    retryable = True


class StreamInterrupted(ModelError):
    """The response stream ended before the model finished."""

    retryable = True
    #: True when the server itself ended the stream (an end marker with no stop reason): a server
    #: that serves one request at a time cuts a running answer when another one waits, so this
    #: is pushback from load, not a network fault.
    by_server: bool = False


class ModelOutputError(ModelError):
    """The model answered with something unusable (empty, truncated, not the JSON asked for)."""


class SamplingUnavailable(ModelError):
    """The MCP host cannot run sampling requests for us."""
