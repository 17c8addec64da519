"""The benchmark harness: run dataset items through strategies, stream one record per result.

Each (dataset, item, strategy) becomes one JSON line in ``results.jsonl``, written and flushed
the moment it finishes, so an interrupted run loses at most the jobs that were in flight and
``resume`` skips every pair already present. ``run.json`` beside it records what was run on
what (backend, models, dataset versions, date) — the honesty header of the reports.

A run is marked simulated by what served it, not by the backend's name: every model call goes
through an observer, and a reply a simulated model gave (in process, or an ``apr-mcp simulate``
endpoint behind the ``openai`` backend: :attr:`ModelResponse.simulated`) marks the record
``simulated`` and the run too. Simulated records are not graded: their answers are placeholders.

Strategies: ``sequential`` (one chain-of-thought call, the baseline), ``adaptive`` (plan →
parallel solve → merge, the engine decides), ``fixed`` (always fan out), and ``vote``
(self-consistency: k independent attempts via ``parallel_solve`` merged by majority vote).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from .. import __version__
from ..engine.merge import merge_usage
from ..errors import AprError, ConfigError
from ..llm.base import Model, ModelRequest, ModelResponse, TokenCallback, WrapperModel
from ..redact import redact_data
from ..schemas import MergeStrategy, RunMetrics, SolveResult, Subtask
from .datasets import Dataset, Item
from .graders import grade
from .timeline import timeline_from_result

__all__ = [
    "STRATEGIES",
    "BenchConfig",
    "execute_bench",
    "latest_records",
    "read_records",
    "record_key",
    "solve_vote",
]

log = logging.getLogger(__name__)

STRATEGIES = ("sequential", "adaptive", "fixed", "vote")
RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"

RecordCallback = Callable[[dict[str, Any]], Awaitable[None] | None]


@dataclass
class BenchConfig:
    """What to run. ``datasets`` are loaded :class:`Dataset` objects (see ``load_dataset``)."""

    datasets: list[Dataset]
    strategies: list[str] = field(
        default_factory=lambda: ["sequential", "adaptive", "fixed", "vote"]
    )
    out_dir: Path = Path("apr-bench")
    concurrency: int = 4
    resume: bool = False
    vote_k: int = 5
    #: Sampling temperature of the vote attempts (self-consistency needs diverse samples);
    #: None keeps the configured temperature. The merge keeps the configured one.
    vote_temperature: float | None = 0.7
    retry_errors: bool = False
    item_timeout_s: float | None = None

    def __post_init__(self) -> None:
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise ConfigError(
                f"unknown strategy {unknown[0]!r}; use some of {', '.join(STRATEGIES)}"
            )
        if not self.strategies:
            raise ConfigError("no strategies to run")
        if self.concurrency < 1:
            raise ConfigError("--concurrency must be at least 1")
        if self.vote_k < 2:
            raise ConfigError("vote needs at least 2 attempts")
        if self.vote_temperature is not None and not 0.0 <= self.vote_temperature <= 2.0:
            raise ConfigError("--vote-temperature must be between 0 and 2")


#: The simulated model ids that served the current job (set per job; None outside a job).
_SERVED: ContextVar[set[str] | None] = ContextVar("apr_bench_served", default=None)


class _Observed(WrapperModel):
    """Notes, for the job in progress, every reply a simulated model served."""

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        response = await self._inner.complete(request, on_token=on_token)
        served = _SERVED.get()
        if served is not None and response.simulated:
            served.add(response.model or "simulated")
        return response


def observed(engine: Any) -> Any:
    """A shallow copy of ``engine`` whose models report simulated replies to the running job."""
    wrapped: dict[int, Model] = {}
    copy_ = copy.copy(engine)
    for role in ("planner", "solver", "merger", "controller"):
        model = getattr(engine, role, None)
        if isinstance(model, Model) and not isinstance(model, _Observed):
            setattr(copy_, role, wrapped.setdefault(id(model), _Observed(model)))
    return copy_


def record_key(record: dict[str, Any]) -> tuple[str, str, str]:
    return (str(record.get("dataset")), str(record.get("item_id")), str(record.get("strategy")))


def read_records(path: Path) -> list[dict[str, Any]]:
    """All complete records of a results file; a torn last line (crash mid-write) is ignored."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            log.warning("ignoring an incomplete line in %s", path)
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


def _drop_torn_tail(path: Path) -> None:
    """Cut a partial last line so appended records start on a fresh line."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    with path.open("r+b") as fh:
        fh.truncate(cut)


def _engine_identity(engine: Any) -> dict[str, Any]:
    def ident(model: Any) -> dict[str, str]:
        if model is None:
            return {}
        base = model.unwrap() if hasattr(model, "unwrap") else model
        return {
            "backend": str(getattr(base, "backend", "")),
            "model": str(getattr(base, "model_name", "")),
        }

    solver = ident(getattr(engine, "solver", None))
    settings = getattr(engine, "settings", None)
    return {
        "backend": solver.get("backend", ""),
        "model": (getattr(settings, "model", None) or solver.get("model", "")),
        "planner_model": ident(getattr(engine, "planner", None)).get("model", ""),
        "merger_model": ident(getattr(engine, "merger", None)).get("model", ""),
        "simulated": solver.get("backend") == "simulated",
    }


def _write_run_info(config: BenchConfig, engine: Any) -> dict[str, Any]:
    path = config.out_dir / RUN_FILE
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    identity = _engine_identity(engine)
    info: dict[str, Any] = {}
    if config.resume and path.is_file():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read {path} to resume: {exc}") from exc
        old = {k: info.get(k) for k in ("backend", "model")}
        new = {k: identity.get(k) for k in ("backend", "model")}
        if old != new:
            raise ConfigError(
                f"--resume into {config.out_dir} ran on {old}, now {new}: mixing models in one "
                "results file would make the comparison meaningless; use another --out"
            )
        info.setdefault("resumed", []).append(now)
    else:
        info = {"started": now, **identity}
    info.update(identity)
    info["apr_mcp_version"] = __version__
    info["strategies"] = sorted(
        set(info.get("strategies", [])) | set(config.strategies), key=STRATEGIES.index
    )
    info["vote_k"] = config.vote_k
    info["vote_temperature"] = config.vote_temperature
    info["concurrency"] = config.concurrency
    datasets = info.setdefault("datasets", {})
    for ds in config.datasets:
        datasets[ds.info.name] = {
            **ds.info.model_dump(),
            "path": ds.path,
            "items_run": len(ds.items),
        }
    info["updated"] = now
    path.write_text(json.dumps(redact_data(info), indent=2), encoding="utf-8")
    return info


async def solve_vote(
    engine: Any, item: Item, k: int, *, temperature: float | None = None
) -> SolveResult:
    """Self-consistency: ``k`` independent attempts in parallel, merged by majority vote.

    Attempts are sampled at ``temperature`` (an engine copy with that setting; models, limiter
    and run store are shared) and differ by an attempt number in the prompt, which also keeps the
    cache from collapsing them into one call (identical prompts share a cache entry).
    """
    subtasks = [
        Subtask(
            id=f"v{i + 1}",
            prompt=f"{item.question}\n\n(Independent attempt {i + 1} of {k}: "
            "solve the whole question from scratch and end with 'Answer: ...'.)",
        )
        for i in range(k)
    ]
    t0 = time.perf_counter()
    sampler = engine
    if temperature is not None and temperature != engine.settings.temperature:
        sampler = copy.copy(engine)
        sampler.settings = engine.settings.model_copy(update={"temperature": temperature})
    run = await sampler.parallel_solve(item.question, subtasks, context=item.context)
    merged = await engine.merge(
        item.question, run.results, context=item.context, strategy=MergeStrategy.vote
    )
    wall = time.perf_counter() - t0
    m: RunMetrics = run.metrics.model_copy(deep=True)
    m.stages["merge"] = stage = merge_usage(merged)
    m.tokens_in += stage.tokens_in
    m.tokens_out += stage.tokens_out
    m.max_context_tokens = max(m.max_context_tokens, stage.max_context_tokens)
    m.cache_hits += stage.cached_calls
    m.model_calls += stage.calls
    m.critical_path_s += merged.latency_s
    m.wall_s = max(m.wall_s, wall)
    result = SolveResult(
        run_id=run.run_id,
        question=item.question,
        strategy="vote",
        answer=merged.answer,
        confidence=merged.confidence,
        plan=None,
        results=run.results,
        merge=merged,
        metrics=m,
        decisions=run.decisions,
        partial=run.partial,
    )
    store = getattr(engine, "run_store", None)
    if store is not None:  # so `apr-mcp trace view RUN` finds the vote run like any other
        saved = store.save(result)
        if hasattr(saved, "__await__"):
            await saved
    return result


def _record(
    dataset: Dataset, item: Item, strategy: str, result: SolveResult | None, wall_s: float
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "dataset": dataset.info.name,
        "dataset_version": dataset.info.version,
        "item_id": item.id,
        "strategy": strategy,
        "should_split": item.should_split,
        "grader": item.grader,
        "reference": item.answer if item.grader != "countdown" else item.meta.get("target"),
        "wall_s": round(wall_s, 6),
    }
    if result is None:
        return rec
    m = result.metrics
    rec.update(
        {
            "run_id": result.run_id,
            "answer": result.answer[:4000],
            "critical_path_s": round(m.critical_path_s, 6),
            "engine_wall_s": round(m.wall_s, 6),
            "tokens_in": m.tokens_in,
            "tokens_out": m.tokens_out,
            "stages": {name: s.model_dump() for name, s in m.stages.items()},
            "max_context_tokens": m.max_context_tokens,
            "cache_hits": m.cache_hits,
            "model_calls": m.model_calls,
            "split": result.plan.should_split
            if result.plan is not None
            else (False if strategy == "sequential" else None),
            "threads": m.threads or len(result.results),
            "threads_failed": m.threads_failed,
            "threads_cancelled": m.threads_cancelled,
            "partial": result.partial,
            "decisions": [d.model_dump() for d in result.decisions][:50],
            "timeline": timeline_from_result(result, title=strategy).model_dump(),
        }
    )
    return rec


async def _run_one(
    engine: Any, dataset: Dataset, item: Item, strategy: str, config: BenchConfig
) -> dict[str, Any]:
    served: set[str] = set()
    token = _SERVED.set(served)
    try:
        rec = await _run_graded(engine, dataset, item, strategy, config, served)
    finally:
        _SERVED.reset(token)
    if served:
        rec["simulated"] = sorted(served)
    return rec


async def _run_graded(
    engine: Any, dataset: Dataset, item: Item, strategy: str, config: BenchConfig, served: set[str]
) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        with anyio.fail_after(config.item_timeout_s):
            if strategy == "vote":
                result = await solve_vote(
                    engine, item, config.vote_k, temperature=config.vote_temperature
                )
            else:
                result = await engine.solve(item.question, context=item.context, strategy=strategy)
    except (AprError, TimeoutError) as exc:
        rec = _record(dataset, item, strategy, None, time.perf_counter() - t0)
        what = "timed out" if isinstance(exc, TimeoutError) else str(exc)
        rec.update(
            {"status": "error", "error": f"{type(exc).__name__}: {what}"[:500], "correct": False}
        )
        return rec
    wall = time.perf_counter() - t0
    rec = _record(dataset, item, strategy, result, wall)
    if result.results and not any(_status(t.status) == "done" for t in result.results):
        # The engine degrades instead of raising; with no thread done there is no real answer.
        errors = [t.error or t.reason or _status(t.status) for t in result.results]
        rec.update(
            {
                "status": "error",
                "error": f"no thread succeeded: {errors[0]}"[:500],
                "correct": False,
            }
        )
        return rec
    if served:  # placeholders, not answers: grading them would report a meaningless accuracy
        rec.update(
            {
                "status": "ok",
                "correct": None,
                "grade_detail": "not graded: served by a simulated model "
                f"({', '.join(sorted(served))})",
            }
        )
        return rec
    g = await grade(item, result.answer, judge=getattr(engine, "merger", None))
    rec.update({"status": "ok", "correct": g.correct, "grade_detail": g.detail})
    return rec


def _status(value: Any) -> str:
    return str(getattr(value, "value", value))


async def execute_bench(
    engine: Any, config: BenchConfig, *, on_record: RecordCallback | None = None
) -> list[dict[str, Any]]:
    """Run every (item, strategy) not yet in ``results.jsonl``; return all records of the file.

    Jobs run concurrently, at most ``config.concurrency`` at a time. Each record is appended and
    flushed as soon as its job ends; ``on_record`` is called after the write.
    """
    config.out_dir.mkdir(parents=True, exist_ok=True)
    engine = observed(engine)
    path = config.out_dir / RESULTS_FILE
    if not config.resume and path.is_file() and path.stat().st_size:
        raise ConfigError(
            f"{path} already has results; pass --resume to continue it or choose another --out"
        )
    _write_run_info(config, engine)
    _drop_torn_tail(path)
    done = {
        record_key(r)
        for r in read_records(path)
        if not (config.retry_errors and r.get("status") == "error")
    }
    jobs = [
        (ds, item, s)
        for ds in config.datasets
        for item in ds.items
        for s in config.strategies
        if (ds.info.name, item.id, s) not in done
    ]
    log.info("bench: %d jobs to run (%d already done)", len(jobs), len(done))
    limiter = anyio.CapacityLimiter(config.concurrency)
    lock = anyio.Lock()

    with path.open("a", encoding="utf-8") as fh:

        async def job(ds: Dataset, item: Item, strategy: str) -> None:
            async with limiter:
                rec = await _run_one(engine, ds, item, strategy, config)
            async with lock:
                # One write + flush per record: a crash can tear at most this line.
                fh.write(json.dumps(redact_data(rec), ensure_ascii=False) + "\n")
                fh.flush()
            if on_record is not None:
                out = on_record(rec)
                if out is not None:
                    await out

        async with anyio.create_task_group() as tg:
            for ds, item, strategy in jobs:
                tg.start_soon(job, ds, item, strategy)
    records = latest_records(read_records(path))
    _mark_simulated(config.out_dir / RUN_FILE, records)
    return records


def _mark_simulated(run_file: Path, records: list[dict[str, Any]]) -> None:
    """Record in run.json that a simulated model served this run (whatever the backend name)."""
    served = sorted({m for r in records for m in r.get("simulated") or []})
    if not served:
        return
    info = json.loads(run_file.read_text(encoding="utf-8"))
    info["simulated"] = True
    info["simulated_served_by"] = served
    run_file.write_text(json.dumps(info, indent=2), encoding="utf-8")


def latest_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per (dataset, item, strategy): the last one written wins (``--retry-errors``)."""
    by_key: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in records:
        by_key[record_key(r)] = r
    return list(by_key.values())
