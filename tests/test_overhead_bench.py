"""The overhead benchmark's ideal and a tiny run of it (direct path: no server, no HTTP)."""

from __future__ import annotations

import pytest

overhead = pytest.importorskip("benchmarks.overhead")


def test_critical_path_of_equal_replies_is_waves_times_latency() -> None:
    assert overhead.critical_path([0.2] * 64, 8) == pytest.approx(8 * 0.2)
    assert overhead.critical_path([0.2] * 8, 8) == pytest.approx(0.2)
    assert overhead.critical_path([0.2] * 9, 8) == pytest.approx(0.4)


def test_critical_path_of_unequal_replies_is_list_scheduled_in_start_order() -> None:
    # Slots: [1.0] and [0.1, 0.1, 0.1 ...]: the short ones queue on the slot that frees first.
    assert overhead.critical_path([1.0, 0.1, 0.1, 0.1], 2) == pytest.approx(1.0)
    assert overhead.critical_path([0.1, 1.0, 0.5, 0.5], 2) == pytest.approx(1.1)
    assert overhead.critical_path([], 4) == 0.0


async def test_direct_run_reports_every_scenario() -> None:
    rows = await overhead.run_benchmark([0.01], ["direct"], 1)
    assert [(r["subtasks"], r["concurrency"]) for r in rows] == overhead.SCENARIOS
    assert all(r["done"] == r["subtasks"] for r in rows)
    # Wall can only exceed the ideal; the ideal comes from the replies' planned latencies.
    assert all(r["wall_s"] >= r["ideal_s"] > 0 and r["ratio"] >= 1 for r in rows)
    text = overhead.table(rows, 1)
    assert "latency 0.01s direct: target ratio <= 1.05" in text and "(stress)" in text
