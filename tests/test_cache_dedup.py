"""Cross-process in-flight de-duplication (issue 11.4): a lease in the shared cache makes two
processes that ask the same thing at the same time pay for one model call."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import httpx
import pytest

import apr_mcp.cache as cache_module
from apr_mcp.cache import ResultCache
from apr_mcp.simulate_server import simulate_subprocess


async def test_a_second_cache_on_the_directory_waits_for_the_first_ones_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ResultCache objects share nothing but the directory, as two processes do."""
    release, started, busy = anyio.Event(), anyio.Event(), anyio.Event()
    claim = cache_module._claim

    def watched_claim(*args: Any) -> tuple[str, Any]:
        state = claim(*args)
        if state[0] == "busy":  # runs in a worker thread: tell the test on the loop
            anyio.from_thread.run_sync(busy.set)
        return state

    monkeypatch.setattr(cache_module, "_claim", watched_claim)
    computed: list[str] = []

    async def slow() -> str:
        computed.append("first")
        started.set()
        await release.wait()
        return "answer"

    async def never() -> str:
        computed.append("second")
        return "other"

    outcome: dict[str, tuple[str, bool]] = {}
    with ResultCache(tmp_path / "c") as one, ResultCache(tmp_path / "c") as two:

        async def first() -> None:
            outcome["first"] = await one.get_or_compute("k", slow)

        async def second() -> None:
            outcome["second"] = await two.get_or_compute("k", never)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(first)
                await started.wait()  # the first holds the lease now
                tg.start_soon(second)
                await busy.wait()  # the second saw the lease and polls; it does not compute
                assert computed == ["first"]
                release.set()
    assert outcome == {"first": ("answer", False), "second": ("answer", True)}
    assert computed == ["first"]


async def test_a_dead_holders_lease_expires(tmp_path: Path) -> None:
    with ResultCache(tmp_path / "c", lease_s=0.3) as cache:
        # A lease left by a process that died mid-call: nobody renews or releases it.
        cache._run(lambda store: store.add("lease:k", "dead-process", expire=0.3))

        async def compute() -> str:
            return "computed"

        with anyio.fail_after(5):
            assert await cache.get_or_compute("k", compute) == ("computed", False)


async def test_a_failed_holder_frees_the_lease_and_the_waiter_computes(tmp_path: Path) -> None:
    started, fail = anyio.Event(), anyio.Event()

    async def failing() -> str:
        started.set()
        await fail.wait()
        raise RuntimeError("model error")

    async def works() -> str:
        return "mine"

    result: list[tuple[str, bool]] = []
    with ResultCache(tmp_path / "c") as one, ResultCache(tmp_path / "c") as two:

        async def first() -> None:
            with pytest.raises(RuntimeError):
                await one.get_or_compute("k", failing)

        async def second() -> None:
            result.append(await two.get_or_compute("k", works))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(first)
                await started.wait()
                tg.start_soon(second)
                fail.set()
    assert result == [("mine", False)]


async def _model_calls(client: httpx.AsyncClient) -> int:
    return int((await client.get("/stats")).json()["model_calls"])


async def test_two_processes_asking_the_same_question_make_one_set_of_calls(
    tmp_path: Path,
) -> None:
    question = "Compare PostgreSQL, MySQL and SQLite for a small web app"
    with anyio.fail_after(120):
        # ttft 0.3 s: every call lasts long enough for the two processes to overlap.
        async with (
            simulate_subprocess("--ttft", "0.3") as url,
            httpx.AsyncClient(base_url=url) as client,
        ):
            env = {
                **os.environ,
                "APR_BACKEND": "openai",
                "APR_BASE_URL": url,
                "APR_MODEL": "sim-1",
                "APR_API_KEY": "sim",
                "APR_RUNS_DIR": str(tmp_path / "runs"),
            }

            async def solve(cache_dir: Path) -> None:
                done = await anyio.run_process(
                    [sys.executable, "-m", "apr_mcp", "solve", question],
                    env={**env, "APR_CACHE_DIR": str(cache_dir)},
                )
                assert done.returncode == 0

            await solve(tmp_path / "alone")
            alone = await _model_calls(client)
            # Asked again on the same directory, only answers the cache never keeps (e.g. a
            # lead line cut at its max_tokens) cost calls: each process pays for those.
            await solve(tmp_path / "alone")
            uncacheable = await _model_calls(client) - alone
            before = await _model_calls(client)
            async with anyio.create_task_group() as tg:
                tg.start_soon(solve, tmp_path / "shared")
                tg.start_soon(solve, tmp_path / "shared")
            together = await _model_calls(client) - before
    assert alone - uncacheable >= 2  # a split question: several cacheable calls
    # Without the lease: 2 × alone. With it: the cacheable calls once, the rest twice.
    assert together == alone + uncacheable
