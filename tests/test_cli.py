"""The CLI end to end: the newcomer's first command, JSON output, configuration errors,
a real loopback OpenAI-compatible endpoint (`apr-mcp simulate` in a subprocess), doctor, cache."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

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
        ["solve", "--backend", "simulated", "--context-file", str(tmp_path / "nope.py"), "why?"], capsys
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
    """The real HTTP path: `apr-mcp simulate` serves, `apr-mcp doctor` and `apr-mcp solve` use it."""
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
        ["solve", "--backend", "simulated", "--strategy", "sequential", "What is the capital of France?"],
        capsys,
    )
    assert code == 0 and out.startswith("Paris.")
    script.write_text("{not json")
    code, _, err = run_main(["solve", "--backend", "simulated", "anything"], capsys)
    assert code == 2 and "script.json" in err
