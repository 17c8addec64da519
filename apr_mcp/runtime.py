"""Assemble an Engine from Settings: the one place that composes backends and wrappers.

Per role (planner / solver / merger) the stack is, outermost first::

    CachedModel → RetryingModel → LimitedModel → backend

The cache answers repeated calls before anything else; retries sleep outside concurrency slots;
every attempt takes a slot of one shared AIMD limiter, so all roles back off together when the
provider pushes back. Backends are built once per distinct model id and shared.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import httpx

from .cache import ResultCache
from .config import Settings
from .engine import Engine
from .engine.meta import MetaController
from .llm.base import Model
from .llm.cached import CachedModel
from .llm.factory import build_backend
from .llm.limiter import AdaptiveLimiter, LimitedModel
from .llm.retry import RetryingModel
from .tokens import encoding_for
from .trace import RunStore

__all__ = ["Runtime", "build_engine", "build_runtime"]

_ROLES = ("planner", "solver", "merger")


@dataclass
class Runtime:
    """An engine plus the shared resources behind it (close it when done)."""

    engine: Engine
    cache: ResultCache
    limiter: AdaptiveLimiter
    backends: list[Model] = field(default_factory=list)
    #: False when the caller passed the cache in (it outlives this runtime).
    owns_cache: bool = True

    async def aclose(self) -> None:
        for backend in self.backends:
            await backend.aclose()
        if self.owns_cache:
            self.cache.close()


def build_runtime(
    settings: Settings,
    *,
    sampling_model: Model | None = None,
    run_store: RunStore | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    cache: ResultCache | None = None,
) -> Runtime:
    """Build the engine for ``settings``.

    ``sampling_model`` is the host's model (MCP sampling) and is required when
    ``settings.backend == "sampling"``; ``transport`` lets tests route HTTP backends anywhere;
    ``cache`` shares one open cache across runtimes (the server builds one runtime per sampling
    call) and is then not closed by :meth:`Runtime.aclose`.
    """
    backend_name = settings.require_backend()
    # Load the tokenizer now (~0.2 s, synchronous): inside a run it would stall the event loop
    # just after the first thread started, staggering the others by that much.
    encoding_for()
    owns_cache = cache is None
    if cache is None:
        cache = ResultCache(
            settings.effective_cache_dir(),
            enabled=settings.cache,
            lock_timeout=settings.cache_lock_timeout,
        )
    limiter = AdaptiveLimiter(settings.max_concurrency, max_limit=settings.max_concurrency)

    backends: dict[str, Model] = {}
    roles: dict[str, Model] = {}
    for role in _ROLES:
        if backend_name == "sampling":
            if sampling_model is None:
                from .errors import ConfigError

                raise ConfigError(
                    "APR_BACKEND=sampling uses the MCP host's own model and only works inside "
                    "`apr-mcp serve`; on the command line choose openai, anthropic or simulated."
                )
            backend = sampling_model
        else:
            model_id = settings.role_model(role) or ""  # type: ignore[arg-type]
            if model_id not in backends:
                backends[model_id] = build_backend(settings, role=role, transport=transport)
            backend = backends[model_id]
        wrapped: Model = LimitedModel(backend, limiter)
        wrapped = RetryingModel(wrapped, max_retries=settings.max_retries)
        roles[role] = CachedModel(wrapped, cache)

    engine = Engine(
        settings=settings,
        planner=roles["planner"],
        solver=roles["solver"],
        merger=roles["merger"],
        # The meta-controller model (APR_META_CONTROLLER) reuses the planner's model and stack.
        controller=roles["planner"] if settings.meta_controller else None,
        # Every run's controller also turns limiter changes into backoff/recover decisions.
        controller_factory=functools.partial(MetaController, limiter=limiter),
        run_store=run_store if run_store is not None else RunStore(settings.effective_runs_dir()),
    )
    return Runtime(
        engine=engine,
        cache=cache,
        limiter=limiter,
        backends=list(backends.values()),
        owns_cache=owns_cache,
    )


def build_engine(settings: Settings, **kwargs: object) -> Engine:
    """Shortcut for :func:`build_runtime` when the caller does not manage resources."""
    return build_runtime(settings, **kwargs).engine  # type: ignore[arg-type]
