"""Scripts for the simulated model: what to do for the requests a test (or a demo) cares about.

A :class:`SimScript` is an ordered list of :class:`SimRule`; the first rule whose ``purpose`` and
``pattern`` match a request (and that has uses left) applies. A rule never makes the simulated
model smarter: it pins a reply, its length, its flags (confidence, settles, follow-ups), its
latency or a fault, the way pydantic-ai's ``FunctionModel`` answers what a test says.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import Field, TypeAdapter
from pydantic.dataclasses import dataclass as pydantic_dataclass

from ...errors import ConfigError

__all__ = ["FaultKind", "SimRule", "SimScript"]

#: ``429``/``500``: HTTP errors; ``timeout``: no answer; ``cut``: the stream stops mid-answer;
#: ``junk``: prose instead of the answer; ``empty``: no content; ``length``: cut at max_tokens.
FaultKind = Literal["429", "500", "timeout", "cut", "junk", "empty", "length"]


@pydantic_dataclass
class SimRule:
    """What to do for requests whose last user message matches ``pattern``.

    * ``pattern``: a regex searched with re.S | re.I; ``purpose`` restricts the rule to one role
      (planner, solver, lead, merger, sequential, ...); ``times`` limits it to its first N matches.
    * ``reply`` replaces the text (a dict is sent as JSON) — the reply is then the script's, not
      the simulator's, so it needs no ``[sim]`` mark.
    * ``output_tokens``: the exact length of the reply in tokens (instead of the length model).
    * ``confidence``, ``settles``, ``follow_ups``: the flags of a thread's reply (the JSON
      ThreadAnswer fields, or the free-text trailer); ``confidence`` also sets a merger's.
    * ``fault`` injects a failure; ``ttft_s``/``tokens_per_s`` override the latency (for
      ``timeout``, ``ttft_s`` is how long the call hangs before failing in-process);
      ``retry_after`` goes with a 429.
    """

    pattern: str = "."
    reply: str | dict[str, Any] | None = None
    fault: FaultKind | None = None
    times: int | None = Field(default=None, ge=0)
    ttft_s: float | None = Field(default=None, ge=0)
    tokens_per_s: float | None = Field(default=None, gt=0)
    retry_after: float | None = Field(default=None, ge=0)
    purpose: str | None = None
    output_tokens: int | None = Field(default=None, ge=1)
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    settles: bool | None = None
    follow_ups: list[str] | None = None

    def __post_init__(self) -> None:
        try:
            self._regex = re.compile(self.pattern, re.DOTALL | re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"invalid regex {self.pattern!r}: {exc}") from exc

    def matches(self, text: str, purpose: str) -> bool:
        if self.purpose is not None and self.purpose != purpose:
            return False
        return self._regex.search(text) is not None


@pydantic_dataclass
class SimScript:
    """Ordered rules; the first rule that matches (and has uses left) applies."""

    rules: list[SimRule] = Field(default_factory=list)

    def __post_init__(self) -> None:
        self._used: Counter[int] = Counter()

    def match(self, text: str, purpose: str, *, consume: bool = True) -> SimRule | None:
        """The rule for this request; with ``consume`` it counts towards the rule's ``times``."""
        for index, rule in enumerate(self.rules):
            if rule.times is not None and self._used[index] >= rule.times:
                continue
            if rule.matches(text, purpose):
                if consume:
                    self._used[index] += 1
                return rule
        return None

    def uses(self, index: int) -> int:
        """How often rule ``index`` has been applied."""
        return self._used[index]

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "script") -> SimScript:
        """Parse ``{"rules": [...]}`` or a bare list of rules; ConfigError if invalid."""
        try:
            data = json.loads(text)
            if isinstance(data, list):
                data = {"rules": data}
            return TypeAdapter(cls).validate_python(data)
        except (ValueError, pydantic.ValidationError) as exc:
            raise ConfigError(f"invalid simulation script {source}: {exc}") from exc

    @classmethod
    def from_file(cls, path: str | Path) -> SimScript:
        """Load a JSON script file (see docs/simulated.md)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read simulation script {path}: {exc}") from exc
        return cls.from_json(text, source=str(path))
