"""What the MCP tools publish in ``tools/list``: lean output models and lean argument schemas.

A host pays for every tool schema in its context on every turn, so the published schemas name
only what a host acts on: the fields that chain one tool into the next (``subtasks``,
``results``), the answer and the run's status. They allow additional properties, so the full
records the tools return (:mod:`apr_mcp.schemas`: metrics, timings, decisions, usage) validate
against them unchanged; the run trace at ``apr://runs/<run_id>`` documents the rest. Arguments
are still validated by the full models; only the schema a host reads is shorter.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from .limits import MAX_PROMPT_CHARS
from .schemas import MergeStrategy, ThreadStatus

__all__ = [
    "MergeOutput",
    "PlanOutput",
    "RunOutput",
    "SolveOutput",
    "merge_strategy_schema",
    "subtasks_schema",
    "thread_results_schema",
]


def _drop_titles(schema: dict[str, Any]) -> None:
    # Titles repeat the property names ("Run Id" for run_id): tokens a host pays for nothing.
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)


_LEAN = ConfigDict(extra="allow", json_schema_extra=_drop_titles)
_NULLABLE_STR = WithJsonSchema({"type": ["string", "null"]})
_NULLABLE_NUM = WithJsonSchema({"type": ["number", "null"]})
_STATUS = "partial: cut short by the deadline or budget; failed: no usable result."
_THREAD_STATUSES = WithJsonSchema({"enum": [s.value for s in ThreadStatus]})


class SubtaskOutput(BaseModel):
    model_config = _LEAN

    id: str
    prompt: str = Field(
        max_length=MAX_PROMPT_CHARS, description="Self-contained: it must make sense alone."
    )
    depends_on: list[str] = Field(default_factory=list, description="Ids it waits for.")


class ThreadOutput(BaseModel):
    model_config = _LEAN

    id: str
    status: Annotated[ThreadStatus, _THREAD_STATUSES] = ThreadStatus.done
    answer: Annotated[str | None, _NULLABLE_STR] = None
    summary: str = ""
    confidence: Annotated[float | None, _NULLABLE_NUM] = None


class PlanOutput(BaseModel):
    """decompose's result: `subtasks` is parallel_solve's input."""

    model_config = _LEAN

    should_split: bool
    reason: str = ""
    subtasks: list[SubtaskOutput] = Field(default_factory=list)


class RunOutput(BaseModel):
    """parallel_solve's result: `results` is merge's input."""

    model_config = _LEAN

    run_id: str
    status: Literal["answered", "partial", "failed"] = Field(
        default="answered", description=_STATUS
    )
    results: list[ThreadOutput]


class MergeOutput(BaseModel):
    """merge's result: the answer and which threads it used."""

    model_config = _LEAN

    answer: str
    used: list[str] = Field(default_factory=list)
    dropped: list[str] = Field(default_factory=list)


class SolveOutput(BaseModel):
    """solve's result: the answer; the full run is at apr://runs/<run_id>."""

    model_config = _LEAN

    run_id: str
    status: Literal["answered", "partial", "failed"] = Field(
        default="answered", description=_STATUS
    )
    answer: str
    confidence: Annotated[float | None, _NULLABLE_NUM] = None


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def subtasks_schema(description: str, *, max_items: int) -> WithJsonSchema:
    """The published schema of a ``list[Subtask]`` argument (validation keeps the full model)."""
    return WithJsonSchema(
        {
            "type": "array",
            "items": _schema(SubtaskOutput),
            "maxItems": max_items,
            "description": description,
        }
    )


def thread_results_schema(description: str, *, max_items: int) -> WithJsonSchema:
    """The published schema of a ``list[ThreadResult]`` argument."""
    return WithJsonSchema(
        {
            "type": "array",
            "items": _schema(ThreadOutput),
            "minItems": 1,
            "maxItems": max_items,
            "description": description,
        }
    )


def merge_strategy_schema(description: str) -> WithJsonSchema:
    """A flat enum of every :class:`MergeStrategy` value (no ``$defs`` entry for one enum)."""
    return WithJsonSchema({"enum": [s.value for s in MergeStrategy], "description": description})
