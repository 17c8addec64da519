"""Merging: relevance order, dropping, token budget, context tokens, shortcuts and fallbacks."""

from __future__ import annotations

from engine_helpers import settings, sim

from apr_mcp.engine.merge import MergeOutput, merge, merge_usage, relevance_order
from apr_mcp.llm.simulated import SimRule
from apr_mcp.schemas import MergeStrategy, ThreadResult, ThreadStatus
from apr_mcp.tokens import count_messages, count_tokens


def _r(
    i: str,
    summary: str = "",
    *,
    conf: float | None = 0.5,
    settles: bool = False,
    status: ThreadStatus = ThreadStatus.done,
    answer: str | None = None,
) -> ThreadResult:
    return ThreadResult(
        id=i,
        status=status,
        prompt=f"task {i}",
        summary=summary or f"summary of {i}",
        answer=answer
        if answer is not None
        else (f"full answer of {i}" if status is ThreadStatus.done else None),
        confidence=conf,
        settles_question=settles,
        error="boom" if status is ThreadStatus.failed else None,
        reason="deadline" if status is ThreadStatus.cancelled else None,
    )


def test_relevance_order() -> None:
    results = [
        _r("a", conf=0.9),
        _r("b", conf=0.4, settles=True),
        _r("c", conf=0.6),
        _r("d", conf=0.6),
        _r("e", conf=None),
    ]
    ordered = relevance_order(results, {"d": 7})
    # settles first; then confidence; priority breaks the c/d tie; None counts as 0.5.
    assert [r.id for r in ordered] == ["b", "a", "d", "c", "e"]


async def test_merge_uses_summaries_drops_unusable_and_reports_context_tokens() -> None:
    model = sim(
        SimRule(pattern=".", reply={"answer": "merged!", "confidence": 0.7}, purpose="merger")
    )
    results = [
        _r("t1", "Python is slow", conf=0.6),
        _r("t2", status=ThreadStatus.failed),
        _r("t3", "Go is fast", conf=0.9),
        _r("t4", status=ThreadStatus.cancelled),
        _r("t5", status=ThreadStatus.skipped),
    ]
    out = await merge(model, "Compare", results, budget_tokens=4000, settings=settings())
    assert out.answer == "merged!" and out.confidence == 0.7
    assert out.used == ["t3", "t1"]
    assert sorted(out.dropped) == ["t2", "t4", "t5"]
    sent = model.requests[-1].messages
    body = sent[-1].content
    assert body.index("Go is fast") < body.index("Python is slow")
    assert "full answer of" not in body  # summaries, not the full answers
    assert out.context_tokens == count_messages(sent)
    assert out.tokens_in > 0 and out.tokens_out > 0
    # context_tokens is the prompt alone; the call's context also holds what the merger wrote.
    assert out.max_context_tokens == out.tokens_in + out.tokens_out > out.context_tokens
    assert merge_usage(out).max_context_tokens == out.max_context_tokens
    assert merge_usage(out).calls == 1 and merge_usage(out).cached_calls == 0
    assert "Mode: synthesize" in sent[0].content


async def test_merge_trims_to_budget_lowest_relevance_first() -> None:
    model = sim()
    long = "word " * 300
    results = [_r(f"t{i}", f"{i} {long}", conf=0.9 - i * 0.1) for i in range(5)]
    budget = 1200
    out = await merge(model, "q", results, budget_tokens=budget, settings=settings())
    assert out.context_tokens <= budget
    assert out.used[0] == "t0"  # the most relevant always goes in
    assert set(out.used) | set(out.dropped) == {f"t{i}" for i in range(5)}
    assert out.dropped and out.dropped[-1] == "t4"  # least relevant dropped first
    assert "over the 1200-token budget" in out.note


async def test_merge_truncates_when_even_one_result_does_not_fit() -> None:
    model = sim()
    huge = "token " * 3000
    results = [_r("big", huge, conf=0.9), _r("small", "tiny", conf=0.1)]
    out = await merge(model, "q", results, budget_tokens=800, settings=settings())
    assert out.used == ["big"]
    assert out.dropped == ["small"]
    assert "big truncated" in out.note
    assert out.context_tokens <= 800 + count_tokens("…") + 8


async def test_one_usable_result_skips_the_merge_call() -> None:
    model = sim()
    results = [_r("t1", answer="the whole answer", conf=0.8), _r("t2", status=ThreadStatus.failed)]
    out = await merge(model, "q", results, budget_tokens=4000, settings=settings())
    assert model.calls == 0
    assert out.answer == "the whole answer" and out.used == ["t1"] and out.dropped == ["t2"]
    assert "no merge call" in out.note and out.context_tokens == 0
    assert out.max_context_tokens == 0 and merge_usage(out).calls == 0


async def test_one_result_is_still_merged_when_voting() -> None:
    model = sim()
    out = await merge(
        model, "q", [_r("t1")], strategy=MergeStrategy.vote, budget_tokens=4000, settings=settings()
    )
    assert model.calls_by_purpose["merger"] == 1
    assert "Mode: vote" in model.requests[-1].messages[0].content
    assert out.strategy is MergeStrategy.vote


async def test_nothing_usable_explains_instead_of_crashing() -> None:
    model = sim()
    results = [_r("t1", status=ThreadStatus.failed), _r("t2", status=ThreadStatus.cancelled)]
    out = await merge(model, "q", results, budget_tokens=4000, settings=settings())
    assert model.calls == 0
    assert out.answer.startswith("No thread produced a usable result")
    assert "t1 failed (boom)" in out.answer and "t2 cancelled (deadline)" in out.answer
    assert out.confidence == 0.0 and out.dropped == ["t1", "t2"]


async def test_failing_merger_falls_back_to_the_best_result() -> None:
    model = sim(SimRule(pattern=".", fault="500", purpose="merger"))
    results = [_r("t1", conf=0.3, answer="weak"), _r("t2", conf=0.9, answer="strong")]
    out = await merge(model, "q", results, budget_tokens=4000, settings=settings())
    assert out.answer == "strong" and out.used == ["t2"]
    assert "merger failed" in out.note
    # The call was made but failed before streaming anything: no tokens, no context held.
    assert merge_usage(out).calls == 1 and merge_usage(out).max_context_tokens == 0


async def test_missing_summary_falls_back_to_truncated_answer() -> None:
    model = sim()
    r = ThreadResult(id="t1", prompt="p", answer="A " * 2000, summary="", confidence=0.5)
    await merge(model, "q", [r, _r("t2")], budget_tokens=6000, settings=settings())
    body = model.requests[-1].messages[-1].content
    assert "A A A" in body
    assert body.count("A ") < 400  # truncated to about 200 tokens, not all 2000 words


def test_merge_output_schema() -> None:
    assert MergeOutput(answer="x").confidence == 0.5
    assert set(MergeOutput.model_json_schema()["properties"]) == {"answer", "confidence"}
