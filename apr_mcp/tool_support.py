"""What every MCP tool call shares: the engine it runs on, progress notifications, and the
guard that turns engine failures and overruns into tool errors.

Kept apart from :mod:`apr_mcp.server` so that module reads as the tools themselves.
"""

import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from .cache import ResultCache
from .config import Settings
from .errors import AprError, SamplingUnavailable
from .llm.base import Model
from .llm.sampling import SamplingModel, sampling_problem
from .schemas import RunEvent
from .trace import RunStore

if TYPE_CHECKING:
    from .engine import Engine
    from .runtime import Runtime

__all__ = ["Backing", "EngineFactory", "Progress", "grace_s", "guarded"]

logger = logging.getLogger(__name__)

#: Builds the engine for one tool call. Receives the host-model backend bound to that call when
#: ``APR_BACKEND=sampling`` (else ``None``). Tests pass one that wires a simulated model.
EngineFactory = Callable[[Model | None], "Engine"]


def grace_s(deadline: float) -> float:
    """Extra time the server waits past a run's deadline for the engine to hand back its partial
    results before it gives up on the call (a safety net; the engine itself honours the deadline):
    a tenth of the deadline, between 1 and 5 seconds (55 s + 5 s stays within host limits)."""
    return min(5.0, max(1.0, deadline / 10))


class Backing:
    """Where engines, the run store and the cache come from (shared by all tool calls)."""

    def __init__(
        self,
        settings: Settings,
        engine_factory: EngineFactory | None,
        run_store: RunStore | None,
        cache: ResultCache | None,
    ) -> None:
        self.settings = settings
        self._factory = engine_factory
        self._run_store = run_store
        self._cache = cache
        self._runtime: Runtime | None = None  # built at the first call
        self._owns_cache = False
        self._cache_given = cache is not None

    @property
    def run_store(self) -> RunStore:
        if self._run_store is None:
            self._run_store = RunStore(self.settings.effective_runs_dir())
        return self._run_store

    @property
    def cache(self) -> ResultCache:
        if self._cache is None:
            if self._runtime is not None:
                self._cache = self._runtime.cache
            else:
                self._cache = ResultCache(
                    self.settings.effective_cache_dir(),
                    enabled=self.settings.cache,
                    lock_timeout=self.settings.cache_lock_timeout,
                )
                self._owns_cache = True
        assert self._cache is not None
        return self._cache

    @asynccontextmanager
    async def engine(self, ctx: Context) -> AsyncIterator["Engine"]:
        """The engine for one call. Built lazily, so a misconfigured backend is reported by the
        tool call (with the fix) instead of stopping the server from starting."""
        sampling = self.settings.backend == "sampling"
        if sampling and (problem := sampling_problem(ctx)) is not None:
            # Fail fast: the engine would otherwise degrade to fallback plans and failed threads.
            raise SamplingUnavailable(problem, backend="sampling")
        host_model = SamplingModel(ctx, timeout_s=self.settings.timeout_s) if sampling else None
        if self._factory is not None:
            yield self._factory(host_model)
            return
        # Imported here, not at the top, for start-up: the server answers tools/list before the
        # engine is loaded, and its warm-up thread (server._warm_up) imports this just after.
        from .runtime import build_runtime

        if sampling:
            # The host model belongs to this call's session, so the engine does too; the cache
            # is the server's (opening it per call costs a few ms, and splits its hit counters).
            runtime = build_runtime(
                self.settings,
                sampling_model=host_model,
                run_store=self.run_store,
                cache=self.cache,
            )
            try:
                yield runtime.engine
            finally:
                with anyio.CancelScope(shield=True):  # also after a cancelled call
                    await runtime.aclose()
            return
        if self._runtime is None:
            self._runtime = build_runtime(self.settings, run_store=self.run_store)
        yield self._runtime.engine

    async def aclose(self) -> None:
        if self._cache is not None and self._owns_cache:
            self._cache.close()
        if self._runtime is not None:
            await self._runtime.aclose()  # closes its cache too
            self._runtime = None
        if self._owns_cache or not self._cache_given:
            self._cache, self._owns_cache = None, False


class Progress:
    """Turns RunEvents into MCP progress notifications.

    MCP requires progress to grow with every notification, but several events (a thread started,
    a follow-up spawned, merging) do not complete anything; they still carry a message worth showing
    (VS Code shows the message, not a percentage). Those advance progress by a fraction that never
    reaches the next whole thread. ``total`` is the number of threads known so far and never
    shrinks;
    it is left out when progress has run past it.
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.progress = 0.0
        self.total = 0

    async def __call__(self, event: RunEvent) -> None:
        if event.kind == "answer":
            return  # answer text streams to a terminal; a host reads the result instead
        if event.completed > self.progress:
            progress = float(event.completed)
        else:
            ceiling = math.floor(self.progress) + 1
            progress = self.progress + min(0.01, (ceiling - self.progress) / 2)
            if not progress > self.progress:
                return
        self.progress = progress
        self.total = max(self.total, event.total)
        # No total rather than a made-up one: before any thread is known, or for the events
        # after the last known thread finished (the count of threads never grows to fit them).
        total = self.total if self.total >= progress and self.total > 0 else None
        try:
            await self._ctx.report_progress(progress, total, event.message)
        except Exception:  # a closed stream must not fail the run; cancellation is not an Exception
            logger.debug("could not send a progress notification", exc_info=True)


def _first_apr_error(group: BaseExceptionGroup[Any]) -> AprError | None:
    for exc in group.exceptions:
        if isinstance(exc, AprError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_apr_error(exc)
            if found is not None:
                return found
    return None


def _fail(exc: AprError) -> ToolError:
    return ToolError(f"{type(exc).__name__}: {exc}")


@asynccontextmanager
async def guarded(deadline: float) -> AsyncIterator[None]:
    """Engine failures → tool errors; a hard stop a little after the deadline (a safety net:
    the engine itself returns partial results at the deadline)."""
    try:
        with anyio.fail_after(deadline + grace_s(deadline)):
            yield
    except AprError as exc:
        raise _fail(exc) from exc
    except ExceptionGroup as group:
        # A task group inside the engine may wrap the AprError that stopped it.
        apr = _first_apr_error(group)
        if apr is None:
            raise
        raise _fail(apr) from group
    except TimeoutError as exc:
        raise ToolError(
            f"no result within the deadline ({deadline:g} s) plus {grace_s(deadline):g} s; "
            "try a larger deadline_s or fewer subtasks"
        ) from exc
