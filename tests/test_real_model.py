"""A real (tiny) model end to end: SmolLM2-135M-Instruct behind llama-cpp-python's
OpenAI-compatible server, on loopback (issue 13.6).

Not about answer quality (a 135M model answers poorly) but about the protocol: every entry point
answers, every thread has a status, and no thread or plan fails because of how apr-mcp talks to
a real local server (a refused JSON schema, an interrupted stream, a runaway list).

``.ci/install-llama`` builds the server and extracts the model into ``$APR_LLAMA_HOME``
(default ``~/.cache/apr-mcp/llama``). Without them these tests skip, unless
``APR_REQUIRE_REAL_MODEL=1`` (CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import anyio
import httpx
import pytest

from apr_mcp.config import Settings
from apr_mcp.errors import StreamInterrupted
from apr_mcp.llm.base import Message, ModelRequest, ModelResponse
from apr_mcp.llm.openai_compat import OpenAICompatModel
from apr_mcp.runtime import build_runtime
from apr_mcp.schemas import Plan, SolveResult, ThreadResult, ThreadStatus

pytestmark = pytest.mark.real_model

# Read at import: the test-wide environment isolation drops APR_* variables per test.
LLAMA_HOME = Path(
    os.environ.get("APR_LLAMA_HOME") or Path.home() / ".cache" / "apr-mcp" / "llama"
).expanduser()
SERVER_PYTHON = LLAMA_HOME / "venv" / "bin" / "python"
MODEL_FILE = LLAMA_HOME / "SmolLM2-135M-Instruct.Q4_1.gguf"
REQUIRED = os.environ.get("APR_REQUIRE_REAL_MODEL") == "1"
ALIAS = "smollm2"
#: Loading the model and serving the first request; generous for a busy 2-core CI machine.
START_TIMEOUT_S = 120.0

#: Words in an error or fallback reason that mean apr-mcp's protocol failed, not the model.
PROTOCOL_FAILURES = (
    "response_format",
    "json_schema",
    "refused",
    "interrupted",
    "without a finish_reason",
    "stream ended",
    "http 500",
    "not an api",
    "html page",
)


def _absent(what: str) -> None:
    message = (
        f"real model absent ({what}): run .ci/install-llama (builds llama-cpp-python[server] and "
        f"extracts SmolLM2-135M into {LLAMA_HOME}, ~6 min once; APR_LLAMA_HOME moves it)"
    )
    if REQUIRED:
        pytest.fail(f"APR_REQUIRE_REAL_MODEL=1 but the {message}")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(*, interrupt_requests: bool) -> Iterator[str]:
    """Run the llama-cpp-python server on a loopback port until the generator is closed."""
    if not SERVER_PYTHON.exists():
        _absent(f"no server at {SERVER_PYTHON}")
    if not MODEL_FILE.exists():
        _absent(f"no model file at {MODEL_FILE}")
    port = _free_port()
    args = [
        str(SERVER_PYTHON),
        "-m",
        "llama_cpp.server",
        "--model",
        str(MODEL_FILE),
        "--model_alias",
        ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "8192",
    ]
    if not interrupt_requests:
        args += ["--interrupt_requests", "False"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APR_", "OPENAI_"))}
    # The server logs a lot on stderr: a file, not a pipe nobody drains (a full pipe blocks it).
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            yield _wait_ready(proc, f"http://127.0.0.1:{port}/v1", log)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen[str], base_url: str, log: IO[str]) -> str:
    def tail() -> str:
        log.seek(0)
        return log.read()[-2000:]

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"llama-cpp-python server exited with {proc.returncode}:\n{tail()}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                return base_url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"llama-cpp-python server not ready after {START_TIMEOUT_S:g} s:\n{tail()}")
        time.sleep(0.25)  # polling a subprocess: it has no readiness event to wait on


@pytest.fixture(scope="module")
def llama_url() -> Iterator[str]:
    """A server that finishes each answer (``--interrupt_requests False``), as the docs advise."""
    yield from _start_server(interrupt_requests=False)


@pytest.fixture(scope="module")
def interrupting_llama_url() -> Iterator[str]:
    """The server's default: a waiting request interrupts the running stream."""
    yield from _start_server(interrupt_requests=True)


def settings_for(base_url: str, tmp_path: Path, **extra: Any) -> Settings:
    return Settings(
        **{
            "backend": "openai",
            "base_url": base_url,
            "model": ALIAS,
            "cache": False,
            "cache_dir": tmp_path / "cache",
            "max_tokens": 160,
            "max_threads": 3,
            "max_concurrency": 3,
            "max_followups": 0,
            "deadline_s": 300.0,
            **extra,
        }
    )


def protocol_failures(results: list[ThreadResult]) -> list[str]:
    return [
        f"{r.id}: {r.error}"
        for r in results
        if r.status is ThreadStatus.failed
        and any(word in (r.error or "").lower() for word in PROTOCOL_FAILURES)
    ]


def assert_plan_or_justified_fallback(plan: Plan | None) -> None:
    assert plan is not None and plan.subtasks, plan
    reason = plan.reason.lower()
    assert plan.reason.strip(), "a plan always says why"
    bad = [word for word in PROTOCOL_FAILURES if word in reason]
    assert not bad, f"plan fell back because of the protocol: {plan.reason}"


def assert_answered(result: SolveResult) -> None:
    assert result.answer.strip(), result
    for r in result.results:
        assert isinstance(r.status, ThreadStatus)
    assert protocol_failures(result.results) == []
    done = [r for r in result.results if r.status is ThreadStatus.done]
    assert all((r.answer or "").strip() for r in done), "a done thread has an answer"


async def _solve(settings: Settings, question: str, **kw: Any) -> SolveResult:
    runtime = build_runtime(settings)
    try:
        with anyio.fail_after(settings.deadline_s + 60):
            return await runtime.engine.solve(question, **kw)
    finally:
        await runtime.aclose()


async def test_solve_sequential(llama_url: str, tmp_path: Path) -> None:
    result = await _solve(
        settings_for(llama_url, tmp_path), "What is the capital of France?", strategy="sequential"
    )
    assert_answered(result)


async def test_solve_adaptive_splits_countable_parts(llama_url: str, tmp_path: Path) -> None:
    result = await _solve(
        settings_for(llama_url, tmp_path),
        "Compare Python, Go and Rust for writing a command-line tool.",
        strategy="adaptive",
    )
    assert_answered(result)
    assert_plan_or_justified_fallback(result.plan)
    assert result.results and any(r.status is ThreadStatus.done for r in result.results)


async def test_solve_fixed_asks_the_model_planner(llama_url: str, tmp_path: Path) -> None:
    # "fixed" always asks the planner model for a structured plan: the path where
    # llama-cpp-python refuses response_format json_schema (HTTP 500).
    result = await _solve(
        settings_for(llama_url, tmp_path),
        "List three practical ways to speed up a slow Python script.",
        strategy="fixed",
    )
    assert_answered(result)
    assert_plan_or_justified_fallback(result.plan)


async def test_debug_mode(llama_url: str, tmp_path: Path) -> None:
    error = (
        "Traceback (most recent call last):\n"
        '  File "app.py", line 3, in <module>\n'
        "    total = sum(prices) / len(prices)\n"
        "ZeroDivisionError: division by zero"
    )
    code = (
        "prices = load_prices()\n# load_prices may return []\ntotal = sum(prices) / len(prices)\n"
    )
    result = await _solve(settings_for(llama_url, tmp_path), error, context=code, mode="debug")
    assert_answered(result)
    assert_plan_or_justified_fallback(result.plan)


async def test_mcp_chain_decompose_parallel_solve_merge(llama_url: str, tmp_path: Path) -> None:
    from mcp.client import Client

    from apr_mcp.server import close_server, create_server

    question = "Compare SQLite and PostgreSQL for a small web app."
    server = create_server(settings_for(llama_url, tmp_path))
    try:
        with anyio.fail_after(600):
            async with Client(server) as client:
                planned = await client.call_tool("decompose", {"question": question})
                assert not planned.is_error, planned
                plan = Plan.model_validate(planned.structured_content)
                assert_plan_or_justified_fallback(plan)

                solved = await client.call_tool(
                    "parallel_solve",
                    {
                        "question": question,
                        "subtasks": [s.model_dump(mode="json") for s in plan.subtasks],
                    },
                )
                assert not solved.is_error, solved
                results = [
                    ThreadResult.model_validate(r)
                    for r in (solved.structured_content or {})["results"]
                ]
                assert results and protocol_failures(results) == []

                merged = await client.call_tool(
                    "merge",
                    {"question": question, "results": [r.model_dump(mode="json") for r in results]},
                )
                assert not merged.is_error, merged
                assert (merged.structured_content or {})["answer"].strip()
    finally:
        await close_server(server)


async def test_an_interrupted_stream_is_never_taken_for_an_answer(
    interrupting_llama_url: str,
) -> None:
    # Three calls at once on a server that serves one and interrupts it when another waits:
    # each call either has a real end (a finish_reason) or fails as interrupted, keeping its
    # text as partial. Before issue 13 the stubs came back as (empty) answers.
    model = OpenAICompatModel(base_url=interrupting_llama_url, model=ALIAS, timeout_s=120)
    outcomes: list[object] = []

    async def ask(i: int) -> None:
        request = ModelRequest(
            messages=[Message(role="user", content=f"Write a short story about robot number {i}.")],
            max_tokens=96,
        )
        try:
            outcomes.append(await model.complete(request))
        except StreamInterrupted as exc:
            outcomes.append(exc)

    try:
        with anyio.fail_after(300):
            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(ask, i)
    finally:
        await model.aclose()
    assert len(outcomes) == 3
    for outcome in outcomes:
        if isinstance(outcome, StreamInterrupted):
            assert "without a finish_reason" in str(outcome) or "ended before" in str(outcome)
        else:
            assert isinstance(outcome, ModelResponse)
            assert outcome.finish_reason in ("stop", "length") and outcome.text.strip()


def test_cli_solve_sequential(llama_url: str, tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("APR_")},
        "APR_BACKEND": "openai",
        "APR_BASE_URL": llama_url,
        "APR_MODEL": ALIAS,
        "APR_CACHE": "off",
        "APR_MAX_TOKENS": "120",
        "APR_RUNS_DIR": str(tmp_path / "runs"),
        "APR_CONFIG": str(tmp_path / "none.toml"),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "apr_mcp",
            "solve",
            "--strategy",
            "sequential",
            "Name a prime number.",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip()
