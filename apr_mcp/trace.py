"""Run traces on disk: every ``solve`` and ``parallel_solve`` result as one JSON file.

A trace is the full :class:`~apr_mcp.schemas.SolveResult` or :class:`~apr_mcp.schemas.SolveRun`
(plan, per-thread ``started_s`` / ``finished_s``, decisions, metrics), so timelines and reports
can be drawn from it later. Files live in ``$APR_RUNS_DIR`` or ``<user data dir>/apr-mcp/runs``;
only the newest :data:`KEEP` runs are kept. Run ids sort by time: ``YYYYMMDDTHHMMSSmmm-xxxxxx``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .config import load_settings
from .errors import AprError
from .redact import redact_data
from .schemas import SolveResult, SolveRun

__all__ = ["KEEP", "RunStore", "new_run_id"]

log = logging.getLogger(__name__)

#: How many runs a store keeps; older ones are deleted on save.
KEEP = 200
_RUN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


_last_ms = 0


def new_run_id() -> str:
    """A short id that sorts by creation time: UTC timestamp to the millisecond + 6 random hex.

    Within one process the millisecond is bumped when needed, so ids are strictly increasing and
    never collide; the random part keeps ids of different processes apart.
    """
    global _last_ms
    ms = max(int(time.time() * 1000), _last_ms + 1)
    _last_ms = ms
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(ms / 1000))
    return f"{stamp}{ms % 1000:03d}-{secrets.token_hex(3)}"


def _default_dir() -> Path:
    return load_settings().effective_runs_dir()  # APR_RUNS_DIR, the config file, or the default


class RunStore:
    """Saves, loads and lists run traces in one directory (created on first save)."""

    def __init__(self, directory: str | Path | None = None, *, keep: int = KEEP) -> None:
        self.directory = Path(directory) if directory is not None else _default_dir()
        self.keep = keep

    def _path(self, run_id: str) -> Path:
        if not _RUN_ID.match(run_id):
            raise AprError(f"invalid run id {run_id!r}: use an id from `apr-mcp trace list`")
        return self.directory / f"{run_id}.json"

    def save(self, run: SolveResult | SolveRun) -> Path:
        """Write ``run`` atomically; prune to the newest ``keep`` runs. Returns the file path."""
        path = self._path(run.run_id)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.{secrets.token_hex(3)}.tmp")
            # A trace quotes thread errors and answers: no credential may reach the disk.
            data = redact_data(run.model_dump(mode="json"), named=False)  # as the tool result
            text = json.dumps(data, indent=1, ensure_ascii=False)
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)  # readers never see half a file
        except OSError as exc:
            raise AprError(f"cannot save run {run.run_id} in {self.directory}: {exc}") from exc
        self._prune()
        return path

    def load(self, run_id: str) -> SolveResult | SolveRun:
        """The run saved as ``run_id``; :class:`AprError` if there is none or it is unreadable."""
        path = self._path(run_id)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise AprError(f"no run {run_id!r} in {self.directory}") from None
        except OSError as exc:
            raise AprError(f"cannot read run {run_id!r}: {exc}") from exc
        try:
            data = json.loads(text)
            # Only a whole-pipeline result has a top-level strategy.
            if isinstance(data, dict) and "strategy" in data:
                return SolveResult.model_validate(data)
            return SolveRun.model_validate(data)
        except (ValueError, ValidationError) as exc:
            raise AprError(f"run {run_id!r} is not a valid trace: {exc}") from exc

    def ids(self) -> list[str]:
        """Saved run ids, newest first."""
        if not self.directory.is_dir():
            return []
        return sorted((p.stem for p in self.directory.glob("*.json")), reverse=True)

    def list(self, limit: int = 20) -> list[dict[str, Any]]:
        """Summaries of the newest ``limit`` runs (unreadable files are skipped)."""
        out: list[dict[str, Any]] = []
        for run_id in self.ids():
            if len(out) >= limit:
                break
            try:
                run = self.load(run_id)
            except AprError as exc:
                log.debug("skipping unreadable run %s: %s", run_id, exc)
                continue
            out.append(_summary(run))
        return out

    def _prune(self) -> None:
        for run_id in self.ids()[self.keep :]:
            try:
                (self.directory / f"{run_id}.json").unlink()
            except OSError:
                pass  # another process pruned it first


def _summary(run: SolveResult | SolveRun) -> dict[str, Any]:
    m = run.metrics
    data: dict[str, Any] = {
        "run_id": run.run_id,
        "kind": "solve" if isinstance(run, SolveResult) else "parallel_solve",
        "question": run.question if len(run.question) <= 120 else run.question[:119] + "…",
        "threads": m.threads,
        "threads_done": m.threads_done,
        "wall_s": m.wall_s,
        "critical_path_s": m.critical_path_s,
        "tokens": m.tokens_in + m.tokens_out,
        "partial": run.partial,
    }
    if isinstance(run, SolveResult):
        data["strategy"] = run.strategy
    return data
