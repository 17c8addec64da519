"""One redaction function for everything apr-mcp writes: tool errors, traces, reports, JSONL, logs.

Providers sometimes echo the request back in an error body, ``Authorization`` header included,
and users put credentials in URLs (``https://user:pass@host/v1``). Whatever reaches a surface a
person or another program reads goes through :func:`redact` first:

- the secrets apr-mcp was configured with (``APR_API_KEY``, ``OPENAI_API_KEY``,
  ``ANTHROPIC_API_KEY``, ``APR_HTTP_TOKEN``), registered by :class:`~apr_mcp.config.Settings`
  through :func:`register_secret`, wherever they appear;
- the value after a credential-like name (``Authorization``, ``Proxy-Authorization``,
  ``x-api-key``, ``api-key``/``api_key``, ``access_token``, ``client_secret``, ``password``), in
  header, JSON, Python-repr or ``key=value`` form, escaped or not;
- ``Bearer``/``Basic`` credentials and provider key shapes (``sk-…``) anywhere;
- userinfo in URLs and credential query parameters (``?api_key=…``, ``&token=…``).

It is applied at the boundaries, where text is created from a provider's reply or written out,
never in the engine: redaction is for output, not for logic.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

__all__ = [
    "REDACTED",
    "RedactingFilter",
    "install_log_redaction",
    "redact",
    "redact_data",
    "register_secret",
]

#: What a secret is replaced with.
REDACTED = "[REDACTED]"

#: Registered secrets shorter than this are not replaced verbatim (a 3-character "key" would
#: blank out ordinary words); the patterns below still catch them in headers and URLs.
MIN_SECRET_LEN = 8

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_secrets_re: re.Pattern[str] | None = None

_NAMES = (
    r"(?:proxy[-_])?authorization|x[-_]api[-_]key|x[-_]goog[-_]api[-_]key|api[-_]?key"
    r"|(?:access|refresh|id|auth|http|bearer)[-_]?token|client[-_]?secret|secret[-_]?key"
    r"|password"
)
# name, optional closing quote (plain, escaped in JSON text), separator, optional opening
# quote, optional auth scheme; the value runs to the next quote, space or delimiter.
_NAMED = re.compile(
    rf"""(?ix)
    (?P<head>(?<![A-Za-z0-9])(?:{_NAMES})(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?
       (?>(?:(?:bearer|basic|token)\s+)?))  # atomic: a scheme is never taken for the value
    (?P<value>(?!\[REDACTED\])(?!(?:null|none|unset|true|false)\b)[^\s"'\\,;&}}\]<>]+)
    """
)
#: Substrings (lower case) without which :data:`_NAMED` cannot match.
_NAMED_HINTS = ("authorization", "key", "token", "secret", "password")
# The credential must hold a digit or "=" (tokens and base64 do), so prose like "a basic
# understanding" is left alone.
_SCHEME = re.compile(
    r"(?i)\b(bearer|basic)\s+(?!\[REDACTED\])(?=[A-Za-z0-9._~+/=-]*[0-9=])[A-Za-z0-9._~+/=-]{8,}"
)
_KEY_SHAPES = re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")
# userinfo with a password, or a user part that looks like a token (``https://<token>@host``);
# a plain user name (``ssh://git@github.com``) is kept.
_USERINFO = re.compile(
    r"(?i)\b([a-z][a-z0-9+.-]*://)"
    r"(?:[^/\s:@\"'<>]*:[^/\s@\"'<>]*|(?=[^/\s:@\"'<>]*[0-9])[^/\s:@\"'<>]{16,})@"
)
_QUERY = re.compile(
    r"(?i)([?&](?:api[-_]?key|key|token|access[-_]?token|sig|signature|password|secret)=)"
    r"(?!\[REDACTED\])[^&\s\"'#<>]+"
)


def _looks_secret(value: str) -> bool:
    # Local servers take placeholder keys ("lm-studio", "not-needed", "ollama"): replacing those
    # everywhere would rewrite ordinary answers. Real keys are long or carry digits.
    if len(value) < MIN_SECRET_LEN:
        return False
    return len(value) >= 20 or any(c.isdigit() for c in value)


def register_secret(value: str | None) -> None:
    """Remember ``value`` so :func:`redact` replaces it wherever it appears (process-wide)."""
    global _secrets_re
    if not value or not _looks_secret(value):
        return
    with _secrets_lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first, so a secret that contains another is replaced whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _secrets_re = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str, *, named: bool = True) -> str:
    """``text`` with every credential it carries replaced by ``[REDACTED]``.

    ``named=False`` skips the ``name: value`` rule (``password = …``, ``api_key=…``): for
    content a person asked for — answers that quote code, prompts built from the user's code —
    where that rule would rewrite ordinary source lines. Credentials can only reach such content
    through an error (redacted in full where it is created) or verbatim (the other rules)."""
    if not text:
        return text
    known = _secrets_re
    if known is not None:
        text = known.sub(REDACTED, text)
    # Cheap substring tests first: most text (answers, prompts) has none of these shapes, and
    # the patterns cost milliseconds per 100 kB.
    lower = text.lower()
    if named and any(word in lower for word in _NAMED_HINTS):
        text = _NAMED.sub(lambda m: m.group("head") + REDACTED, text)
    if "bearer" in lower or "basic" in lower:
        text = _SCHEME.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    if "sk-" in text:
        text = _KEY_SHAPES.sub("sk-" + REDACTED, text)
    if "://" in text and "@" in text:
        text = _USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    if "=" in text:
        text = _QUERY.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def redact_data(value: Any, *, named: bool = True) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings) with :func:`redact` applied to every
    string, keys included; other values are returned as they are."""
    if isinstance(value, str):
        return redact(value, named=named)
    if isinstance(value, dict):
        return {redact_data(k, named=named): redact_data(v, named=named) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(v, named=named) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """A handler filter that redacts the formatted message and any traceback of a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken format string: the handler reports it
            return True
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add :class:`RedactingFilter` to every handler of ``logger`` (default: the root logger).

    Handler filters see records propagated from every child logger (``httpx``, ``mcp``,
    ``apr_mcp.*``), which logger filters do not. Idempotent."""
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
