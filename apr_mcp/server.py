"""The MCP server: four tools, run-trace resources and slash-command prompts over the engine.

This module is a thin shell. Each tool validates its arguments (pydantic, through the SDK), asks
the engine, and answers twice: structured content, the full record of :mod:`apr_mcp.schemas`
(its published schema is the lean one of :mod:`apr_mcp.tool_schemas`, so ``tools/list`` stays
small), and a short text digest from :mod:`apr_mcp.render`. Engine failures
(:class:`~apr_mcp.errors.AprError`) and runs where no thread produced a usable result come back
as ``isError`` results; the server never crashes on them.

The engine runs inside the request's task, so when the client cancels the request the SDK
cancels that task, and the cancellation reaches every in-flight model stream.
"""

import importlib
import inspect
import logging
import sys
import threading
from collections.abc import Callable
from typing import Annotated, Any, Literal

import anyio
import pydantic_core
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import AfterValidator, BaseModel, Field

from . import __version__
from ._net import listen, serve_on, shown_host, uvicorn_server
from .cache import ResultCache
from .config import Settings, load_settings
from .errors import AprError
from .http_app import build_http_app, check_binding
from .limits import (
    MAX_CONCURRENCY,
    MAX_CONTEXT_CHARS,
    MAX_DEADLINE_S,
    MAX_MERGE_BUDGET_TOKENS,
    MAX_MERGE_RESULTS,
    MAX_QUESTION_CHARS,
    MAX_SUBTASKS,
    MIN_MERGE_BUDGET_TOKENS,
)
from .mcp_guard import OutputGuard
from .prompts import load_prompt, prompt_names
from .redact import install_log_redaction
from .render import merge_text, plan_text, run_status, run_text, solve_text
from .schemas import MergeStrategy, SolveResult, SolveRun, Subtask, ThreadResult
from .stdio import serve_stdio
from .tokens import encoding_for
from .tool_schemas import (
    MergeOutput,
    PlanOutput,
    RunOutput,
    SolveOutput,
    merge_strategy_schema,
    subtasks_schema,
    thread_results_schema,
)
from .tool_support import Backing, EngineFactory, Progress, guarded
from .trace import RunStore

__all__ = [
    "EngineFactory",
    "close_server",
    "create_server",
    "run_server",
    "run_stdio",
]

logger = logging.getLogger(__name__)

INSTRUCTIONS = """\
apr-mcp adds adaptive parallel reasoning: independent subtasks solved concurrently by a language
model. Fastest: split the question yourself, pass the parts to `parallel_solve` and answer from
its results (no plan or merge call). `solve` does it all in one call (plan, threads, merge);
`decompose` and `merge` let the server plan or merge; pass `subtasks` and `results` on unchanged.
Answer simple or strictly sequential questions directly."""

# ----- arguments shared by the tools -----

_MAX_SUBTASKS = MAX_SUBTASKS  # subtasks a host may pass to parallel_solve
_MAX_RESULTS = MAX_MERGE_RESULTS  # results a host may pass to merge (follow-ups add to them)


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("the question is empty (only whitespace)")
    return text


# Numbers are strict (no `true` or "5" taken for 5): a host that sends those has a bug to see.
Question = Annotated[
    str,
    Field(
        min_length=1, max_length=MAX_QUESTION_CHARS, description="The question or task, in full."
    ),
    AfterValidator(_not_blank),
]
ContextArg = Annotated[
    str,
    Field(
        max_length=MAX_CONTEXT_CHARS,
        description="Background every thread sees: code, errors, documents.",
    ),
]
Deadline = Annotated[
    float | None,
    Field(
        gt=0,
        le=MAX_DEADLINE_S,
        strict=True,
        description="Seconds until it returns what is finished, marked partial (default "
        "APR_DEADLINE_S).",
    ),
]
MaxSubtasks = Annotated[
    int | None, Field(ge=1, le=MAX_SUBTASKS, strict=True, description="Most subtasks to plan.")
]


def _annotations(title: str) -> ToolAnnotations:
    return ToolAnnotations(
        title=title,
        read_only_hint=True,  # it reads and answers; its only writes are its own cache and traces
        destructive_hint=False,
        idempotent_hint=True,  # a repeated call has no further side effect (it may hit the cache)
        open_world_hint=True,  # it calls an external language model
    )


def _result(model: BaseModel, text: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=model.model_dump(mode="json", by_alias=True),
    )


def _run_result(run: SolveRun | SolveResult, text: str) -> CallToolResult:
    """A run's result: ``isError`` when no thread produced a usable result (the structured
    content still carries every thread's error); a partial answer is not an error."""
    status = run_status(run)
    structured = run.model_dump(mode="json", by_alias=True)
    structured.setdefault("status", status)  # until every engine path sets it
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=structured,
        is_error=status == "failed",
    )


def _json(value: Any) -> str:
    return pydantic_core.to_json(value).decode()


# ----- the server -----


def create_server(
    settings: Settings | None = None,
    *,
    engine_factory: EngineFactory | None = None,
    run_store: RunStore | None = None,
    cache: ResultCache | None = None,
) -> MCPServer[Any]:
    """The apr-mcp MCP server.

    ``settings`` defaults to :func:`~apr_mcp.config.load_settings`. ``engine_factory`` replaces the
    default engine (built from settings by :mod:`apr_mcp.runtime`); ``run_store`` and ``cache``
    back the ``apr://`` resources. Call :func:`close_server` when done.
    """
    settings = settings if settings is not None else load_settings()
    backing = Backing(settings, engine_factory, run_store, cache)
    server: MCPServer[Any] = MCPServer(
        "apr-mcp",
        title="Adaptive parallel reasoning",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level="WARNING",
        middleware=[OutputGuard()],  # redacts what leaves, caps error texts (mcp_guard)
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

    # ----- tools -----

    @tool("Decompose a question into parallel subtasks", _annotations("Decompose"))
    async def decompose(
        question: Question, ctx: Context, context: ContextArg = "", max_subtasks: MaxSubtasks = None
    ) -> Annotated[CallToolResult, PlanOutput]:
        """Plan a split of a broad question into independent, self-contained subtasks, or decide
        not to split (should_split=false: simple or sequential questions). Review or edit the
        `subtasks`, then pass them to parallel_solve. Skip this call if you can split it
        yourself."""
        async with guarded(settings.deadline_s), backing.engine(ctx) as engine:
            plan = await engine.decompose(question, context=context, max_subtasks=max_subtasks)
        return _result(plan, plan_text(plan))

    @tool("Solve subtasks in parallel", _annotations("Parallel solve"))
    async def parallel_solve(
        question: Question,
        ctx: Context,
        subtasks: Annotated[
            list[Subtask] | None,
            Field(max_length=_MAX_SUBTASKS),
            subtasks_schema(
                "Your own subtasks or decompose's; omit to let the server plan first.",
                max_items=_MAX_SUBTASKS,
            ),
        ] = None,
        context: ContextArg = "",
        max_concurrency: Annotated[
            int | None, Field(ge=1, le=MAX_CONCURRENCY, strict=True, description="Threads at once.")
        ] = None,
        deadline_s: Deadline = None,
    ) -> Annotated[CallToolResult, RunOutput]:
        """Solve subtasks concurrently, one isolated thread each (a thread never sees its
        siblings; depends_on waits for inputs). Fastest path: pass your own `subtasks` and answer
        from the results yourself, with no plan or merge call. Finished threads come back at the
        deadline, marked partial. `results` is merge's input."""
        deadline = deadline_of(deadline_s)
        async with guarded(deadline), backing.engine(ctx) as engine:
            run = await engine.parallel_solve(
                question,
                subtasks,
                context=context,
                max_concurrency=max_concurrency,
                deadline_s=deadline,
                on_event=Progress(ctx),
            )
        return _run_result(run, run_text(run))

    @tool("Merge parallel results into one answer", _annotations("Merge"))
    async def merge(
        question: Question,
        results: Annotated[
            list[ThreadResult],
            Field(min_length=1, max_length=_MAX_RESULTS),
            thread_results_schema("parallel_solve's `results`, unchanged.", max_items=_MAX_RESULTS),
        ],
        ctx: Context,
        strategy: Annotated[
            MergeStrategy | None, merge_strategy_schema("How to combine (default: the server's).")
        ] = None,
        context_budget_tokens: Annotated[
            int | None,
            Field(
                ge=MIN_MERGE_BUDGET_TOKENS,
                le=MAX_MERGE_BUDGET_TOKENS,
                strict=True,
                description="Token budget of the merge prompt.",
            ),
        ] = None,
    ) -> Annotated[CallToolResult, MergeOutput]:
        """Merge parallel_solve's results into one answer with provenance (threads used and
        dropped) within a token budget. Optional: you may answer from the results yourself."""
        async with guarded(settings.deadline_s), backing.engine(ctx) as engine:
            if strategy is None:  # the engine's default, whatever it is
                merged = await engine.merge(
                    question, results, context_budget_tokens=context_budget_tokens
                )
            else:
                merged = await engine.merge(
                    question,
                    results,
                    strategy=strategy,
                    context_budget_tokens=context_budget_tokens,
                )
        return _result(merged, merge_text(merged))

    @tool("Solve with adaptive parallel reasoning", _annotations("Solve (plan, threads, merge)"))
    async def solve(
        question: Question,
        ctx: Context,
        context: ContextArg = "",
        mode: Annotated[
            Literal["general", "debug"],
            Field(description="debug: the question is an error, the context the code."),
        ] = "general",
        strategy: Annotated[
            Literal["adaptive", "sequential", "fixed"],
            Field(
                description="adaptive: split only when it helps; sequential: one call; fixed: "
                "split."
            ),
        ] = "adaptive",
        merge_strategy: Annotated[
            MergeStrategy | None, merge_strategy_schema("Default: the engine decides.")
        ] = None,
        max_subtasks: MaxSubtasks = None,
        deadline_s: Deadline = None,
    ) -> Annotated[CallToolResult, SolveOutput]:
        """Answer a broad or multi-part question in one call: decide whether to split, solve the
        parts concurrently, stop early when one settles it, merge. For comparisons, surveys,
        research and debugging with several hypotheses (mode="debug"). Not for simple questions."""
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
                on_event=Progress(ctx),
            )
        return _run_result(result, solve_text(result))

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
        description="The full trace of one run: plan, per-thread timings and results, decisions, "
        "metrics.",
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
    async def cache_stats() -> str:
        return _json(await backing.cache.astats())  # SQLite never runs on the event loop

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
            "Find the root cause of this error and propose a fix. Call the apr-mcp `solve` tool "
            "with "
            'mode="debug", `question` set to the error below (verbatim, with its traceback) and '
            "`context` set to the code. It tests several hypotheses about the cause in "
            "parallel and "
            "ranks them; then verify the most likely one against the code before changing anything."
            f"\n\nError (pass it verbatim as `question`):\n```\n{error}\n```{code_block}"
        )

    @server.prompt(title="Research a question in parallel")
    def research(question: str) -> str:
        """Research a broad question: split it into independent angles, study them in parallel,
        merge."""
        return (
            "Research this question thoroughly. Call the apr-mcp `decompose` tool on it, "
            "review the "
            "subtasks (add or rewrite any that miss an angle), run them with `parallel_solve`, "
            "then "
            "`merge` the `results` (strategy synthesize). Cite which threads support each "
            "claim and "
            f"say what remains uncertain.\n\nQuestion: {question}"
        )

    @server.prompt(title="Compare options")
    def compare(options: str, criteria: str = "") -> str:
        """Compare options against criteria, one thread per option, then rank them."""
        crit = f" against these criteria: {criteria}" if criteria else ""
        return (
            f"Compare these options{crit}: {options}. Call the apr-mcp `parallel_solve` tool "
            "with one "
            "self-contained subtask per option (evaluate that option alone on every criterion), "
            "then "
            "`merge` the results with strategy rank and explain the ranking."
        )

    return server


async def close_server(server: MCPServer[Any]) -> None:
    """Release what :func:`create_server` opened lazily (HTTP clients of the backends, the
    cache)."""
    backing: Backing | None = getattr(server, "apr_backing", None)
    if backing is not None:
        await backing.aclose()


# ----- transports (the `serve` command is in apr_mcp.cli.serve) -----


def _log_to_stderr(level: str = "WARNING") -> None:
    # stdout is the protocol wire in stdio mode: nothing else may ever be written there.
    logging.basicConfig(
        stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    install_log_redaction()


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
    allow_insecure: bool = False,
) -> None:
    """Serve until the client disconnects (stdio) or the process is interrupted (HTTP). Blocking.

    Over HTTP a non-loopback ``host`` without ``APR_HTTP_TOKEN`` raises :class:`ConfigError`
    unless ``allow_insecure``."""
    settings = settings if settings is not None else load_settings()
    bind = host or settings.http_host
    if transport == "http":  # refuse an unsafe bind before anything starts
        for note in check_binding(settings, bind, allow_insecure=allow_insecure):
            print(f"apr-mcp: {note}", file=sys.stderr, flush=True)
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
                # Our transport, not the SDK's: it answers malformed lines (apr_mcp.stdio).
                await serve_stdio(server, max_bytes=settings.max_message_bytes)
            else:
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
