"""``apr-mcp doctor``: the effective configuration (secrets masked) and live checks that take the
path a run takes.

For an HTTP backend (``openai``, ``anthropic``) it lists the served models, then makes a tiny
completion, a tiny streamed completion (and measures tokens/s) and a tiny structured completion
(and says which structured mode the endpoint supports), each through the same backend class a
run uses. It exits non-zero only on what would stop a run: no backend, an unreachable endpoint,
a rejected key, a completion or a stream that fails. What a run survives (a model list without
the configured id, as llama.cpp servers list a file path; a model too small to write valid JSON,
since plans then fall back to heuristics) is a warning.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import anyio
import httpx
from pydantic import BaseModel, Field

from .config import Settings
from .errors import ConfigError, ModelError, ModelOutputError, StreamInterrupted
from .llm.base import Message, Model, ModelRequest
from .redact import redact

__all__ = ["run_doctor"]

Mark = Literal["ok", "warn", "fail", "skip"]
_MARKS: dict[Mark, str] = {"ok": "ok  ", "warn": "warn", "fail": "FAIL", "skip": "skip"}

#: Seconds each live check may take (a cold local server loads its model on the first call).
_CHECK_TIMEOUT_S = 120.0


def _print(text: str) -> None:
    # Everything doctor prints passes here: URLs with userinfo, provider replies, settings.
    print(redact(text), flush=True)


def _line(ok: bool | None | Mark, what: str, detail: str = "") -> None:
    """One check's line; ``ok`` is True/False/None (ok/FAIL/skip) or a :data:`Mark`."""
    mark: Mark = ok if isinstance(ok, str) else "skip" if ok is None else "ok" if ok else "fail"
    _print(f"[{_MARKS[mark]}] {what}" + (f": {detail}" if detail else ""))


async def check_endpoint(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> tuple[bool | None | Mark, str]:
    """Ask the configured endpoint for its model list (cheap, no tokens spent).

    ``fail`` only when nothing could work: the endpoint cannot be reached or rejects the key. A
    list without the configured id is a warning: llama.cpp servers list a file path or alias and
    answer any id, and the completion check decides.
    """
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
        url = f"{base.removesuffix('/v1')}/v1/models"
        headers["anthropic-version"] = "2023-06-01"
        if key:
            headers["x-api-key"] = key
    try:
        async with httpx.AsyncClient(
            timeout=settings.connect_timeout_s, transport=transport
        ) as client:
            resp = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        return False, f"GET {url} failed: {exc!r}; is the server running and APR_BASE_URL right?"
    if resp.status_code in (401, 403):
        provider_key = "OPENAI_API_KEY" if backend == "openai" else "ANTHROPIC_API_KEY"
        hint = f"APR_API_KEY or {provider_key}"
        return False, f"GET {url} → HTTP {resp.status_code}: the key was rejected; set {hint}"
    if resp.status_code >= 400:
        return "warn", (
            f"GET {url} → HTTP {resp.status_code}; the server lists no models "
            "(the completion check below decides)"
        )
    try:
        ids = [str(m.get("id")) for m in resp.json().get("data", [])]
    except (ValueError, AttributeError, TypeError):
        return "warn", f"GET {url} answered, but not with a model list: {resp.text[:120]!r}"
    wanted = [m for m in dict.fromkeys((settings.model, settings.role_model("planner"))) if m]
    missing = [m for m in wanted if m not in ids]
    if missing and ids:
        paths = any("/" in i or i.endswith(".gguf") for i in ids)
        why = (
            "it lists file paths (llama.cpp servers answer any id; --model_alias names it)"
            if paths
            else "ids may be aliases"
        )
        return "warn", (
            f"endpoint answers, but {', '.join(repr(m) for m in missing)} is not among "
            f"{ids[:10]}; {why}; the completion check below decides"
        )
    have = [m for m in wanted if m in ids]
    return True, f"GET {url} → {len(ids)} models" + (
        f", {', '.join(repr(m) for m in have)} available" if have else ""
    )


class _Probe(BaseModel):
    """The tiny structured answer doctor asks for."""

    word: str = Field(description="One lowercase English word.", max_length=40)
    ok: bool = Field(description="Always true.")


def _ask(text: str, max_tokens: int, purpose: str) -> ModelRequest:
    return ModelRequest(
        messages=[Message(role="user", content=text)],
        max_tokens=max_tokens,
        purpose=purpose,
        timeout_s=_CHECK_TIMEOUT_S,
    )


async def _completion(model: Model) -> tuple[Mark, str]:
    response = await model.complete(_ask("Reply with one word: ready", 8, "doctor"))
    return "ok", f"{response.text.strip()[:40]!r} in {response.latency_s:.2f} s"


async def _streaming(model: Model) -> tuple[Mark, str]:
    pieces = 0

    def count(_: str) -> None:
        nonlocal pieces
        pieces += 1

    prompt = "Write the numbers from one to forty in words, separated by commas."
    response = await model.complete(_ask(prompt, 64, "doctor"), on_token=count)
    ttft = response.ttft_s or 0.0
    # Without provider usage, servers that send one chunk per token (llama.cpp, Ollama) are
    # counted better by their chunks than by our tokenizer, which is not the model's.
    reported = response.usage.reported
    tokens = response.usage.output_tokens if reported else max(pieces, response.usage.output_tokens)
    gen_s = max(response.latency_s - ttft, 1e-6)
    rate = f"{(tokens - 1) / gen_s:.0f} tokens/s" if tokens > 2 else "too short to measure"
    how = "reported by the provider" if reported else "one per chunk or counted locally"
    return "ok", f"{tokens} tokens ({how}), first token after {ttft:.2f} s, then {rate}"


async def _parallel(model: Model) -> tuple[Mark, str]:
    """Two streams at once, as a split run makes them: does the server finish both?"""
    outcomes: list[float | StreamInterrupted] = []

    async def one(i: int) -> None:
        prompt = f"Write the numbers from {i} to {i + 30} in words, separated by commas."
        try:
            outcomes.append((await model.complete(_ask(prompt, 32, "doctor"))).latency_s)
        except StreamInterrupted as exc:
            outcomes.append(exc)

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for i in (1, 50):
            tg.start_soon(one, i)
    wall = time.monotonic() - started
    cut = [o for o in outcomes if isinstance(o, StreamInterrupted)]
    if cut:
        # Retries would run into the same interruption: parallel threads of a run fail.
        return "warn", (
            f"{len(cut)} of 2 concurrent streams interrupted by the server ({cut[0].message[:80]})"
            "; split runs lose threads — for llama-cpp-python add --interrupt_requests False, "
            "or set APR_MAX_CONCURRENCY=1"
        )
    return "ok", f"2 concurrent streams both finished in {wall:.2f} s"


async def _structured(model: Model, settings: Settings) -> tuple[Mark, str]:
    from .llm.structured import complete_structured

    native_before = model.supports_json_schema
    request = _ask('Answer in JSON: a word for a colour, and "ok": true.', 60, "doctor")
    value: _Probe | None = None
    problem = ""
    try:
        value, _ = await complete_structured(model, request, _Probe)
    except ModelOutputError as exc:
        problem = exc.message[:160]
    if native_before and model.supports_json_schema:
        mode = "native (response_format json_schema)"
    elif native_before:
        mode = "JSON in the prompt: the endpoint refused response_format (remembered)"
    elif settings.structured == "prompt":
        mode = "JSON in the prompt (APR_STRUCTURED=prompt)"
    else:
        mode = "JSON in the prompt (the backend has no native schema mode)"
    if value is None:
        return "warn", (
            f"{mode}; no valid JSON even after a repair ({problem}); a run still answers "
            "(plans fall back to heuristics), a larger model plans better"
        )
    return "ok", f"{mode}; got {value.model_dump()}"


async def check_model_path(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> int:
    """Completion, streaming (with tokens/s) and structured output through the run's backend.

    Prints one line per check; returns how many would stop a run.
    """
    from .llm.factory import build_backend

    failures = 0
    checks: list[tuple[str, bool, Callable[[Model], Awaitable[tuple[Mark, str]]]]] = [
        ("completion", False, _completion),
        ("streaming", True, _streaming),
        ("parallel", True, _parallel),
        ("structured", True, lambda m: _structured(m, settings)),
    ]
    for name, stream, check in checks:
        model = build_backend(settings, role="solver", transport=transport)
        model.stream = stream  # type: ignore[attr-defined]  # HTTP backends only (checked above)
        started = time.monotonic()
        try:
            mark, detail = await check(model)
        except StreamInterrupted as exc:
            mark, detail = (
                "fail",
                (f"{exc.message}; a llama-cpp-python server needs --interrupt_requests False"),
            )
        except ModelError as exc:
            mark, detail = "fail", f"{exc} ({time.monotonic() - started:.1f} s)"
        finally:
            await model.aclose()
        _line(mark, name, detail)
        failures += mark == "fail"
        if mark == "fail" and name == "completion":
            _line("skip", "streaming, parallel, structured", "the completion failed")
            break
    return failures


async def run_doctor(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> int:
    """Print the configuration and the checks; 1 if something would stop a run, else 0."""
    _print("Effective configuration (secrets masked):")
    _print(json.dumps(settings.masked(), indent=2, default=str))
    failures = 0

    configured = True
    try:
        settings.require_backend()
        _line(True, "backend", str(settings.backend))
    except ConfigError as exc:
        _line(False, "backend", str(exc))
        failures += 1
        configured = False

    if configured:
        ok, detail = await check_endpoint(settings, transport=transport)
        _line(ok, "endpoint", detail)
        failures += ok is False
        if settings.backend in ("openai", "anthropic") and ok is not False:
            failures += await check_model_path(settings, transport=transport)

    from .tokens import count_tokens, encoding_for

    enc = encoding_for("cl100k_base")
    _line(
        enc is not None,
        "tokenizer",
        "tiktoken cl100k_base loaded offline"
        if enc
        else "tiktoken unavailable; counts are estimates "
        f"({count_tokens('hello world')} for 'hello world')",
    )

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
