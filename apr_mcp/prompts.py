"""Versioned prompt templates, one TOML file per role in ``prompts/``.

Each file has ``version`` (a string; bump it whenever the text changes, since it is part of every
cache key), ``description``, ``system`` and ``user`` templates with ``$name`` placeholders
(:class:`string.Template`, so JSON braces in prompts need no escaping). Rendering fails loudly on
a missing variable, and tests pin the set of variables each prompt uses.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from .llm.base import Message

__all__ = ["Prompt", "load_prompt", "prompt_names"]


def _prompt_dir() -> Path:
    # Installed wheel: apr_mcp/_prompts (force-included from prompts/; the leading underscore keeps
    # it from shadowing this module). Source checkout / editable install: ../prompts.
    packaged = resources.files("apr_mcp").joinpath("_prompts")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "prompts"


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    description: str
    system: str
    user: str

    @property
    def key(self) -> str:
        """``name@version``: what caches and traces record."""
        return f"{self.name}@{self.version}"

    @property
    def variables(self) -> frozenset[str]:
        names: set[str] = set()
        for text in (self.system, self.user):
            for match in Template.pattern.finditer(text):
                name = match.group("named") or match.group("braced")
                if name:
                    names.add(name)
        return frozenset(names)

    def render(self, **values: object) -> list[Message]:
        missing = self.variables - values.keys()
        if missing:
            raise KeyError(f"prompt {self.key} needs {sorted(missing)}")
        text = {k: "" if v is None else str(v) for k, v in values.items()}
        messages = []
        if self.system.strip():
            messages.append(
                Message(role="system", content=Template(self.system).substitute(text).strip())
            )
        messages.append(Message(role="user", content=Template(self.user).substitute(text).strip()))
        return messages


@functools.cache
def load_prompt(name: str) -> Prompt:
    path = _prompt_dir() / f"{name}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyError(f"no prompt named {name!r} in {path.parent}") from None
    return Prompt(
        name=name,
        version=str(data["version"]),
        description=str(data.get("description", "")),
        system=str(data.get("system", "")),
        user=str(data["user"]),
    )


def prompt_names() -> list[str]:
    return sorted(p.stem for p in _prompt_dir().glob("*.toml"))
