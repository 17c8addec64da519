"""Aggregate bench records and write ``report.md`` and a self-contained ``report.html``.

Speed-up is the median over items of ``baseline wall time / strategy wall time`` (paired, so
one slow item does not dominate). Accuracy differences are paired against the baseline on the
items both answered: a bootstrap CI and an exact McNemar test.

A run served by a simulated model (run.json ``simulated``, or any record ``simulated``: see
:mod:`apr_mcp.bench.runner`) withholds accuracy and routing accuracy: its answers are
placeholders and its planner takes its split from the engine's own heuristics. Such a report
shows latency, tokens, context and thread timelines only, labelled SIMULATED.

Routing accuracy (the adaptive engine's split decision against ``should_split``) is stated only
for datasets whose header declares ``routing_set: held-out`` — labels no rule or test is fitted
to. On the tuning sets, which the rules were written from, it is shown as an in-sample figure.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..redact import redact, redact_data
from .page import html_page
from .runner import RESULTS_FILE, RUN_FILE, STRATEGIES, latest_records, read_records
from .stats import PairedComparison, median, paired_compare, percentile, wilson_interval
from .timeline import Lane, Timeline, legend_html, render_svg

__all__ = ["Row", "aggregate", "render_html", "render_markdown", "write_reports"]

SIMULATED_LABEL = "SIMULATED — no accuracy or routing-accuracy claims"
_NA_SIM = "n/a (simulated)"


@dataclass
class Row:
    dataset: str
    strategy: str
    n: int
    errors: int
    graded: int
    correct: int
    accuracy: float | None
    acc_ci: tuple[float, float] | None
    lat_med: float | None
    lat_p90: float | None
    crit_med: float | None
    tok_med: float | None
    tok_p90: float | None
    ctx_med: float | None
    ctx_p90: float | None
    threads_med: float | None
    cache_hits: int
    speedup: float | None
    routing: tuple[int, int] | None  # (right, labelled)
    routing_set: str | None  # "held-out", "tuning" or None (undeclared labels)
    comparison: PairedComparison | None
    stage_tokens: dict[str, tuple[float, float]]  # stage → (median in, median out)


def _vals(recs: list[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in recs if isinstance(r.get(key), (int, float))]


def is_simulated(records: list[dict[str, Any]], info: dict[str, Any]) -> bool:
    """True when a simulated model served the run (or any record of it)."""
    return bool(info.get("simulated")) or any(r.get("simulated") for r in records)


def routing_sets(info: dict[str, Any]) -> dict[str, str]:
    """Dataset name → its declared routing set (``held-out`` / ``tuning``), from run.json."""
    return {
        name: str(d["routing_set"])
        for name, d in (info.get("datasets") or {}).items()
        if isinstance(d, dict) and d.get("routing_set")
    }


def aggregate(
    records: list[dict[str, Any]],
    *,
    baseline: str = "sequential",
    seed: int = 0,
    routing_of: dict[str, str] | None = None,
) -> list[Row]:
    """One :class:`Row` per (dataset, strategy), ordered by dataset then strategy. ``routing_of``
    maps dataset names to their routing set (see :func:`routing_sets`)."""
    records = latest_records(records)
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    rows: list[Row] = []
    for ds in datasets:
        in_ds = [r for r in records if r["dataset"] == ds]
        base = {r["item_id"]: r for r in in_ds if r["strategy"] == baseline}
        present = {r["strategy"] for r in in_ds}
        for strat in [s for s in STRATEGIES if s in present] + sorted(present - set(STRATEGIES)):
            recs = [r for r in in_ds if r["strategy"] == strat]
            ok = [r for r in recs if r.get("status") == "ok"]
            graded = [r for r in recs if r.get("correct") is not None]
            correct = sum(1 for r in graded if r["correct"])
            tokens = [float(r.get("tokens_in", 0) + r.get("tokens_out", 0)) for r in ok]
            ratios = [
                base[r["item_id"]]["wall_s"] / r["wall_s"]
                for r in ok
                if r["item_id"] in base
                and base[r["item_id"]].get("status") == "ok"
                and r["wall_s"] > 0
            ]
            labelled = [
                r for r in ok if r.get("should_split") is not None and r.get("split") is not None
            ]
            routing = None
            if (
                strat == "adaptive" and labelled
            ):  # only the adaptive engine decides whether to split
                routing = (
                    sum(1 for r in labelled if bool(r["split"]) == bool(r["should_split"])),
                    len(labelled),
                )
            comparison = None
            if strat != baseline and base:
                pairs = [
                    (base[r["item_id"]]["correct"], r["correct"])
                    for r in graded
                    if r["item_id"] in base and base[r["item_id"]].get("correct") is not None
                ]
                if pairs:
                    comparison = paired_compare(
                        [bool(b) for b, _ in pairs], [bool(s) for _, s in pairs], seed=seed
                    )
            stage_tokens: dict[str, tuple[float, float]] = {}
            for stage in ("plan", "solve", "merge"):
                ins = [
                    float(r["stages"][stage]["tokens_in"])
                    for r in ok
                    if stage in (r.get("stages") or {})
                ]
                outs = [
                    float(r["stages"][stage]["tokens_out"])
                    for r in ok
                    if stage in (r.get("stages") or {})
                ]
                if ins:
                    stage_tokens[stage] = (median(ins) or 0.0, median(outs) or 0.0)
            rows.append(
                Row(
                    dataset=ds,
                    strategy=strat,
                    n=len(recs),
                    errors=len(recs) - len(ok),
                    graded=len(graded),
                    correct=correct,
                    accuracy=correct / len(graded) if graded else None,
                    acc_ci=wilson_interval(correct, len(graded)) if graded else None,
                    lat_med=median(_vals(ok, "wall_s")),
                    lat_p90=percentile(_vals(ok, "wall_s"), 90),
                    crit_med=median(_vals(ok, "critical_path_s")),
                    tok_med=median(tokens),
                    tok_p90=percentile(tokens, 90),
                    ctx_med=median(_vals(ok, "max_context_tokens")),
                    ctx_p90=percentile(_vals(ok, "max_context_tokens"), 90),
                    threads_med=median(_vals(ok, "threads")),
                    cache_hits=int(sum(_vals(ok, "cache_hits"))),
                    speedup=median(ratios)
                    if ratios and strat != baseline
                    else (1.0 if strat == baseline and ok else None),
                    routing=routing,
                    routing_set=(routing_of or {}).get(ds),
                    comparison=comparison,
                    stage_tokens=stage_tokens,
                )
            )
    return rows


def _f(v: float | None, fmt: str = "{:.2f}") -> str:
    return "—" if v is None else fmt.format(v)


def _acc(row: Row, simulated: bool) -> str:
    if simulated:
        return _NA_SIM
    if row.accuracy is None or row.acc_ci is None:
        return "—"
    return (
        f"{row.accuracy:.1%} ({row.correct}/{row.graded}; CI "
        f"{row.acc_ci[0]:.0%}–{row.acc_ci[1]:.0%})"
    )


def _routing(row: Row, simulated: bool) -> str:
    if row.routing is None:
        return "—"
    if simulated:
        return _NA_SIM
    right, n = row.routing
    figure = f"{right / n:.0%} ({right}/{n})"
    if row.routing_set == "held-out":
        return f"{figure}, held-out set"
    if row.routing_set == "tuning":
        return f"in-sample only: {figure} on the tuning set"
    return f"{figure}, labels of unstated provenance"


_HEAD = [
    "dataset",
    "strategy",
    "n",
    "errors",
    "accuracy",
    "latency med (s)",
    "latency p90 (s)",
    "critical path med (s)",
    "tokens med",
    "tokens p90",
    "max context med",
    "max context p90",
    "threads med",
    "cache hits",
    "speed-up vs sequential",
    "routing accuracy",
]


def table_rows(rows: list[Row], simulated: bool) -> list[list[str]]:
    return [
        [
            r.dataset,
            r.strategy,
            str(r.n),
            str(r.errors),
            _acc(r, simulated),
            _f(r.lat_med, "{:.3f}"),
            _f(r.lat_p90, "{:.3f}"),
            _f(r.crit_med, "{:.3f}"),
            _f(r.tok_med, "{:.0f}"),
            _f(r.tok_p90, "{:.0f}"),
            _f(r.ctx_med, "{:.0f}"),
            _f(r.ctx_p90, "{:.0f}"),
            _f(r.threads_med, "{:.0f}"),
            str(r.cache_hits),
            _f(r.speedup, "{:.2f}×"),
            _routing(r, simulated),
        ]
        for r in rows
    ]


def routing_lines(rows: list[Row], simulated: bool) -> list[str]:
    """The routing-accuracy statement: held-out figures named as such, tuning figures as
    in-sample."""
    if simulated:
        why = (
            "the simulated planner takes its split from the engine's own heuristic signals, so "
            "agreement with labels would measure nothing"
        )
        return [f"Not reported: {SIMULATED_LABEL} ({why})."]
    lines = []
    for r in rows:
        if r.routing is None:
            continue
        right, n = r.routing
        if r.routing_set == "held-out":
            lines.append(
                f"- **Routing accuracy on the held-out set `{r.dataset}`** ({n} labelled items no "
                f"routing rule or test is fitted to): **{right / n:.1%}** ({right}/{n})."
            )
        elif r.routing_set == "tuning":
            lines.append(
                f"- `{r.dataset}` is a tuning set (the routing rules were written from its "
                "labels): "
                f"{right}/{n} in-sample, not an accuracy estimate."
            )
        else:
            lines.append(
                f"- `{r.dataset}`: {right}/{n} ({right / n:.1%}); the dataset does not declare "
                "whether its labels are held out."
            )
    if not any(r.routing_set == "held-out" and r.routing for r in rows):
        lines.append(
            "- No held-out routing set in this run: add `--dataset routing_heldout` for an "
            "out-of-sample routing accuracy."
        )
    return lines


def _honesty_lines(info: dict[str, Any], simulated: bool = False) -> list[str]:
    lines = []
    if simulated or info.get("simulated"):
        served = ", ".join(info.get("simulated_served_by") or []) or "the simulated backend"
        lines.append(
            f"**{SIMULATED_LABEL}.** A simulated model served this run ({served}): latency, "
            "tokens, "
            "context and thread timelines follow its latency and length model; its answers are "
            "`[sim]` placeholders, so neither accuracy nor routing accuracy is reported."
        )
    lines.append(
        f"- backend: `{info.get('backend', '?')}`, model: `{info.get('model', '?')}` (planner "
        f"`{info.get('planner_model', '?')}`, merger `{info.get('merger_model', '?')}`)"
    )
    lines.append(
        f"- date: {info.get('started', '?')} (last updated {info.get('updated', '?')}), apr-mcp "
        f"{info.get('apr_mcp_version', '?')}, bench concurrency {info.get('concurrency', '?')}, "
        f"vote k = {info.get('vote_k', '?')} at temperature {info.get('vote_temperature', '?')}"
    )
    for name, d in (info.get("datasets") or {}).items():
        lines.append(
            f"- dataset `{name}` v{d.get('version')} — {d.get('licence')}; source: "
            f"{d.get('source')} "
            f"({d.get('items_run')} items run)"
        )
    return lines


def _cache_warning(records: list[dict[str, Any]]) -> str | None:
    hits = sum(int(r.get("cache_hits") or 0) for r in latest_records(records))
    if not hits:
        return None
    return (
        f"{hits} model calls were answered from the disk cache, so those items' latency is not "
        "model "
        "latency; rerun with `--no-cache` (into a fresh `--out`) for cold figures."
    )


def render_markdown(records: list[dict[str, Any]], info: dict[str, Any], *, seed: int = 0) -> str:
    simulated = is_simulated(records, info)
    rows = aggregate(records, seed=seed, routing_of=routing_sets(info))
    title = "# apr-mcp bench report" + (" (SIMULATED)" if simulated else "")
    out = [title, ""] + _honesty_lines(info, simulated) + [""]
    warning = _cache_warning(records)
    if warning:
        out += [f"**Note:** {warning}", ""]
    out += [
        "## Summary (strategy × dataset)",
        "",
        "| " + " | ".join(_HEAD) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(_HEAD))) + "|",
    ]
    out += [
        "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"
        for cells in table_rows(rows, simulated)
    ]
    out += [
        "",
        (
            "Latency is wall time per item as measured by the harness; speed-up is the median over "
            "items "
            "of sequential wall time ÷ strategy wall time. Tokens are input + output over all "
            "calls. "
            "Routing accuracy: share of labelled items where the adaptive engine's split decision "
            "matched "
            "`should_split`; an accuracy only on a held-out set (see below)."
        ),
        "",
    ]
    out += ["## Routing accuracy", "", *routing_lines(rows, simulated), ""]
    out += ["## Accuracy against the sequential baseline (paired)", ""]
    if simulated:
        out.append(f"Not reported: {SIMULATED_LABEL}.")
    else:
        out += [
            (
                "| dataset | strategy | Δ accuracy | 95% CI (paired bootstrap) | wins / losses | "
                "exact "
                "McNemar p | n |"
            ),
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            c = r.comparison
            if c is not None:
                out.append(
                    f"| {r.dataset} | {r.strategy} | {c.diff:+.1%} | {c.ci_low:+.1%} … "
                    f"{c.ci_high:+.1%} | "
                    f"{c.wins} / {c.losses} | {c.mcnemar_p:.3g} | {c.n} |"
                )
    out += [
        "",
        "## Tokens per stage (median in / out)",
        "",
        "| dataset | strategy | plan | solve | merge |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        cells = [
            f"{r.stage_tokens[s][0]:.0f} / {r.stage_tokens[s][1]:.0f}"
            if s in r.stage_tokens
            else "—"
            for s in ("plan", "solve", "merge")
        ]
        out.append(f"| {r.dataset} | {r.strategy} | " + " | ".join(cells) + " |")
    out.append("")
    return "\n".join(out)


def _timeline_of(rec: dict[str, Any]) -> Timeline | None:
    data = rec.get("timeline")
    if not isinstance(data, dict):
        return None
    try:
        return Timeline(**{**data, "lanes": [Lane(**lane) for lane in data.get("lanes", [])]})
    except (TypeError, ValueError):
        return None


_STRAT_COLOURS = {
    "sequential": "#6b7280",
    "adaptive": "#2563eb",
    "fixed": "#d97706",
    "vote": "#059669",
}


def _scatter(rows: list[Row], simulated: bool) -> str:
    """Accuracy (or, when simulated, tokens) against median latency: one dot per strategy ×
    dataset."""
    pts = [r for r in rows if r.lat_med is not None and (simulated or r.accuracy is not None)]
    w, h, pad = 660, 320, 50
    ys = [(r.tok_med or 0.0) if simulated else (r.accuracy or 0.0) for r in pts]
    xmax = max([r.lat_med or 0.0 for r in pts] + [1e-6]) * 1.1
    ymax = (max(ys + [1.0]) * 1.1) if simulated else 1.0
    ylabel = "median tokens (accuracy withheld: simulated)" if simulated else "accuracy"
    parts = [
        (
            f'<svg class="scatter" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
            f'aria-label="{ylabel} vs latency">'
        ),
        f'<line class="grid" x1="{pad}" y1="{h - pad}" x2="{w - 10}" y2="{h - pad}"/>',
        f'<line class="grid" x1="{pad}" y1="10" x2="{pad}" y2="{h - pad}"/>',
        f'<text x="{w / 2:.0f}" y="{h - 12}" text-anchor="middle">median latency (s)</text>',
        (
            f'<text x="14" y="{h / 2:.0f}" transform="rotate(-90 14 {h / 2:.0f})" '
            f'text-anchor="middle">{html.escape(ylabel)}</text>'
        ),
    ]
    for i in range(5):
        xv, yv = xmax * i / 4, ymax * i / 4
        x = pad + (w - pad - 30) * i / 4
        y = h - pad - (h - pad - 10) * i / 4
        parts.append(
            f'<text class="tick" x="{x:.0f}" y="{h - pad + 14}" '
            f'text-anchor="middle">{xv:.2f}</text>'
        )
        ytxt = f"{yv:.0f}" if simulated else f"{yv:.0%}"
        parts.append(
            f'<text class="tick" x="{pad - 4}" y="{y + 4:.0f}" text-anchor="end">{ytxt}</text>'
        )
    for r, yv in zip(pts, ys):
        x = pad + (w - pad - 30) * (r.lat_med or 0.0) / xmax
        y = h - pad - (h - pad - 10) * yv / ymax
        colour = _STRAT_COLOURS.get(r.strategy, "#111827")
        label = f"{r.strategy} / {r.dataset}: {r.lat_med:.3f}s, " + (
            f"{yv:.0f} tokens" if simulated else f"{yv:.1%}"
        )
        parts.append(
            f'<circle class="dot" data-strategy="{html.escape(r.strategy)}" cx="{x:.1f}" '
            f'cy="{y:.1f}" r="6" '
            f'fill="{colour}"><title>{html.escape(label)}</title></circle>'
        )
    parts.append("</svg>")
    keys = "".join(
        '<span class="key"><svg width="12" height="12"><circle cx="6" cy="6" r="5" '
        f'fill="{c}"/></svg>{s}</span>'
        for s, c in _STRAT_COLOURS.items()
        if any(r.strategy == s for r in pts)
    )
    return "".join(parts) + f'<div class="legend">{keys}</div>'


def _code(text: str) -> str:
    """Markdown `code` spans → <code> (input already escaped)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def render_html(
    records: list[dict[str, Any]],
    info: dict[str, Any],
    *,
    seed: int = 0,
    max_items_per_dataset: int = 60,
) -> str:
    records = latest_records(records)
    simulated = is_simulated(records, info)
    rows = aggregate(records, seed=seed, routing_of=routing_sets(info))
    esc = html.escape
    b: list[str] = ["<h1>apr-mcp bench report" + (" (SIMULATED)" if simulated else "") + "</h1>"]
    honesty = "".join(
        f"<li>{_code(esc(line[2:]))}</li>" for line in _honesty_lines(info) if line.startswith("- ")
    )
    flag = (
        (
            f'<p><strong class="flag">{esc(SIMULATED_LABEL)}</strong>: a simulated model served '
            "this run; "
            "latency, tokens, context and timelines follow its latency and length model; its "
            "answers are "
            "placeholders, so neither accuracy nor routing accuracy is reported.</p>"
        )
        if simulated
        else ""
    )
    warning = _cache_warning(records)
    note = f"<p><strong>Note:</strong> {_code(esc(warning))}</p>" if warning else ""
    klass = "honesty simulated" if simulated else "honesty"
    b.append(f'<div class="{klass}">{flag}<ul>{honesty}</ul>{note}</div>')
    b.append(
        '<h2>Summary</h2><div class="wide"><table><tr>'
        + "".join(f'<th class="{"l" if i < 2 else ""}">{esc(h)}</th>' for i, h in enumerate(_HEAD))
        + "</tr>"
    )
    for cells in table_rows(rows, simulated):
        b.append(
            "<tr>"
            + "".join(
                f'<td class="{"l" if i < 2 else ""}">{esc(c)}</td>' for i, c in enumerate(cells)
            )
            + "</tr>"
        )
    b.append(
        '</table></div><p class="muted">Speed-up: median over items of sequential ÷ strategy wall '
        "time. "
        "Routing accuracy: adaptive split decisions against <code>should_split</code> labels.</p>"
    )
    b.append(
        "<h2>Routing accuracy</h2><ul>"
        + "".join(
            f"<li>{_code(esc(line.removeprefix('- ').replace('**', '')))}</li>"
            for line in routing_lines(rows, simulated)
        )
        + "</ul>"
    )
    if not simulated:
        b.append("<h2>Accuracy against the sequential baseline (paired)</h2><ul>")
        for r in rows:
            if r.comparison is not None:
                b.append(
                    f"<li><b>{esc(r.dataset)} / {esc(r.strategy)}</b>: "
                    f"{esc(r.comparison.describe())}</li>"
                )
        b.append("</ul>")
    b.append(
        "<h2>"
        + ("Tokens" if simulated else "Accuracy")
        + " versus latency</h2>"
        + _scatter(rows, simulated)
    )
    strategies = [s for s in STRATEGIES if any(r["strategy"] == s for r in records)]
    b.append("<h2>Thread timelines</h2>" + legend_html())
    b.append(
        '<div class="filters">Show: '
        + "".join(
            f'<label><input type="checkbox" value="{s}" checked> {s}</label>' for s in strategies
        )
        + "</div>"
    )
    index = 0
    for ds in dict.fromkeys(r["dataset"] for r in records):
        items = list(dict.fromkeys(r["item_id"] for r in records if r["dataset"] == ds))
        b.append(f"<h3>{esc(ds)}</h3>")
        for n_item, item_id in enumerate(items[:max_items_per_dataset]):
            item_recs = sorted(
                (r for r in records if r["dataset"] == ds and r["item_id"] == item_id),
                key=lambda r: (
                    STRATEGIES.index(r["strategy"]) if r["strategy"] in STRATEGIES else 99
                ),
            )
            # The first few items start expanded; the rest stay folded to keep the page scannable.
            b.append(f"<details{' open' if n_item < 3 else ''}><summary>{esc(item_id)}</summary>")
            # One time axis per item, so strategies compare at a glance.
            span = max([float(r.get("wall_s") or 0.0) for r in item_recs] + [1e-9])
            for rec in item_recs:
                verdict = (
                    ""
                    if simulated or rec.get("correct") is None
                    else (" ✓" if rec["correct"] else " ✗")
                )
                strategy = esc(rec["strategy"])
                head = (
                    f'<div data-strategy="{strategy}"><b>{strategy}</b>{verdict} '
                    f'<span class="muted">run {esc(str(rec.get("run_id", "—")))} · '
                    f"{rec.get('wall_s', 0):.3f}s · "
                    f"{rec.get('threads', '—')} threads</span>"
                )
                tl = _timeline_of(rec)
                if rec.get("status") == "error":
                    b.append(
                        head + '<br><span class="seg-failed">error: '
                        f"{esc(str(rec.get('error')))}</span></div>"
                    )
                elif tl is not None:
                    b.append(head + render_svg(tl, run_index=index, span_s=span) + "</div>")
                    index += 1
                else:
                    b.append(head + "</div>")
            b.append("</details>")
        if len(items) > max_items_per_dataset:
            b.append(
                f'<p class="muted">{len(items) - max_items_per_dataset} more items in '
                "results.jsonl.</p>"
            )
    title = "apr-mcp bench report" + (" (SIMULATED)" if simulated else "")
    return html_page(title, "\n".join(b))


def write_reports(out_dir: Path, *, seed: int = 0) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` from ``results.jsonl`` and ``run.json`` in
    ``out_dir``."""
    # Redacted before rendering (HTML escaping would hide a credential's shape) and after.
    records = redact_data(read_records(out_dir / RESULTS_FILE))
    info_path = out_dir / RUN_FILE
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    info = redact_data(info)
    md = out_dir / "report.md"
    page = out_dir / "report.html"
    md.write_text(redact(render_markdown(records, info, seed=seed)), encoding="utf-8")
    page.write_text(redact(render_html(records, info, seed=seed)), encoding="utf-8")
    return md, page
