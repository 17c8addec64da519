"""Which answers are usable: the hook between a caller that validates and the cache that stores.

The cache cannot tell on its own whether a reply is usable: a structured reply may be perfectly
formed text that fails its pydantic type, and a reply cut at ``max_tokens`` may be exactly what a
caller asked for. The caller declares its check around the model call with :func:`usable_when`;
:class:`~apr_mcp.llm.cached.CachedModel` then stores — and serves from disk — only replies that
pass it. A context variable carries the check, so every wrapper between the two stays unchanged,
and it reaches only calls made inside the ``with`` block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["TextCheck", "any_text", "usable_check", "usable_when"]

#: True when a reply's text is usable by the caller.
TextCheck = Callable[[str], bool]

_CHECK: ContextVar[TextCheck | None] = ContextVar("apr_usable_check", default=None)


@contextmanager
def usable_when(check: TextCheck) -> Iterator[None]:
    """Model calls made inside the block are cached only if ``check(reply text)`` is true."""
    token = _CHECK.set(check)
    try:
        yield
    finally:
        _CHECK.reset(token)


def any_text(_: str) -> bool:
    """The check of a call whose reply may be cut at ``max_tokens`` on purpose (a bounded lead
    line): any non-empty reply is usable, cut or not. ``with usable_when(any_text): ...``"""
    return True


def usable_check() -> TextCheck | None:
    """The check declared by the innermost :func:`usable_when` around this call, if any."""
    return _CHECK.get()
