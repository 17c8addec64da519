"""Cancelling a tool call stops every in-flight model stream and caches nothing.

The whole production stack runs: the server builds its engine from settings (cache → retry →
limiter → OpenAI-compatible backend over real HTTP) against the simulated model served on loopback.
Every solver stream is stuck in a 60-second time-to-first-token, so only a cancellation can end it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp.client import Client
from pydantic import SecretStr

from apr_mcp.cache import ResultCache
from apr_mcp.config import Settings
from apr_mcp.llm.base import ModelRequest
from apr_mcp.llm.simulated import SimReply, SimRule, SimScript, SimulatedModel
from apr_mcp.server import close_server, create_server
from apr_mcp.simulate_server import serve_simulated

THREADS = 3


class WatchedModel(SimulatedModel):
    """The simulated model, with events for "all streams started" and "all streams ended"."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.started = 0
        self.ended = 0
        self.all_started = anyio.Event()
        self.all_ended = anyio.Event()

    @asynccontextmanager
    async def session(self, request: ModelRequest) -> AsyncIterator[SimReply]:
        async with super().session(request) as reply:
            self.started += 1
            if self.started == THREADS:
                self.all_started.set()
            try:
                yield reply
            finally:
                self.ended += 1
                if self.ended == THREADS:
                    self.all_ended.set()


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_cancelled_call_closes_streams_and_caches_nothing(tmp_path: Path, mode: str) -> None:
    stuck = SimScript(rules=[SimRule(pattern="STUCK", ttft_s=60.0)])
    model = WatchedModel(ttft_s=0.001, tokens_per_s=50_000, script=stuck)
    subtasks = [
        {"id": f"t{i}", "prompt": f"STUCK thread {i}: what is {i} + {i}?"} for i in range(THREADS)
    ]
    cache_dir = tmp_path / "cache"
    with anyio.fail_after(15):
        async with serve_simulated(model) as base_url:
            settings = Settings(
                backend="openai",
                base_url=base_url,
                model="sim-1",
                api_key=SecretStr("sim"),
                cache_dir=cache_dir,
                max_retries=0,
            )
            server = create_server(settings)  # the production engine stack
            try:
                async with Client(server, mode=mode) as client:
                    call = anyio.CancelScope()
                    outcome: list[Any] = []

                    async def run() -> None:
                        with call:
                            outcome.append(
                                await client.call_tool(
                                    "parallel_solve", {"question": "sums", "subtasks": subtasks}
                                )
                            )

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(run)
                        await model.all_started.wait()
                        call.cancel()  # the client gives up on the call
                    assert outcome == []
                    # The loopback server sees every stream closed long before its 60 s reply.
                    await model.all_ended.wait()
                    async with httpx.AsyncClient() as http:
                        stats = (await http.get(base_url.removesuffix("/v1") + "/stats")).json()
                    assert stats["streams_closed_early"] == THREADS
                    assert stats["completed"] == 0 and stats["active"] == 0
                    assert model.active == 0
                    # The server is still usable after the cancellation.
                    tools = await client.list_tools()
                    assert len(tools.tools) == 4
            finally:
                await close_server(server)
    cache = ResultCache(cache_dir)
    try:
        assert cache.stats()["entries"] == 0  # nothing partial was cached
    finally:
        cache.close()
