"""End-to-end latency of adaptive parallel reasoning against one sequential call.

    python -m benchmarks.latency                 # both profiles, 1/2/4/8 parts
    python -m benchmarks.latency --parts 4 --profile cloud --planner model

What it measures: the real engine (planning, scheduler, merge, events, token counting) driving a
*scripted* model whose latency follows an explicit length model, the shape of hosted APIs and
batched GPU serving:

* every call streams after ``ttft`` seconds at ``rate`` tokens/s, and the per-stream rate stays
  the same however many streams run at once;
* a thread's answer to one part is ``part_tokens`` long; the sequential chain of thought answers
  all k parts in one stream, so it is ``k × part_tokens`` long (plus its final line);
* the composed answer's lead uses its whole bound (``APR_LEAD_TOKENS``): the worst case;
* with ``--planner model`` the planner streams a lean JSON plan (its real length in tokens).

The model never answers anything (its text is a ``[sim]`` placeholder); the figures are about
latency, tokens and context only. Questions are "Answer each of these k parts: (1) … (2) …",
which the heuristics split without a planner call unless ``--planner model``.

Reported per case: wall-time speed-up over sequential, time to the first token of the final
answer (TTFA), total tokens (in+out) and the largest context of any one call, each against the
sequential run measured in the same process a moment apart.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from typing import Any

import anyio

from apr_mcp.config import Settings
from apr_mcp.engine import Engine
from apr_mcp.llm.base import (
    Model,
    ModelRequest,
    ModelResponse,
    TokenCallback,
    Usage,
    call_token_callback,
)
from apr_mcp.schemas import RunEvent, SolveResult
from apr_mcp.tokens import count_messages, count_tokens

PROFILES = {"cloud": (0.5, 80.0), "local": (0.2, 40.0)}
TOPICS = [
    "the history of the printing press",
    "how vaccines train the immune system",
    "why the sky is blue",
    "how a hash table works",
    "the causes of inflation",
    "how photosynthesis stores energy",
    "what TCP congestion control does",
    "how compilers optimise loops",
]


@dataclass
class LengthModel:
    """The explicit length model of one case (see the module docstring)."""

    parts: int
    part_tokens: int


class ScriptedModel(Model):
    """Streams placeholder text whose length is set by :class:`LengthModel`, at a fixed rate
    per stream. Knows nothing of the task: only the purpose of each request."""

    backend = "scripted"
    model_name = "scripted-length-model"

    def __init__(self, ttft_s: float, rate: float, lengths: LengthModel) -> None:
        self.ttft_s, self.rate, self.lengths = ttft_s, rate, lengths
        self.calls: dict[str, int] = {}

    def _text(self, request: ModelRequest) -> str:
        n = self.lengths.part_tokens
        if request.purpose == "planner":
            subtasks = [
                {
                    "id": f"t{i}",
                    "prompt": f"Part {i} of {self.lengths.parts}: [sim] "
                    f"subtask {i} as a planner would word it, self-contained.",
                }
                for i in range(1, self.lengths.parts + 1)
            ]
            return json.dumps(
                {
                    "should_split": self.lengths.parts > 1,
                    "subtasks": subtasks,
                    "reason": "independent parts",
                }
            )
        # " word" is one token: the lengths below are token counts.
        if request.purpose == "sequential":
            return "[sim]" + " word" * (n * self.lengths.parts) + "\nFinal answer: [sim]"
        if request.purpose == "lead":
            return "[sim]" + " word" * request.max_tokens
        body = "[sim]" + " word" * n
        return body + "\nSummary: [sim]\nConfidence: 0.7\nSettles: no"

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        self.calls[request.purpose] = self.calls.get(request.purpose, 0) + 1
        text = self._text(request)
        tokens = count_tokens(text)
        start = anyio.current_time()
        await anyio.sleep(self.ttft_s)
        chunks = max(1, min(64, tokens // 8))
        step = len(text) / chunks
        for i in range(chunks):
            # An absolute schedule: timing does not drift with the number of chunks.
            due = start + self.ttft_s + tokens / self.rate * (i + 1) / chunks
            await anyio.sleep(max(0.0, due - anyio.current_time()))
            if on_token is not None:
                await call_token_callback(on_token, text[int(i * step) : int((i + 1) * step)])
        return ModelResponse(
            text=text,
            usage=Usage(input_tokens=count_messages(request.messages), output_tokens=tokens),
            model=self.model_name,
            backend=self.backend,
            finish_reason="stop",
            latency_s=anyio.current_time() - start,
            ttft_s=self.ttft_s,
        )


def question(parts: int) -> str:
    if parts == 1:
        return f"Explain {TOPICS[0]} in detail."
    items = " ".join(f"({i}) {TOPICS[i - 1]};" for i in range(1, parts + 1))
    return f"Answer each of these {parts} parts: {items}".rstrip(";") + "."


async def run_once(
    strategy: str, parts: int, profile: str, planner: str, part_tokens: int
) -> dict[str, Any]:
    ttft, rate = PROFILES[profile]
    model = ScriptedModel(ttft, rate, LengthModel(parts, part_tokens))
    settings = Settings(
        backend="simulated",
        planner=planner,
        cache=False,  # type: ignore[arg-type]
        max_tokens=max(1024, part_tokens * 2),
    )
    engine = Engine(settings=settings, planner=model, solver=model, merger=model)
    first: list[float] = []
    t0 = anyio.current_time()

    async def on_event(event: RunEvent) -> None:
        if event.kind == "answer" and not first:
            first.append(anyio.current_time() - t0)

    result: SolveResult = await engine.solve(
        question(parts),
        strategy=strategy,  # type: ignore[arg-type]
        deadline_s=float("inf"),
        on_event=on_event,
    )
    wall = anyio.current_time() - t0
    m = result.metrics
    return {
        "wall": wall,
        "ttfa": first[0] if first else wall,
        "tokens": m.tokens_in + m.tokens_out,
        "context": m.max_context_tokens,
        "calls": dict(model.calls),
        "split": bool(result.plan and result.plan.should_split),
    }


async def case(
    parts: int, profile: str, planner: str, part_tokens: int, repeat: int
) -> dict[str, Any]:
    seq, ada = [], []
    for _ in range(repeat):  # interleaved, so drift on a shared machine hits both alike
        seq.append(await run_once("sequential", parts, profile, planner, part_tokens))
        ada.append(await run_once("adaptive", parts, profile, planner, part_tokens))

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    return {
        "profile": profile,
        "parts": parts,
        "planner": planner,
        "seq_wall": med(seq, "wall"),
        "ada_wall": med(ada, "wall"),
        "speedup": med(seq, "wall") / med(ada, "wall"),
        "seq_ttfa": med(seq, "ttfa"),
        "ada_ttfa": med(ada, "ttfa"),
        "seq_tokens": med(seq, "tokens"),
        "ada_tokens": med(ada, "tokens"),
        "seq_context": med(seq, "context"),
        "ada_context": med(ada, "context"),
        "ada_calls": ada[-1]["calls"],
        "split": ada[-1]["split"],
    }


#: Minimum speed-up per part count (1 part: at most 1.05x the sequential time).
TARGETS = {1: 1 / 1.05, 2: 1.3, 4: 2.5, 8: 4.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", choices=[*PROFILES, "both"], default="both")
    ap.add_argument("--parts", type=int, nargs="*", default=[1, 2, 4, 8])
    ap.add_argument("--planner", choices=["auto", "model", "heuristic"], default="auto")
    ap.add_argument("--part-tokens", type=int, default=250)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="one JSON object per case")
    args = ap.parse_args(argv)
    profiles = list(PROFILES) if args.profile == "both" else [args.profile]
    print(
        f"# scripted length model: {args.part_tokens} tokens a part; sequential = k parts; "
        f"planner={args.planner}; rate constant per stream",
        file=sys.stderr,
    )
    header = (
        f"{'profile':8} {'parts':>5} {'speed-up':>8} {'seq s':>7} {'apr s':>7} "
        f"{'TTFA seq':>8} {'TTFA apr':>8} {'tok seq':>8} {'tok apr':>8} "
        f"{'ctx seq':>7} {'ctx apr':>7}  target  calls"
    )
    if not args.json:
        print(header)
    ok = True
    for profile in profiles:
        for parts in args.parts:
            row = anyio.run(case, parts, profile, args.planner, args.part_tokens, args.repeat)
            met = row["speedup"] >= TARGETS.get(parts, 1.0)
            ok = ok and met
            if args.json:
                print(json.dumps(row))
                continue
            print(
                f"{profile:8} {parts:>5} {row['speedup']:>7.2f}x {row['seq_wall']:>7.2f} "
                f"{row['ada_wall']:>7.2f} {row['seq_ttfa']:>8.2f} {row['ada_ttfa']:>8.2f} "
                f"{row['seq_tokens']:>8.0f} {row['ada_tokens']:>8.0f} {row['seq_context']:>7.0f} "
                f"{row['ada_context']:>7.0f}  {'met' if met else 'MISSED':6} {row['ada_calls']}"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
