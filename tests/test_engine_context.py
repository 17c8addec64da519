"""Max context: the prompt plus the generated tokens of one call, measured per call and per stage.

This is the quantity adaptive parallel reasoning trades on: one chain of thought holds its whole
reasoning in one context, parallel threads each hold only their own part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import anyio
from engine_helpers import Recording, engine, sim

from apr_mcp.cache import ResultCache
from apr_mcp.llm.cached import CachedModel
from apr_mcp.llm.simulated import SimRule, SimScript, SimulatedModel
from apr_mcp.schemas import SolveResult, ThreadStatus
from apr_mcp.tokens import count_messages

COMPARE = "Compare Python, Go and Rust for writing a CLI tool: speed, ecosystem and learning curve."


async def test_each_stage_reports_its_largest_prompt_plus_output() -> None:
    model = Recording(sim())
    result = await engine(model, planner="model", max_threads=3).solve(COMPARE)
    m = result.metrics
    assert result.merge is not None and len(result.results) == 3
    assert m.stages["plan"].max_context_tokens == max(model.contexts("planner"))
    assert m.stages["solve"].max_context_tokens == max(model.contexts("solver"))
    assert m.stages["solve"].max_context_tokens == max(
        r.tokens_in + r.tokens_out for r in result.results
    )
    [merge_context] = model.contexts("lead")
    assert m.stages["merge"].max_context_tokens == result.merge.max_context_tokens == merge_context
    # MergeResult.context_tokens stays what it says: the merge prompt alone.
    assert result.merge.context_tokens < merge_context
    everything = [c for p in ("planner", "solver", "lead") for c in model.contexts(p)]
    assert m.max_context_tokens == max(everything)
    # Larger than any prompt: the old prompt-only figure understated every call.
    assert m.max_context_tokens > max(r.usage.input_tokens for _, r in model.responses)


async def test_sequential_context_grows_with_its_reasoning_parallel_threads_stay_smaller() -> None:
    async def run(
        strategy: Literal["sequential", "adaptive"], scale: float
    ) -> tuple[Recording, SolveResult]:
        model = Recording(SimulatedModel(ttft_s=0.001, tokens_per_s=1e6, reasoning_scale=scale))
        return model, await engine(model).solve(COMPARE, strategy=strategy)

    with anyio.fail_after(10):
        short_model, short = await run("sequential", 1.0)
        long_model, long = await run("sequential", 8.0)
        adaptive_model, adaptive = await run("adaptive", 8.0)
    [short_ctx] = short_model.contexts("sequential")
    [long_ctx] = long_model.contexts("sequential")
    assert short.metrics.max_context_tokens == short_ctx
    assert long.metrics.max_context_tokens == long_ctx
    # Same prompt, eight times the reasoning: the one context grows by exactly what was generated.
    assert short.results[0].tokens_in == long.results[0].tokens_in
    grown = long.results[0].tokens_out - short.results[0].tokens_out
    assert grown > 0 and long_ctx - short_ctx == grown
    # The same reasoning split over three threads: each holds only its share.
    threads = adaptive_model.contexts("solver")
    assert len(threads) == 3 and max(threads) < long_ctx
    assert adaptive.metrics.stages["solve"].max_context_tokens == max(threads)
    assert adaptive.metrics.max_context_tokens < long.metrics.max_context_tokens


async def test_cache_hits_hold_no_context(tmp_path: Path) -> None:
    with ResultCache(tmp_path / "cache") as cache:
        first = await engine(CachedModel(sim(), cache), lead_tokens=256).solve(COMPARE)
        again = await engine(CachedModel(sim(), cache), lead_tokens=256).solve(COMPARE)
    assert first.metrics.cache_hits == 0 and first.metrics.max_context_tokens > 0
    m = again.metrics
    assert m.cache_hits == m.model_calls == first.metrics.model_calls
    # Tokens stay reported as the original calls' usage, but no model held any context.
    assert m.tokens_in == first.metrics.tokens_in
    assert m.max_context_tokens == 0
    assert all(s.max_context_tokens == 0 for s in m.stages.values())


async def test_sequential_cut_by_the_deadline_counts_its_prompt_and_what_it_streamed() -> None:
    model = SimulatedModel(
        ttft_s=0.0,
        tokens_per_s=200,
        script=SimScript(rules=[SimRule(pattern=".", reply="step " * 400, purpose="sequential")]),
    )
    with anyio.fail_after(5):
        result = await engine(model).solve(
            "Think long about this.", strategy="sequential", deadline_s=0.3
        )
    t = result.results[0]
    assert t.status is ThreadStatus.cancelled and result.partial
    assert t.tokens_in == count_messages(model.requests[0].messages)
    assert 0 < t.tokens_out < 400
    assert result.metrics.max_context_tokens == t.tokens_in + t.tokens_out
    assert result.metrics.tokens_in == t.tokens_in and result.metrics.tokens_out == t.tokens_out
