"""The CLI end to end: the newcomer's first command, JSON output, configuration errors,
a real loopback OpenAI-compatible endpoint (`apr-mcp simulate` in a subprocess), doctor, cache."""

from __future__ import annotations

import ast
import json
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from apr_mcp.cli import main
from apr_mcp.config import NOT_CONFIGURED
from apr_mcp.schemas import SolveResult
from apr_mcp.simulate_server import simulate_subprocess

QUESTION = "Compare Python, Go and Rust for writing a command-line tool"


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_solve_simulated_prints_answer_and_thread_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["solve", "--backend", "simulated", QUESTION], capsys)
    assert code == 0, err
    assert "threads" in out and "tokens in" in out and "latency" in out
    for tid in ("t1", "t2", "t3"):
        assert tid in out
    assert "critical path" in out
    assert "split" in out  # the decision that explains the fan-out
    assert "done" in err  # live progress went to stderr, one line per event off a terminal


def test_solve_json_is_a_solve_result(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["solve", "--backend", "simulated", "--json", QUESTION], capsys)
    assert code == 0
    result = SolveResult.model_validate_json(out)
    assert result.plan is not None and result.plan.should_split
    assert len(result.results) >= 2 and result.merge is not None
    assert result.metrics.critical_path_s <= result.metrics.wall_s + 1e-6


def test_sequential_strategy_is_one_call(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(
        ["solve", "--backend", "simulated", "--json", "--strategy", "sequential", QUESTION], capsys
    )
    assert code == 0
    result = SolveResult.model_validate_json(out)
    assert result.strategy == "sequential" and result.metrics.model_calls == 1


def test_unconfigured_explains_how_to_configure(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["solve", QUESTION], capsys)
    assert code == 2 and out == ""
    assert NOT_CONFIGURED in err


def test_second_run_is_served_from_cache(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["solve", "--backend", "simulated", "--json", QUESTION]
    first = SolveResult.model_validate_json(run_main(args, capsys)[1])
    second = SolveResult.model_validate_json(run_main(args, capsys)[1])
    assert first.metrics.cache_hits == 0
    assert second.metrics.cache_hits == second.metrics.model_calls > 0
    assert all(r.cached for r in second.results)
    code, out, _ = run_main(["cache", "stats", "--json"], capsys)
    assert code == 0 and json.loads(out)["entries"] > 0
    code, out, _ = run_main(["cache", "clear", "--json"], capsys)
    assert code == 0
    code, out, _ = run_main(["cache", "stats", "--json"], capsys)
    assert json.loads(out)["entries"] == 0


def test_no_cache_flag(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["solve", "--backend", "simulated", "--json", "--no-cache", QUESTION]
    run_main(args, capsys)
    again = SolveResult.model_validate_json(run_main(args, capsys)[1])
    assert again.metrics.cache_hits == 0


def test_context_file_errors_are_clear(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_main(
        ["solve", "--backend", "simulated", "--context-file", str(tmp_path / "nope.py"), "why?"],
        capsys,
    )
    assert code == 2 and "--context-file" in err


def test_doctor_simulated(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["doctor", "--backend", "simulated"], capsys)
    assert code == 0
    assert '"backend": "simulated"' in out and "[ok  ] tokenizer" in out


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_doctor_reports_unreachable_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    code, out, _ = run_main(
        ["doctor", "--backend", "openai", "--model", "m", "--base-url", url], capsys
    )
    assert code == 1 and "[FAIL] endpoint" in out


async def test_cli_against_loopback_openai_endpoint(tmp_path: Path) -> None:
    """The real HTTP path: `apr-mcp simulate` serves, `apr-mcp doctor` and `apr-mcp solve`
    use it."""
    async with simulate_subprocess("--ttft", "0.01", "--tps", "2000") as base_url:
        env = {
            **os.environ,
            "APR_BACKEND": "openai",
            "APR_BASE_URL": base_url,
            "APR_MODEL": "sim-1",
            "APR_API_KEY": "sk-loopback-test-key",
        }
        cli = [sys.executable, "-m", "apr_mcp"]
        with anyio.fail_after(60):
            doctor = await anyio.run_process([*cli, "doctor"], env=env, check=False)
            solve = await anyio.run_process([*cli, "solve", QUESTION], env=env, check=False)
        assert doctor.returncode == 0, doctor.stdout.decode() + doctor.stderr.decode()
        assert b"sk-loopback-test-key" not in doctor.stdout  # secrets are masked
        assert b"'sim-1' available" in doctor.stdout
        out = solve.stdout.decode()
        assert solve.returncode == 0, solve.stderr.decode()
        assert "t1" in out and "tokens in" in out and "critical path" in out


def test_sim_script_from_the_environment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": [{"pattern": "capital of France", "reply": "Paris."}]}))
    monkeypatch.setenv("APR_SIM_SCRIPT", str(script))
    code, out, _ = run_main(
        [
            "solve",
            "--backend",
            "simulated",
            "--strategy",
            "sequential",
            "What is the capital of France?",
        ],
        capsys,
    )
    assert code == 0 and out.startswith("Paris.")
    script.write_text("{not json")
    code, _, err = run_main(["solve", "--backend", "simulated", "anything"], capsys)
    assert code == 2 and "script.json" in err


# ----- start-up: commands that do not serve MCP never import the SDK -----

_MODULES_AT_EXIT = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('MODULES', sorted({m.split('.')[0] for m in sys.modules}), "
    "file=sys.stderr))\n"
    "from apr_mcp.cli import main\n"
    "main(sys.argv[1:])\n"
)


@pytest.mark.parametrize("argv", [["--help"], ["cache", "stats"], ["solve", "--help"]])
async def test_help_and_cache_stats_do_not_import_mcp(argv: list[str]) -> None:
    with anyio.fail_after(60):
        done = await anyio.run_process([sys.executable, "-c", _MODULES_AT_EXIT, *argv], check=False)
    assert done.returncode == 0, done.stderr.decode()
    modules = done.stderr.decode().split("MODULES", 1)[1]
    assert "'mcp'" not in modules and "'mcp_types'" not in modules
    if argv[0] == "--help":  # the parser alone: no pydantic, no engine, no rich
        for heavy in ("pydantic", "rich", "tiktoken"):
            assert f"'{heavy}'" not in modules


def test_cli_constants_match_their_sources() -> None:
    from typing import get_args

    from apr_mcp.bench.runner import STRATEGIES
    from apr_mcp.cli import _common, bench
    from apr_mcp.config import Backend

    assert _common.BACKENDS == get_args(Backend)
    assert bench.STRATEGIES == STRATEGIES


def test_nothing_in_apr_mcp_imports_the_cli() -> None:
    """The CLI sits on top: it imports the rest of apr_mcp, never the reverse (no cycle)."""
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for path in (root / "apr_mcp").rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[:2] == ("apr_mcp", "cli") or parts == ("apr_mcp", "__main__"):
            continue
        package = parts[:-1]  # what a relative import is relative to (also for __init__)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else ()
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
                names = [module] + [f"{module}.{a.name}" for a in node.names]
            if any(n == "apr_mcp.cli" or n.startswith("apr_mcp.cli.") for n in names):
                offenders.append("/".join(parts))
    assert offenders == []


# ----- exit codes, through the real CLI (a subprocess, the simulated backend, a fault script) -----


async def _solve(
    tmp_path: Path,
    *args: str,
    script: list[dict[str, Any]] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    child_env = {**os.environ, "APR_MAX_RETRIES": "0", "APR_CACHE": "off", **(env or {})}
    if script is not None:
        path = tmp_path / "faults.json"
        path.write_text(json.dumps({"rules": script}))
        child_env["APR_SIM_SCRIPT"] = str(path)
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "apr_mcp", "solve", *args], env=child_env, check=False
        )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_exit_0_when_answered(tmp_path: Path) -> None:
    code, out, err = await _solve(tmp_path, "--backend", "simulated", QUESTION)
    assert code == 0, err
    assert "PARTIAL" not in out and "FAILED" not in out


async def test_exit_1_when_every_thread_fails(tmp_path: Path) -> None:
    faults = [{"pattern": ".", "purpose": "solver", "fault": "500"}]
    code, out, _ = await _solve(tmp_path, "--backend", "simulated", QUESTION, script=faults)
    assert code == 1
    assert "FAILED: no usable result" in out
    code, out, _ = await _solve(
        tmp_path, "--backend", "simulated", "--json", QUESTION, script=faults
    )
    result = SolveResult.model_validate_json(out)
    assert code == 1 and all(r.status.value == "failed" for r in result.results)


async def test_exit_1_when_the_endpoint_is_unreachable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    code, _, err = await _solve(
        tmp_path,
        "--backend",
        "openai",
        "--model",
        "m",
        "--base-url",
        url,
        QUESTION,
        env={"APR_API_KEY": "sk-test"},
    )
    assert code == 1, err
    assert "cannot reach the endpoint" in err


async def test_exit_3_for_a_partial_answer(tmp_path: Path) -> None:
    """One thread hangs past the deadline; the others' work is the (partial) answer."""
    slow = [{"pattern": ".", "purpose": "solver", "ttft_s": 60, "times": 1}]
    code, out, err = await _solve(
        tmp_path, "--backend", "simulated", "--deadline", "5", QUESTION, script=slow
    )
    assert code == 3, out + err
    assert "PARTIAL answer" in out and "deadline" in out


@pytest.mark.parametrize(
    ("env", "argv", "needle"),
    [
        (
            {"APR_BACKEND": "bogus"},
            [QUESTION],
            (
                "APR_BACKEND=bogus is not valid: expected one of openai, anthropic, sampling, "
                "simulated"
            ),
        ),
        (
            {"APR_MAX_CONCURRENCY": "abc"},
            ["--backend", "simulated", QUESTION],
            "APR_MAX_CONCURRENCY=abc is not valid: expected a whole number from 1 to 64",
        ),
        (
            {},
            ["--backend", "simulated", "--max-subtasks", "0", QUESTION],
            "argument --max-subtasks: '0': expected a whole number from 1 to 64",
        ),
        ({}, [QUESTION], "No model backend is configured"),
    ],
)
async def test_exit_2_for_usage_and_config_errors(
    tmp_path: Path, env: dict[str, str], argv: list[str], needle: str
) -> None:
    code, out, err = await _solve(tmp_path, *argv, env=env)
    assert code == 2 and out == ""
    assert needle in err
    assert "Traceback" not in err and "validation error" not in err and "pydantic" not in err


def test_exit_codes_are_documented() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "development.md").read_text("utf-8")
    for row in ("| 0 |", "| 1 |", "| 2 |", "| 3 |"):
        assert row in text


# ----- first-run mistakes -----


@pytest.mark.parametrize(
    "argv",
    [
        ["solve", "--max-subtasks", "0", "q"],
        ["solve", "--max-subtasks", "many", "q"],
        ["solve", "--deadline", "0", "q"],
        ["solve", "--deadline", "-1", "q"],
        ["solve", "--max-concurrency", "0", "q"],
        ["doctor", "--max-concurrency", "65"],
        ["bench", "--limit", "0"],
        ["bench", "--concurrency", "0"],
        ["bench", "--vote-k", "0"],
        ["bench", "--vote-temperature", "3"],
        ["bench", "--item-timeout", "0"],
        ["trace", "list", "--limit", "0"],
        ["serve", "--port", "70000"],
        ["simulate", "--tps", "0"],
        ["simulate", "--ttft", "-1"],
        ["simulate", "--reasoning-scale", "nan"],
    ],
)
def test_every_numeric_flag_is_validated(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(argv, capsys)
    assert code == 2 and out == ""
    flag = next(a for a in argv if a.startswith("--"))
    assert f"argument {flag}:" in err and ("expected" in err or "must be" in err)


async def test_quiet_exit_on_a_closed_pipe(tmp_path: Path) -> None:
    """`apr-mcp solve … | head -1`: the reader leaves early; no traceback, no error status."""
    env = {**os.environ, "APR_CACHE": "off"}
    for extra in ([], ["--json"]):
        with anyio.fail_after(60):
            command = ["-m", "apr_mcp", "solve", "--backend", "simulated", *extra, QUESTION]
            process = await anyio.open_process([sys.executable, *command], env=env)
            async with process:
                assert process.stdout is not None and process.stderr is not None
                await process.stdout.receive(1)  # `head -c 1`
                await process.stdout.aclose()
                err = b"".join([chunk async for chunk in process.stderr])
                code = await process.wait()
        assert code == 0, err.decode()
        for noise in (b"Traceback", b"BrokenPipe", b"Exception ignored"):
            assert noise not in err


def test_bare_apr_mcp_on_a_terminal_says_what_it_is(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import apr_mcp.server

    served: list[str] = []
    monkeypatch.setattr(
        apr_mcp.server, "run_server", lambda settings, transport, *a, **kw: served.append(transport)
    )
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    code, out, err = run_main([], capsys)
    assert code == 0 and served == ["stdio"] and out == ""  # stdout stays the protocol's
    assert "this is an MCP server on stdio" in err and "apr-mcp solve" in err
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)  # a host: not a word on stderr
    code, _, err = run_main([], capsys)
    assert code == 0 and served == ["stdio", "stdio"] and err == ""


# ----- progress and totals -----


_COUNTER = re.compile(r"^\[(plan|(\d+)/(\d+))\] \S")


def test_progress_counts_threads_one_line_per_event(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["solve", "--backend", "simulated", QUESTION], capsys)
    assert code == 0
    lines = err.splitlines()
    assert lines and all(_COUNTER.match(line) for line in lines), lines  # no wrapped halves
    counts = [(int(m[2]), int(m[3])) for m in map(_COUNTER.match, lines) if m and m[2]]
    assert counts and all(total > 0 for _, total in counts)  # never 0/0
    assert counts == sorted(counts)  # never goes down (no 0/2 → 0/0)
    assert counts[-1] == (3, 3)
    assert "[0/0]" not in err


def test_cached_run_shows_tokens_saved_not_spent(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["solve", "--backend", "simulated", QUESTION]
    code, first, _ = run_main(args, capsys)
    assert code == 0 and "tokens spent 0→0" not in first and "(saved, not spent)" not in first
    code, second, _ = run_main(args, capsys)
    assert code == 0
    footer = next(line for line in second.splitlines() if line.startswith("run "))
    assert "tokens spent 0→0" in footer and "cached " in footer and "(saved, not spent)" in footer


async def test_streamed_answer_text_is_not_a_progress_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Answer text streams to stdout as it is produced, never as a progress line on stderr and
    never counted as a thread; the result then does not print it a second time."""
    from apr_mcp.console import SolveConsole
    from apr_mcp.schemas import RunEvent, RunMetrics, SolveResult

    ui = SolveConsole(live=False)
    await ui.on_event(RunEvent(kind="started", thread_id="t1", message="t1 started"))
    await ui.on_event(RunEvent(kind="answer", thread_id="t1", message="Paris "))
    await ui.on_event(RunEvent(kind="answer", thread_id="t1", message="is."))
    await ui.on_event(RunEvent(kind="done", thread_id="t1", message="t1 done"))
    out = capsys.readouterr()
    assert out.err.splitlines() == ["[0/1] t1 started", "[1/1] t1 done"]
    assert out.out == "Paris is."
    assert ui.counter() == "[1/1]"
    result = SolveResult(
        run_id="r", question="q", strategy="adaptive", answer="Paris is.", metrics=RunMetrics()
    )
    ui.print_result(result)
    assert "Paris is." not in capsys.readouterr().out  # streamed once, not twice
