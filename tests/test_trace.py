"""RunStore: save, load, list, prune; run ids sort by time."""

from __future__ import annotations

from pathlib import Path

import pytest

from apr_mcp.errors import AprError
from apr_mcp.schemas import RunMetrics, SolveResult, SolveRun, ThreadResult
from apr_mcp.trace import RunStore, new_run_id


def _run(run_id: str, question: str = "q") -> SolveRun:
    return SolveRun(
        run_id=run_id,
        question=question,
        results=[
            ThreadResult(
                id="t1", prompt="p", answer="a", started_s=0.0, finished_s=0.5, latency_s=0.5
            )
        ],
        metrics=RunMetrics(wall_s=0.6, threads=1, threads_done=1),
    )


def _solve(run_id: str) -> SolveResult:
    return SolveResult(
        run_id=run_id,
        question="why?",
        strategy="adaptive",
        answer="because",
        metrics=RunMetrics(wall_s=1.0),
        partial=True,
    )


def test_save_and_load_both_kinds(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run, solved = _run("r1"), _solve("r2")
    assert store.save(run) == tmp_path / "r1.json"
    store.save(solved)
    assert store.load("r1") == run
    assert store.load("r2") == solved
    assert isinstance(store.load("r2"), SolveResult)
    assert store.load("r1").results[0].finished_s == 0.5


def test_list_is_newest_first_with_summaries(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    ids = [new_run_id() for _ in range(3)]
    for i, rid in enumerate(ids):
        store.save(_run(rid, question=f"question {i}") if i != 1 else _solve(rid))
    listed = store.list(limit=2)
    assert [s["run_id"] for s in listed] == sorted(ids, reverse=True)[:2]
    kinds = {s["run_id"]: s["kind"] for s in store.list()}
    assert kinds[ids[1]] == "solve" and kinds[ids[0]] == "parallel_solve"
    solve_summary = next(s for s in store.list() if s["kind"] == "solve")
    assert solve_summary["strategy"] == "adaptive" and solve_summary["partial"] is True


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    store = RunStore(tmp_path, keep=3)
    for i in range(5):
        store.save(_run(f"2026-{i:02d}"))
    assert store.ids() == ["2026-04", "2026-03", "2026-02"]
    with pytest.raises(AprError, match="no run '2026-00'"):
        store.load("2026-00")


def test_bad_ids_and_files_give_clear_errors(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with pytest.raises(AprError, match="invalid run id"):
        store.load("../etc/passwd")
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(AprError, match="not a valid trace"):
        store.load("broken")
    store.save(_run("ok"))
    assert [s["run_id"] for s in store.list()] == ["ok"]  # the broken file is skipped


def test_run_ids_sort_by_time_and_are_unique() -> None:
    ids = [new_run_id() for _ in range(50)]  # far faster than one per millisecond
    assert len(set(ids)) == 50
    assert ids == sorted(ids)  # strictly increasing within a process
    assert len(ids[0]) <= 26


def test_default_directory_honours_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APR_RUNS_DIR", str(tmp_path / "elsewhere"))
    store = RunStore()
    store.save(_run("x"))
    assert (tmp_path / "elsewhere" / "x.json").is_file()
    assert RunStore().load("x").run_id == "x"
