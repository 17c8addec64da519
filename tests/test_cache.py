"""The disk cache and the cache wrapper: hits, keys, in-flight de-duplication, what is never
stored, and two processes sharing one directory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from apr_mcp.cache import ResultCache, make_key
from apr_mcp.cli import build_parser
from apr_mcp.errors import CacheError, ServerError
from apr_mcp.llm.base import Message, ModelRequest
from apr_mcp.llm.cached import CachedModel
from apr_mcp.llm.simulated import SimRule, SimScript, SimulatedModel


def request(text: str = "Explain write-ahead logging.", **kw: object) -> ModelRequest:
    return ModelRequest(
        messages=[Message(role="system", content="Be brief."), Message(role="user", content=text)],
        purpose="solver",
        prompt_version="solver@1",
        **kw,  # type: ignore[arg-type]
    )


def stack(tmp_path: Path, **sim: object) -> tuple[CachedModel, SimulatedModel, ResultCache]:
    inner = SimulatedModel(ttft_s=0.0, tokens_per_s=1e6, **sim)  # type: ignore[arg-type]
    cache = ResultCache(tmp_path / "cache")
    return CachedModel(inner, cache), inner, cache


def test_make_key_is_canonical() -> None:
    assert make_key(a=1, b=[1, 2]) == make_key(b=[1, 2], a=1)
    assert make_key(a=1) != make_key(a=2)
    assert len(make_key(a=1)) == 64


async def test_second_identical_call_is_a_marked_hit(tmp_path: Path) -> None:
    model, inner, cache = stack(tmp_path)
    first = await model.complete(request())
    seen: list[str] = []
    second = await model.complete(request(), on_token=seen.append)
    assert inner.calls == 1
    assert not first.cached and second.cached
    assert second.text == first.text and seen == [first.text]
    assert second.usage == first.usage and second.latency_s < first.latency_s + 0.05
    assert (cache.hits, cache.misses) == (1, 1)


async def test_key_covers_what_changes_the_answer(tmp_path: Path) -> None:
    model, inner, _ = stack(tmp_path)
    await model.complete(request())
    # Trailing whitespace and CRLF do not change the answer: still a hit.
    assert (await model.complete(request("Explain write-ahead logging.  \r\n"))).cached
    variants = [
        request("Explain write-behind logging."),
        request(temperature=0.7),
        request(max_tokens=99),
        request(model="sim-2"),
        request(seed=3),
        request(json_schema={"type": "object"}),
        request().model_copy(update={"prompt_version": "solver@2"}),
        request().model_copy(update={"purpose": "merger"}),
    ]
    for variant in variants:
        assert not (await model.complete(variant)).cached
    assert inner.calls == 1 + len(variants)


async def test_concurrent_identical_requests_cost_one_inner_call(tmp_path: Path) -> None:
    release, started = anyio.Event(), anyio.Event()
    model, inner, _ = stack(tmp_path)

    async def on_call(_: ModelRequest) -> None:
        started.set()
        await release.wait()

    inner.on_call = on_call
    results = []

    async def call() -> None:
        results.append(await model.complete(request()))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await started.wait()
            for _ in range(4):
                tg.start_soon(call)
            await anyio.wait_all_tasks_blocked()  # the four are now waiting on the first
            release.set()
    assert inner.calls == 1
    assert sorted(r.cached for r in results) == [False, True, True, True, True]
    assert len({r.text for r in results}) == 1


async def test_failure_stores_nothing_and_a_waiter_computes_itself(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "c")
    go, started = anyio.Event(), anyio.Event()
    computed: list[str] = []

    async def failing() -> str:
        computed.append("first")
        started.set()
        await go.wait()
        raise ServerError("boom")

    async def succeeding() -> str:
        computed.append("second")
        return "value"

    outcome: dict[str, object] = {}

    async def first() -> None:
        with pytest.raises(ServerError):
            await cache.get_or_compute("k", failing)

    async def second() -> None:
        outcome["second"] = await cache.get_or_compute("k", succeeding)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await started.wait()
            tg.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            assert computed == ["first"]  # the second caller waits, it does not compute yet
            go.set()
    assert computed == ["first", "second"]
    assert outcome["second"] == ("value", False)
    assert cache.stats()["entries"] == 1


async def test_cancelled_call_stores_nothing(tmp_path: Path) -> None:
    started = anyio.Event()
    model, inner, cache = stack(tmp_path)
    inner.ttft_s = 30.0

    async def on_call(_: ModelRequest) -> None:
        started.set()

    inner.on_call = on_call
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(model.complete, request())
            await started.wait()
            tg.cancel_scope.cancel()
    assert cache.stats()["entries"] == 0
    inner.ttft_s = 0.0
    assert not (await model.complete(request())).cached and inner.calls == 2


async def test_errors_truncated_and_empty_outputs_are_not_stored(tmp_path: Path) -> None:
    script = SimScript(
        [SimRule("fail once", fault="500", times=1), SimRule("say nothing", reply="")]
    )
    model, inner, cache = stack(tmp_path, script=script)
    with pytest.raises(ServerError):
        await model.complete(request("fail once"))
    assert not (await model.complete(request("fail once"))).cached
    for _ in range(2):
        truncated = await model.complete(request("Why is the sky blue?", max_tokens=3))
        assert truncated.finish_reason == "length" and not truncated.cached
        assert not (await model.complete(request("say nothing"))).cached
    assert inner.calls == 6
    assert cache.stats()["entries"] == 1  # only the successful "fail once" retry


async def test_disabled_cache_computes_every_time(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "off", enabled=False)
    inner = SimulatedModel(ttft_s=0.0, tokens_per_s=1e6)
    model = CachedModel(inner, cache)
    for _ in range(2):
        assert not (await model.complete(request())).cached
    assert inner.calls == 2
    assert cache.stats()["entries"] == 0 and not (tmp_path / "off").exists()


async def test_stats_and_clear(tmp_path: Path) -> None:
    model, _, cache = stack(tmp_path)
    for text in ("one", "two", "three"):
        await model.complete(request(text))
    stats = cache.stats()
    assert stats["entries"] == 3 and stats["size_bytes"] > 0
    assert stats["directory"] == str(tmp_path / "cache") and stats["misses"] == 3
    assert cache.clear() == 3
    assert cache.stats()["entries"] == 0
    cache.close()
    cache.close()  # idempotent


async def test_unusable_directory_degrades_to_no_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = ResultCache(blocker / "cache")  # constructing never touches the disk
    model = CachedModel(SimulatedModel(ttft_s=0.0, tokens_per_s=1e6), cache)
    with caplog.at_level("WARNING", logger="apr_mcp.cache"):
        for _ in range(3):
            assert not (await model.complete(request())).cached
    assert cache.status.startswith("off (unusable directory")
    assert len([r for r in caplog.records if "cache off" in r.message]) == 1  # one warning
    assert "APR_CACHE_DIR" in cache.health().fix
    with pytest.raises(CacheError, match=str(blocker)):
        cache.clear()


async def test_cli_stats_and_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()

    async def compute() -> str:
        return "x"

    with ResultCache(tmp_path / "cache") as cache:  # conftest points APR_CACHE_DIR here
        await cache.get_or_compute(make_key(x=1), compute)

    args = parser.parse_args(["cache", "stats", "--json"])
    assert args.func(args) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["entries"] == 1 and stats["directory"] == str(tmp_path / "cache")
    args = parser.parse_args(["cache", "clear"])
    assert args.func(args) == 0
    assert "removed 1 entries" in capsys.readouterr().out


SHARED_REQUEST = "Compare the durability guarantees of SQLite and LMDB."

CHILD = textwrap.dedent(
    """
    import sys, anyio
    from pathlib import Path
    from apr_mcp.cache import ResultCache
    from apr_mcp.llm.base import Message, ModelRequest
    from apr_mcp.llm.cached import CachedModel
    from apr_mcp.llm.simulated import SimulatedModel

    async def main() -> None:
        inner = SimulatedModel(ttft_s=0.0, tokens_per_s=1e6)
        with ResultCache(Path(sys.argv[1])) as cache:
            request = ModelRequest(
                messages=[Message(role="system", content="Be brief."),
                          Message(role="user", content=sys.argv[2])],
                purpose="solver", prompt_version="solver@1")
            response = await CachedModel(inner, cache).complete(request)
        print(inner.calls, response.cached)

    anyio.run(main)
    """
)


async def test_two_processes_share_one_cache_directory(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    child = await anyio.run_process(
        [sys.executable, "-c", CHILD, str(directory), SHARED_REQUEST], stderr=subprocess.STDOUT
    )
    assert child.stdout.decode().split() == ["1", "False"]  # the child paid for the call

    inner = SimulatedModel(ttft_s=0.0, tokens_per_s=1e6)
    with ResultCache(directory) as cache:
        response = await CachedModel(inner, cache).complete(request(SHARED_REQUEST))
    assert inner.calls == 0 and response.cached
    assert response.text == (await SimulatedModel().complete(request(SHARED_REQUEST))).text


async def test_cache_key_changes_with_the_simulated_models_revision(tmp_path: Path) -> None:
    """A scripted (or newer) simulated model must never be served another model's answers."""
    with ResultCache(tmp_path / "rev") as cache:
        plain = CachedModel(SimulatedModel(ttft_s=0, tokens_per_s=1e6), cache)
        scripted = CachedModel(
            SimulatedModel(
                ttft_s=0, tokens_per_s=1e6, script=SimScript([SimRule("capital", reply="Paris!")])
            ),
            cache,
        )
        request = ModelRequest(messages=[Message(role="user", content="What is the capital?")])
        first = await plain.complete(request)
        second = await scripted.complete(request)
        assert not second.cached and second.text == "Paris!" != first.text
        assert plain.key_for(request) != scripted.key_for(request)
        assert (await plain.complete(request)).cached


def test_sqlite_page_cache_and_memory_map_are_bounded(tmp_path: Path) -> None:
    """diskcache's defaults (32 MiB page cache, 64 MiB mmap per connection) made RSS grow with
    every distinct answer (+31.7 MB over 3,000 solve calls; see benchmarks/memory.py)."""
    with ResultCache(tmp_path / "c") as cache:
        pragmas = cache._run(
            lambda store: [
                store._sql(f"PRAGMA {p}").fetchone()[0] for p in ("cache_size", "mmap_size")
            ]
        )
    assert pragmas == [256, 0]


async def test_a_reply_cut_on_purpose_is_stored_when_the_caller_says_so(tmp_path: Path) -> None:
    from apr_mcp.llm.usable import any_text, usable_when

    model, inner, _ = stack(tmp_path)
    bounded = request("Why is the sky blue?", max_tokens=3)
    assert not (await model.complete(bounded)).cached  # cut: not stored by default
    assert not (await model.complete(bounded)).cached
    with usable_when(any_text):  # e.g. a lead line bounded by max_tokens on purpose
        first = await model.complete(bounded)
        second = await model.complete(bounded)
    assert first.finish_reason == "length" and second.cached and inner.calls == 3
