"""The bench harness end to end on the simulated model: every strategy, resume after an
interruption, the report files, and the bench/trace subcommands."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import anyio
import pytest

from apr_mcp.bench import BenchConfig, execute_bench, load_dataset, write_reports
from apr_mcp.bench.report import SIMULATED_LABEL, render_html, render_markdown
from apr_mcp.bench.runner import STRATEGIES, read_records, record_key, solve_vote
from apr_mcp.cli import build_parser
from apr_mcp.config import Settings
from apr_mcp.engine import Engine
from apr_mcp.errors import ConfigError
from apr_mcp.llm.base import ModelRequest
from apr_mcp.llm.openai_compat import OpenAICompatModel
from apr_mcp.llm.simulated import SimRule, SimScript, SimulatedModel
from apr_mcp.simulate_server import serve_simulated
from apr_mcp.trace import RunStore

ITEMS = [
    {
        "id": "cmp-1",
        "question": "Which is cheaper per year: (A) $40 a month or (B) $450 a year? Answer with "
        "the letter.",
        "answer": "B",
        "grader": "choice",
        "should_split": True,
        "meta": {"choices": ["A", "B"]},
    },
    {
        "id": "num-1",
        "question": "A box holds 12 eggs. How many eggs are in 7 boxes?",
        "answer": 84,
        "grader": "numeric",
        "should_split": False,
    },
    {
        "id": "cd-1",
        "question": "Using 4, 6, 1, 1 each exactly once, make 24.",
        "grader": "countdown",
        "should_split": True,
        "meta": {"numbers": [4, 6, 1, 1], "target": 24, "rules": "24"},
    },
]


@pytest.fixture
def dataset_path(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.jsonl"
    header = {"_meta": {"name": "tiny", "version": "0.1", "licence": "MIT", "source": "test"}}
    path.write_text("".join(json.dumps(r) + "\n" for r in [header, *ITEMS]), encoding="utf-8")
    return path


def make_engine(tmp_path: Path) -> Engine:
    model = SimulatedModel(ttft_s=0.002, tokens_per_s=50_000)
    return Engine(
        settings=Settings(backend="simulated", max_threads=4),
        planner=model,
        solver=model,
        merger=model,
        run_store=RunStore(tmp_path / "runs"),
    )


def parse_md_table(md: str, heading: str) -> list[dict[str, str]]:
    """The first Markdown table after ``heading`` as a list of dicts (header → cell)."""
    section = md.split(heading, 1)[1].splitlines()
    start = next(i for i, ln in enumerate(section) if ln.startswith("|"))
    lines = []
    for ln in section[start:]:
        if not ln.startswith("|"):
            break  # the table ends at the first non-table line
        lines.append(ln)
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert re.fullmatch(r"\|(\s*-+:?\s*\|)+", lines[1].replace(" ", "")), lines[1]
    rows = []
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        assert len(cells) == len(header), ln
        rows.append(dict(zip(header, cells)))
    return rows


async def test_every_strategy_end_to_end(tmp_path: Path, dataset_path: Path) -> None:
    engine = make_engine(tmp_path)
    out = tmp_path / "out"
    config = BenchConfig(
        datasets=[load_dataset(str(dataset_path))],
        strategies=list(STRATEGIES),
        out_dir=out,
        concurrency=3,
        vote_k=3,
    )
    with anyio.fail_after(30):
        records = await execute_bench(engine, config)
    assert len(records) == len(ITEMS) * len(STRATEGIES)
    assert {record_key(r) for r in records} == {
        ("tiny", i["id"], s) for i in ITEMS for s in STRATEGIES
    }
    for r in records:
        assert r["status"] == "ok", r.get("error")
        for key in (
            "wall_s",
            "critical_path_s",
            "tokens_in",
            "tokens_out",
            "max_context_tokens",
            "cache_hits",
            "threads",
            "run_id",
            "stages",
            "correct",
        ):
            assert key in r, key
        assert r["tokens_in"] > 0 and r["wall_s"] > 0
        assert (
            r["max_context_tokens"]
            == max(s["max_context_tokens"] for s in r["stages"].values())
            > 0
        )
        assert r["timeline"]["lanes"], r["strategy"]
        # Every run, including the harness-composed vote runs, can be opened by `trace view`.
        assert engine.run_store is not None
        assert engine.run_store.load(r["run_id"]).run_id == r["run_id"]
    by = {(r["item_id"], r["strategy"]): r for r in records}
    assert (
        by[("num-1", "sequential")]["split"] is False
        and by[("num-1", "sequential")]["threads"] == 1
    )
    assert by[("cmp-1", "fixed")]["split"] is True and by[("cmp-1", "fixed")]["threads"] >= 2
    vote = by[("cmp-1", "vote")]
    assert vote["threads"] == 3 and set(vote["stages"]) >= {"solve", "merge"}
    merge = vote["stages"]["merge"]
    assert merge["calls"] == 1 and merge["cached_calls"] == 0
    assert (
        merge["max_context_tokens"] == merge["tokens_in"] + merge["tokens_out"]
    )  # prompt + output
    assert isinstance(by[("cmp-1", "adaptive")]["split"], bool)

    md_path, html_path = write_reports(out)
    md = md_path.read_text(encoding="utf-8")
    assert SIMULATED_LABEL in md and "backend: `simulated`" in md and "`tiny` v0.1" in md
    rows = parse_md_table(md, "## Summary")
    assert [r["strategy"] for r in rows] == list(STRATEGIES)
    assert all(r["accuracy"] == "n/a (simulated)" and r["n"] == "3" for r in rows)
    assert rows[0]["speed-up vs sequential"] == "1.00×"
    assert rows[1]["routing accuracy"] == "n/a (simulated)"
    assert all(r["simulated"] == ["sim-1"] and r["correct"] is None for r in records)
    assert float(rows[2]["tokens med"]) > float(rows[0]["tokens med"])  # fan-out costs tokens
    assert "Not reported: " + SIMULATED_LABEL in md

    page = html_path.read_text(encoding="utf-8")
    assert page.count('<svg class="timeline"') == len(records)
    assert page.count('class="bar ') >= len(records)
    assert '<svg class="scatter"' in page and SIMULATED_LABEL in page
    assert "<title>apr-mcp bench report (SIMULATED)</title>" in page  # also in the tab title
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert "http://" not in page and "https://" not in page


async def test_resume_after_interruption_loses_and_duplicates_nothing(
    tmp_path: Path, dataset_path: Path
) -> None:
    strategies = ["sequential", "adaptive", "fixed"]
    total = len(ITEMS) * len(strategies)
    k = 4
    out = tmp_path / "out"
    ds = load_dataset(str(dataset_path))
    written: list[dict[str, Any]] = []
    enough = anyio.Event()

    async def on_record(rec: dict[str, Any]) -> None:
        written.append(rec)
        if len(written) >= k:
            enough.set()

    engine = make_engine(tmp_path)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: execute_bench(
                    engine,
                    BenchConfig(datasets=[ds], strategies=strategies, out_dir=out, concurrency=1),
                    on_record=on_record,
                )
            )
            await enough.wait()
            tg.cancel_scope.cancel()  # the interruption: in-flight jobs die without a record

    first = read_records(out / "results.jsonl")
    assert k <= len(first) < total
    assert [record_key(r) for r in first] == [record_key(r) for r in written]
    # A crash in the middle of a write leaves a torn line; resume must cope with it.
    with (out / "results.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"dataset": "tiny", "item_id": "cd-1", "stra')

    with pytest.raises(ConfigError, match="--resume"):
        await execute_bench(engine, BenchConfig(datasets=[ds], strategies=strategies, out_dir=out))

    resumed: list[dict[str, Any]] = []
    with anyio.fail_after(30):
        records = await execute_bench(
            engine,
            BenchConfig(
                datasets=[ds], strategies=strategies, out_dir=out, resume=True, concurrency=2
            ),
            on_record=resumed.append,
        )
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    keys = [record_key(json.loads(ln)) for ln in lines]  # every line parses: the torn one is gone
    assert len(keys) == len(set(keys)) == total
    assert set(keys) == {("tiny", i["id"], s) for i in ITEMS for s in strategies}
    assert len(resumed) == total - len(first)  # nothing done twice
    assert [json.loads(ln) for ln in lines[: len(first)]] == first  # earlier records untouched
    assert len(records) == total
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert info["backend"] == "simulated" and len(info["resumed"]) == 1


async def test_resume_refuses_a_different_model(tmp_path: Path, dataset_path: Path) -> None:
    out = tmp_path / "out"
    ds = load_dataset(str(dataset_path), limit=1)
    await execute_bench(
        make_engine(tmp_path), BenchConfig(datasets=[ds], strategies=["sequential"], out_dir=out)
    )
    other = SimulatedModel(ttft_s=0.002, tokens_per_s=50_000, model_name="sim-2")
    engine = Engine(
        settings=Settings(backend="simulated"), planner=other, solver=other, merger=other
    )
    with pytest.raises(ConfigError, match="mixing models"):
        await execute_bench(
            engine, BenchConfig(datasets=[ds], strategies=["adaptive"], out_dir=out, resume=True)
        )


async def test_failed_items_are_recorded_and_retried(tmp_path: Path, dataset_path: Path) -> None:
    ds = load_dataset(str(dataset_path))
    out = tmp_path / "out"
    faulty = SimulatedModel(
        ttft_s=0.002,
        tokens_per_s=50_000,
        script=SimScript(
            rules=[
                SimRule(pattern="12 eggs", fault="500"),  # every call about this item fails
                SimRule(pattern="4, 6, 1, 1", ttft_s=30.0),  # this item hangs past the item timeout
            ]
        ),
    )
    engine = Engine(
        settings=Settings(backend="simulated"), planner=faulty, solver=faulty, merger=faulty
    )
    config = BenchConfig(datasets=[ds], strategies=["sequential"], out_dir=out, item_timeout_s=0.5)
    with anyio.fail_after(30):
        records = await execute_bench(engine, config)
    by = {r["item_id"]: r for r in records}
    assert by["cmp-1"]["status"] == "ok"
    assert (
        by["num-1"]["status"] == "error"
        and "500" in by["num-1"]["error"]
        and by["num-1"]["correct"] is False
    )
    assert by["cd-1"]["status"] == "error" and "timed out" in by["cd-1"]["error"]
    md, _ = write_reports(out)
    row = parse_md_table(md.read_text(encoding="utf-8"), "## Summary")[0]
    assert row["errors"] == "2" and row["n"] == "3"

    # --resume alone keeps the failures; --retry-errors runs them again and the new record wins.
    healthy = make_engine(tmp_path)
    again = await execute_bench(
        healthy, BenchConfig(datasets=[ds], strategies=["sequential"], out_dir=out, resume=True)
    )
    assert [r["status"] for r in again if r["item_id"] != "cmp-1"] == ["error", "error"]
    with anyio.fail_after(30):
        fixed = await execute_bench(
            healthy,
            BenchConfig(
                datasets=[ds],
                strategies=["sequential"],
                out_dir=out,
                resume=True,
                retry_errors=True,
            ),
        )
    assert len(fixed) == 3 and all(r["status"] == "ok" for r in fixed)
    assert (
        len(read_records(out / "results.jsonl")) == 5
    )  # history kept: 3 first records + 2 retries


async def test_vote_samples_attempts_at_the_vote_temperature(
    tmp_path: Path, dataset_path: Path
) -> None:
    seen: list[tuple[str, float]] = []

    async def record(request: ModelRequest) -> None:
        seen.append((request.purpose, request.temperature))

    model = SimulatedModel(ttft_s=0.002, tokens_per_s=50_000, on_call=record)
    engine = Engine(
        settings=Settings(backend="simulated"), planner=model, solver=model, merger=model
    )
    item = load_dataset(str(dataset_path)).items[0]
    result = await solve_vote(engine, item, 4, temperature=0.7)
    assert sorted(seen) == sorted([("solver", 0.7)] * 4 + [("merger", 0.0)])
    assert engine.settings.temperature == 0.0  # the caller's engine is untouched
    prompts = {r.prompt for r in result.results}
    assert len(prompts) == 4  # distinct attempts: the cache cannot fold them into one call
    assert result.strategy == "vote" and result.merge is not None


def test_bad_config_is_a_clear_error(tmp_path: Path, dataset_path: Path) -> None:
    ds = load_dataset(str(dataset_path))
    with pytest.raises(ConfigError, match="unknown strategy 'magic'"):
        BenchConfig(datasets=[ds], strategies=["magic"])
    with pytest.raises(ConfigError, match="concurrency"):
        BenchConfig(datasets=[ds], concurrency=0)


def _rec(
    item: str,
    strategy: str,
    correct: bool,
    wall: float,
    split: bool | None = None,
    should_split: bool | None = None,
) -> dict[str, Any]:
    return {
        "dataset": "d",
        "item_id": item,
        "strategy": strategy,
        "status": "ok",
        "correct": correct,
        "wall_s": wall,
        "critical_path_s": wall,
        "tokens_in": 100,
        "tokens_out": 10,
        "max_context_tokens": 50,
        "cache_hits": 0,
        "threads": 1,
        "split": split,
        "should_split": should_split,
        "stages": {},
    }


def test_real_run_report_shows_accuracy_paired_ci_speedup_and_routing() -> None:
    records = []
    for i in range(20):
        records.append(_rec(f"i{i}", "sequential", i < 10, 2.0))
        records.append(_rec(f"i{i}", "adaptive", i < 16, 1.0, split=i % 2 == 0, should_split=True))
    info = {
        "backend": "openai",
        "model": "gpt-x",
        "simulated": False,
        "started": "2026-01-01",
        "datasets": {
            "d": {
                "version": "1",
                "licence": "MIT",
                "source": "s",
                "items_run": 20,
                "routing_set": "held-out",
            }
        },
    }
    md = render_markdown(records, info, seed=3)
    assert "SIMULATED" not in md
    rows = {r["strategy"]: r for r in parse_md_table(md, "## Summary")}
    assert rows["sequential"]["accuracy"].startswith("50.0% (10/20")
    assert rows["adaptive"]["accuracy"].startswith("80.0% (16/20")
    assert rows["adaptive"]["speed-up vs sequential"] == "2.00×"
    assert rows["adaptive"]["routing accuracy"] == "50% (10/20), held-out set"
    assert "**Routing accuracy on the held-out set `d`** (20 labelled items" in md
    paired = parse_md_table(md, "## Accuracy against the sequential baseline")
    assert len(paired) == 1 and paired[0]["Δ accuracy"] == "+30.0%"
    lo, hi = (float(x.strip("%")) for x in paired[0]["95% CI (paired bootstrap)"].split(" … "))
    assert 0 < lo < 30 < hi
    assert paired[0]["wins / losses"] == "6 / 0"
    assert md == render_markdown(records, info, seed=3)  # deterministic
    assert "disk cache" not in md

    page = render_html(records, info, seed=3)
    assert "Accuracy versus latency" in page and page.count('<circle class="dot"') == 2
    assert "+30.0% (paired bootstrap 95% CI" in page
    records[0]["cache_hits"] = 2
    assert "2 model calls were answered from the disk cache" in render_markdown(records, info)


def test_routing_on_a_tuning_set_is_in_sample_only_and_a_report_asks_for_the_held_out_set() -> None:
    records = [
        _rec(f"i{i}", "adaptive", True, 1.0, split=True, should_split=True) for i in range(4)
    ]
    info = {"backend": "openai", "datasets": {"d": {"routing_set": "tuning"}}}
    md = render_markdown(records, info)
    [row] = parse_md_table(md, "## Summary")
    assert row["routing accuracy"] == "in-sample only: 100% (4/4) on the tuning set"
    assert "`d` is a tuning set" in md and "--dataset routing_heldout" in md
    assert "Routing accuracy on the held-out set" not in md


async def test_a_bench_against_apr_mcp_simulate_through_the_openai_backend_is_labelled_simulated(
    tmp_path: Path, dataset_path: Path
) -> None:
    # What served the run decides, not the backend's name: an OpenAI-compatible endpoint that
    # is `apr-mcp simulate` (asked for a real-looking model id) gets no accuracy.
    served = SimulatedModel(ttft_s=0.001, tokens_per_s=100_000)
    out = tmp_path / "openai-sim"
    async with serve_simulated(served) as base_url:
        model = OpenAICompatModel(base_url=base_url, api_key="sim", model="gpt-4o")
        engine = Engine(
            settings=Settings(backend="openai", model="gpt-4o"),
            planner=model,
            solver=model,
            merger=model,
        )
        config = BenchConfig(
            datasets=[load_dataset(str(dataset_path)), load_dataset("routing_heldout", limit=2)],
            strategies=["sequential", "adaptive"],
            out_dir=out,
            concurrency=2,
        )
        with anyio.fail_after(60):
            records = await execute_bench(engine, config)
        await model.aclose()
    assert records and all(
        r["status"] == "ok" and r["simulated"] == ["sim-gpt-4o"] for r in records
    )
    assert all(r["correct"] is None and "simulated" in r["grade_detail"] for r in records)
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert info["backend"] == "openai" and info["simulated"] is True
    md_path, html_path = write_reports(out)
    md = md_path.read_text(encoding="utf-8")
    assert md.startswith("# apr-mcp bench report (SIMULATED)") and SIMULATED_LABEL in md
    rows = parse_md_table(md, "## Summary")
    assert all(r["accuracy"] == "n/a (simulated)" for r in rows)
    assert all(r["routing accuracy"] in ("n/a (simulated)", "—") for r in rows)
    assert (
        "Routing accuracy on the held-out set" not in md
        and "%" not in md.split("## Routing accuracy")[1][:300]
    )
    assert SIMULATED_LABEL in html_path.read_text(encoding="utf-8")


def _parser() -> argparse.ArgumentParser:
    return build_parser()


def test_cli_bench_then_trace_view(
    tmp_path: Path,
    dataset_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("APR_SIM_TTFT_S", "0.002")
    monkeypatch.setenv("APR_SIM_TOKENS_PER_S", "50000")
    out = tmp_path / "cli-out"
    args = _parser().parse_args(
        [
            "bench",
            "--backend",
            "simulated",
            "--dataset",
            str(dataset_path),
            "--limit",
            "2",
            "--strategies",
            "sequential,fixed",
            "--out",
            str(out),
            "--concurrency",
            "2",
        ]
    )
    assert args.func(args) == 0
    stdout = capsys.readouterr().out
    assert "| tiny | fixed | 2 |" in stdout
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    records = read_records(out / "results.jsonl")
    assert len(records) == 4
    fixed = next(r for r in records if r["strategy"] == "fixed")

    html_out = tmp_path / "run.html"
    args = _parser().parse_args(
        ["trace", "view", fixed["run_id"], "--runs-dir", str(out / "runs"), "--html", str(html_out)]
    )
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert f"run {fixed['run_id']}" in text and "legend:" in text
    lane_ids = [lane["id"] for lane in fixed["timeline"]["lanes"]]
    for lane in lane_ids:
        assert re.search(rf"^{re.escape(lane)}\s+\|", text, re.MULTILINE), lane
    page = html_out.read_text(encoding="utf-8")
    assert page.count('<svg class="timeline"') == 1 and "http" not in page

    # --report-only rebuilds from results.jsonl without a backend.
    (out / "report.md").unlink()
    args = _parser().parse_args(["bench", "--report-only", "--out", str(out)])
    assert args.func(args) == 0 and (out / "report.md").is_file()

    args = _parser().parse_args(["trace", "view", "no-such-run", "--runs-dir", str(out / "runs")])
    from apr_mcp.errors import AprError

    with pytest.raises(AprError, match="no run"):
        args.func(args)


def test_routing_only_scores_the_heuristics_without_a_model_and_names_the_set(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = _parser().parse_args(
        ["bench", "--routing-only", "--dataset", "routing_heldout,split_pays"]
    )
    assert args.func(args) == 0
    held, tuning = capsys.readouterr().out.split("routing by the heuristics alone on ")[1:]
    # No figure is pinned for the held-out set: no test may be fitted to it.
    assert held.startswith(
        "`routing_heldout` (held-out set: no rule or test is fitted to these labels)"
    )
    assert re.search(r"decided by the heuristics: \d+, right", held)
    assert tuning.startswith("`split_pays` (tuning set") and "in-sample" in tuning
