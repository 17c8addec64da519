"""The timeline renderer shared by the bench report and `trace view`: lanes, waits, outcomes."""

from __future__ import annotations

import re

from apr_mcp.bench.page import html_page
from apr_mcp.bench.timeline import LEGEND, render_svg, render_text, timeline_from_result
from apr_mcp.schemas import (
    Decision,
    MergeResult,
    Plan,
    RunMetrics,
    SolveResult,
    ThreadResult,
    ThreadStatus,
)


def sample_run() -> SolveResult:
    threads = [
        ThreadResult(id="t1", started_s=0.10, finished_s=0.50),
        ThreadResult(
            id="t2", started_s=0.30, finished_s=0.31, cached=True
        ),  # queued 0.2 s, then a cache hit
        ThreadResult(
            id="t3",
            status=ThreadStatus.cancelled,
            started_s=0.10,
            finished_s=0.20,
            reason="redundant",
        ),
        ThreadResult(
            id="t4", started_s=0.55, finished_s=0.80, depends_on=["t1"]
        ),  # ready when t1 ended
        ThreadResult(
            id="t5", status=ThreadStatus.failed, started_s=0.12, finished_s=0.40, error="HTTP 500"
        ),
        ThreadResult(id="t6", status=ThreadStatus.skipped, reason="early stop"),
    ]
    return SolveResult(
        run_id="20260101T000000000-abcd",
        question="q",
        strategy="adaptive",
        answer="a",
        plan=Plan(should_split=True),
        results=threads,
        merge=MergeResult(answer="a", latency_s=0.15),
        metrics=RunMetrics(wall_s=1.0, critical_path_s=0.9, threads=6),
        decisions=[Decision(at_s=0.10, kind="split", reason="3 parts")],
    )


def test_lanes_carry_waits_and_outcomes() -> None:
    tl = timeline_from_result(sample_run())
    lanes = {lane.id: lane for lane in tl.lanes}
    assert [lane.id for lane in tl.lanes] == ["plan", "t1", "t2", "t3", "t4", "t5", "t6", "merge"]
    assert (
        lanes["plan"].started_s == 0.0 and lanes["plan"].finished_s == 0.10
    )  # plan ends at the split decision
    assert lanes["t2"].status == "cached" and lanes["t2"].ready_s == 0.10
    assert lanes["t3"].status == "cancelled" and lanes["t3"].note == "redundant"
    assert lanes["t4"].ready_s == 0.50  # waited for its dependency, not for the plan
    assert lanes["t5"].status == "failed" and lanes["t6"].status == "skipped"
    assert lanes["merge"].started_s == 0.80 and abs((lanes["merge"].finished_s or 0) - 0.95) < 1e-9
    assert tl.wall_s == 1.0 and tl.critical_path_s == 0.9


def test_svg_draws_one_bar_per_started_lane_with_status_classes() -> None:
    tl = timeline_from_result(sample_run())
    svg = render_svg(tl)
    bars = re.findall(r'<rect class="bar ([\w-]+)" data-status="(\w+)"', svg)
    assert len(bars) == 7  # plan, t1..t5, merge; t6 never started
    assert ("seg-cached", "cached") in bars and ("seg-cancelled", "cancelled") in bars
    assert ("seg-failed", "failed") in bars and ("seg-stage", "stage") in bars
    # t2 and t5 queued after planning ended; t4 after its dependency; t1 and t3 started at once.
    assert svg.count('class="seg-wait"') == 3
    assert "skipped before start" in svg and "HTTP 500" in svg  # reasons reach the tooltips
    # A shared axis (span_s) shrinks this run's bars relative to a longer run's.
    width = float(
        re.search(r'data-status="done" x="[\d.]+" y="[\d.]+" width="([\d.]+)"', svg).group(1)  # type: ignore[union-attr]
    )
    wide = render_svg(tl, span_s=2.0)
    half = float(
        re.search(r'data-status="done" x="[\d.]+" y="[\d.]+" width="([\d.]+)"', wide).group(1)  # type: ignore[union-attr]
    )
    assert abs(half - width / 2) < 0.2


def test_text_timeline_uses_the_legend_glyphs() -> None:
    text = render_text(timeline_from_result(sample_run()), width=50)
    rows = {ln.split()[0]: ln for ln in text.splitlines()[2:-1]}
    assert LEGEND["cached"][3] in rows["t2"] and LEGEND["wait"][3] in rows["t2"]
    assert LEGEND["cancelled"][3] in rows["t3"] and LEGEND["failed"][3] in rows["t5"]
    assert "not started" in rows["t6"]
    assert text.splitlines()[0].startswith("run 20260101T000000000-abcd")
    assert all(len(ln.split("|")[1]) == 50 for ln in text.splitlines()[2:-1])


def test_page_is_self_contained() -> None:
    page = html_page("t <x>", render_svg(timeline_from_result(sample_run())))
    assert "<title>t &lt;x&gt;</title>" in page
    assert "http" not in page and "<link" not in page and "src=" not in page
    for cls, colour, _, _ in LEGEND.values():
        assert f".{cls}{{fill:{colour}}}" in page
