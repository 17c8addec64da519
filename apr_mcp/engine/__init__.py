"""The reasoning engine: plan → parallel solve → merge. Never imports MCP."""

from .pipeline import Engine, EventCallback

__all__ = ["Engine", "EventCallback"]
