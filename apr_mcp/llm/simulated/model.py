"""The simulated backend: timing, streaming, faults and counters around the placeholder replies.

Latency model: a reply's first chunk comes ``ttft_s`` after the call starts (prompt length is
not modelled) and the rest at ``tokens_per_s``; the reply is streamed in at most ``max_chunks``
pieces (plus one boundary where each subtask of a plan closes), sleeping to absolute deadlines,
so the total latency is ``ttft_s + output_tokens / tokens_per_s`` however many chunks there
are, every sleep is a prompt cancellation point, and many threads cost almost no CPU.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from pydantic import TypeAdapter

from ...errors import (
    ConfigError,
    ModelOutputError,
    ModelTimeoutError,
    RateLimitError,
    ServerError,
    StreamInterrupted,
)
from ...tokens import count_messages, count_tokens, truncate_to_tokens
from ..base import Model, ModelRequest, ModelResponse, TokenCallback, Usage, call_token_callback
from . import replies
from .script import FaultKind, SimRule, SimScript

__all__ = ["SIMULATOR_REVISION", "SimReply", "SimulatedModel"]

#: Called at the start of every call (after the counters moved); tests block here on an Event.
CallHook = Callable[[ModelRequest], Awaitable[None]]

#: Bump when default replies or the latency model change, so cached simulated answers expire.
SIMULATOR_REVISION = "5"

_JUNK = "[sim] junk: prose where the answer should be, as a confused model writes it"


@dataclass
class SimReply:
    """What one call will produce and how fast; computed before any time passes."""

    text: str
    ttft_s: float
    tokens_per_s: float
    input_tokens: int
    output_tokens: int
    model: str
    finish_reason: str = "stop"
    fault: FaultKind | None = None
    retry_after: float | None = None
    rule: SimRule | None = None
    max_chunks: int = 16
    #: Offsets in ``text`` that must end a chunk (where a plan's subtask object closes).
    breaks: list[int] = field(default_factory=list)

    @property
    def planned_latency_s(self) -> float:
        """ttft + output tokens / tokens per second: how long streaming the reply takes."""
        return self.ttft_s + self.output_tokens / self.tokens_per_s

    def pieces(self) -> list[tuple[float, str]]:
        """``(due seconds after start, text)`` for each chunk; the last is due at the full
        latency."""
        text = self.text
        if not text:
            return []
        count = min(self.max_chunks, max(1, math.ceil(self.output_tokens / 4)))
        size = math.ceil(len(text) / count)
        cuts = sorted(
            {*range(size, len(text), size), *(b for b in self.breaks if 0 < b < len(text))}
        )
        out: list[tuple[float, str]] = []
        start = 0
        for end in [*cuts, len(text)]:
            due = (
                self.ttft_s
                if not out
                else self.ttft_s + self.output_tokens * end / len(text) / self.tokens_per_s
            )
            out.append((due, text[start:end]))
            start = end
        return out

    async def stream(self) -> AsyncIterator[str]:
        """Yield the chunks on schedule. Sleeping to absolute deadlines keeps the total latency
        faithful however many chunks there are; each sleep is a cancellation point."""
        start = anyio.current_time()
        pieces = self.pieces()
        if not pieces:
            await anyio.sleep(self.ttft_s)
            return
        for due, piece in pieces:
            await anyio.sleep(max(0.0, start + due - anyio.current_time()))
            yield piece


class SimulatedModel(Model):
    """The ``simulated`` backend. Deterministic for a given ``seed``; safe to call concurrently.

    Counters for tests: ``calls``, ``calls_by_purpose``, ``active`` (in flight), ``max_active``,
    ``requests`` (the most recent requests, newest last). ``on_call`` is awaited at the start of
    every call. Model ids it reports always start with ``sim-``.
    """

    backend = "simulated"
    supports_json_schema = True

    def __init__(
        self,
        *,
        ttft_s: float = 0.05,
        tokens_per_s: float = 400.0,
        script: SimScript | None = None,
        seed: int = 0,
        model_name: str = "sim-1",
        on_call: CallHook | None = None,
        max_chunks: int = 16,
        reasoning_scale: float = 1.0,
    ) -> None:
        if ttft_s < 0 or tokens_per_s <= 0 or max_chunks < 1 or reasoning_scale <= 0:
            raise ConfigError(
                "simulated model needs ttft_s >= 0, tokens_per_s > 0, max_chunks >= 1 and "
                "reasoning_scale > 0"
            )
        self.ttft_s = ttft_s
        self.tokens_per_s = tokens_per_s
        self.script = script
        self.seed = seed
        self.model_name = sim_id(model_name)
        self.on_call = on_call
        self.max_chunks = max_chunks
        self.reasoning_scale = reasoning_scale
        self.calls = 0
        self.calls_by_purpose: Counter[str] = Counter()
        self.active = 0
        self.max_active = 0
        self.requests: deque[ModelRequest] = deque(maxlen=1000)
        # Cache keys must tell apart replies of another simulator release, script or seed.
        script_id = (
            hashlib.sha256(TypeAdapter(SimScript).dump_json(script)).hexdigest()[:12]
            if script
            else "-"
        )
        self.revision = (
            f"{SIMULATOR_REVISION}/seed={seed}/scale={reasoning_scale}/script={script_id}"
        )

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> SimulatedModel:
        """The model the ``simulated`` backend runs for ``settings`` (a :class:`Settings`):
        ``sim_ttft_s``, ``sim_tokens_per_s``, ``sim_script`` (a JSON script file, loaded here;
        ConfigError if unreadable or invalid) and ``sim_reasoning_scale`` when present.
        ``overrides`` win (e.g. ``model_name``, ``on_call``)."""
        kwargs: dict[str, Any] = {
            "ttft_s": settings.sim_ttft_s,
            "tokens_per_s": settings.sim_tokens_per_s,
        }
        script = getattr(settings, "sim_script", None)
        if script is not None:
            kwargs["script"] = (
                script if isinstance(script, SimScript) else SimScript.from_file(script)
            )
        scale = getattr(settings, "sim_reasoning_scale", None)
        if scale is not None:
            kwargs["reasoning_scale"] = float(scale)
        kwargs.update(overrides)
        return cls(**kwargs)

    def model_for(self, request: ModelRequest) -> str:
        return sim_id(request.model or self.model_name)

    # ----- planning a reply (no time passes) -----

    def prepare(self, request: ModelRequest, *, consume: bool = True) -> SimReply:
        """Decide text, latency and fault for ``request``. ``consume=False`` previews it without
        counting towards any rule's ``times``."""
        user = replies.user_text(request)
        rule = self.script.match(user, request.purpose, consume=consume) if self.script else None
        breaks: list[int] = []
        if rule is not None and rule.reply is not None:
            text = rule.reply if isinstance(rule.reply, str) else replies.json_text(rule.reply)
        else:
            text, breaks = replies.default_reply(
                request, rule, seed=self.seed, scale=self.reasoning_scale
            )
        fault = rule.fault if rule else None
        finish = "stop"
        for stop in request.stop or []:
            if stop and stop in text:
                text = text[: text.index(stop)]
        if fault == "junk":
            text = f"{_JUNK} ({replies.stable_hash(self.seed, user) % 10000})."
        elif fault in ("cut", "length"):
            text = text[: max(1, len(text) // 2)]
            finish = "length" if fault == "length" else ""
        elif fault == "empty":
            text = ""
        output_tokens = count_tokens(text)
        if fault is None and output_tokens > request.max_tokens:
            text = truncate_to_tokens(text, request.max_tokens)
            output_tokens = count_tokens(text)
            finish = "length"
        return SimReply(
            text=text,
            ttft_s=rule.ttft_s if rule and rule.ttft_s is not None else self.ttft_s,
            tokens_per_s=rule.tokens_per_s if rule and rule.tokens_per_s else self.tokens_per_s,
            input_tokens=count_messages(list[object](request.messages)),
            output_tokens=output_tokens,
            model=self.model_for(request),
            finish_reason=finish,
            fault=fault,
            retry_after=rule.retry_after if rule else None,
            rule=rule,
            max_chunks=self.max_chunks,
            breaks=[b for b in breaks if b < len(text)],
        )

    @asynccontextmanager
    async def session(self, request: ModelRequest) -> AsyncIterator[SimReply]:
        """Count one call (calls, active, max_active), run ``on_call``, yield its reply."""
        self.calls += 1
        self.calls_by_purpose[request.purpose] += 1
        self.requests.append(request)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.on_call is not None:
                await self.on_call(request)
            yield self.prepare(request)
        finally:
            self.active -= 1

    # ----- the Model interface -----

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        async with self.session(request) as reply:
            start = anyio.current_time()
            where: dict[str, Any] = {"backend": self.backend, "model": reply.model}
            if reply.fault == "429":
                raise RateLimitError(
                    "rate limited (simulated)",
                    retry_after=reply.retry_after,
                    status_code=429,
                    **where,
                )
            if reply.fault == "500":
                raise ServerError("internal error (simulated)", status_code=500, **where)
            if reply.fault in ("timeout", "empty"):
                await anyio.sleep(reply.ttft_s)
                if reply.fault == "timeout":
                    raise ModelTimeoutError(
                        f"no response within {reply.ttft_s:g}s (simulated)", **where
                    )
                raise ModelOutputError("empty content (simulated)", **where)
            ttft: float | None = None
            async for piece in reply.stream():
                if ttft is None:
                    ttft = anyio.current_time() - start
                await call_token_callback(on_token, piece)
            if reply.fault == "cut":
                raise StreamInterrupted("stream cut mid-answer (simulated)", **where)
            if reply.fault == "length":
                raise ModelOutputError(
                    "answer truncated: finish_reason length (simulated)", **where
                )
            return ModelResponse(
                text=reply.text,
                usage=Usage(
                    input_tokens=reply.input_tokens,
                    output_tokens=reply.output_tokens,
                    reported=True,
                ),
                model=reply.model,
                backend=self.backend,
                finish_reason=reply.finish_reason,
                latency_s=anyio.current_time() - start,
                ttft_s=ttft,
                simulated=True,
            )


def sim_id(model: str) -> str:
    """A model id that says it is simulated (``sim-`` prefix), whatever id was asked for."""
    return model if model.startswith("sim-") else f"sim-{model}"
