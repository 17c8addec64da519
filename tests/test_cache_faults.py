"""Failures never stick and never block (issue 11): unusable answers are never cached, a bad entry
is dropped on read, a broken cache degrades to no cache, a lock held by another process never
stalls the server."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import Client
from pydantic import BaseModel

import apr_mcp.cache as cache_module
from apr_mcp.cache import ResultCache, cache_health
from apr_mcp.config import Settings
from apr_mcp.errors import ModelOutputError
from apr_mcp.llm.base import Message, ModelRequest, ModelResponse
from apr_mcp.llm.cached import CachedModel, cache_status, matches_schema
from apr_mcp.llm.simulated import SimRule, SimScript, SimulatedModel
from apr_mcp.llm.structured import complete_structured
from apr_mcp.runtime import build_runtime
from apr_mcp.server import close_server, create_server
from apr_mcp.trace import RunStore


class Verdict(BaseModel):
    answer: str
    confidence: float


QUESTION = "Which sorting algorithm suits nearly sorted data?"


def verdict_request(text: str = QUESTION) -> ModelRequest:
    return ModelRequest(messages=[Message(role="user", content=text)], purpose="merger")


def malformed_model() -> SimulatedModel:
    """Every reply, the repair's too, is cut-off JSON."""
    script = SimScript([SimRule(".", reply='{"answer": "half')])
    return SimulatedModel(ttft_s=0.0, tokens_per_s=1e6, script=script)


def healthy_model() -> SimulatedModel:
    return SimulatedModel(ttft_s=0.0, tokens_per_s=1e6)


CHILD = textwrap.dedent(
    """
    import sys, anyio
    from pydantic import BaseModel
    from apr_mcp.cache import ResultCache
    from apr_mcp.llm.base import Message, ModelRequest
    from apr_mcp.llm.cached import CachedModel
    from apr_mcp.llm.simulated import SimulatedModel
    from apr_mcp.llm.structured import complete_structured

    class Verdict(BaseModel):
        answer: str
        confidence: float

    async def main() -> None:
        inner = SimulatedModel(ttft_s=0.0, tokens_per_s=1e6)
        request = ModelRequest(
            messages=[Message(role="user", content=sys.argv[2])], purpose="merger"
        )
        with ResultCache(sys.argv[1]) as cache:
            value, response = await complete_structured(CachedModel(inner, cache), request, Verdict)
        print(inner.calls, response.cached, value.answer.startswith("[sim]"))

    anyio.run(main)
    """
)


async def test_malformed_reply_and_failed_repair_are_never_cached(tmp_path: Path) -> None:
    """Regression: a malformed structured reply plus a failed repair used to be cached and then
    served for ever (0 model calls per failure), even to a new process with a healthy model."""
    directory = tmp_path / "shared"
    inner = malformed_model()
    with ResultCache(directory) as cache:
        model = CachedModel(inner, cache)
        for attempt in (1, 2):
            with pytest.raises(ModelOutputError, match="after one repair"):
                await complete_structured(model, verdict_request(), Verdict)
            assert inner.calls == 2 * attempt  # asked again (reply + repair), not replayed
        assert cache.stats()["entries"] == 0

    child = await anyio.run_process(
        [sys.executable, "-c", CHILD, str(directory), QUESTION], stderr=subprocess.STDOUT
    )
    # A new process with a healthy model pays one call and gets a valid answer.
    assert child.stdout.decode().split() == ["1", "False", "True"]


async def test_an_entry_that_no_longer_validates_is_dropped_and_asked_again(tmp_path: Path) -> None:
    with ResultCache(tmp_path / "c") as cache:
        inner = healthy_model()
        model = CachedModel(inner, cache)
        # Plant what an older version stored: a malformed structured reply and an empty text.
        bad_json = ModelResponse(text='{"answer": "half', finish_reason="stop")
        empty = ModelResponse(text=" ", finish_reason="stop")
        structured = verdict_request().model_copy(
            update={"json_schema": Verdict.model_json_schema(), "schema_name": "Verdict"}
        )
        free = verdict_request("Name one stable sort.").model_copy(update={"purpose": "solver"})
        for request, planted in ((structured, bad_json), (free, empty)):

            async def old(planted: ModelResponse = planted) -> dict[str, Any]:
                return planted.model_dump(mode="json")

            await cache.get_or_compute(model.key_for(request), old)  # stored without a check
        assert cache.stats()["entries"] == 2

        first = await model.complete(structured)
        assert not first.cached and matches_schema(first.text, structured.json_schema or {})
        second = await model.complete(free)
        assert not second.cached and second.text.strip()
        assert inner.calls == 2
        # The fresh answers replaced the bad entries and are served from now on.
        assert (await model.complete(structured)).cached and (await model.complete(free)).cached
        assert inner.calls == 2


async def test_structured_reply_is_checked_against_its_schema_without_a_declared_check(
    tmp_path: Path,
) -> None:
    """A caller that calls the model directly (no complete_structured) still gets a schema check."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    script = SimScript(
        [SimRule("count", reply='{"n": "three"}'), SimRule("tally", reply='```json\n{"n": 3}\n```')]
    )
    inner = SimulatedModel(ttft_s=0.0, tokens_per_s=1e6, script=script)
    with ResultCache(tmp_path / "c") as cache:
        model = CachedModel(inner, cache)
        for text in ("count", "tally", "count", "tally"):
            await model.complete(verdict_request(text).model_copy(update={"json_schema": schema}))
    assert inner.calls == 3  # "count" (wrong type) asked twice, "tally" (valid, fenced) once


# ----- a broken cache degrades -----


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "cache off" in r.getMessage()
    ]


async def test_corrupt_cache_file_degrades_and_the_run_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "cache"
    directory.mkdir()
    (directory / "cache.db").write_bytes(b"this is not an SQLite database" * 100)
    settings = Settings(
        backend="simulated", cache_dir=directory, sim_ttft_s=0.0, sim_tokens_per_s=1e6
    )
    runtime = build_runtime(settings, run_store=RunStore(tmp_path / "runs"))
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(2):
                result = await runtime.engine.solve("Compare tabs and spaces for indentation")
                assert result.answer and not result.partial
                assert result.metrics.model_calls > 0  # nothing served from the broken cache
    finally:
        await runtime.aclose()
    assert cache_status(runtime.engine.solver) == "off (corrupt)"
    assert len(_warnings(caplog)) == 1
    health = cache_health(directory)
    assert not health.ok and health.status == "off (corrupt)"
    assert f"delete the directory {directory}" in health.fix


@pytest.mark.parametrize(
    ("message", "status", "fix"),
    [
        ("attempt to write a readonly database", "off (read-only)", "writable"),
        ("database or disk is full", "off (disk full)", "free disk space"),
    ],
)
async def test_unwritable_cache_degrades(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    message: str,
    status: str,
    fix: str,
) -> None:
    # Tests run as root here, so chmod cannot make a directory read-only: fail the write itself.
    def broken_set(*_: object, **__: object) -> None:
        raise sqlite3.OperationalError(message)

    inner = healthy_model()
    with ResultCache(tmp_path / "c") as cache:
        model = CachedModel(inner, cache)
        await model.complete(verdict_request("warm up"))  # opens the store
        cache._store.set = broken_set
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                response = await model.complete(verdict_request())
                assert response.text and not response.cached
        assert cache.status == status and fix in cache.health().fix
        assert len(_warnings(caplog)) == 1
    assert inner.calls == 4


async def test_an_off_cache_is_tried_again_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "RETRY_AFTER_S", 0.0)
    with ResultCache(tmp_path / "c") as cache:
        model = CachedModel(healthy_model(), cache)
        await model.complete(verdict_request())
        cache._turn_off(sqlite3.OperationalError("database is locked"))
        # The retry pause is over at once: the cache reopens and serves the stored answer.
        assert (await model.complete(verdict_request())).cached
        assert cache.status == "on"


# ----- a lock held by another process never stalls the server -----

HOLDER = textwrap.dedent(
    """
    import sqlite3, sys
    con = sqlite3.connect(sys.argv[1], isolation_level=None)
    # The worst case: exclusive locking mode blocks readers too, and diskcache's own pragma
    # retry loop would wait 60 s for it.
    con.execute("PRAGMA locking_mode=EXCLUSIVE")
    con.execute("BEGIN EXCLUSIVE")
    con.execute("CREATE TABLE IF NOT EXISTS held (x)")
    print("locked", flush=True)
    sys.stdin.read()
    """
)


async def test_cache_lock_held_by_another_process_does_not_block_the_server(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    directory.mkdir()
    settings = Settings(
        backend="simulated",
        cache_dir=directory,
        cache_lock_timeout=0.05,
        sim_ttft_s=0.0,
        sim_tokens_per_s=1e6,
    )
    server = create_server(settings, run_store=RunStore(tmp_path / "runs"))
    async with await anyio.open_process(
        [sys.executable, "-c", HOLDER, str(directory / "cache.db")]
    ) as holder:
        assert holder.stdout is not None and holder.stdin is not None
        with anyio.fail_after(10):
            assert b"locked" in await holder.stdout.receive()
        try:
            async with Client(server) as client:
                solved: list[Any] = []

                async def solve() -> None:
                    question = {"question": "Is SQLite a good fit for a local cache?"}
                    solved.append(await client.call_tool("solve", question))

                with anyio.fail_after(0.5):  # the solve's answer, and tools/list meanwhile
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(solve)
                        tools = await client.list_tools()
                assert any(t.name == "solve" for t in tools.tools)
                assert not solved[0].is_error
                assert server.apr_backing.cache.status == "off (locked for more than 0.05 s)"  # type: ignore[attr-defined]
                with anyio.fail_after(5):  # later calls skip the cache (off for a while)
                    assert not (await client.call_tool("solve", {"question": "Why WAL?"})).is_error
                    stats = await client.read_resource("apr://cache/stats")
                text = stats.contents[0].text  # type: ignore[union-attr]
                assert json.loads(text)["status"] == "off (locked for more than 0.05 s)"
        finally:
            await holder.stdin.aclose()
            await close_server(server)


async def test_doctor_says_how_to_fix_a_corrupt_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from apr_mcp.doctor import run_doctor

    directory = tmp_path / "broken"
    directory.mkdir()
    (directory / "cache.db").write_bytes(b"garbage" * 1000)
    code = await run_doctor(Settings(backend="simulated", cache_dir=directory))
    out = capsys.readouterr().out
    assert code == 1
    fix = f"fix: delete the directory {directory}"
    assert f"[FAIL] cache: off (corrupt): runs go on without it; {fix}" in out
    code = await run_doctor(Settings(backend="simulated", cache_dir=tmp_path / "fresh"))
    assert code == 0 and "[ok  ] cache:" in capsys.readouterr().out
