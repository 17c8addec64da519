"""Adaptive control, measured: what early stop and cancellation save, and how close AIMD
concurrency control gets to the ideal under a rate-limited endpoint.

(a) **Early stop and cancellation.** The simulated model is scripted so that one thread settles
    the question early with high confidence (scenario *early stop*), or so that one finished
    thread makes a slower one redundant (scenario *redundancy*). Each scenario runs twice: with the
    adaptive controller, and with its rules disabled (``early_stop_confidence = 1.0``) so every
    thread runs to the end. Tokens are metered at the model boundary — every prompt sent plus every
    output token actually streamed, cancelled calls included — i.e. what a provider would bill.

(b) **Rate-limited endpoint.** The OpenAI-compatible simulate server is put behind a gate that
    serves at most ``--capacity`` requests at once and answers the rest with HTTP 429 and
    ``Retry-After`` (as an overloaded provider does). ``parallel_solve`` runs ``--threads``
    subtasks through the real ``openai`` backend (httpx, SSE) with ``RetryingModel`` →
    ``LimitedModel`` (AIMD) and, for comparison, with retries only. Ideal = the wall time of
    ``ceil(threads / capacity)`` back-to-back waves of one call each.

(c) **Quota endpoint.** The same server behind a policy that refuses every third request with
    HTTP 429 and ``Retry-After`` (``--quota-every``, ``--quota-retry-after``) whatever the load:
    lowering concurrency cannot help. Two consecutive ``parallel_solve`` calls of
    ``--quota-subtasks`` subtasks at concurrency ``--quota-concurrency`` run through the server's
    real stack (``build_runtime``: cache off, retry, one AIMD limiter shared by both calls) and,
    side by side, through a naive client that sleeps ``Retry-After`` and retries, with no limiter.
    Runs alternate (``--repeat``) and the median ratio per call is reported; target <= 1.2x.

    python benchmarks/adaptive.py                 # or: python -m benchmarks.adaptive
    python benchmarks/adaptive.py --threads 24 64 --capacity 4 --retry-after 0.5
    python benchmarks/adaptive.py --only quota --repeat 5
"""

from __future__ import annotations

import argparse
import logging
import math
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import uvicorn
from pydantic import SecretStr
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from apr_mcp.config import Settings
from apr_mcp.engine import Engine
from apr_mcp.errors import RateLimitError
from apr_mcp.llm.base import Model, ModelRequest, ModelResponse, TokenCallback, WrapperModel
from apr_mcp.llm.limiter import AdaptiveLimiter, LimitedModel
from apr_mcp.llm.openai_compat import OpenAICompatModel
from apr_mcp.llm.retry import RetryingModel
from apr_mcp.llm.simulated import SimRule, SimScript, SimulatedModel
from apr_mcp.runtime import build_runtime
from apr_mcp.schemas import Subtask, ThreadStatus
from apr_mcp.simulate_server import create_app
from apr_mcp.tokens import count_messages, count_tokens

LONG = " ".join(
    ["Detailed analysis of build tooling, ecosystem maturity and deployment trade-offs."] * 40
)


def reply(text: str, *, confidence: float = 0.7, settles: bool = False) -> dict[str, Any]:
    return {
        "answer": text,
        "summary": text[:200],
        "confidence": confidence,
        "settles_question": settles,
        "follow_ups": [],
    }


class MeteredModel(WrapperModel):
    """Counts what a provider bills: prompt tokens of every call started and output tokens of
    every streamed delta, including calls that were cancelled mid-stream."""

    def __init__(self, inner: Model) -> None:
        super().__init__(inner)
        self.tokens_in = 0
        self.tokens_out = 0
        self.calls = 0

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        self.calls += 1
        self.tokens_in += count_messages(list[object](request.messages))

        async def meter(delta: str) -> None:
            self.tokens_out += count_tokens(delta)
            if on_token is not None:
                result = on_token(delta)
                if result is not None:
                    await result

        return await self._inner.complete(request, on_token=meter)


# ----- (a) early stop and cancellation -----


@dataclass
class Saving:
    scenario: str
    wall_full: float
    wall_adaptive: float
    tokens_full: int
    tokens_adaptive: int
    cancelled: int
    decisions: list[str]


def early_stop_script() -> SimScript:
    languages = ("Python", "Go", "Rust", "Java", "Kotlin", "Zig")
    plan = {
        "should_split": True,
        "reason": "six languages to assess",  # scripted: the sim plans placeholders
        "subtasks": [
            {"id": f"t{k}", "prompt": f"Assess {lang} for writing a command-line tool"}
            for k, lang in enumerate(languages, 1)
        ],
    }
    return SimScript(
        rules=[
            SimRule(pattern=".", purpose="planner", reply=plan),
            SimRule(
                pattern=r"Your subtask:\s*Assess Python",
                purpose="solver",
                ttft_s=0.1,
                reply=reply(
                    "Python with argparse/typer is the pragmatic choice here; it settles it.",
                    confidence=0.95,
                    settles=True,
                ),
            ),
            SimRule(pattern=r"Your subtask:", purpose="solver", ttft_s=0.3, reply=reply(LONG)),
        ]
    )


def redundancy_script() -> SimScript:
    return SimScript(
        rules=[
            SimRule(
                pattern=r"Your subtask:\s*Compare the speed",
                purpose="solver",
                ttft_s=0.1,
                reply=reply("Go is faster and uses less memory than Python.", confidence=0.95),
            ),
            SimRule(pattern=r"Your subtask:", purpose="solver", ttft_s=0.3, reply=reply(LONG)),
        ]
    )


REDUNDANT = [
    Subtask(id="t1", prompt="Compare the speed and memory use of Python and Go"),
    Subtask(id="t2", prompt="memory use of Python and Go"),
    Subtask(id="t3", prompt="speed of Python and Go"),
    Subtask(id="t4", prompt="Packaging story of Rust"),
]
QUESTION = "Compare Python, Go, Rust, Java, Kotlin and Zig for writing a command-line tool"


async def one_run(scenario: str, adaptive: bool, tps: float) -> tuple[float, int, int, list[str]]:
    script = early_stop_script() if scenario == "early stop" else redundancy_script()
    meter = MeteredModel(SimulatedModel(ttft_s=0.05, tokens_per_s=tps, script=script))
    cfg = Settings(backend="simulated", early_stop_confidence=0.9 if adaptive else 1.0)
    engine = Engine(settings=cfg, planner=meter, solver=meter, merger=meter)
    start = time.perf_counter()
    if scenario == "early stop":
        result = await engine.solve(QUESTION)
        results, decisions = result.results, result.decisions
    else:
        run = await engine.parallel_solve("Which is better for a CLI, Python or Go?", REDUNDANT)
        await engine.merge(run.question, run.results)
        results, decisions = run.results, run.decisions
    wall = time.perf_counter() - start
    cancelled = sum(r.status is ThreadStatus.cancelled for r in results)
    kinds: list[str] = [d.kind for d in decisions if d.kind in ("early_stop", "cancel")]
    return wall, meter.tokens_in + meter.tokens_out, cancelled, kinds


async def savings(tps: float) -> list[Saving]:
    out = []
    for scenario in ("early stop", "redundancy"):
        wall_f, tok_f, _, _ = await one_run(scenario, False, tps)
        wall_a, tok_a, cancelled, kinds = await one_run(scenario, True, tps)
        out.append(Saving(scenario, wall_f, wall_a, tok_f, tok_a, cancelled, kinds))
    return out


# ----- (b) rate-limited endpoint -----


class CapacityGate:
    """ASGI middleware: at most ``capacity`` chat completions at once; the rest get 429 +
    Retry-After immediately, as an overloaded provider answers."""

    def __init__(self, app: ASGIApp, capacity: int, retry_after: float) -> None:
        self.app = app
        self.capacity = capacity
        self.retry_after = retry_after
        self.active = 0
        self.max_active = 0
        self.rejected = 0
        self.served = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
            await self.app(scope, receive, send)
            return
        if self.active >= self.capacity:
            self.rejected += 1
            body = {
                "error": {"message": "Rate limit reached (capacity)", "type": "rate_limit_error"}
            }
            headers = {"Retry-After": f"{self.retry_after:g}"}
            await JSONResponse(body, 429, headers=headers)(scope, receive, send)
            return
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
            self.served += 1


@asynccontextmanager
async def gated_server(
    gate_args: tuple[int, float], ttft: float
) -> AsyncIterator[tuple[str, CapacityGate]]:
    model = SimulatedModel(
        ttft_s=ttft,
        tokens_per_s=1e9,
        script=SimScript(
            rules=[
                SimRule(pattern=r"Your subtask:", purpose="solver", reply=reply("A fixed answer."))
            ]
        ),
    )
    gate = CapacityGate(create_app(model), *gate_args)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(gate, log_level="warning", lifespan="off"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        while not server.started:
            await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1", gate
        finally:
            server.should_exit = True
    sock.close()


@dataclass
class RateRow:
    name: str
    wall: float
    rejected: int
    requests: int
    max_active: int
    failed: int
    limit_path: str


async def rate_run(
    name: str, threads: int, capacity: int, retry_after: float, ttft: float, limited: bool
) -> RateRow:
    async with gated_server((capacity, retry_after), ttft) as (base_url, gate):
        backend = OpenAICompatModel(base_url=base_url, model="sim-1")
        limiter = AdaptiveLimiter(threads, max_limit=threads)
        inner: Model = LimitedModel(backend, limiter) if limited else backend
        model = RetryingModel(inner, max_retries=12, base_delay=0.05, max_delay=5.0)
        cfg = Settings(backend="openai", model="sim-1", max_concurrency=min(64, threads))
        engine = Engine(settings=cfg, planner=model, solver=model, merger=model)
        subtasks = [
            Subtask(id=f"s{i}", prompt=f"Subtask number {i}: assess option {i}")
            for i in range(threads)
        ]
        start = time.perf_counter()
        run = await engine.parallel_solve("rate limit benchmark", subtasks, deadline_s=120)
        wall = time.perf_counter() - start
        await backend.aclose()
        failed = sum(r.status is not ThreadStatus.done for r in run.results)
        limits = [h.limit for h in limiter.history]
        st = limiter.stats
        path = (
            f"{limits[0]}→…→{min(limits)} (lowest)→…→{limits[-1]}, {len(limits) - 1} changes; "
            f"429s judged load {st.load_refusals}, policy {st.policy_refusals}"
            if limited
            else "-"
        )
        return RateRow(
            name, wall, gate.rejected, gate.served + gate.rejected, gate.max_active, failed, path
        )


async def rate_limited(
    threads: int, capacity: int, retry_after: float, ttft: float
) -> tuple[float, list[RateRow]]:
    # Ideal: the endpoint busy at full capacity from the first moment, no 429 ever.
    waves = math.ceil(threads / capacity)
    ideal = waves * ttft
    rows = [
        await rate_run(
            "retry only (no limiter)", threads, capacity, retry_after, ttft, limited=False
        ),
        await rate_run("retry + AIMD limiter", threads, capacity, retry_after, ttft, limited=True),
    ]
    return ideal, rows


# ----- (c) quota endpoint -----


class QuotaGate:
    """ASGI middleware: every ``every``-th chat completion gets 429 + Retry-After at once, however
    many are running (a fixed-rate or quota policy, not a capacity limit)."""

    def __init__(self, app: ASGIApp, every: int, retry_after: float) -> None:
        self.app = app
        self.every = every
        self.retry_after = retry_after
        self.count = 0
        self.rejected = 0
        self.active = 0
        self.max_active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
            await self.app(scope, receive, send)
            return
        self.count += 1
        if self.count % self.every == 0:
            self.rejected += 1
            body = {"error": {"message": "Rate limit reached (quota)", "type": "rate_limit_error"}}
            headers = {"Retry-After": f"{self.retry_after:g}"}
            await JSONResponse(body, 429, headers=headers)(scope, receive, send)
            return
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


class NaiveRetry(WrapperModel):
    """The baseline client: on a 429, sleep ``Retry-After`` (or 1 s) and send again."""

    def __init__(self, inner: Model, max_retries: int = 50) -> None:
        super().__init__(inner)
        self.max_retries = max_retries

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        for _ in range(self.max_retries):
            try:
                return await self._inner.complete(request, on_token=on_token)
            except RateLimitError as exc:
                await anyio.sleep(exc.retry_after if exc.retry_after is not None else 1.0)
        return await self._inner.complete(request, on_token=on_token)


@asynccontextmanager
async def loopback(app: ASGIApp) -> AsyncIterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        while not server.started:
            await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        finally:
            server.should_exit = True
    sock.close()


@dataclass
class QuotaRow:
    client: str
    walls: list[float]
    rejected: int
    failed: int
    decisions: list[str]
    limit_path: str


async def quota_run(limited: bool, args: argparse.Namespace) -> QuotaRow:
    sim = SimulatedModel(
        ttft_s=args.ttft,
        tokens_per_s=1e9,
        script=SimScript(
            rules=[
                SimRule(pattern=r"Your subtask:", purpose="solver", reply=reply("A fixed answer."))
            ]
        ),
    )
    gate = QuotaGate(create_app(sim), args.quota_every, args.quota_retry_after)
    n, width = args.quota_subtasks, args.quota_concurrency
    async with loopback(gate) as base_url:
        cfg = Settings(
            backend="openai",
            base_url=base_url,
            model="sim-1",
            api_key=SecretStr("sim"),
            max_concurrency=width,
            cache=False,
        )
        runtime = None
        if limited:
            runtime = build_runtime(cfg)
            engine = runtime.engine
        else:
            backend = OpenAICompatModel(base_url=base_url, model="sim-1")
            naive = NaiveRetry(backend)
            engine = Engine(settings=cfg, planner=naive, solver=naive, merger=naive)
        walls: list[float] = []
        failed = 0
        decisions: list[str] = []
        try:
            for call in range(2):
                subtasks = [
                    Subtask(
                        id=f"c{call}s{i}", prompt=f"Call {call}, subtask {i}: assess option {i}"
                    )
                    for i in range(n)
                ]
                start = time.perf_counter()
                run = await engine.parallel_solve(
                    f"quota benchmark, call {call + 1}",
                    subtasks,
                    max_concurrency=width,
                    deadline_s=120,
                )
                walls.append(time.perf_counter() - start)
                failed += sum(r.status is not ThreadStatus.done for r in run.results)
                decisions += [
                    f"call {call + 1}: {d.kind}: {d.reason}"
                    for d in run.decisions
                    if d.kind in ("backoff", "recover")
                ]
        finally:
            if runtime is not None:
                await runtime.aclose()
            else:
                await backend.aclose()
        path = "-"
        if runtime is not None:
            limits = [h.limit for h in runtime.limiter.history]
            st = runtime.limiter.stats
            path = (
                "→".join(str(x) for x in limits)
                + f"; 429s judged load {st.load_refusals}, policy {st.policy_refusals}"
            )
        return QuotaRow(
            "retry + AIMD limiter" if limited else "naive: sleep Retry-After",
            walls,
            gate.rejected,
            failed,
            decisions,
            path,
        )


async def quota(args: argparse.Namespace) -> None:
    naive: list[QuotaRow] = []
    limited: list[QuotaRow] = []
    for _ in range(args.repeat):  # alternate, so drift in machine load hits both alike
        naive.append(await quota_run(False, args))
        limited.append(await quota_run(True, args))
    print()
    print(
        f"(c) quota endpoint: every {args.quota_every}rd request 429, Retry-After "
        f"{args.quota_retry_after:g}s, whatever the load; {args.ttft:g}s per call; two "
        f"consecutive parallel_solve calls of {args.quota_subtasks} subtasks at concurrency "
        f"{args.quota_concurrency}; {args.repeat} alternating runs"
    )
    print(
        f"{'run':>3} {'naive c1':>9} {'naive c2':>9} {'AIMD c1':>8} {'AIMD c2':>8} "
        f"{'ratio c1':>8} {'ratio c2':>8} {'429s n/l':>9} {'failed':>6}  limit path"
    )
    ratios: list[tuple[float, float]] = []
    for i, (a, b) in enumerate(zip(naive, limited, strict=True)):
        r = (b.walls[0] / a.walls[0], b.walls[1] / a.walls[1])
        ratios.append(r)
        print(
            f"{i + 1:>3} {a.walls[0]:>8.2f}s {a.walls[1]:>8.2f}s {b.walls[0]:>7.2f}s "
            f"{b.walls[1]:>7.2f}s {r[0]:>7.2f}x {r[1]:>7.2f}x {a.rejected:>4}/{b.rejected:<4} "
            f"{a.failed + b.failed:>6}  {b.limit_path}"
        )
    med = (statistics.median(r[0] for r in ratios), statistics.median(r[1] for r in ratios))
    verdict = "ok" if max(med) <= 1.2 else "ABOVE TARGET"
    print(
        f"median ratio AIMD / naive: call 1 {med[0]:.2f}x, call 2 {med[1]:.2f}x "
        f"(target <= 1.2x: {verdict})"
    )
    shown = limited[-1].decisions
    print(f"limiter decisions in the last run ({len(shown)}):")
    for line in shown[:12] or ["(none: the limit never moved)"]:
        print(f"  {line}")


# ----- main -----


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[24, 64],
        help="subtasks in the rate-limit runs (one run per value)",
    )
    parser.add_argument(
        "--capacity", type=int, default=4, help="requests the endpoint serves at once"
    )
    parser.add_argument(
        "--retry-after", type=float, default=0.5, help="Retry-After of its 429s (s)"
    )
    parser.add_argument(
        "--ttft", type=float, default=0.25, help="latency of one call at the endpoint (s)"
    )
    parser.add_argument(
        "--tps", type=float, default=400.0, help="simulated output tokens per second in (a)"
    )
    parser.add_argument(
        "--only",
        choices=["savings", "capacity", "quota"],
        nargs="+",
        default=["savings", "capacity", "quota"],
        help="scenarios to run (default: all)",
    )
    parser.add_argument("--quota-every", type=int, default=3, help="(c) refuse every n-th request")
    parser.add_argument(
        "--quota-retry-after", type=float, default=1.0, help="(c) Retry-After of its 429s (s)"
    )
    parser.add_argument("--quota-subtasks", type=int, default=16, help="(c) subtasks per call")
    parser.add_argument("--quota-concurrency", type=int, default=8, help="(c) concurrency")
    parser.add_argument("--repeat", type=int, default=3, help="(c) alternating runs per client")
    args = parser.parse_args(argv)
    # Retries log a warning per 429; here they are the point of the exercise, not news.
    logging.getLogger("apr_mcp").setLevel(logging.ERROR)

    async def run() -> None:
        if "savings" in args.only:
            await print_savings()
        if "capacity" in args.only:
            await print_capacity()
        if "quota" in args.only:
            await quota(args)

    async def print_savings() -> None:
        rows = await savings(args.tps)
        print("(a) Early stop and cancellation vs running every thread to the end")
        print(
            f"{'scenario':<12} {'wall full':>9} {'wall adapt':>10} {'saved':>7} "
            f"{'tokens full':>11} "
            f"{'tokens adapt':>12} {'saved':>7} {'cancelled':>9}  decisions"
        )
        for s in rows:
            print(
                f"{s.scenario:<12} {s.wall_full:>8.2f}s {s.wall_adaptive:>9.2f}s "
                f"{1 - s.wall_adaptive / s.wall_full:>6.0%} {s.tokens_full:>11} "
                f"{s.tokens_adaptive:>12} "
                f"{1 - s.tokens_adaptive / s.tokens_full:>6.0%} {s.cancelled:>9}  "
                f"{','.join(s.decisions)}"
            )

    async def print_capacity() -> None:
        for threads in args.threads:
            ideal, rate_rows = await rate_limited(
                threads, args.capacity, args.retry_after, args.ttft
            )
            print()
            print(
                f"(b) {threads} threads against an endpoint serving {args.capacity} at once "
                f"(429 + Retry-After {args.retry_after:g}s beyond that; {args.ttft:g}s per call)"
            )
            print(
                f"{'configuration':<26} {'wall':>7} {'x ideal':>7} {'429s':>5} {'requests':>8} "
                f"{'peak':>4} {'failed':>6}  limit path"
            )
            print(
                f"{'ideal':<26} {ideal:>6.2f}s {1.0:>6.2f}x {0:>5} {threads:>8} {args.capacity:>4} "
                f"{0:>6}  -"
            )
            for r in rate_rows:
                print(
                    f"{r.name:<26} {r.wall:>6.2f}s {r.wall / ideal:>6.2f}x {r.rejected:>5} "
                    f"{r.requests:>8} {r.max_active:>4} {r.failed:>6}  {r.limit_path}"
                )

    anyio.run(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
