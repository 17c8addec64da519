"""``apr-mcp doctor``: the effective configuration (secrets masked) and live checks."""

from __future__ import annotations

import json
import sys

import httpx

from .config import Settings
from .errors import ConfigError
from .redact import redact

__all__ = ["run_doctor"]


def _print(text: str) -> None:
    # Everything doctor prints passes here: URLs with userinfo, provider replies, settings.
    print(redact(text))


def _line(ok: bool | None, what: str, detail: str = "") -> None:
    mark = {True: "ok  ", False: "FAIL", None: "skip"}[ok]
    _print(f"[{mark}] {what}" + (f": {detail}" if detail else ""))


async def check_endpoint(settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> tuple[bool | None, str]:
    """Ask the configured endpoint for its model list (cheap, no tokens spent)."""
    backend = settings.backend
    if backend in (None, "sampling", "simulated"):
        return None, f"backend {backend or 'unset'} has no endpoint to check"
    base = settings.effective_base_url() or ""
    key = settings.effective_api_key()
    headers: dict[str, str] = {}
    if backend == "openai":
        url = f"{base}/models"
        if key:
            headers["Authorization"] = f"Bearer {key}"
    else:
        url = f"{base}/v1/models"
        headers["anthropic-version"] = "2023-06-01"
        if key:
            headers["x-api-key"] = key
    try:
        async with httpx.AsyncClient(timeout=settings.connect_timeout_s, transport=transport) as client:
            resp = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        return False, f"GET {url} failed: {exc!r}"
    if resp.status_code >= 400:
        return False, f"GET {url} → HTTP {resp.status_code}: {resp.text[:200]}"
    try:
        ids = [m.get("id") for m in resp.json().get("data", [])]
    except (ValueError, AttributeError):
        ids = []
    want = settings.model
    if want and ids and want not in ids:
        return False, f"endpoint answers, but model {want!r} is not among {ids[:10]}"
    return True, f"GET {url} → {len(ids)} models" + (f", {want!r} available" if want and want in ids else "")


async def run_doctor(settings: Settings) -> int:
    _print("Effective configuration (secrets masked):")
    _print(json.dumps(settings.masked(), indent=2, default=str))
    failures = 0

    try:
        settings.require_backend()
        _line(True, "backend", str(settings.backend))
    except ConfigError as exc:
        _line(False, "backend", str(exc))
        failures += 1

    ok, detail = await check_endpoint(settings)
    _line(ok, "endpoint", detail)
    failures += ok is False

    from .tokens import count_tokens, encoding_for

    enc = encoding_for("cl100k_base")
    _line(enc is not None, "tokenizer", "tiktoken cl100k_base loaded offline" if enc else
          f"tiktoken unavailable; counts are estimates ({count_tokens('hello world')} for 'hello world')")

    from .prompts import load_prompt, prompt_names

    names = prompt_names()
    try:
        keys = [load_prompt(n).key for n in names]
        _line(bool(keys), "prompts", ", ".join(keys))
    except (KeyError, ValueError) as exc:
        _line(False, "prompts", str(exc))
        failures += 1

    from .cache import cache_health

    cache_dir = settings.effective_cache_dir()
    if settings.cache:
        health = cache_health(cache_dir, lock_timeout=settings.cache_lock_timeout)
        if health.ok:
            _line(True, "cache", f"{cache_dir} is readable and writable")
        else:
            _line(False, "cache", f"{health.status}: runs go on without it; fix: {health.fix}")
            failures += 1
    else:
        _line(None, "cache", "disabled (APR_CACHE=off)")
    sys.stdout.flush()
    return 1 if failures else 0
