"""The MCP server: four tools, run-trace resources and slash-command prompts over the engine.

This module is a thin shell. Each tool validates its arguments (pydantic, through the SDK), asks
the engine, and renders the answer twice: structured content that follows the tool's output
schema (the chaining contract lives in :mod:`apr_mcp.schemas`) and a short text a person or a
host model can read. Engine failures (:class:`~apr_mcp.errors.AprError`) become ``is_error``
results carrying the message; the server never crashes on them.

The engine runs inside the request's task, so when the client cancels the request the SDK
cancels that task, and the cancellation reaches every in-flight model stream.
"""

import importlib
import inspect
import logging
import math
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
import pydantic_core
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from . import __version__
from ._net import listen, serve_on, shown_host, uvicorn_server
from .config import Settings, load_settings
from .errors import AprError, SamplingUnavailable
from .llm.base import Model
from .llm.sampling import SamplingModel, sampling_problem
from .prompts import load_prompt, prompt_names
from .schemas import (
    Decision,
    MergeResult,
    MergeStrategy,
    Plan,
    RunEvent,
    SolveResult,
    SolveRun,
    Subtask,
    ThreadResult,
)
from .tokens import encoding_for

if TYPE_CHECKING:
    from .cache import ResultCache
    from .engine import Engine
    from .trace import RunStore

__all__ = [
    "EngineFactory",
    "close_server",
    "create_server",
    "run_server",
    "run_stdio",
]

logger = logging.getLogger(__name__)

#: Builds the engine for one tool call. Receives the host-model backend bound to that call when
#: ``APR_BACKEND=sampling`` (else ``None``). Tests pass one that wires a simulated model.
EngineFactory = Callable[[Model | None], "Engine"]


def _grace_s(deadline: float) -> float:
    """Extra time the server waits past a run's deadline for the engine to hand back its partial
    results before it gives up on the call (a safety net; the engine itself honours the deadline):
    a tenth of the deadline, between 1 and 5 seconds (55 s + 5 s stays within host limits)."""
    return min(5.0, max(1.0, deadline / 10))


INSTRUCTIONS = """\
apr-mcp adds adaptive parallel reasoning: it splits a broad question into independent subtasks,
solves them concurrently with a language model and merges the results. Use `solve` for the whole
pipeline in one call. To steer it yourself: `decompose` → (edit the subtasks) → `parallel_solve` →
`merge`, passing `subtasks` and `results` along unchanged. Do not use it for simple or strictly
sequential questions — answer those directly."""


def _annotations(title: str) -> ToolAnnotations:
    return ToolAnnotations(
        title=title,
        read_only_hint=True,  # it reads and answers; its only writes are its own cache and traces
        destructive_hint=False,
        idempotent_hint=True,  # a repeated call has no further side effect (it may hit the cache)
        open_world_hint=True,  # it calls an external language model
    )


Question = Annotated[
    str, Field(min_length=1, max_length=50_000, description="The question or task, in full.")
]
ContextArg = Annotated[
    str,
    Field(
        max_length=200_000,
        description="Background every thread should see: code, error output, documents, constraints.",
    ),
]
Deadline = Annotated[
    float | None,
    Field(
        gt=0,
        le=3600,
        description="Seconds before the run stops and returns what is finished (marked partial). "
        "Default: the server's APR_DEADLINE_S (55 s, under common host time limits).",
    ),
]
MaxSubtasks = Annotated[
    int | None,
    Field(
        ge=1, le=64, description="Upper bound on the number of subtasks (default: APR_MAX_THREADS)."
    ),
]


class _Backing:
    """Where engines, the run store and the cache come from (shared by all tool calls)."""

    def __init__(
        self,
        settings: Settings,
        engine_factory: EngineFactory | None,
        run_store: "RunStore | None",
        cache: "ResultCache | None",
    ) -> None:
        self.settings = settings
        self._factory = engine_factory
        self._run_store = run_store
        self._cache = cache
        self._runtime: Any = None  # apr_mcp.runtime.Runtime, built at the first call
        self._owns_cache = False
        self._cache_given = cache is not None

    @property
    def run_store(self) -> "RunStore":
        if self._run_store is None:
            from .trace import RunStore

            self._run_store = RunStore(self.settings.effective_runs_dir())
        return self._run_store

    @property
    def cache(self) -> "ResultCache":
        if self._cache is None:
            if self._runtime is not None:
                self._cache = self._runtime.cache
            else:
                from .cache import ResultCache

                self._cache = ResultCache(
                    self.settings.effective_cache_dir(), enabled=self.settings.cache
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
        from .runtime import build_runtime

        if sampling:
            # The host model belongs to this call's session, so the engine does too; the cache
            # is the server's (opening it per call costs a few ms, and splits its hit counters).
            runtime = build_runtime(
                self.settings, sampling_model=host_model, run_store=self.run_store,
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


class _Progress:
    """Turns RunEvents into MCP progress notifications.

    MCP requires progress to grow with every notification, but several events (a thread started,
    a follow-up spawned, merging) do not complete anything; they still carry a message worth showing
    (VS Code shows the message, not a percentage). Those advance progress by a fraction that never
    reaches the next whole thread. ``total`` is the number of threads known so far and never shrinks.
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.progress = 0.0
        self.total = 0

    async def __call__(self, event: RunEvent) -> None:
        if event.completed > self.progress:
            progress = float(event.completed)
        else:
            ceiling = math.floor(self.progress) + 1
            progress = self.progress + min(0.01, (ceiling - self.progress) / 2)
            if not progress > self.progress:
                return
        self.progress = progress
        self.total = max(self.total, event.total, math.ceil(progress))
        try:
            await self._ctx.report_progress(progress, self.total or None, event.message)
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


def _result(model: BaseModel, text: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=model.model_dump(mode="json", by_alias=True),
    )


def _json(value: Any) -> str:
    return pydantic_core.to_json(value).decode()


# ----- text mirrors: what a person (or a host that ignores structured content) reads -----


def plan_text(plan: Plan) -> str:
    """A readable plan; ends with the subtasks as JSON for hosts that only read text."""
    if plan.should_split and plan.subtasks:
        head = (
            f"Split into {len(plan.subtasks)} self-contained subtasks (complexity "
            f"{plan.complexity}/10, by {plan.source}): {plan.reason}"
        )
    else:
        head = (
            f"Not worth splitting ({plan.reason or 'simple or sequential question'}): answer it "
            f"directly or call solve. Complexity {plan.complexity}/10, planned by {plan.source}."
        )
    lines = [head]
    for s in plan.subtasks:
        after = f" (after {', '.join(s.depends_on)})" if s.depends_on else ""
        lines.append(f"- {s.id}{after}: {s.prompt}")
    if plan.subtasks:
        lines.append("Pass `subtasks` unchanged (or edited) to parallel_solve:")
        lines.append(
            _json([s.model_dump(mode="json", exclude_defaults=True) for s in plan.subtasks])
        )
    return "\n".join(lines)


#: Decisions listed in a text mirror (the structured content and the trace have them all).
_MAX_DECISIONS = 12


def _why_partial(decisions: list[Decision]) -> str:
    kinds = [d.kind for d in decisions]
    if "budget" in kinds:
        return "the token budget was spent"
    if "deadline" in kinds:
        return "the deadline was reached"
    return "the deadline or budget was hit"


def decisions_text(decisions: list[Decision]) -> list[str]:
    """Why the run split (or not), stopped, cancelled, spawned or backed off: one line each."""
    if not decisions:
        return []
    lines = ["Decisions:"]
    for d in decisions[:_MAX_DECISIONS]:
        reason = d.reason if len(d.reason) <= 300 else d.reason[:299] + "…"
        lines.append(f"- [{d.at_s:.1f}s] {d.kind}: {reason}")
    if len(decisions) > _MAX_DECISIONS:
        lines.append(f"- … {len(decisions) - _MAX_DECISIONS} more in the trace")
    return lines


def run_text(run: SolveRun) -> str:
    m = run.metrics
    head = (
        f"Run {run.run_id}: {m.threads_done}/{m.threads or len(run.results)} threads done"
        + (f", {m.threads_failed} failed" if m.threads_failed else "")
        + (f", {m.threads_cancelled} cancelled" if m.threads_cancelled else "")
        + (f", {m.threads_skipped} skipped" if m.threads_skipped else "")
        + f" in {m.wall_s:.1f} s (critical path {m.critical_path_s:.1f} s), "
        f"{m.tokens_in + m.tokens_out} tokens, {m.cache_hits} cache hits"
        + (f" — PARTIAL: {_why_partial(run.decisions)}" if run.partial else "")
    )
    lines = [head, *decisions_text(run.decisions)]
    for r in run.results:
        note = r.summary or (r.answer or "")[:200] or r.error or r.reason or ""
        flag = " (cached)" if r.cached else ""
        lines.append(f"- {r.id} {r.status.value}{flag}: {note}")
    lines.append("Pass `results` unchanged to merge:")
    lines.append(_json([r.model_dump(mode="json", exclude_defaults=True) for r in run.results]))
    return "\n".join(lines)


def merge_text(merged: MergeResult) -> str:
    conf = f", confidence {merged.confidence:.2f}" if merged.confidence is not None else ""
    dropped = f"; dropped {', '.join(merged.dropped)}" if merged.dropped else ""
    note = merged.note
    return (
        f"{merged.answer}\n\n— {merged.strategy.value} of {', '.join(merged.used) or 'no threads'}"
        f"{dropped}{conf}" + (f" ({note})" if note else "")
    )


def solve_text(result: SolveResult) -> str:
    m = result.metrics
    conf = f", confidence {result.confidence:.2f}" if result.confidence is not None else ""
    partial = f" PARTIAL ({_why_partial(result.decisions)});" if result.partial else ""
    tail = "\n".join(decisions_text(result.decisions))
    return (
        f"{result.answer}\n\n—{partial} run {result.run_id}: {result.strategy}, {m.threads} threads, "
        f"{m.wall_s:.1f} s, {m.tokens_in + m.tokens_out} tokens{conf}"
        + (f", {result.backend}/{result.model}" if result.backend else "")
        + f". Trace: apr://runs/{result.run_id}"
        + (f"\n{tail}" if tail else "")
    )


# ----- the server -----


def create_server(
    settings: Settings | None = None,
    *,
    engine_factory: EngineFactory | None = None,
    run_store: "RunStore | None" = None,
    cache: "ResultCache | None" = None,
) -> MCPServer[Any]:
    """The apr-mcp MCP server.

    ``settings`` defaults to :func:`~apr_mcp.config.load_settings`. ``engine_factory`` replaces the
    default engine (built from settings by :mod:`apr_mcp.runtime`); ``run_store`` and ``cache``
    back the ``apr://`` resources. Call :func:`close_server` when done.
    """
    settings = settings if settings is not None else load_settings()
    backing = _Backing(settings, engine_factory, run_store, cache)
    server: MCPServer[Any] = MCPServer(
        "apr-mcp",
        title="Adaptive parallel reasoning",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level="WARNING",
    )
    server.apr_backing = backing  # type: ignore[attr-defined]

    def deadline_of(deadline_s: float | None) -> float:
        return deadline_s if deadline_s is not None else settings.deadline_s

    def tool(title: str, annotations: ToolAnnotations) -> Callable[[Callable[..., Any]], Any]:
        def register(fn: Callable[..., Any]) -> Any:
            # cleandoc: hosts show the description verbatim, without the source's indentation.
            server.add_tool(
                fn,
                title=title,
                description=inspect.cleandoc(fn.__doc__ or ""),
                annotations=annotations,
            )
            return fn

        return register

    @asynccontextmanager
    async def guarded(deadline: float) -> AsyncIterator[None]:
        """Engine failures → tool errors; a hard stop a little after the deadline (a safety net:
        the engine itself returns partial results at the deadline)."""
        try:
            with anyio.fail_after(deadline + _grace_s(deadline)):
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
                f"no result within the deadline ({deadline:g} s) plus {_grace_s(deadline):g} s; "
                "try a larger deadline_s or fewer subtasks"
            ) from exc

    @tool(
        "Decompose a question into parallel subtasks",
        _annotations("Decompose"),
    )
    async def decompose(
        question: Question, ctx: Context, context: ContextArg = "", max_subtasks: MaxSubtasks = None
    ) -> Annotated[CallToolResult, Plan]:
        """Plan how to split a broad question into independent, self-contained subtasks — or decide
        that it should not be split (simple or strictly sequential questions come back with
        should_split=false). Use it before parallel_solve when you want to review or edit the plan;
        use solve instead to do everything in one call. Output `subtasks` is parallel_solve's input."""
        async with guarded(settings.deadline_s), backing.engine(ctx) as engine:
            plan = await engine.decompose(question, context=context, max_subtasks=max_subtasks)
        return _result(plan, plan_text(plan))

    @tool(
        "Solve subtasks in parallel",
        _annotations("Parallel solve"),
    )
    async def parallel_solve(
        question: Question,
        ctx: Context,
        subtasks: Annotated[
            list[Subtask] | None,
            Field(
                max_length=64,
                description="Subtasks to run (decompose's `subtasks`, or your own: id, prompt, "
                "depends_on). Omit to let the planner split the question first.",
            ),
        ] = None,
        context: ContextArg = "",
        max_concurrency: Annotated[
            int | None, Field(ge=1, le=64, description="Threads at once.")
        ] = None,
        deadline_s: Deadline = None,
    ) -> Annotated[CallToolResult, SolveRun]:
        """Run several independent subtasks concurrently with a language model, each in its own
        thread that never sees its siblings; dependencies (depends_on) start when their inputs are
        ready. Use it for broad questions with separable parts (compare options, survey aspects,
        test several hypotheses). Reports progress per thread; at the deadline it returns the
        finished threads marked partial. Output `results` is merge's input."""
        deadline = deadline_of(deadline_s)
        async with guarded(deadline), backing.engine(ctx) as engine:
            run = await engine.parallel_solve(
                question,
                subtasks,
                context=context,
                max_concurrency=max_concurrency,
                deadline_s=deadline,
                on_event=_Progress(ctx),
            )
        return _result(run, run_text(run))

    @tool(
        "Merge parallel results into one answer",
        _annotations("Merge"),
    )
    async def merge(
        question: Question,
        results: Annotated[
            list[ThreadResult],
            Field(
                min_length=1, max_length=256, description="parallel_solve's `results`, unchanged."
            ),
        ],
        ctx: Context,
        strategy: Annotated[
            MergeStrategy,
            Field(
                description="synthesize (combine), vote (pick the majority answer) or rank (order the candidates)."
            ),
        ] = MergeStrategy.synthesize,
        context_budget_tokens: Annotated[
            int | None,
            Field(
                ge=256,
                le=200_000,
                description="Token budget of the merge prompt (default APR_MERGE_BUDGET_TOKENS).",
            ),
        ] = None,
    ) -> Annotated[CallToolResult, MergeResult]:
        """Merge per-thread results into one answer with provenance (which threads were used or
        dropped), keeping the merge prompt within a token budget. Use it after parallel_solve."""
        async with guarded(settings.deadline_s), backing.engine(ctx) as engine:
            merged = await engine.merge(
                question, results, strategy=strategy, context_budget_tokens=context_budget_tokens
            )
        return _result(merged, merge_text(merged))

    @tool(
        "Solve with adaptive parallel reasoning",
        _annotations("Solve (plan, parallel solve, merge)"),
    )
    async def solve(
        question: Question,
        ctx: Context,
        context: ContextArg = "",
        mode: Annotated[
            Literal["general", "debug"],
            Field(
                description="debug: the question is an error (message, traceback), the context the code; tests hypotheses about its cause in parallel."
            ),
        ] = "general",
        strategy: Annotated[
            Literal["adaptive", "sequential", "fixed"],
            Field(
                description="adaptive (decide whether and how wide to split), sequential (one call), fixed (always split)."
            ),
        ] = "adaptive",
        merge_strategy: Annotated[
            MergeStrategy | None, Field(description="How to merge (default: the engine decides).")
        ] = None,
        max_subtasks: MaxSubtasks = None,
        deadline_s: Deadline = None,
    ) -> Annotated[CallToolResult, SolveResult]:
        """Answer a broad or multi-part question in one call: decide whether splitting helps, solve
        the subtasks concurrently, stop early when one settles it, and merge the results. Good for
        comparisons, surveys, research-style questions and debugging with several hypotheses
        (mode="debug": the error as `question`, the code as `context`). Not for simple factual
        questions."""
        deadline = deadline_of(deadline_s)
        async with guarded(deadline), backing.engine(ctx) as engine:
            result = await engine.solve(
                question,
                context=context,
                strategy=strategy,
                mode=mode,
                max_subtasks=max_subtasks,
                deadline_s=deadline,
                merge_strategy=merge_strategy,
                on_event=_Progress(ctx),
            )
        return _result(result, solve_text(result))

    # ----- resources -----

    @server.resource(
        "apr://runs",
        name="runs",
        description="Recent runs (newest first).",
        mime_type="application/json",
    )
    def list_runs() -> str:
        return _json(backing.run_store.list(50))

    @server.resource(
        "apr://runs/{run_id}",
        name="run",
        description="The full trace of one run: plan, per-thread timings and results, decisions, metrics.",
        mime_type="application/json",
    )
    def read_run(run_id: str) -> str:
        try:
            run = backing.run_store.load(run_id)
        except AprError as exc:
            raise ResourceNotFoundError(f"{exc}; recent runs are listed at apr://runs") from exc
        return run.model_dump_json(indent=2)

    @server.resource(
        "apr://cache/stats",
        name="cache-stats",
        description="Result cache statistics.",
        mime_type="application/json",
    )
    def cache_stats() -> str:
        return _json(backing.cache.stats())

    # ----- prompts (slash commands) -----

    @server.prompt(title="Debug with parallel hypotheses")
    def debug_with_hypotheses(error: str, code: str = "") -> str:
        """Debug an error by testing several hypotheses about its cause in parallel."""
        # Debug mode's natural shape: the error is the question, the code is the context.
        code_block = (
            f"\n\nCode (pass it verbatim as `context`):\n```\n{code}\n```"
            if code
            else "\n\nNo code was given: put the relevant code you can see in `context`."
        )
        return (
            "Find the root cause of this error and propose a fix. Call the apr-mcp `solve` tool with "
            'mode="debug", `question` set to the error below (verbatim, with its traceback) and '
            "`context` set to the code. It tests several hypotheses about the cause in parallel and "
            "ranks them; then verify the most likely one against the code before changing anything."
            f"\n\nError (pass it verbatim as `question`):\n```\n{error}\n```{code_block}"
        )

    @server.prompt(title="Research a question in parallel")
    def research(question: str) -> str:
        """Research a broad question: split it into independent angles, study them in parallel, merge."""
        return (
            "Research this question thoroughly. Call the apr-mcp `decompose` tool on it, review the "
            "subtasks (add or rewrite any that miss an angle), run them with `parallel_solve`, then "
            "`merge` the `results` (strategy synthesize). Cite which threads support each claim and "
            f"say what remains uncertain.\n\nQuestion: {question}"
        )

    @server.prompt(title="Compare options")
    def compare(options: str, criteria: str = "") -> str:
        """Compare options against criteria, one thread per option, then rank them."""
        crit = f" against these criteria: {criteria}" if criteria else ""
        return (
            f"Compare these options{crit}: {options}. Call the apr-mcp `parallel_solve` tool with one "
            "self-contained subtask per option (evaluate that option alone on every criterion), then "
            "`merge` the results with strategy rank and explain the ranking."
        )

    return server


async def close_server(server: MCPServer[Any]) -> None:
    """Release what :func:`create_server` opened lazily (HTTP clients of the backends, the cache)."""
    backing: _Backing | None = getattr(server, "apr_backing", None)
    if backing is not None:
        await backing.aclose()


# ----- transports (the `serve` command is in apr_mcp.cli.serve) -----


def _log_to_stderr(level: str = "WARNING") -> None:
    # stdout is the protocol wire in stdio mode: nothing else may ever be written there.
    logging.basicConfig(
        stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


# Hosts send initialize, initialized and tools/list at once; answering takes ~0.05 s once serving.
_WARM_UP_AFTER_S = 0.2


def _warm_up(settings: Settings) -> None:
    """Load what the first tool call would otherwise wait for: the tokenizer (~0.1 s), the
    modules of the runtime (engine, the configured backend, HTTP client, disk cache) and the
    prompts. Runs in a thread at start-up, so ``tools/list`` is not delayed by it and the first
    call does not pay for it."""
    backend = {
        "openai": "apr_mcp.llm.openai_compat",
        "anthropic": "apr_mcp.llm.anthropic",
        "simulated": "apr_mcp.llm.simulated",
    }.get(settings.backend or "", "apr_mcp.llm.factory")
    encoding_for()
    for module in ("apr_mcp.runtime", backend, "apr_mcp.llm.structured", "diskcache", "sqlite3"):
        try:
            importlib.import_module(module)
        except Exception:  # an optimisation only: the first call imports it again, or says why not
            logger.debug("warm-up: cannot import %s", module, exc_info=True)
    try:
        for name in prompt_names():  # read and parsed once, then cached
            load_prompt(name)
    except Exception:  # a broken prompt file is reported by the call that needs it
        logger.debug("warm-up: cannot load the prompts", exc_info=True)


def run_server(
    settings: Settings | None = None,
    transport: Literal["stdio", "http"] = "stdio",
    host: str | None = None,
    port: int | None = None,
    *,
    engine_factory: EngineFactory | None = None,
) -> None:
    """Serve until the client disconnects (stdio) or the process is interrupted (HTTP). Blocking."""
    settings = settings if settings is not None else load_settings()
    _log_to_stderr()
    server = create_server(settings, engine_factory=engine_factory)
    # Pay the first tool call's set-up at start-up, but just after the host's handshake rather than
    # before or during it (a thread doing it at once slowed tools/list by ~0.08 s on 2 cores).
    warm_up = threading.Timer(_WARM_UP_AFTER_S, _warm_up, args=(settings,))
    warm_up.daemon = True
    warm_up.start()

    async def serve() -> None:
        try:
            if transport == "stdio":
                await server.run_stdio_async()
            else:
                from .http_app import build_http_app

                bind = host or settings.http_host
                app = build_http_app(server, settings, host=bind)
                # Bind before announcing: the printed URL (real port even for --port 0) accepts
                # connections at once; they queue until uvicorn has started.
                sock = listen(bind, settings.http_port if port is None else port)
                print(
                    f"apr-mcp: serving MCP over streamable HTTP at "
                    f"http://{shown_host(bind)}:{sock.getsockname()[1]}/mcp"
                    + (" (bearer token required)" if settings.http_token else ""),
                    file=sys.stderr,
                    flush=True,
                )
                await serve_on(uvicorn_server(app, lifespan="on"), sock)
        finally:
            with anyio.CancelScope(shield=True):
                await close_server(server)

    anyio.run(serve)


def run_stdio() -> int:
    """What a bare ``apr-mcp`` runs: the stdio server with settings from the environment."""
    try:
        settings = load_settings()
    except AprError as exc:
        print(f"apr-mcp: {exc}", file=sys.stderr)
        return 2
    run_server(settings, "stdio")
    return 0
