"""Benchmark datasets: the bundled JSONL sets and the user's own files.

Record format (one JSON object per line)::

    {"id": "sp-001", "question": "...", "answer": "42", "grader": "numeric",
     "should_split": true, "context": "", "meta": {"rel_tol": 0.01}}

* ``id`` (unique), ``question`` and ``grader`` are required; ``answer`` is required for every
  grader except ``countdown`` (which checks ``meta.numbers``/``meta.target``/``meta.rules``).
* ``grader``: ``exact`` (answer: string or list of accepted strings), ``numeric`` (answer:
  number; ``meta.rel_tol``/``meta.abs_tol``), ``choice`` (answer: letter; ``meta.choices``),
  ``countdown`` (``meta.numbers``, ``meta.target``, ``meta.rules`` = ``countdown`` | ``24``),
  ``llm_judge`` (answer: reference text, judged by the merger model), ``none`` (no reference:
  a routing-only item, never graded).
* ``should_split`` (optional): the label routing accuracy is scored against.
* ``context`` (optional): passed to the engine with the question.

An optional first line ``{"_meta": {"name", "version", "source", "licence", "description",
"routing_set"}}`` describes the set; bundled sets always carry one, and reports print it.
``routing_set`` says what the ``should_split`` labels are worth: ``tuning`` (the routing rules
were written from them: an in-sample figure) or ``held-out`` (no rule or test is fitted to them:
the routing accuracy a report states). See docs/evaluation.md.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from ..errors import ConfigError

__all__ = ["GRADERS", "Dataset", "DatasetInfo", "Item", "bundled_datasets", "load_dataset"]

#: The graders an item may name (implemented in :mod:`apr_mcp.bench.graders`).
GRADERS = ("exact", "numeric", "choice", "countdown", "llm_judge", "none")


class Item(BaseModel):
    """One question of a dataset."""

    id: str = Field(min_length=1, max_length=128)
    question: str = Field(min_length=1)
    answer: Any = None
    grader: str = "exact"
    should_split: bool | None = None
    context: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Item:
        if self.grader not in GRADERS:
            raise ValueError(f"unknown grader {self.grader!r}; use one of {', '.join(GRADERS)}")
        if self.grader == "countdown":
            missing = {"numbers", "target"} - self.meta.keys()
            if missing:
                raise ValueError(f"countdown items need meta.{' and meta.'.join(sorted(missing))}")
            numbers, target = self.meta["numbers"], self.meta["target"]
            if not (isinstance(numbers, list) and numbers and all(type(n) is int for n in numbers)):
                raise ValueError("meta.numbers must be a non-empty list of whole numbers")
            if type(target) is not int:
                raise ValueError("meta.target must be a whole number")
            if self.meta.get("rules", "countdown") not in ("countdown", "24"):
                raise ValueError("meta.rules must be 'countdown' or '24'")
        elif self.answer is None and self.grader != "none":
            raise ValueError(f"grader {self.grader!r} needs an answer")
        return self


class DatasetInfo(BaseModel):
    """Provenance of a dataset (the ``_meta`` header record)."""

    name: str
    version: str = "unversioned"
    source: str = "user-supplied"
    licence: str = "unknown"
    description: str = ""
    #: What the should_split labels are worth: rules were tuned on them, or none was.
    routing_set: Literal["tuning", "held-out"] | None = None


class Dataset(BaseModel):
    info: DatasetInfo
    items: list[Item]
    path: str = ""


def _bundled_dir() -> Path:
    return Path(str(resources.files("apr_mcp").joinpath("datasets")))


def bundled_datasets() -> list[str]:
    """Names of the datasets shipped with the package."""
    return sorted(p.stem for p in _bundled_dir().glob("*.jsonl"))


def load_dataset(name_or_path: str | Path, *, limit: int | None = None) -> Dataset:
    """Load a bundled dataset by name, or any JSONL file by path.

    Raises :class:`ConfigError` naming the file and line of any bad record.
    """
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = _bundled_dir() / f"{name_or_path}.jsonl"
        if not path.is_file():
            raise ConfigError(
                f"no dataset named {name_or_path!r}; bundled: {', '.join(bundled_datasets())}, "
                "or pass a path to a .jsonl file"
            )
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read dataset {path}: {exc}") from exc
    info = DatasetInfo(name=path.stem)
    items: list[Item] = []
    seen: set[str] = set()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{path}:{lineno}: each line must be a JSON object")
        try:
            if "_meta" in record:
                info = DatasetInfo(**{"name": path.stem, **record["_meta"]})
                continue
            item = Item(**record)
        except (ValidationError, TypeError) as exc:
            raise ConfigError(f"{path}:{lineno}: invalid record: {exc}") from None
        if item.id in seen:
            raise ConfigError(f"{path}:{lineno}: duplicate id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    if not items:
        raise ConfigError(f"dataset {path} has no items")
    if limit is not None:
        items = items[: max(0, limit)]
    return Dataset(info=info, items=items, path=str(path))
