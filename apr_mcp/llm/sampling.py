"""The ``sampling`` backend: borrow the MCP host's own model through the client session.

A tool call that arrives over a 2025-era connection (protocol ``2025-11-25`` and older) may send
``sampling/createMessage`` requests back to the client while it runs; the host answers them with
whatever model the user picked (VS Code supports this). One :class:`SamplingModel` is bound to one
tool call's context, so cancelling the call cancels every sampling request it made.

On ``2026-07-28`` connections a server can only sample through the multi-round
``InputRequiredResult`` flow: the tool *returns* its questions, the client answers and re-sends
the call, and the SDK exposes this as per-parameter ``Sample(...)`` resolvers that run before the
tool body. The engine's model calls are dynamic (the solver prompts depend on the plan, follow-ups
on the answers), so they cannot be declared up front; ``session.create_message`` raises
``NoBackChannelError`` there. This backend therefore raises :class:`SamplingUnavailable` on such
connections, with a message naming the alternatives.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any, Protocol

import anyio
from mcp.shared.exceptions import MCPDeprecationWarning, NoBackChannelError
from mcp_types import (
    ClientCapabilities,
    CreateMessageResult,
    ModelHint,
    ModelPreferences,
    SamplingMessage,
    TextContent,
)
from mcp_types.version import is_version_at_least

from ..errors import ModelError, ModelOutputError, ModelTimeoutError, SamplingUnavailable
from ..tokens import count_messages, count_tokens
from .base import Model, ModelRequest, ModelResponse, TokenCallback, Usage

__all__ = ["ALTERNATIVES", "SamplingModel", "sampling_problem"]

logger = logging.getLogger(__name__)

#: First protocol version whose tool calls have no mid-call back-channel for sampling.
_NO_BACKCHANNEL_VERSION = "2026-07-28"

ALTERNATIVES = (
    "Configure a model of your own instead: APR_BACKEND=openai (OpenAI or any OpenAI-compatible "
    "server such as Ollama, with APR_MODEL and OPENAI_API_KEY or APR_BASE_URL), "
    "APR_BACKEND=anthropic (APR_MODEL, ANTHROPIC_API_KEY), or APR_BACKEND=simulated to try it "
    "offline."
)


class _SamplingContext(Protocol):
    """The part of ``mcp.server.mcpserver.Context`` this backend uses (kept small for typing)."""

    @property
    def protocol_version(self) -> str | None: ...

    @property
    def client_capabilities(self) -> ClientCapabilities | None: ...

    @property
    def request_id(self) -> str: ...

    @property
    def session(self) -> Any: ...


def _client_name(ctx: _SamplingContext) -> str:
    """The client's ``clientInfo.name`` from the initialize handshake, or "" if unknown."""
    try:
        session = ctx.session
    except (LookupError, RuntimeError, ValueError):  # outside a request
        return ""
    # No handshake (a stateless 2026 request) leaves client_params None.
    info = getattr(getattr(session, "client_params", None), "client_info", None)
    name = getattr(info, "name", "")
    return name.strip()[:64] if isinstance(name, str) else ""


def sampling_problem(ctx: _SamplingContext) -> str | None:
    """Why this connection cannot lend its model, or ``None`` when sampling should work."""
    version = ctx.protocol_version
    if version is not None and is_version_at_least(version, _NO_BACKCHANNEL_VERSION):
        return (
            f"APR_BACKEND=sampling needs a 2025-era MCP connection; this client speaks protocol "
            f"{version}, where a server cannot ask the host's model mid-call (the engine's model "
            f"calls depend on earlier answers, so they cannot be declared up front). "
            + ALTERNATIVES
        )
    caps = ctx.client_capabilities
    if caps is None or caps.sampling is None:
        return (
            "APR_BACKEND=sampling needs a host that supports MCP sampling (VS Code does); this "
            "client did not declare the sampling capability. " + ALTERNATIVES
        )
    return None


class SamplingModel(Model):
    """A :class:`Model` that sends each request to the host through ``sampling/createMessage``.

    The host may show each request to the user for approval, pick any model it likes
    (``request.model``
    is passed only as a hint) and does not stream, so ``on_token`` receives the whole text once.
    Token counts are estimated with tiktoken because hosts do not report usage.
    """

    backend = "sampling"
    supports_json_schema = False  # JSON goes in the prompt; the host has no response_format.

    def __init__(self, ctx: _SamplingContext, *, timeout_s: float | None = None) -> None:
        self._ctx = ctx
        self._timeout_s = timeout_s
        # The host picks the model, so the best name known up front is the host application's.
        # It is part of every cache key: one host's answers are never served to another host.
        self.model_name = f"host:{client}" if (client := _client_name(ctx)) else "host"

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        problem = sampling_problem(self._ctx)
        if problem is not None:
            raise SamplingUnavailable(problem, backend=self.backend)
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        messages = [
            SamplingMessage(role=m.role, content=TextContent(type="text", text=m.content))
            for m in request.messages
            if m.role != "system"
        ]
        if not messages:
            raise ModelOutputError(
                "a sampling request needs at least one user message", backend=self.backend
            )
        prefs = ModelPreferences(hints=[ModelHint(name=request.model)]) if request.model else None
        started = time.monotonic()
        # create_message is marked deprecated for 2026-07-28 (SEP-2577) but is the only way to
        # sample on 2025-era connections; the warning is raised when the coroutine is created.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            pending = self._ctx.session.create_message(
                messages,
                max_tokens=request.max_tokens,
                system_prompt=system or None,
                temperature=request.temperature,
                stop_sequences=request.stop,
                model_preferences=prefs,
                metadata={"purpose": request.purpose, "schema_name": request.schema_name},
                related_request_id=self._ctx.request_id,
            )
        try:
            if self._timeout_s is not None:
                with anyio.fail_after(self._timeout_s):
                    result: CreateMessageResult = await pending
            else:
                result = await pending
        except TimeoutError as exc:
            raise ModelTimeoutError(
                f"the host did not answer a sampling request within {self._timeout_s:g} s",
                backend=self.backend,
            ) from exc
        except ModelError:
            raise
        except Exception as exc:
            # NoBackChannelError, a refused request (the user declined) or a broken session.
            if isinstance(exc, NoBackChannelError):
                raise SamplingUnavailable(
                    "this connection has no back-channel for sampling requests. " + ALTERNATIVES,
                    backend=self.backend,
                ) from exc
            raise ModelError(
                f"the host refused the sampling request: {exc}", backend=self.backend
            ) from exc
        content = result.content
        if not isinstance(content, TextContent):
            raise ModelOutputError(
                f"the host answered with {getattr(content, 'type', type(content).__name__)} "
                "content, not text",
                backend=self.backend,
                model=result.model,
            )
        text = content.text
        if on_token is not None:
            maybe = on_token(text)
            if maybe is not None:
                await maybe
        finish = {"endTurn": "stop", "maxTokens": "length", "stopSequence": "stop"}.get(
            str(result.stop_reason), result.stop_reason
        )
        return ModelResponse(
            text=text,
            usage=Usage(
                input_tokens=count_messages(list[object](request.messages)),
                output_tokens=count_tokens(text),
                reported=False,
            ),
            model=result.model,
            backend=self.backend,
            finish_reason=finish,
            latency_s=time.monotonic() - started,
        )
