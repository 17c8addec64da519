"""Thread timelines of one run: built from a SolveResult/SolveRun, drawn as text or inline SVG.

The one renderer behind both ``apr-mcp trace view`` and the bench HTML report. A lane is a
thread (or the plan/merge stage); each lane has up to two segments: *waiting* (ready but queued
— from the end of planning, or from when its last dependency finished, to its start) and
*running* (start to finish), coloured by outcome: done, served from cache, cancelled, failed.
"""

from __future__ import annotations

import html
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["LEGEND", "Lane", "Timeline", "render_svg", "render_text", "timeline_from_result"]


class Lane(BaseModel):
    id: str
    kind: str = "thread"  # thread | plan | merge
    status: str = "done"  # done | cached | cancelled | failed | skipped | stage
    ready_s: float | None = None
    started_s: float | None = None
    finished_s: float | None = None
    note: str = ""


class Timeline(BaseModel):
    run_id: str
    title: str = ""
    wall_s: float = 0.0
    critical_path_s: float = 0.0
    lanes: list[Lane] = Field(default_factory=list)


#: status → (CSS class, colour, legend text, text-timeline glyph)
LEGEND: dict[str, tuple[str, str, str, str]] = {
    "stage": ("seg-stage", "#8b5cf6", "plan / merge", "="),
    "wait": ("seg-wait", "#cbd5e1", "waiting (queued)", "·"),
    "done": ("seg-done", "#2563eb", "running → done", "█"),
    "cached": ("seg-cached", "#059669", "served from cache", "c"),
    "cancelled": ("seg-cancelled", "#d97706", "cancelled", "x"),
    "failed": ("seg-failed", "#dc2626", "failed", "!"),
    "skipped": ("seg-skipped", "#9ca3af", "skipped", "-"),
}


def _status(value: Any) -> str:
    return str(getattr(value, "value", value))


def timeline_from_result(result: Any, *, title: str = "") -> Timeline:
    """A :class:`Timeline` from a SolveResult or SolveRun (or anything with the same fields)."""
    results = list(getattr(result, "results", []) or [])
    metrics = getattr(result, "metrics", None)
    wall = float(getattr(metrics, "wall_s", 0.0) or 0.0)
    decisions = list(getattr(result, "decisions", []) or [])
    starts = [r.started_s for r in results if r.started_s is not None]
    # Planning ends at the split decision; without one, when the first thread starts.
    plan_end = next((d.at_s for d in decisions if d.kind in ("split", "no_split")), None)
    if plan_end is None:
        plan_end = min(starts) if starts else 0.0
    finished = {r.id: r.finished_s for r in results}
    lanes: list[Lane] = []
    if getattr(result, "plan", None) is not None and plan_end > 0:
        lanes.append(
            Lane(id="plan", kind="plan", status="stage", started_s=0.0, finished_s=plan_end)
        )
    for r in results:
        status = "cached" if r.cached else _status(r.status)
        ready: float | None = plan_end
        dep_ends = [finished.get(d) for d in r.depends_on]
        if dep_ends and all(e is not None for e in dep_ends):
            ready = max(e for e in dep_ends if e is not None)
        if r.spawned_from and finished.get(r.spawned_from) is not None:
            ready = finished[r.spawned_from]
        if r.started_s is not None and ready is not None and ready > r.started_s:
            ready = r.started_s
        lanes.append(
            Lane(
                id=r.id,
                status=status,
                ready_s=ready,
                started_s=r.started_s,
                finished_s=r.finished_s,
                note=(r.reason or r.error or r.summary or "")[:160],
            )
        )
    merge = getattr(result, "merge", None)
    if merge is not None:
        ends = [r.finished_s for r in results if r.finished_s is not None]
        start = max(ends) if ends else plan_end
        end = max(start + float(merge.latency_s or 0.0), start)
        if wall and end > wall:
            end = wall
        lanes.append(
            Lane(
                id="merge",
                kind="merge",
                status="stage",
                started_s=start,
                finished_s=end,
                note="cached" if merge.cached else "",
            )
        )
    if not wall:
        wall = max([lane.finished_s or 0.0 for lane in lanes] + [0.0])
    return Timeline(
        run_id=str(getattr(result, "run_id", "")),
        title=title or str(getattr(result, "strategy", "")),
        wall_s=wall,
        critical_path_s=float(getattr(metrics, "critical_path_s", 0.0) or 0.0),
        lanes=lanes,
    )


# ----- text -----


def render_text(tl: Timeline, *, width: int = 60) -> str:
    """A terminal timeline: one row per lane, glyphs from :data:`LEGEND`."""
    span = max(tl.wall_s, max([lane.finished_s or 0.0 for lane in tl.lanes] + [1e-9]))
    scale = width / span

    def col(t: float) -> int:
        return min(width, max(0, round(t * scale)))

    label_w = max([len(lane.id) for lane in tl.lanes] + [5])
    out = [
        (
            f"run {tl.run_id}  {tl.title}  wall {tl.wall_s:.3f}s  critical path "
            f"{tl.critical_path_s:.3f}s"
        )
    ]
    out.append(f"{'':{label_w}}  0s{'':{max(0, width - 2 - len(f'{span:.2f}s'))}}{span:.2f}s")
    for lane in tl.lanes:
        row = [" "] * width
        if lane.ready_s is not None and lane.started_s is not None:
            for i in range(col(lane.ready_s), col(lane.started_s)):
                row[i] = LEGEND["wait"][3]
        if lane.started_s is not None and lane.finished_s is not None:
            glyph = LEGEND.get(lane.status, LEGEND["done"])[3]
            a, b = col(lane.started_s), max(col(lane.finished_s), col(lane.started_s) + 1)
            for i in range(a, min(b, width)):
                row[i] = glyph
        times = (
            f"{lane.started_s:.3f}–{lane.finished_s:.3f}s"
            if lane.started_s is not None and lane.finished_s is not None
            else "not started"
        )
        out.append(f"{lane.id:<{label_w}} |{''.join(row)}| {times} {lane.status}")
    out.append("legend: " + "  ".join(f"{v[3]} {v[2]}" for v in LEGEND.values()))
    return "\n".join(out)


# ----- SVG -----

_LANE_H = 18
_LABEL_W = 120
_PAD = 24


def render_svg(
    tl: Timeline, *, width: int = 760, run_index: int = 0, span_s: float | None = None
) -> str:
    """Inline SVG swimlanes (no external assets). Bars carry ``class="bar"`` and a tooltip.

    ``span_s`` fixes the time axis (e.g. the slowest strategy of an item) so that several runs
    drawn one above the other share a scale; by default the axis spans this run.
    """
    span = max(
        span_s or 0.0, tl.wall_s, max([lane.finished_s or 0.0 for lane in tl.lanes] + [1e-9])
    )
    plot_w = width - _LABEL_W - 10
    height = _PAD + _LANE_H * max(1, len(tl.lanes)) + 22

    def x(t: float) -> float:
        return _LABEL_W + max(0.0, t) / span * plot_w

    esc = html.escape
    parts = [
        (
            f'<svg class="timeline" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" data-run="{esc(tl.run_id)}" '
            f'data-index="{run_index}" '
            f'aria-label="thread timeline of run {esc(tl.run_id)}">'
        )
    ]
    for i in range(5):  # time axis
        t = span * i / 4
        parts.append(
            f'<line class="grid" x1="{x(t):.1f}" y1="{_PAD - 6}" x2="{x(t):.1f}" '
            f'y2="{height - 18}"/>'
        )
        parts.append(
            f'<text class="tick" x="{x(t):.1f}" y="{height - 4}" '
            f'text-anchor="middle">{t:.2f}s</text>'
        )
    for row, lane in enumerate(tl.lanes):
        y = _PAD + row * _LANE_H
        parts.append(
            f'<text class="lane" x="{_LABEL_W - 6}" y="{y + 12}" '
            f'text-anchor="end">{esc(lane.id[:18])}</text>'
        )
        if (
            lane.ready_s is not None
            and lane.started_s is not None
            and lane.started_s > lane.ready_s
        ):
            w = x(lane.started_s) - x(lane.ready_s)
            parts.append(
                f'<rect class="seg-wait" x="{x(lane.ready_s):.1f}" y="{y + 4}" '
                f'width="{max(w, 0.5):.1f}" height="{_LANE_H - 8}">'
                f"<title>{esc(lane.id)} waited {lane.started_s - lane.ready_s:.3f}s</title></rect>"
            )
        if lane.started_s is not None and lane.finished_s is not None:
            cls = LEGEND.get(lane.status, LEGEND["done"])[0]
            w = max(x(lane.finished_s) - x(lane.started_s), 1.5)
            tip = f"{lane.id}: {lane.status} {lane.started_s:.3f}–{lane.finished_s:.3f}s"
            if lane.note:
                tip += f" — {lane.note}"
            parts.append(
                f'<rect class="bar {cls}" data-status="{esc(lane.status)}" '
                f'x="{x(lane.started_s):.1f}" y="{y + 2}" '
                f'width="{w:.1f}" height="{_LANE_H - 4}" rx="2"><title>{esc(tip)}</title></rect>'
            )
        elif lane.status in ("skipped", "cancelled", "failed"):
            at = lane.ready_s or 0.0
            cls = LEGEND.get(lane.status, LEGEND["skipped"])[0]
            parts.append(
                f'<text class="mark {cls}" x="{x(at) + 2:.1f}" y="{y + 12}">{esc(lane.status)} '
                "before start</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def legend_html() -> str:
    items = "".join(
        f'<span class="key"><svg width="14" height="10"><rect class="{v[0]}" width="14" '
        'height="10" rx="2"/></svg>'
        f"{html.escape(v[2])}</span>"
        for v in LEGEND.values()
    )
    return f'<div class="legend">{items}</div>'
