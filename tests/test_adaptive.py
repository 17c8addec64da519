"""Adaptive control end to end through Engine.solve: visible decisions, the meta-controller, and
the limiter's backoff/recover decisions under a burst of 429s through the real wrapper stack.

The scheduler's own rules (early stop, redundancy, follow-ups, dependencies) have unit tests in
test_scheduler.py; these tests check how the pieces compose in a whole run.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import anyio
from engine_helpers import answer, seconds

from apr_mcp.config import Settings
from apr_mcp.engine import Engine
from apr_mcp.engine.controller import RunState
from apr_mcp.engine.meta import MetaController, summarize_state
from apr_mcp.llm.base import Model, ModelRequest
from apr_mcp.llm.limiter import AdaptiveLimiter, LimitedModel
from apr_mcp.llm.retry import RetryingModel
from apr_mcp.llm.simulated import SimRule, SimScript, SimulatedModel
from apr_mcp.schemas import Subtask, ThreadResult, ThreadStatus

QUESTION = "Compare Python, Go and Rust for writing a command-line tool"


class Hold:
    """on_call hook: solver calls whose request matches ``pattern`` wait until ``release`` is
    set."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)
        self.release = anyio.Event()

    async def __call__(self, request: ModelRequest) -> None:
        if request.purpose == "solver" and self.pattern.search(request.messages[-1].content):
            await self.release.wait()


#: The plan a planner gives QUESTION (the simulated planner writes placeholders, not these).
PLAN = SimRule(
    purpose="planner",
    reply={
        "should_split": True,
        "reason": "three languages to assess",
        "subtasks": [
            {"id": f"t{k}", "prompt": f"Assess {lang} for writing a command-line tool"}
            for k, lang in enumerate(("Python", "Go", "Rust"), 1)
        ],
    },
)


def sim(*rules: SimRule, hold: Hold | None = None) -> SimulatedModel:
    return SimulatedModel(
        ttft_s=0.002, tokens_per_s=50_000, script=SimScript(rules=[*rules, PLAN]), on_call=hold
    )


def make_engine(
    model: Model,
    *,
    controller: Model | None = None,
    limiter: AdaptiveLimiter | None = None,
    **settings: Any,
) -> Engine:
    cfg = Settings(backend="simulated", **settings)
    return Engine(
        settings=cfg,
        planner=model,
        solver=model,
        merger=model,
        controller=controller,
        controller_factory=functools.partial(MetaController, limiter=limiter),
    )


async def test_trace_says_why_it_split_stopped_and_cancelled() -> None:
    hold = Hold(r"Your subtask:\s*Assess (Go|Rust)")
    model = sim(
        SimRule(
            pattern=r"Your subtask:\s*Assess Python",
            purpose="solver",
            reply=answer("Python: fastest to write; settles it.", confidence=0.95, settles=True),
        ),
        hold=hold,
    )
    with anyio.fail_after(10):
        result = await make_engine(model).solve(QUESTION)
    assert result.plan is not None and result.plan.should_split
    assert any("comparison of 3 entities: Python, Go, Rust" in s for s in result.plan.signals)
    kinds = [d.kind for d in result.decisions]
    assert kinds[0] == "split" and "early_stop" in kinds
    stop = next(d for d in result.decisions if d.kind == "early_stop")
    assert "settles the question with confidence 0.95" in stop.reason
    cancelled = [r for r in result.results if r.status is ThreadStatus.cancelled]
    assert len(cancelled) == 2 and all("early stop" in (r.reason or "") for r in cancelled)
    assert result.merge is not None and set(result.merge.dropped) == {r.id for r in cancelled}


async def test_simple_question_is_one_call_and_says_why() -> None:
    model = sim()
    with anyio.fail_after(10):
        result = await make_engine(model).solve("What is the capital of France?")
    assert result.plan is not None and not result.plan.should_split
    assert result.plan.source == "heuristic" and "short factual" in result.plan.reason
    assert model.calls_by_purpose["planner"] == 0  # the heuristics were sure: no planner call
    assert next(d.kind for d in result.decisions) == "no_split"


async def test_meta_controller_merges_early() -> None:
    hold = Hold(r"Your subtask:\s*Assess (Go|Rust)")
    model = sim(hold=hold)
    meta = sim(
        SimRule(
            pattern="Live state",
            purpose="controller",
            reply={"action": "merge", "reason": "Python alone answers it"},
        )
    )
    with anyio.fail_after(10):
        result = await make_engine(model, controller=meta, meta_controller=True).solve(QUESTION)
    assert meta.calls_by_purpose["controller"] == 1
    request = meta.requests[-1]
    assert (
        "Finished (1):" in request.messages[-1].content
        and "Running (2):" in request.messages[-1].content
    )
    stop = [d for d in result.decisions if d.kind == "meta"]
    assert stop and "merge now (Python alone answers it)" in stop[0].reason
    assert sum(r.status is ThreadStatus.cancelled for r in result.results) == 2
    assert all(
        "meta-controller" in (r.reason or "")
        for r in result.results
        if r.status is ThreadStatus.cancelled
    )


async def test_meta_controller_splits_within_budget() -> None:
    spawned_started = anyio.Event()

    async def hook(request: ModelRequest) -> None:
        # Rust stays running until a spawned subtask starts, so the run is still live when the
        # meta-controller reviews it, and it can end afterwards.
        text = request.messages[-1].content
        if request.purpose == "solver" and "static binary" in text:
            spawned_started.set()
        if request.purpose == "solver" and re.search(r"Your subtask:\s*Assess Rust", text):
            await spawned_started.wait()

    model = SimulatedModel(ttft_s=0.002, tokens_per_s=50_000, on_call=hook)
    reply = {
        "action": "split",
        "reason": "packaging is uncovered",
        "new_subtasks": [
            "How does each language package a single static binary?",
            "Which has the best argument-parsing library?",
            "A third one beyond max_new",
        ],
    }
    meta = sim(SimRule(pattern="Live state", purpose="controller", reply=reply, times=1))
    with anyio.fail_after(10):
        result = await make_engine(model, controller=meta, meta_controller=True).solve(QUESTION)
    spawned = [r for r in result.results if r.id.startswith("m")]
    assert [r.id for r in spawned] == ["m1", "m2"]  # max_new = 2
    assert all(r.status is ThreadStatus.done for r in spawned)
    assert [d.kind for d in result.decisions].count("spawn") == 2
    assert all(
        "meta-controller: split (packaging is uncovered)" in d.reason
        for d in result.decisions
        if d.kind == "spawn"
    )


async def test_meta_controller_off_by_default_and_failure_means_continue() -> None:
    model = sim()
    meta = sim(SimRule(pattern="Live state", purpose="controller", fault="500"))
    with anyio.fail_after(10):
        off = await make_engine(model, controller=meta).solve(QUESTION)
    assert meta.calls == 0 and off.merge is not None
    with anyio.fail_after(10):
        on = await make_engine(sim(), controller=meta, meta_controller=True).solve(QUESTION)
    assert meta.calls >= 1
    assert all(r.status is ThreadStatus.done for r in on.results)
    assert any(d.kind == "meta" and "unavailable" in d.reason for d in on.decisions)


class Burst:
    """on_call hook: the first ``n`` solver calls wait for each other, so they are in flight
    together when the provider answers 429 to all of them (as a real burst would be)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0
        self.all_in = anyio.Event()

    async def __call__(self, request: ModelRequest) -> None:
        if request.purpose != "solver" or self.seen >= self.n:
            return
        self.seen += 1
        if self.seen == self.n:
            self.all_in.set()
        await self.all_in.wait()


async def test_burst_of_429s_gives_backoff_and_recover_decisions() -> None:
    # Four threads hit the endpoint together; it serves two and refuses two with 429 + Retry-After.
    backend = SimulatedModel(
        ttft_s=0.002,
        tokens_per_s=50_000,
        on_call=Burst(4),
        script=SimScript(
            rules=[
                SimRule(
                    pattern="Your subtask:",
                    purpose="solver",
                    fault="429",
                    times=2,
                    retry_after=0.01,
                )
            ]
        ),
    )
    limiter = AdaptiveLimiter(4, max_limit=4, latency_floor_s=10.0, probe_windows=1)
    stack = RetryingModel(LimitedModel(backend, limiter), base_delay=0.001, max_delay=0.05)
    with anyio.fail_after(10):
        result = await make_engine(stack, limiter=limiter).solve(
            "Compare Python, Go, Rust and Zig for writing a command-line tool"
        )
    assert len(result.results) == 4
    assert all(r.status is ThreadStatus.done for r in result.results)  # retries absorbed the burst
    backoffs = [d for d in result.decisions if d.kind == "backoff"]
    recovers = [d for d in result.decisions if d.kind == "recover"]
    assert len(backoffs) == 1, backoffs  # one burst, one backoff, down to what was served
    assert "4 -> 2" in backoffs[0].reason and "HTTP 429" in backoffs[0].reason
    assert "Retry-After" in backoffs[0].reason
    assert "2 -> 3" in recovers[0].reason
    assert backoffs[0].at_s <= recovers[0].at_s
    assert [h.limit for h in limiter.history][:3] == [4, 2, 3]  # (the merge call may add more)
    # Every change is reported by the end of the run, including those after the last thread.
    last = [d for d in result.decisions if d.kind in ("backoff", "recover")][-1]
    assert last.reason.split(":")[0].endswith(f"-> {limiter.history[-1].limit}")
    assert limiter.peak_in_flight <= 4 and limiter.in_flight == 0
    assert backend.calls_by_purpose["solver"] == 4 + 2  # two 429s, retried once each


def test_state_summary_is_compact_and_complete() -> None:
    settings = Settings(backend="simulated", token_budget=5000)
    state = RunState(question="q", context="", settings=settings, elapsed=lambda: 2.0)
    for sid, prompt in [("t1", "Assess Python"), ("t2", "Assess Go " * 200), ("t3", "Assess Rust")]:
        state.subtasks[sid] = Subtask(id=sid, prompt=prompt)
    state.results["t1"] = ThreadResult(
        id="t1", prompt="Assess Python", summary="Quick to write.", confidence=0.8
    )
    state.running["t2"] = 0.5
    state.pending.add("t3")
    state.tokens_in = 1200
    text = summarize_state(state)
    assert "tokens used 1200 of 5000" in text
    assert "[t1] Assess Python -> (confidence 0.80) Quick to write." in text
    assert "[t2] for 1.5s" in text and "Pending (1):" in text and "[t3]" in text
    assert len(text) < 2000  # long prompts are cut


async def test_limit_changes_between_thread_events_are_coalesced() -> None:
    limiter = AdaptiveLimiter(8, max_limit=8, probe_windows=1)
    controller = MetaController(Settings(backend="simulated"), limiter=limiter)
    slots = [await limiter.acquire() for _ in range(8)]
    for s in slots[:6]:  # a burst: 8 -> 4 -> 3 -> 2, step by step
        limiter.release(s, "overload", detail="rate limited (HTTP 429)")
    for s in slots[6:]:
        limiter.release(
            s, "success", latency_s=0.01
        )  # 2 -> 3 (two clean calls at the sustained level)
    notes = controller.limiter_notes()
    assert [(n.kind, n.reason.split(":")[0]) for n in notes] == [
        ("backoff", "concurrency limit 8 -> 2"),
        ("recover", "concurrency limit 2 -> 3"),
    ]
    assert "more step(s)" in notes[0].reason
    assert controller.limiter_notes() == []


async def test_limit_change_during_the_merge_is_reported_by_a_plain_engine() -> None:
    # No controller_factory: the engine finds the limiter in the solver's wrapper chain itself.
    # Only the merge (lead) call is refused (429), after every thread has ended, so the backoff can
    # only
    # be reported when the run ends.
    backend = SimulatedModel(
        ttft_s=0.002,
        tokens_per_s=50_000,
        script=SimScript(
            rules=[SimRule(pattern=".", purpose="lead", fault="429", times=1, retry_after=0.01)]
        ),
    )
    limiter = AdaptiveLimiter(4, max_limit=4, latency_floor_s=10.0)
    stack = RetryingModel(LimitedModel(backend, limiter), base_delay=0.001, max_delay=0.05)
    engine = Engine(
        settings=Settings(backend="simulated"), planner=stack, solver=stack, merger=stack
    )
    events: list[str] = []

    async def on_event(event: Any) -> None:
        events.append(f"{event.kind}: {event.message}")

    with anyio.fail_after(10):
        result = await engine.solve(QUESTION, on_event=on_event)
    assert result.merge is not None and result.merge.answer
    backoffs = [d for d in result.decisions if d.kind == "backoff"]
    assert len(backoffs) == 1 and "HTTP 429" in backoffs[0].reason
    assert backoffs[0].at_s >= max(seconds(r.finished_s) for r in result.results)
    i = events.index(f"decision: {backoffs[0].reason}")
    assert events[i + 1].startswith("finished:")  # reported to the host before the run ends
