"""Open the HTML report and a trace page in headless Chromium: the script runs without errors
and the timeline bars are drawn (the page writes what it saw into <body> for --dump-dom).

Skips when Chromium is absent, unless APR_REQUIRE_CHROMIUM is set (CI sets it), which turns a
missing browser into a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import anyio
import pytest

from apr_mcp.bench import BenchConfig, execute_bench, load_dataset, write_reports
from apr_mcp.bench.page import html_page
from apr_mcp.bench.timeline import legend_html, render_svg, timeline_from_result
from apr_mcp.config import Settings
from apr_mcp.engine import Engine
from apr_mcp.llm.simulated import SimulatedModel
from apr_mcp.trace import RunStore

CHROMIUM = next(
    (
        p
        for p in (
            "/usr/bin/chromium",
            shutil.which("chromium") or "",
            shutil.which("chromium-browser") or "",
        )
        if p and Path(p).exists()
    ),
    None,
)

if CHROMIUM is None and not os.environ.get("APR_REQUIRE_CHROMIUM"):
    pytest.skip(
        "chromium is not installed (apt-get install chromium); set APR_REQUIRE_CHROMIUM=1 to fail "
        "instead",
        allow_module_level=True,
    )


def dump_dom(page: Path, profile: Path) -> tuple[str, str]:
    """Load ``page`` in headless Chromium; return (serialised DOM after scripts ran, stderr log)."""
    assert CHROMIUM is not None, "APR_REQUIRE_CHROMIUM is set but chromium is not installed"
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def body_attrs(dom: str) -> dict[str, str]:
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None, dom[:500]
    return dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))


def console_errors(log: str) -> list[str]:
    return [
        ln for ln in log.splitlines() if "CONSOLE" in ln and ("Uncaught" in ln or "Error" in ln)
    ]


async def test_bench_report_renders_in_chromium(tmp_path: Path) -> None:
    model = SimulatedModel(ttft_s=0.002, tokens_per_s=50_000)
    engine = Engine(
        settings=Settings(backend="simulated", max_threads=4),
        planner=model,
        solver=model,
        merger=model,
        run_store=RunStore(tmp_path / "runs"),
    )
    out = tmp_path / "out"
    datasets = [load_dataset("split_pays", limit=2), load_dataset("sequential_control", limit=1)]
    with anyio.fail_after(60):
        await execute_bench(
            engine, BenchConfig(datasets=datasets, out_dir=out, concurrency=2, vote_k=3)
        )
    _, html_path = write_reports(out)
    expected_bars = html_path.read_text(encoding="utf-8").count('class="bar ')
    assert expected_bars >= 12

    dom, log = await anyio.to_thread.run_sync(dump_dom, html_path, tmp_path / "profile")
    attrs = body_attrs(dom)
    assert "data-error" not in attrs, attrs.get("data-error")
    assert attrs.get("data-rendered") == "ok"
    assert int(attrs["data-bars"]) == expected_bars  # every bar laid out with a real size
    assert int(attrs["data-dots"]) == 8  # 4 strategies × 2 datasets in the scatter chart
    assert console_errors(log) == []


async def test_trace_page_renders_and_reports_script_errors(tmp_path: Path) -> None:
    model = SimulatedModel(ttft_s=0.002, tokens_per_s=50_000)
    engine = Engine(
        settings=Settings(backend="simulated", max_threads=4),
        planner=model,
        solver=model,
        merger=model,
    )
    with anyio.fail_after(30):
        result = await engine.solve("Compare Python, Go and Rust for a CLI tool", strategy="fixed")
    tl = timeline_from_result(result)
    page = tmp_path / "trace.html"
    page.write_text(html_page("trace", legend_html() + render_svg(tl)), encoding="utf-8")
    dom, _ = await anyio.to_thread.run_sync(dump_dom, page, tmp_path / "profile")
    attrs = body_attrs(dom)
    assert attrs.get("data-rendered") == "ok" and "data-error" not in attrs
    assert int(attrs["data-bars"]) == sum(
        1 for lane in tl.lanes if lane.started_s is not None and lane.finished_s is not None
    )

    # The error hook works: a failing script after ours is reported in data-error.
    broken = tmp_path / "broken.html"
    broken.write_text(
        html_page("t", render_svg(tl)).replace("</body>", "<script>undefinedFn();</script></body>"),
        encoding="utf-8",
    )
    dom, _ = await anyio.to_thread.run_sync(dump_dom, broken, tmp_path / "profile2")
    assert "undefinedFn" in body_attrs(dom).get("data-error", "")
