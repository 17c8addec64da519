"""Debug mode end to end on the simulated model: hypotheses → parallel investigations → ranked
verdict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from engine_helpers import seconds

from apr_mcp.config import Settings
from apr_mcp.engine import Engine
from apr_mcp.engine.debug import fallback_hypotheses, parse_error
from apr_mcp.errors import PlanError
from apr_mcp.llm.simulated import SimRule, SimScript, SimulatedModel
from apr_mcp.prompts import load_prompt
from apr_mcp.schemas import RunEvent, ThreadStatus

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "debugging"
TRACEBACK = (EXAMPLE / "traceback.txt").read_text(encoding="utf-8")
CODE = (EXAMPLE / "buggy.py").read_text(encoding="utf-8")

HYPOTHESES = {
    "symptom": "IndexError in window_sums",
    "hypotheses": [
        {
            "title": "Loop bound len(values) - k + 2 is one too many",
            "rationale": "last window overruns",
            "check": "print the last start index",
            "prior": 0.7,
        },
        {
            "title": "Input list shorter than the window size k",
            "rationale": "k > len(values)",
            "check": "assert len(values) >= k",
            "prior": 0.2,
        },
        {"title": "Caller passes the wrong window size to moving_averages", "prior": 0.1},
    ],
}


def engine_for(*rules: SimRule, **settings: object) -> tuple[Engine, SimulatedModel]:
    sim = SimulatedModel(ttft_s=0.002, tokens_per_s=20_000, script=SimScript(rules=list(rules)))
    cfg = Settings(backend="simulated", **settings)  # type: ignore[arg-type]
    return Engine(settings=cfg, planner=sim, solver=sim, merger=sim), sim


def planner_rule() -> SimRule:
    return SimRule(pattern=r"Error or symptom", purpose="debug_hypotheses", reply=HYPOTHESES)


async def test_debug_falls_back_to_hypotheses_from_the_error_type() -> None:
    # The hypotheses and verdict calls both fail: the error type still gives hypotheses, the
    # investigators' confidence still ranks them.
    engine, sim = engine_for(
        SimRule(pattern=".", purpose="debug_hypotheses", fault="500"),
        SimRule(pattern=".", purpose="debug_verdict", fault="500"),
    )
    events: list[RunEvent] = []

    async def on_event(event: RunEvent) -> None:
        events.append(event)

    with anyio.fail_after(10):
        result = await engine.solve(TRACEBACK, context=CODE, mode="debug", on_event=on_event)
    assert result.strategy == "debug"
    assert result.plan is not None and result.plan.should_split
    assert result.plan.source == "heuristic"
    assert "read from the error type" in result.plan.reason
    assert len(result.results) >= 3
    assert all(r.status is ThreadStatus.done for r in result.results)
    assert any("Off-by-one" in s.prompt and "window_sums" in s.prompt for s in result.plan.subtasks)
    assert result.merge is not None and result.merge.strategy.value == "rank"
    by_id = {r.id: r for r in result.results}
    likelihoods = [by_id[i].confidence or 0.0 for i in result.merge.used]
    assert likelihoods == sorted(likelihoods, reverse=True)  # no verdict ranking: by confidence
    assert "## Ranked hypotheses" in result.answer
    assert result.answer.index(f"[{result.merge.used[0]}]") < result.answer.index(
        f"[{result.merge.used[-1]}]"
    )
    assert set(result.metrics.stages) >= {"plan", "solve", "merge"}
    assert result.metrics.model_calls == sim.calls
    assert result.decisions[0].kind == "split"
    kinds = [e.kind for e in events]
    assert kinds[0] == "planned" and kinds[-1] == "finished" and kinds.count("finished") == 1
    # The "N competing hypotheses" reason is reported once (the decision), not by "planned" too.
    assert sum("competing hypotheses" in e.message for e in events) == 1
    assert events[0].message.startswith("plan ready:")
    assert kinds.index("merging") > max(i for i, k in enumerate(kinds) if k == "done")
    assert "verdict call failed" in result.merge.note


async def test_debug_runs_ranked_hypotheses_on_the_simulated_model() -> None:
    # Unscripted, the simulated model gives the whole mechanism placeholder hypotheses, placeholder
    # investigations and a placeholder verdict: it does not read the code, so it never finds the
    # fix.
    engine, sim = engine_for()
    with anyio.fail_after(10):
        result = await engine.solve(TRACEBACK, context=CODE, mode="debug")
    assert result.plan is not None and result.plan.source == "model"
    assert len(result.results) >= 2 and all(r.status is ThreadStatus.done for r in result.results)
    assert all("[sim]" in s.prompt for s in result.plan.subtasks)
    assert result.merge is not None and result.merge.used[0] == "h1" and not result.merge.note
    verdict = result.answer.split("## Verdict", 1)[1]
    assert verdict.strip().startswith("[sim]")
    assert "k + 1" not in result.answer and "Off-by-one" not in result.answer
    assert result.metrics.model_calls == sim.calls == 1 + len(result.results) + 1
    # Each stage's max context is one call's prompt plus output (one call each for plan and merge).
    stages = result.metrics.stages
    for name in ("plan", "merge"):
        assert stages[name].calls == 1
        assert stages[name].max_context_tokens == stages[name].tokens_in + stages[name].tokens_out
    assert result.merge.max_context_tokens == stages["merge"].max_context_tokens
    assert result.merge.max_context_tokens > result.merge.context_tokens  # the prompt alone
    assert stages["solve"].max_context_tokens == max(
        r.tokens_in + r.tokens_out for r in result.results
    )
    assert result.metrics.max_context_tokens == max(s.max_context_tokens for s in stages.values())


async def test_model_hypotheses_and_verdict_ranking_are_used() -> None:
    verdict = {
        "answer": "The loop bound is off by one: use range(len(values) - k + 1).",
        "confidence": 0.9,
        "ranking": [
            {"id": "h1", "likelihood": 0.9, "fix": "range(len(values) - k + 1)"},
            {"id": "h9", "likelihood": 0.8},  # not a real thread: ignored
            {"id": "h3", "likelihood": 0.1},
        ],
    }
    engine, _ = engine_for(
        planner_rule(), SimRule(pattern="Worker results", purpose="debug_verdict", reply=verdict)
    )
    with anyio.fail_after(10):
        result = await engine.solve(TRACEBACK, context=CODE, mode="debug")
    assert result.plan is not None and result.plan.source == "model"
    assert [s.id for s in result.plan.subtasks] == ["h1", "h2", "h3"]
    assert result.plan.subtasks[0].priority == 7  # prior 0.7
    assert result.merge is not None
    assert result.merge.used[:2] == ["h1", "h3"] and set(result.merge.used) == {"h1", "h2", "h3"}
    assert result.confidence == 0.9
    assert result.answer.startswith("## Verdict\nThe loop bound is off by one")
    assert "Fix: range(len(values) - k + 1)" in result.answer


async def test_confirmed_hypothesis_stops_the_others() -> None:
    # Flags, not a canned reply: the simulated model writes them in whatever form the request
    # asks for (a JSON ThreadAnswer, or the free-text trailer).
    engine, _ = engine_for(
        planner_rule(),
        SimRule(pattern=r"Hypothesis h1:", purpose="solver", confidence=0.97, settles=True),
        SimRule(pattern=r"Hypothesis h[23]:", purpose="solver", ttft_s=30.0),
    )
    with anyio.fail_after(10):
        result = await engine.solve(TRACEBACK, context=CODE, mode="debug")
    status = {r.id: r.status for r in result.results}
    assert status == {
        "h1": ThreadStatus.done,
        "h2": ThreadStatus.cancelled,
        "h3": ThreadStatus.cancelled,
    }
    assert any(d.kind == "early_stop" and d.thread_id == "h1" for d in result.decisions)
    assert result.merge is not None and result.merge.used == ["h1"]
    assert "## Not investigated" in result.answer and "[h2]" in result.answer
    assert "[h1]" in result.answer


async def test_failed_investigation_and_failed_verdict_give_partial_ranking() -> None:
    engine, _ = engine_for(
        planner_rule(),
        SimRule(pattern=r"Hypothesis h2:", purpose="solver", fault="500"),
        SimRule(pattern="Worker results", purpose="debug_verdict", fault="500"),
    )
    with anyio.fail_after(10):
        result = await engine.solve(TRACEBACK, context=CODE, mode="debug")
    status = {r.id: r.status for r in result.results}
    assert status["h2"] is ThreadStatus.failed
    assert result.merge is not None
    assert "verdict call failed" in result.merge.note
    assert set(result.merge.used) == {"h1", "h3"} and result.merge.dropped == ["h2"]
    assert "failed" in result.answer.split("## Not investigated")[1]


async def test_planner_failure_falls_back_to_error_type_hypotheses() -> None:
    engine, _ = engine_for(
        SimRule(pattern="Error or symptom", purpose="debug_hypotheses", fault="500")
    )
    with anyio.fail_after(10):
        result = await engine.solve(
            "KeyError: 'user_id'",
            context="def f(d={}):\n    return d['user_id']\n",
            mode="debug",
            max_subtasks=3,
        )
    assert result.plan is not None
    assert "hypothesis call failed" in result.plan.reason
    assert len(result.plan.subtasks) == 3
    assert any("mutable default" in s.prompt for s in result.plan.subtasks)


async def test_engine_solve_debug_mode_routes_here() -> None:
    engine, _ = engine_for(planner_rule())
    with anyio.fail_after(10):
        result = await engine.solve(TRACEBACK, context=CODE, mode="debug", max_subtasks=2)
    assert result.strategy == "debug"
    assert [s.id for s in result.plan.subtasks] == ["h1", "h2"]  # type: ignore[union-attr]


async def test_empty_error_is_a_clear_error() -> None:
    engine, _ = engine_for()
    with pytest.raises(PlanError, match="nothing to debug"):
        await engine.solve("   ", mode="debug")


def test_parse_python_traceback() -> None:
    info = parse_error(TRACEBACK)
    assert info.exc_type == "IndexError"
    assert info.message == "list index out of range"
    assert [f[2] for f in info.frames] == ["<module>", "moving_averages", "window_sums"]
    assert info.frames[-1][3] == "total += values[start + offset]"
    assert "window_sums" in info.where and "line 20" in info.where


@pytest.mark.parametrize(
    ("error", "code", "expect"),
    [
        ("ZeroDivisionError: division by zero", "", "empty collection"),
        ("TypeError: 'NoneType' object is not subscriptable", "", "returned nothing"),
        ("Error: connection refused", "import threading\n", "race"),
        ("the report shows the wrong totals", "", "input data"),
    ],
)
def test_fallback_hypotheses(error: str, code: str, expect: str) -> None:
    hyps = fallback_hypotheses(error, code, limit=4)
    assert 2 <= len(hyps) <= 4
    assert len({h.title for h in hyps}) == len(hyps)
    assert any(expect in h.title for h in hyps), [h.title for h in hyps]


def test_prompt_variables_are_pinned() -> None:
    assert load_prompt("debug_hypotheses").variables == {
        "error",
        "code",
        "context",
        "signals",
        "schema",
        "min_hypotheses",
        "max_hypotheses",
    }
    assert load_prompt("debug_verdict").variables == {"error", "code", "results", "schema"}
    assert load_prompt("debug_investigate").variables == {"id", "title", "rationale", "check"}


def test_example_traceback_is_what_the_example_really_raises() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE / "buggy.py")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1
    real = parse_error(proc.stderr)
    recorded = parse_error(TRACEBACK)
    assert (real.exc_type, real.message) == (recorded.exc_type, recorded.message)
    assert [f[1:] for f in real.frames] == [f[1:] for f in recorded.frames]


async def test_traceback_in_context_instead_of_the_question() -> None:
    # The MCP prompt style: a generic question, the error and the code in `context`. With no
    # model hypotheses, those read from the error type must find the traceback in the context.
    engine, _ = engine_for(SimRule(purpose="debug_hypotheses", fault="500"))
    with anyio.fail_after(10):
        result = await engine.solve(
            "What causes this error and how do I fix it?",
            context=TRACEBACK + "\n\n" + CODE,
            mode="debug",
        )
    assert result.plan is not None
    assert any("Off-by-one" in s.prompt and "window_sums" in s.prompt for s in result.plan.subtasks)
    assert all(r.status is ThreadStatus.done for r in result.results)


async def test_deadline_bounds_every_stage_and_returns_partial_results() -> None:
    engine, _ = engine_for(
        SimRule(
            pattern="Error or symptom", purpose="debug_hypotheses", ttft_s=30.0
        ),  # the planner hangs
        SimRule(pattern=r"Hypothesis h2:", purpose="solver", ttft_s=30.0),  # so does one thread
    )
    start = anyio.current_time()
    with anyio.fail_after(10):
        result = await engine.solve(
            TRACEBACK, context=CODE, mode="debug", deadline_s=0.6, max_subtasks=3
        )
    assert anyio.current_time() - start < 1.5
    assert result.plan is not None and "planning took longer than" in result.plan.reason
    assert "hypotheses read from the error type" in result.plan.reason
    status = {r.id: r.status for r in result.results}
    assert status["h2"] is ThreadStatus.cancelled and status["h1"] is ThreadStatus.done
    assert result.partial
    assert result.merge is not None and "h2" in result.merge.dropped


async def test_debug_reports_limit_changes_of_the_hypothesis_and_verdict_calls() -> None:
    # The hypotheses call and the verdict call are each refused once (429) outside the
    # investigations' run; both backoffs must still be visible decisions, each once.
    from apr_mcp.llm.limiter import AdaptiveLimiter, LimitedModel
    from apr_mcp.llm.retry import RetryingModel

    backend = SimulatedModel(
        ttft_s=0.002,
        tokens_per_s=20_000,
        script=SimScript(
            rules=[
                SimRule(
                    pattern=".", purpose="debug_hypotheses", fault="429", times=1, retry_after=0.01
                ),
                SimRule(
                    pattern=".", purpose="debug_verdict", fault="429", times=1, retry_after=0.01
                ),
            ]
        ),
    )
    limiter = AdaptiveLimiter(4, max_limit=4, latency_floor_s=10.0, probe_windows=1)
    stack = RetryingModel(LimitedModel(backend, limiter), base_delay=0.001, max_delay=0.05)
    engine = Engine(
        settings=Settings(backend="simulated"), planner=stack, solver=stack, merger=stack
    )
    with anyio.fail_after(10):
        result = await engine.solve(TRACEBACK, context=CODE, mode="debug")
    kinds = [d.kind for d in result.decisions]
    assert kinds[0] == "split" and kinds.count("backoff") == 2, result.decisions
    first, second = (d for d in result.decisions if d.kind == "backoff")
    assert kinds.index("backoff") == 1  # the hypotheses call's, before the investigations
    assert second.at_s >= max(seconds(r.finished_s) for r in result.results)  # the verdict call's
    # One clock for the whole debug run: investigations start after the hypotheses call.
    assert min(seconds(r.started_s) for r in result.results) >= first.at_s > 0
    assert "HTTP 429" in first.reason and "HTTP 429" in second.reason
