"""A deterministic, latency-faithful model for tests, benchmarks and an offline demo.

Every reply takes ``ttft_s`` (time to first token) plus ``output_tokens / tokens_per_s`` seconds
and is streamed through ``on_token`` in at most ``max_chunks`` pieces, sleeping on an absolute
schedule between them: timing does not drift with the number of chunks, cancellation is prompt,
and the CPU cost stays tiny even with many threads. What it says depends on the prompt role (see
:mod:`apr_mcp.llm.simulated_content`, :mod:`~apr_mcp.llm.simulated_plan` and
:mod:`~apr_mcp.llm.simulated_debug`): plans that split independent parts, options, conditions and
search branches but not chains, solver answers that compute arithmetic, merged answers,
step-by-step free text, debugging hypotheses and verdicts, meta-controller decisions.

Latency model (what a reply costs, deterministically):

* Prompt processing is not modelled: the first token comes after ``ttft_s`` whatever the prompt
  length (real prefill adds roughly input_tokens / a few thousand tokens per second).
* A *unit of work* is one independent part of a question (an enumerated item, an option, a
  condition, a search branch) or a whole question that does not decompose. Its chain of thought
  costs ``(REASONING_BASE + REASONING_PER_WORD × words) × jitter`` tokens (100 + 6 per word,
  jitter 0.8–1.2 fixed by the unit's text; × 1.5 for a search branch; within 60–1200), times
  ``reasoning_scale``. Calibration: an undivided ~40-word word problem gets ~340 tokens and a
  short part ("the number of primes below 50") ~140, in line with a chat model's step-by-step
  answers; a "thinking" model that reasons longer per unit is ``reasoning_scale`` > 1.
* The sequential baseline (free text) works through every unit in turn: its length is the sum
  of the parts' reasoning plus a line for the aggregation step. On a search (Countdown, 24) it
  tries the branches in order until the first whose route really reaches the target (each route
  is searched exhaustively, see :mod:`~apr_mcp.llm.simulated_search`); a route that works stops
  when the expression is found, 40–70 % of the way.
* A search branch in a thread does the same work on its own route: a verified expression
  settles the question (confidence 0.97, so the engine stops the other branches early); a route
  that fails says so with low confidence.
* A solver thread spends one unit's reasoning on its part (recognised by the
  :data:`~apr_mcp.llm.simulated_plan.PART_MARK` the planner writes), or the whole chain when its
  subtask is the whole question, plus a one-sentence summary and the JSON around it. Like any
  reply, one longer than ``max_tokens`` is cut there (finish reason "length"), as a real one is.
* The planner writes its JSON plan (a few dozen tokens for "do not split", more per subtask); the
  merger writes a lead, one sentence per result and the final answer.

So a split's critical path is ``plan + slowest thread + merge`` against the sum of the parts for
the sequential baseline: splitting pays when the parts' reasoning outweighs the plan and merge
calls, and an unsplit question costs what the baseline costs plus the JSON overhead.

A :class:`SimScript` overrides replies, latency or injects faults for requests whose last user
message matches a regex — optionally only the first N times — so tests can stage rate-limit
bursts, stragglers, cut streams or a thread that settles the question. The same object backs the
OpenAI-compatible loopback server in :mod:`apr_mcp.simulate_server`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import re
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import pydantic
from pydantic import Field, TypeAdapter
from pydantic.dataclasses import dataclass as pydantic_dataclass

from ..errors import (
    ConfigError,
    ModelOutputError,
    ModelTimeoutError,
    RateLimitError,
    ServerError,
    StreamInterrupted,
)
from ..tokens import count_messages, count_tokens, truncate_to_tokens
from . import simulated_content as content
from . import simulated_debug
from .base import Model, ModelRequest, ModelResponse, TokenCallback, Usage

__all__ = ["FaultKind", "SimReply", "SimRule", "SimScript", "SimulatedModel", "call_token_callback"]

FaultKind = Literal["429", "500", "timeout", "cut", "junk", "empty", "length"]

#: Called at the start of every call (after the counters moved); tests block here on an Event.
CallHook = Callable[[ModelRequest], Awaitable[None]]

_JUNK = "Sure! Here is what you asked for, more or less: the answer depends on several factors"


@pydantic_dataclass
class SimRule:
    """Override the reply for requests whose last user message matches ``pattern``.

    ``pattern`` is a regex searched with re.S | re.I. ``reply`` replaces the text (a dict is sent
    as JSON); ``fault`` injects a failure; ``times`` limits the rule to its first N matches;
    ``ttft_s``/``tokens_per_s`` override the latency (for ``timeout``, ``ttft_s`` is how long the
    call hangs before failing in-process); ``retry_after`` goes with a 429; ``purpose`` restricts
    the rule to one role (planner, solver, merger, ...).
    """

    pattern: str
    reply: str | dict[str, Any] | None = None
    fault: FaultKind | None = None
    times: int | None = Field(default=None, ge=0)
    ttft_s: float | None = Field(default=None, ge=0)
    tokens_per_s: float | None = Field(default=None, gt=0)
    retry_after: float | None = Field(default=None, ge=0)
    purpose: str | None = None

    def __post_init__(self) -> None:
        try:
            self._regex = re.compile(self.pattern, re.DOTALL | re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"invalid regex {self.pattern!r}: {exc}") from exc

    def matches(self, text: str, purpose: str) -> bool:
        if self.purpose is not None and self.purpose != purpose:
            return False
        return self._regex.search(text) is not None


@pydantic_dataclass
class SimScript:
    """Ordered rules; the first rule that matches (and has uses left) applies."""

    rules: list[SimRule] = Field(default_factory=list)

    def __post_init__(self) -> None:
        self._used: Counter[int] = Counter()

    def match(self, text: str, purpose: str, *, consume: bool = True) -> SimRule | None:
        """The rule for this request; with ``consume`` it counts towards the rule's ``times``."""
        for index, rule in enumerate(self.rules):
            if rule.times is not None and self._used[index] >= rule.times:
                continue
            if rule.matches(text, purpose):
                if consume:
                    self._used[index] += 1
                return rule
        return None

    def uses(self, index: int) -> int:
        """How often rule ``index`` has been applied."""
        return self._used[index]

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "script") -> SimScript:
        """Parse ``{"rules": [...]}`` or a bare list of rules; ConfigError if invalid."""
        try:
            data = json.loads(text)
            if isinstance(data, list):
                data = {"rules": data}
            return TypeAdapter(cls).validate_python(data)
        except (ValueError, pydantic.ValidationError) as exc:
            raise ConfigError(f"invalid simulation script {source}: {exc}") from exc

    @classmethod
    def from_file(cls, path: str | Path) -> SimScript:
        """Load a JSON script file (see the README's *Simulated backend* section)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read simulation script {path}: {exc}") from exc
        return cls.from_json(text, source=str(path))


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
    #: Text of the whole answer when a fault (cut, length) sends only part of it.
    full_text: str = field(default="", repr=False)

    @property
    def planned_latency_s(self) -> float:
        """ttft + output tokens / tokens per second: how long streaming the reply takes."""
        return self.ttft_s + self.output_tokens / self.tokens_per_s

    def pieces(self) -> list[tuple[float, str]]:
        """``(due seconds after start, text)`` for each chunk; the last is due at the full latency."""
        text = self.text
        if not text:
            return []
        count = min(self.max_chunks, max(1, math.ceil(self.output_tokens / 4)))
        size = math.ceil(len(text) / count)
        out: list[tuple[float, str]] = []
        for start in range(0, len(text), size):
            piece = text[start : start + size]
            done = (start + len(piece)) / len(text)
            due = self.ttft_s if not out else self.ttft_s + self.output_tokens * done / self.tokens_per_s
            out.append((due, piece))
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


async def call_token_callback(on_token: TokenCallback | None, piece: str) -> None:
    """Call a sync or async token callback."""
    if on_token is None:
        return
    result = on_token(piece)
    if inspect.isawaitable(result):
        await result


#: Bump when default replies or the latency model change, so cached simulated answers expire.
SIMULATOR_REVISION = "4"


class SimulatedModel(Model):
    """The ``simulated`` backend. Deterministic for a given ``seed``; safe to call concurrently.

    Counters for tests: ``calls``, ``calls_by_purpose``, ``active`` (in flight), ``max_active``,
    ``requests`` (the most recent requests, newest last). ``on_call`` is awaited at the start of
    every call.
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
        self.reasoning_scale = reasoning_scale
        self.ttft_s = ttft_s
        self.tokens_per_s = tokens_per_s
        self.script = script
        self.seed = seed
        self.model_name = model_name
        self.on_call = on_call
        self.max_chunks = max_chunks
        self.calls = 0
        self.calls_by_purpose: Counter[str] = Counter()
        self.active = 0
        self.max_active = 0
        self.requests: deque[ModelRequest] = deque(maxlen=1000)
        # Cache keys must tell apart replies of another simulator release, script or seed.
        script_id = (
            hashlib.sha256(TypeAdapter(SimScript).dump_json(script)).hexdigest()[:12] if script else "-"
        )
        self.revision = f"{SIMULATOR_REVISION}/seed={seed}/scale={reasoning_scale}/script={script_id}"

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
            kwargs["script"] = script if isinstance(script, SimScript) else SimScript.from_file(script)
        scale = getattr(settings, "sim_reasoning_scale", None)
        if scale is not None:
            kwargs["reasoning_scale"] = float(scale)
        kwargs.update(overrides)
        return cls(**kwargs)

    # ----- planning a reply (no time passes) -----

    def prepare(self, request: ModelRequest, *, consume: bool = True) -> SimReply:
        """Decide text, latency and fault for ``request``. ``consume=False`` previews it without
        counting towards any rule's ``times``."""
        user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        system = next((m.content for m in request.messages if m.role == "system"), "")
        rule = self.script.match(user, request.purpose, consume=consume) if self.script else None
        if rule is not None and rule.reply is not None:
            text = rule.reply if isinstance(rule.reply, str) else content.json_text(rule.reply)
        else:
            text = self._default_text(request, user, system)
        fault = rule.fault if rule else None
        finish = "stop"
        for stop in request.stop or []:
            if stop and stop in text:
                text = text[: text.index(stop)]
        full = text
        if fault == "junk":
            text = f"{_JUNK} ({content.stable_hash(self.seed, user) % 10000})."
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
            full_text=full,
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
        )

    def _default_text(self, request: ModelRequest, user: str, system: str) -> str:
        kind = content.reply_kind(request.schema_name, request.json_schema, system)
        repairing = user.lstrip().startswith("Your previous answer:")
        if kind == "plan":
            question = "" if repairing else content.section(user, "Question:") or user
            bounds = re.search(r"between\s+(\d+)\s+and\s+(\d+)\s+subtasks", system)
            low, high = (int(bounds[1]), int(bounds[2])) if bounds else (1, 8)
            exact = re.search(r"split this question into exactly (\d+)", user)
            return content.json_text(content.plan_reply(
                question, min_threads=low, max_threads=high, exact=int(exact[1]) if exact else None
            ))
        if kind == "thread" and repairing:
            return content.json_text(content.repaired_thread_reply(user, self.seed))
        if kind == "thread":
            # No cap: a reply longer than max_tokens is cut like a real one (finish "length").
            return content.json_text(content.thread_reply(user, self.seed, scale=self.reasoning_scale))
        if kind == "debug_hypotheses":
            return content.json_text(simulated_debug.hypotheses_reply(user))
        if kind == "debug_verdict":
            return content.json_text(simulated_debug.verdict_reply(user))
        if kind == "meta":
            return content.json_text(simulated_debug.meta_reply(user))
        if kind == "merge":
            return content.json_text(content.merge_reply(user, self.seed, request.json_schema))
        if kind == "schema" and request.json_schema is not None:
            return content.json_text(content.schema_default(request.json_schema))
        return content.free_text_reply(user, self.seed, scale=self.reasoning_scale)

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
                    "rate limited (simulated)", retry_after=reply.retry_after, status_code=429, **where
                )
            if reply.fault == "500":
                raise ServerError("internal error (simulated)", status_code=500, **where)
            if reply.fault in ("timeout", "empty"):
                await anyio.sleep(reply.ttft_s)
                if reply.fault == "timeout":
                    raise ModelTimeoutError(f"no response within {reply.ttft_s:g}s (simulated)", **where)
                raise ModelOutputError("empty content (simulated)", **where)
            ttft: float | None = None
            async for piece in reply.stream():
                if ttft is None:
                    ttft = anyio.current_time() - start
                await call_token_callback(on_token, piece)
            if reply.fault == "cut":
                raise StreamInterrupted("stream cut mid-answer (simulated)", **where)
            if reply.fault == "length":
                raise ModelOutputError("answer truncated: finish_reason length (simulated)", **where)
            return ModelResponse(
                text=reply.text,
                usage=Usage(
                    input_tokens=reply.input_tokens, output_tokens=reply.output_tokens, reported=True
                ),
                model=reply.model,
                backend=self.backend,
                finish_reason=reply.finish_reason,
                latency_s=anyio.current_time() - start,
                ttft_s=ttft,
            )
