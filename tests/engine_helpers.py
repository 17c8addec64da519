"""Shared helpers for the engine tests: a fast simulated model and per-subtask gates."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import anyio

from apr_mcp.config import Settings
from apr_mcp.engine import Engine
from apr_mcp.llm.base import Model, ModelRequest, ModelResponse, TokenCallback, WrapperModel
from apr_mcp.llm.simulated import SimRule, SimScript, SimulatedModel
from apr_mcp.schemas import RunEvent

_SUBTASK = re.compile(r"Your subtask:\s*(\S+)")


def settings(**overrides: Any) -> Settings:
    return Settings(backend="simulated", **overrides)


def subtask_name(request: ModelRequest) -> str | None:
    """First word of a solver request's subtask (tests name subtasks ``ALPHA ...``)."""
    if request.purpose != "solver":
        return None
    user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    match = _SUBTASK.search(user)
    return match.group(1) if match else None


class Gates:
    """``on_call`` hook: ``started[name]`` is set when that subtask's call begins; a call whose
    name is in ``block`` waits for that event first (so tests hold threads without sleeping)."""

    def __init__(self) -> None:
        self.started: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        self.block: dict[str, anyio.Event] = {}
        self.order: list[str] = []

    async def __call__(self, request: ModelRequest) -> None:
        name = subtask_name(request)
        if name is None:
            return
        self.order.append(name)
        self.started[name].set()
        if name in self.block:
            await self.block[name].wait()


def answer(
    text: str = "ok",
    *,
    summary: str = "",
    confidence: float = 0.6,
    settles: bool = False,
    follow_ups: list[str] | None = None,
) -> str:
    """A worker's reply in the thread protocol: free text, then the trailer."""
    lines = [
        text,
        "",
        f"Summary: {summary or text}",
        f"Confidence: {confidence}",
        f"Settles: {'yes' if settles else 'no'}",
    ]
    lines += [f"Follow-up: {f}" for f in follow_ups or []]
    return "\n".join(lines)


def solver_rule(name: str, reply: str | dict[str, Any] | None = None, **kw: Any) -> SimRule:
    return SimRule(pattern=rf"Your subtask:\s*{name}\b", reply=reply, purpose="solver", **kw)


def sim(*rules: SimRule, gates: Gates | None = None, ttft_s: float = 0.002) -> SimulatedModel:
    return SimulatedModel(
        ttft_s=ttft_s, tokens_per_s=50_000, script=SimScript(rules=list(rules)), on_call=gates
    )


def engine(model: Model, **kw: Any) -> Engine:
    run_store = kw.pop("run_store", None)
    return Engine(
        settings=settings(**kw), planner=model, solver=model, merger=model, run_store=run_store
    )


class Recorder:
    """An on_event callback that keeps every event."""

    def __init__(self) -> None:
        self.events: list[RunEvent] = []

    async def __call__(self, event: RunEvent) -> None:
        self.events.append(event)

    def kinds(self, thread_id: str) -> list[str]:
        return [e.kind for e in self.events if e.thread_id == thread_id]


class Recording(WrapperModel):
    """Keeps every response the engine received, with the purpose of its request."""

    def __init__(self, inner: Model) -> None:
        super().__init__(inner)
        self.responses: list[tuple[str, ModelResponse]] = []

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        response = await self._inner.complete(request, on_token=on_token)
        self.responses.append((request.purpose, response))
        return response

    def contexts(self, purpose: str) -> list[int]:
        """Prompt plus output tokens of each call made for ``purpose``, in call order."""
        return [
            r.usage.input_tokens + r.usage.output_tokens for p, r in self.responses if p == purpose
        ]


def seconds(value: float | None) -> float:
    """A thread's ``started_s``/``finished_s``, which must be set once it ran."""
    assert value is not None, "a thread that ran has its timing set"
    return value
