"""The DAG scheduler and the controller's rules, driven through Engine.parallel_solve."""

from __future__ import annotations

import itertools

import anyio
import pytest
from engine_helpers import Gates, Recorder, answer, engine, seconds, sim, solver_rule

from apr_mcp.engine.scheduler import critical_path
from apr_mcp.llm.base import ModelRequest, ModelResponse, TokenCallback, WrapperModel
from apr_mcp.schemas import RunEvent, Subtask, ThreadResult, ThreadStatus


def _subs(*specs: str | tuple[str, list[str]] | tuple[str, list[str], int]) -> list[Subtask]:
    out = []
    for spec in specs:
        name, deps, prio = (spec, [], 0) if isinstance(spec, str) else (*spec, 0)[:3]
        out.append(
            Subtask(
                id=name.lower(),
                prompt=f"{name} task",
                depends_on=[d.lower() for d in deps],
                priority=prio,
            )
        )
    return out


def _by_id(results: list[ThreadResult]) -> dict[str, ThreadResult]:
    return {r.id: r for r in results}


async def test_dependent_starts_as_soon_as_its_dependency_is_done() -> None:
    # ALPHA is slow and unrelated; GAMMA depends on BETA. ALPHA is only released once GAMMA has
    # started, so a scheduler that waited for the whole "wave" (ALPHA + BETA) would hang here.
    gates = Gates()
    gates.block["ALPHA"] = gates.started["GAMMA"]
    model = sim(solver_rule("BETA", answer("beta result", summary="BETA SAYS 42")), gates=gates)
    with anyio.fail_after(5):
        run = await engine(model).parallel_solve(
            "q", _subs("ALPHA", "BETA", ("GAMMA", ["BETA"])), max_concurrency=4
        )
    r = _by_id(run.results)
    assert all(x.status is ThreadStatus.done for x in run.results)
    assert seconds(r["gamma"].started_s) >= seconds(r["beta"].finished_s)
    assert seconds(r["gamma"].started_s) < seconds(r["alpha"].finished_s)
    gamma_prompt = next(
        q for q in model.requests if "Your subtask:\nGAMMA" in q.messages[-1].content
    )
    assert "BETA SAYS 42" in gamma_prompt.messages[-1].content  # the distilled dependency result


async def test_ready_subtasks_run_by_priority() -> None:
    gates = Gates()
    model = sim(gates=gates)
    subs = _subs(("LOW", [], 1), ("HIGH", [], 9), ("MID", [], 5))
    await engine(model).parallel_solve("q", subs, max_concurrency=1)
    assert gates.order == ["HIGH", "MID", "LOW"]


async def test_one_failure_does_not_fail_the_others_and_dependents_are_skipped() -> None:
    model = sim(solver_rule("BAD", fault="500"))
    rec = Recorder()
    run = await engine(model).parallel_solve(
        "q", _subs("GOOD", "BAD", ("AFTER", ["BAD"])), on_event=rec
    )
    r = _by_id(run.results)
    assert r["good"].status is ThreadStatus.done
    assert r["bad"].status is ThreadStatus.failed
    assert "500" in (r["bad"].error or "")
    assert r["after"].status is ThreadStatus.skipped
    assert r["after"].reason == "dependency bad failed"
    assert run.metrics.threads_failed == 1 and run.metrics.threads_done == 1
    assert not run.partial
    assert "failed" in rec.kinds("bad") and "skipped" in rec.kinds("after")


async def test_deadline_returns_partial_results() -> None:
    gates = Gates()
    gates.block["HANG"] = anyio.Event()  # never set: only the deadline can end it
    model = sim(gates=gates)
    with anyio.fail_after(5):
        run = await engine(model).parallel_solve(
            "q", _subs("FAST", "HANG", ("LATER", ["HANG"])), deadline_s=0.3
        )
    r = _by_id(run.results)
    assert r["fast"].status is ThreadStatus.done
    assert r["hang"].status is ThreadStatus.cancelled and r["hang"].reason == "deadline"
    assert r["later"].status is ThreadStatus.cancelled and r["later"].reason == "deadline"
    assert run.partial and run.metrics.partial
    assert [d.kind for d in run.decisions if d.kind == "deadline"] == ["deadline"]
    assert model.active == 0  # the hung call was cancelled, not abandoned


async def test_early_stop_cancels_the_rest() -> None:
    gates = Gates()
    gates.block["SLOW"] = anyio.Event()
    model = sim(solver_rule("ORACLE", answer("42", confidence=0.95, settles=True)), gates=gates)
    eng = engine(model, max_concurrency=2)
    with anyio.fail_after(5):
        run = await eng.parallel_solve("q", _subs("SLOW", "ORACLE", "QUEUED"), max_concurrency=2)
    r = _by_id(run.results)
    assert r["oracle"].status is ThreadStatus.done
    for tid in ("slow", "queued"):
        assert r[tid].status is ThreadStatus.cancelled
        assert r[tid].reason == "early stop: oracle settled the question"
    stop = [d for d in run.decisions if d.kind == "early_stop"]
    assert stop and stop[0].thread_id == "oracle" and "0.95" in stop[0].reason
    assert not run.partial


async def test_cancelled_threads_count_the_tokens_they_spent() -> None:
    # STREAM starts streaming at once and slowly; ORACLE settles the question 0.3 s in, by which
    # time STREAM has sent part of its answer. Its prompt and streamed part were spent.
    model = sim(
        solver_rule("ORACLE", answer("42", confidence=0.95, settles=True), ttft_s=0.3),
        solver_rule("STREAM", answer("word " * 200), ttft_s=0.0, tokens_per_s=200),
    )
    with anyio.fail_after(5):
        run = await engine(model).parallel_solve("q", _subs("ORACLE", "STREAM"))
    r = _by_id(run.results)
    assert r["stream"].status is ThreadStatus.cancelled
    assert r["stream"].tokens_in > 0 and 0 < r["stream"].tokens_out < 200
    assert run.metrics.tokens_out == r["oracle"].tokens_out + r["stream"].tokens_out
    assert run.metrics.tokens_in == r["oracle"].tokens_in + r["stream"].tokens_in
    # Each thread's context is its prompt plus what it generated, the cancelled one's streamed part
    # too.
    assert run.metrics.stages["solve"].max_context_tokens == max(
        x.tokens_in + x.tokens_out for x in run.results
    )


async def test_confident_result_below_threshold_does_not_stop() -> None:
    model = sim(solver_rule("ORACLE", answer("42", confidence=0.5, settles=True)))
    run = await engine(model).parallel_solve("q", _subs("ORACLE", "OTHER"))
    assert all(r.status is ThreadStatus.done for r in run.results)
    assert not [d for d in run.decisions if d.kind == "early_stop"]


async def test_redundant_running_thread_is_cancelled() -> None:
    gates = Gates()
    gates.block["memory"] = anyio.Event()
    model = sim(solver_rule("Compare", answer("Go uses less", confidence=0.95)), gates=gates)
    subs = [
        Subtask(id="t1", prompt="Compare the speed and memory use of Python and Go"),
        Subtask(id="t2", prompt="memory use of Python and Go"),
        Subtask(id="t3", prompt="Packaging story of Rust"),
    ]
    with anyio.fail_after(5):
        run = await engine(model).parallel_solve("q", subs)
    r = _by_id(run.results)
    assert r["t2"].status is ThreadStatus.cancelled
    assert "t2 is covered by t1" in (r["t2"].reason or "")
    assert r["t3"].status is ThreadStatus.done  # not covered: other key terms
    assert [d.thread_id for d in run.decisions if d.kind == "cancel"] == ["t2"]


async def test_follow_ups_are_spawned_within_bounds() -> None:
    rec = Recorder()
    model = sim(
        solver_rule(
            "ROOT",
            answer(
                "found things",
                follow_ups=[
                    "FOLLOW check the first lead",
                    "FOLLOW check the second lead",
                    "FOLLOW check a third lead",
                ],
            ),
        ),
        solver_rule("FOLLOW", answer("deeper", follow_ups=["DEEPER go one level further"])),
    )
    run = await engine(model, max_followups=2, max_depth=1).parallel_solve(
        "q", _subs("ROOT"), on_event=rec
    )
    r = _by_id(run.results)
    assert set(r) == {"root", "root.f1", "root.f2"}  # two spawned, the third over the limit
    assert r["root.f1"].spawned_from == "root" and r["root.f1"].depends_on == ["root"]
    assert seconds(r["root.f1"].started_s) >= seconds(r["root"].finished_s)
    assert all(x.status is ThreadStatus.done for x in run.results)
    spawn = [d for d in run.decisions if d.kind == "spawn"]
    assert sum("found a new subproblem" in d.reason for d in spawn) == 2
    assert any("limit of 2 follow-ups" in d.reason for d in spawn)
    assert any("exceeds max_depth 1" in d.reason for d in spawn)  # f1/f2's own follow-ups
    assert rec.events[-1].total == 3 and rec.events[-1].completed == 3
    assert [e.kind for e in rec.events].count("spawned") == 2


_LONG = answer("word " * 6000)  # about 6000 output tokens, streamed in 16 chunks


async def test_token_budget_cancels_the_thread_streaming_past_it() -> None:
    # A first run without a budget measures what ONE costs; the budget then fits ONE and LONG's
    # prompt, so it is crossed while LONG streams (not after it): LONG is cut, THREE never starts.
    probe = await engine(sim()).parallel_solve("q", _subs("ONE"))
    one_tokens, prompt = probe.metrics.tokens_in + probe.metrics.tokens_out, probe.metrics.tokens_in
    limit = one_tokens + prompt + 1000
    model = sim(solver_rule("LONG", _LONG))
    with anyio.fail_after(5):
        run = await engine(model, token_budget=limit).parallel_solve(
            "q", _subs("ONE", "LONG", "THREE"), max_concurrency=1
        )
    r = _by_id(run.results)
    assert r["one"].status is ThreadStatus.done and r["one"].answer  # results so far are kept
    assert r["long"].status is ThreadStatus.cancelled and r["long"].reason == "token budget"
    assert 0 < r["long"].tokens_out < 3000  # stopped mid-stream, not after ~6000 tokens
    assert r["three"].status is ThreadStatus.cancelled and r["three"].reason == "token budget"
    assert model.calls_by_purpose["solver"] == 2
    assert run.partial and run.metrics.partial
    budget = [d for d in run.decisions if d.kind == "budget"]
    assert len(budget) == 1 and f"of {limit} tokens" in budget[0].reason
    assert "cancelled 1 running and 1 pending" in budget[0].reason
    # The live estimate is rough, but the run ends close to the budget, not thousands over it.
    assert run.metrics.tokens_in + run.metrics.tokens_out < limit + 700


async def test_token_budget_cancels_every_running_thread() -> None:
    # SLOW is running (held at its call's start) when LONG's stream crosses the budget.
    gates = Gates()
    gates.block["SLOW"] = anyio.Event()  # never set: only the budget can end SLOW
    model = sim(solver_rule("LONG", _LONG), gates=gates)
    probe = await engine(sim()).parallel_solve("q", _subs("ONE"))
    limit = 2 * probe.metrics.tokens_in + 1000
    with anyio.fail_after(5):
        run = await engine(model, token_budget=limit).parallel_solve(
            "q", _subs("SLOW", "LONG"), max_concurrency=2
        )
    r = _by_id(run.results)
    assert r["slow"].status is ThreadStatus.cancelled and r["slow"].reason == "token budget"
    assert r["slow"].tokens_in > 0 and r["slow"].tokens_out == 0  # its prompt was sent
    assert r["long"].status is ThreadStatus.cancelled and r["long"].reason == "token budget"
    assert run.partial and [d.kind for d in run.decisions].count("budget") == 1


async def test_token_budget_below_one_prompt_sends_nothing() -> None:
    model = sim()
    run = await engine(model, token_budget=50).parallel_solve("q", _subs("ONE", "TWO"))
    assert all(
        r.status is ThreadStatus.cancelled and r.reason == "token budget" for r in run.results
    )
    assert model.calls == 0  # stopped before the first prompt went out
    assert run.metrics.tokens_in == 0 and run.partial
    assert run.metrics.threads_cancelled == 2


async def test_events_are_monotonic_and_complete() -> None:
    rec = Recorder()
    model = sim(solver_rule("B", fault="500"))
    run = await engine(model).parallel_solve(
        "q", _subs("A", "B", "C", ("D", ["A"]), ("E", ["B"])), max_concurrency=2, on_event=rec
    )
    completed = [e.completed for e in rec.events]
    totals = [e.total for e in rec.events]
    assert completed == sorted(completed) and totals == sorted(totals)
    assert all(e.completed <= e.total for e in rec.events)
    assert (
        rec.events[-1].kind == "finished" and rec.events[-1].completed == 5 == run.metrics.threads
    )
    done = [e for e in rec.events if e.kind == "done"]
    assert done and all("tokens" in e.message and e.message.endswith("s)") for e in done)
    for r in run.results:  # every thread ends with exactly one terminal event
        terminal = [
            k for k in rec.kinds(r.id) if k in {"done", "cached", "failed", "cancelled", "skipped"}
        ]
        assert terminal == [r.status.value]


class _FromCache(WrapperModel):
    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        response = await self.inner.complete(request, on_token=on_token)
        return response.model_copy(update={"cached": True})


async def test_cached_threads_are_marked_and_counted() -> None:
    rec = Recorder()
    base = sim()
    eng = engine(base)
    eng.solver = _FromCache(base)
    run = await eng.parallel_solve("q", _subs("A", "B"), on_event=rec)
    assert all(r.cached for r in run.results)
    assert run.metrics.cache_hits == 2
    cached = sorted(e.message for e in rec.events if e.kind == "cached")
    assert cached == ["a served from cache", "b served from cache"]


async def test_outer_cancellation_propagates_and_closes_calls() -> None:
    gates = Gates()
    for name in ("A", "B"):
        gates.block[name] = anyio.Event()
    model = sim(gates=gates)
    eng = engine(model)
    finished = False
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                nonlocal finished
                await eng.parallel_solve("q", _subs("A", "B"))
                finished = True

            tg.start_soon(run)
            await gates.started["A"].wait()
            await gates.started["B"].wait()
            tg.cancel_scope.cancel()
    assert not finished
    assert model.active == 0


def test_critical_path_of_a_known_dag() -> None:
    def r(i: str, latency: float, deps: list[str] | None = None) -> ThreadResult:
        return ThreadResult(id=i, latency_s=latency, depends_on=deps or [])

    # a(1) -> c(2) -> e(0.5); b(3) -> d(1); f(3.4) alone. Longest: a, c, e = 3.5 vs b, d = 4.
    results = [
        r("a", 1),
        r("b", 3),
        r("c", 2, ["a"]),
        r("d", 1, ["b"]),
        r("e", 0.5, ["c"]),
        r("f", 3.4),
    ]
    assert critical_path(results) == pytest.approx(4.0)
    results.append(r("g", 1.0, ["e", "d"]))
    assert critical_path(results) == pytest.approx(5.0)
    assert critical_path([]) == 0.0


async def test_controller_review_hook_can_steer_the_run() -> None:
    from apr_mcp.config import Settings
    from apr_mcp.engine.controller import Action, Controller, Note, RunState, SetConcurrency

    class Narrow(Controller):
        async def review(self, state: RunState) -> list[Action]:
            if len(state.results) == 1:
                return [
                    SetConcurrency(limit=1, reason="provider looks busy"),
                    Note(kind="meta", reason="meta: continue"),
                ]
            return []

    gates = Gates()
    gates.block["A"] = gates.started["B"]  # A and B overlap at first...
    model = sim(gates=gates)
    eng = engine(model)

    def factory(settings: Settings, _model: object) -> Controller:
        return Narrow(settings)

    eng.controller_factory = factory
    with anyio.fail_after(5):
        run = await eng.parallel_solve("q", _subs("A", "B", "C", "D", "E"), max_concurrency=2)
    kinds = [(d.kind, d.reason) for d in run.decisions]
    assert ("width", "provider looks busy") in kinds and ("meta", "meta: continue") in kinds
    r = _by_id(run.results)
    # ...after the width drops to 1, the remaining threads never overlap.
    first_two_done = max(r["a"].finished_s or 0, r["b"].finished_s or 0)
    assert all((r[t].started_s or 0) >= first_two_done for t in ("c", "d", "e"))
    later = sorted((r[t] for t in ("c", "d", "e")), key=lambda x: x.started_s or 0)
    for first, second in itertools.pairwise(later):
        assert (second.started_s or 0) >= (first.finished_s or 0)


async def test_slow_or_broken_progress_callback_neither_reorders_nor_fails_the_run() -> None:
    seen: list[RunEvent] = []

    async def callback(event: RunEvent) -> None:
        await anyio.lowlevel.checkpoint()  # yields to other tasks, as sending a notification does
        if event.kind == "started":
            raise RuntimeError("broken client")
        seen.append(event)

    run = await engine(sim()).parallel_solve("q", _subs("A", "B", "C", "D"), on_event=callback)
    assert all(r.status is ThreadStatus.done for r in run.results)
    completed = [e.completed for e in seen]
    assert completed == sorted(completed) and completed[-1] == 4
    assert seen[-1].kind == "finished" and not [e for e in seen if e.kind == "started"]
