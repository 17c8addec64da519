"""build_runtime composes the stack once and does its slow set-up up front, so a run never
stalls its event loop on it (cold-start cost is a figure for benchmarks; here we check the
structure that prevents it)."""

from __future__ import annotations

from apr_mcp import load_settings
from apr_mcp.cache import ResultCache
from apr_mcp.llm.cached import CachedModel
from apr_mcp.llm.limiter import LimitedModel
from apr_mcp.llm.openai_compat import OpenAICompatModel
from apr_mcp.llm.retry import RetryingModel
from apr_mcp.runtime import build_runtime
from apr_mcp.tokens import encoding_for


async def test_stack_order_and_shared_limiter() -> None:
    settings = load_settings(backend="openai", base_url="http://127.0.0.1:9/v1", model="m")
    runtime = build_runtime(settings)
    try:
        engine = runtime.engine
        for role in (engine.planner, engine.solver, engine.merger):
            assert isinstance(role, CachedModel)
            assert isinstance(role.inner, RetryingModel)
            assert isinstance(role.inner.inner, LimitedModel)
            assert isinstance(role.unwrap(), OpenAICompatModel)
        limiters = {id(m.inner.inner.limiter) for m in (engine.planner, engine.solver)}  # type: ignore[union-attr]
        assert limiters == {id(runtime.limiter)}
        # One backend per distinct model id, shared by the roles.
        assert engine.planner.unwrap() is engine.solver.unwrap() is engine.merger.unwrap()
    finally:
        await runtime.aclose()


async def test_slow_setup_happens_at_build_time() -> None:
    encoding_for.cache_clear()
    settings = load_settings(backend="openai", base_url="http://127.0.0.1:9/v1", model="m")
    runtime = build_runtime(settings)
    try:
        assert encoding_for.cache_info().currsize == 1  # tokenizer loaded
        backend = runtime.engine.solver.unwrap()
        assert backend._clients.clients == 1  # type: ignore[attr-defined]  # first HTTP client open
    finally:
        await runtime.aclose()


async def test_separate_planner_model_gets_its_own_backend() -> None:
    settings = load_settings(
        backend="openai", base_url="http://127.0.0.1:9/v1", model="big", planner_model="small"
    )
    runtime = build_runtime(settings)
    try:
        assert runtime.engine.planner.unwrap().model_name == "small"
        assert runtime.engine.solver.unwrap().model_name == "big"
        assert runtime.engine.merger.unwrap() is runtime.engine.solver.unwrap()
    finally:
        await runtime.aclose()


async def test_a_shared_cache_is_not_closed_by_the_runtime(tmp_path: object) -> None:
    settings = load_settings(backend="simulated")
    with ResultCache(settings.effective_cache_dir()) as cache:
        runtime = build_runtime(settings, cache=cache)
        await runtime.aclose()
        assert cache.stats()["entries"] == 0  # still usable after the runtime closed
