"""Small text helpers shared by the engine's messages (no imports, cheap to load anywhere)."""

from __future__ import annotations

__all__ = ["one_line"]


def one_line(text: str, limit: int) -> str:
    """``text`` on one line (runs of whitespace folded to one space), at most ``limit``
    characters; a longer one is cut and ends with "…"."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
