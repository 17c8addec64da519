"""What ``apr-mcp bench`` and ``apr-mcp trace`` do, once :mod:`apr_mcp.cli` has parsed the flags.

Human-readable progress goes to stderr; stdout carries only a command's result (the summary
table of ``bench``, the text timeline of ``trace view``).
"""

from __future__ import annotations

import argparse
import sys
import webbrowser
from pathlib import Path
from typing import Any

import anyio

from ..config import Settings
from ..errors import AprError, ConfigError
from ..redact import redact
from .datasets import bundled_datasets, load_dataset
from .runner import BenchConfig, execute_bench

__all__ = ["run_bench", "run_trace"]


def _dataset_names(values: list[str] | None) -> list[str]:
    names: list[str] = []
    for value in values or []:
        for part in value.split(","):
            part = part.strip()
            if part == "all":
                names += bundled_datasets()
            elif part:
                names.append(part)
    return list(dict.fromkeys(names))


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``apr-mcp bench`` with its parsed flags and settings; returns the exit code."""
    from .report import write_reports

    if args.list_datasets:
        for name in bundled_datasets():
            ds = load_dataset(name)
            role = f"routing: {ds.info.routing_set}" if ds.info.routing_set else "routing: -"
            print(
                f"{name}\tv{ds.info.version}\t{len(ds.items)} items\t{role}\t{ds.info.licence}\t"
                f"{ds.info.description}"
            )
        return 0
    if args.routing_only:
        from .routing import heuristic_routing, render_routing

        names = _dataset_names(args.dataset) or ["routing_heldout"]
        for name in names:
            print(render_routing(heuristic_routing(load_dataset(name, limit=args.limit))))
        return 0
    out_dir: Path = args.out
    if not args.report_only:
        names = _dataset_names(args.dataset)
        if not names:
            raise ConfigError(
                "choose a dataset: --dataset NAME|all|path.jsonl (see --list-datasets)"
            )
        datasets = [load_dataset(n, limit=args.limit) for n in names]
        config = BenchConfig(
            datasets=datasets,
            strategies=[s.strip() for s in args.strategies.split(",") if s.strip()],
            out_dir=out_dir,
            concurrency=args.concurrency,
            resume=args.resume,
            vote_k=args.vote_k,
            vote_temperature=args.vote_temperature,
            retry_errors=args.retry_errors,
            item_timeout_s=args.item_timeout,
        )
        _run_with_engine(settings, config)
    elif not (out_dir / "results.jsonl").is_file():
        raise ConfigError(f"--report-only: no results.jsonl in {out_dir}")
    md, page = write_reports(out_dir, seed=args.seed)
    print(md.read_text(encoding="utf-8"))
    print(f"apr-mcp bench: reports written: {md} and {page}", file=sys.stderr)
    return 0


def _run_with_engine(settings: Settings, config: BenchConfig) -> None:
    from ..runtime import build_runtime
    from ..trace import RunStore

    settings.require_backend()
    total = sum(len(ds.items) for ds in config.datasets) * len(config.strategies)
    done = 0

    async def progress(rec: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        if rec.get("status") != "ok":
            mark = "error"
        elif rec.get("simulated"):
            mark = "done (simulated: not graded)"  # placeholders: right/wrong would mean nothing
        else:
            mark = {True: "✓", False: "✗", None: "ungraded"}[rec.get("correct")]
        print(
            f"[{done}/{total}] {rec['dataset']}/{rec['item_id']} {rec['strategy']}: {mark} "
            f"{rec['wall_s']:.2f}s",
            file=sys.stderr,
        )

    async def go() -> None:
        # Bench runs are kept beside the results (not pruned at 200) so `trace view` finds them all.
        runtime = build_runtime(
            settings, run_store=RunStore(config.out_dir / "runs", keep=1_000_000)
        )
        try:
            await execute_bench(runtime.engine, config, on_record=progress)
        finally:
            await runtime.aclose()

    try:
        anyio.run(go)
    except KeyboardInterrupt:
        print(
            f"apr-mcp bench: interrupted; continue with --resume --out {config.out_dir}",
            file=sys.stderr,
        )
        raise


# ----- trace -----


def _load_run(ref: str, runs_dir: Path | None) -> Any:
    from ..schemas import SolveResult, SolveRun
    from ..trace import RunStore

    path = Path(ref)
    if path.suffix == ".json" and path.is_file():
        text = path.read_text(encoding="utf-8")
        try:
            if '"strategy"' in text and '"answer"' in text:
                return SolveResult.model_validate_json(text)
            return SolveRun.model_validate_json(text)
        except ValueError as exc:
            raise AprError(f"{path} is not a run trace: {exc}") from exc
    return RunStore(runs_dir).load(ref)


def run_trace(args: argparse.Namespace) -> int:
    """Run ``apr-mcp trace`` with its parsed flags; returns the exit code."""
    from ..trace import RunStore
    from .page import html_page
    from .timeline import legend_html, render_svg, render_text, timeline_from_result

    if args.trace_command == "list":
        for s in RunStore(args.runs_dir).list(args.limit):
            print(
                f"{s['run_id']}  {s.get('strategy', s['kind']):<10} {s['wall_s']:7.2f}s  "
                f"{s['threads']:>2} threads  {s['question']}"
            )
        return 0
    if args.trace_command != "view":
        raise ConfigError(
            "usage: apr-mcp trace view RUN [--html out.html] [--open] | apr-mcp trace list"
        )
    run = _load_run(args.run, args.runs_dir)
    tl = timeline_from_result(run)
    print(render_text(tl))
    if args.html:
        import html as _html

        body = (
            f"<h1>Run {_html.escape(tl.run_id)}</h1><p>{_html.escape(run.question[:500])}</p>"
            f'<p class="muted">{_html.escape(tl.title)} · wall {tl.wall_s:.3f}s · critical path '
            f"{tl.critical_path_s:.3f}s</p>" + legend_html() + render_svg(tl)
        )
        args.html.write_text(redact(html_page(f"apr-mcp run {tl.run_id}", body)), encoding="utf-8")
        print(f"apr-mcp trace: wrote {args.html}", file=sys.stderr)
        if args.open:
            webbrowser.open(args.html.resolve().as_uri())
    elif args.open:
        raise ConfigError("--open needs --html FILE")
    return 0
