"""The simulated model's judgement and work model: routing over the bundled datasets, reply
lengths that follow the parts, debug and meta replies, building from settings."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from apr_mcp.bench.datasets import load_dataset
from apr_mcp.config import Settings
from apr_mcp.engine.debug import DebugHypotheses, DebugVerdict
from apr_mcp.engine.meta import MetaDecision
from apr_mcp.errors import ConfigError
from apr_mcp.llm.base import ModelRequest
from apr_mcp.llm.simulated import SimRule, SimScript, SimulatedModel
from apr_mcp.llm.simulated_content import reasoning_tokens
from apr_mcp.llm.simulated_debug import analyze_bounds
from apr_mcp.llm.simulated_plan import decompose, part_core
from apr_mcp.llm.structured import complete_structured
from apr_mcp.prompts import load_prompt
from apr_mcp.schemas import Plan, ThreadAnswer

FAST: dict[str, Any] = {"ttft_s": 0.0, "tokens_per_s": 1e6}
DATASETS = ("arithmetic", "countdown", "sequential_control", "split_pays")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "debugging"
SPLIT_PAYS = (
    "Compute: (a) 17 × 23, (b) the number of edges of a cube, (c) 1000 divided by 8, (d) the number "
    "of minutes in 3.5 hours. Work out each part separately, then give the sum of all parts as the "
    "final answer."
)


def planner_request(question: str) -> ModelRequest:
    messages = load_prompt("planner").render(
        question=question, context="", signals="", schema="{}", min_threads=2, max_threads=8
    )
    return ModelRequest(messages=messages, schema_name="Plan", purpose="planner",
                        json_schema=Plan.model_json_schema())


def solver_request(subtask: str, question: str = "q", context: str = "") -> ModelRequest:
    messages = load_prompt("solver").render(
        question=question, context=context, dependencies="", subtask=subtask, schema="{}"
    )
    return ModelRequest(messages=messages, schema_name="ThreadAnswer", purpose="solver",
                        json_schema=ThreadAnswer.model_json_schema())


def sequential_request(question: str) -> ModelRequest:
    messages = load_prompt("sequential").render(question=question, context="")
    return ModelRequest(messages=messages, purpose="sequential", max_tokens=8192)


# ----- routing -----


def test_planner_agrees_with_the_split_labels_of_every_bundled_dataset() -> None:
    agree: dict[str, tuple[int, int]] = {}
    for name in DATASETS:
        items = [i for i in load_dataset(name).items if i.should_split is not None]
        hits = sum((len(decompose(i.question).parts) >= 2) == i.should_split for i in items)
        agree[name] = (hits, len(items))
    for name, (hits, total) in agree.items():
        assert total >= 30 and hits / total >= 0.9, (name, hits, total)
    hits = sum(h for h, _ in agree.values())
    total = sum(t for _, t in agree.values())
    assert hits / total >= 0.95, agree


@pytest.mark.parametrize(
    ("question", "kind", "parts"),
    [
        (SPLIT_PAYS, "enumeration", 4),
        (
            (
                "Which plan is cheapest over a year? (A) $40 a month; (B) $400 up front. Answer "
                "with the letter."
            ),
            "options",
            2,
        ),
        ("Which planet is largest: Mars, Venus, Neptune or Earth? Answer with the planet.", "choices", 4),
        (
            (
                "Find the smallest positive integer n such that n is a multiple of 6, n + 1 is a "
                "multiple of 5 and n + 2 is a multiple of 4. Check every condition."
            ),
            "conditions",
            3,
        ),
    ],
)
def test_a_trailing_aggregation_or_format_step_does_not_make_parts_a_chain(
    question: str, kind: str, parts: int
) -> None:
    split = decompose(question)
    assert split.kind == kind and len(split.parts) == parts
    assert all(p.core and "then give" not in p.prompt for p in split.parts)


def test_the_aggregation_is_left_to_the_merge_but_a_real_chain_is_not_split() -> None:
    split = decompose(SPLIT_PAYS)
    assert "sum of all parts" in split.aggregate and "aggregates" in split.reason
    compared = decompose("Compare PostgreSQL, MySQL and SQLite for embedded analytics, then recommend one.")
    assert len(compared.parts) == 3 and "recommend one" in compared.aggregate
    assert split.parts[0].core == "Compute 17 × 23."
    for chain in (
        (
            "Start with 7. First double it. Then subtract 3. Then square the result. What number "
            "do you end with?"
        ),
        (
            "A cyclist rides at 18 km/h for 2.5 hours and then at 12 km/h for 1.5 hours. What is "
            "the total distance in km?"
        ),
        "Compute (a) the area of the square, (b) then use that result to find the side of a cube.",
    ):
        assert decompose(chain).parts == [], chain


async def test_number_puzzles_split_into_self_contained_search_branches() -> None:
    question = (
        "Countdown: using the numbers 100, 75, 9, 8, 8, 4 (each at most once) and + - × ÷, make "
        "exactly 103. Every intermediate result must be a positive whole number. Give the expression "
        "as the final answer."
    )
    plan = Plan.model_validate_json(
        (await SimulatedModel(**FAST).complete(planner_request(question))).text
    )
    assert plan.should_split and 3 <= len(plan.subtasks) <= 4
    assert "search branches" in plan.reason
    prompts = [s.prompt for s in plan.subtasks]
    assert len(set(prompts)) == len(prompts)
    for prompt in prompts:  # each worker sees the numbers, the rules and the target
        assert "100, 75, 9, 8, 8, 4" in prompt and "target 103" in prompt and "whole-number" in prompt


async def test_an_instruction_for_exactly_n_subtasks_is_followed_when_the_question_splits() -> None:
    model = SimulatedModel(**FAST)

    async def plan(question: str, width: int) -> Plan:
        request = planner_request(question)
        signals = f"none\nINSTRUCTION: split this question into exactly {width} self-contained"
        request.messages[-1].content += signals
        return Plan.model_validate_json((await model.complete(request)).text)

    padded = await plan(SPLIT_PAYS, 6)
    assert len(padded.subtasks) == 6 and "independent check" in padded.subtasks[-1].prompt
    assert len({s.prompt for s in padded.subtasks}) == 6
    folded = await plan(SPLIT_PAYS, 3)
    assert len(folded.subtasks) == 3 and "minutes in 3.5 hours" in folded.subtasks[-1].prompt
    # A re-check costs one part's worth, although its context quotes the whole question.
    recheck = padded.subtasks[-1].prompt
    out = (await model.complete(solver_request(recheck, question=SPLIT_PAYS))).usage.output_tokens
    assert out <= reasoning_tokens(part_core(recheck)) + 120
    simple = await plan("What is the capital of France?", 6)
    assert not simple.should_split  # the engine then runs independent attempts


# ----- the work model -----


async def test_reply_lengths_follow_the_parts() -> None:
    model = SimulatedModel(**FAST)
    split = decompose(SPLIT_PAYS)
    sequential = await model.complete(sequential_request(SPLIT_PAYS))
    threads = [
        await model.complete(solver_request(p.prompt, question=SPLIT_PAYS)) for p in split.parts
    ]
    plan = await model.complete(planner_request("What is the capital of France?"))
    parts = [reasoning_tokens(p.core) for p in split.parts]
    seq_out = sequential.usage.output_tokens
    # The chain of thought works through every part: the sum of their reasoning, plus a wrap-up.
    assert sum(parts) <= seq_out <= sum(parts) + 80
    assert sequential.text.count("Part ") == 4 and sequential.text.rstrip().splitlines()[-1].startswith(
        "Final answer:"
    )
    for thread, own in zip(threads, parts, strict=True):
        out = thread.usage.output_tokens
        assert own <= out <= own + 120  # one part's worth, a summary and the JSON around it
        assert out < seq_out / 2
    assert plan.usage.output_tokens < 80  # a "do not split" plan is a short JSON


async def test_a_thread_given_the_whole_question_costs_what_the_baseline_costs() -> None:
    model = SimulatedModel(**FAST)
    question = "Start with 5. First multiply by 9. Then add 7. What number do you end with?"
    sequential = (await model.complete(sequential_request(question))).usage.output_tokens
    thread = (await model.complete(solver_request(question, question=question))).usage.output_tokens
    assert sequential - 30 <= thread <= sequential + 120


async def test_search_baseline_tries_branches_until_one_works_and_scale_lengthens_reasoning() -> None:
    question = (
        "24 game: using each of the numbers 3, 3, 4, 4 exactly once and + - × ÷ (fractions allowed "
        "along the way), make 24. Give the expression as the final answer."
    )
    text = (await SimulatedModel(**FAST).complete(sequential_request(question))).text
    tried = text.count("Attempt ") - 1  # the closing line names the attempt that works
    assert 1 <= tried <= len(decompose(question).parts)
    assert f"Attempt {tried} works" in text
    part = decompose(SPLIT_PAYS).parts[1].prompt
    one = (await SimulatedModel(**FAST).complete(solver_request(part))).usage.output_tokens
    three = (
        await SimulatedModel(**FAST, reasoning_scale=3).complete(solver_request(part))
    ).usage.output_tokens
    assert three > 2 * one


async def test_a_reply_cut_at_max_tokens_is_repaired_into_a_short_valid_answer() -> None:
    model = SimulatedModel(**FAST)
    request = solver_request(SPLIT_PAYS, question=SPLIT_PAYS).model_copy(update={"max_tokens": 200})
    cut = await model.complete(request)
    assert cut.finish_reason == "length" and cut.usage.output_tokens == 200
    answer, response = await complete_structured(model, request, ThreadAnswer)
    assert model.calls == 3  # the cut reply, then one repair
    assert answer.answer.startswith("[sim]") and answer.summary
    assert response.usage.output_tokens > 200  # both calls are paid for


def test_part_core_recovers_the_unit_from_a_subtask_prompt() -> None:
    part = decompose("Which planet is largest: Mars, Venus, Neptune or Earth?").parts[0]
    assert part_core(part.prompt) == part.core and part.core.startswith("For Mars alone")
    assert part_core("a host's own subtask") == "a host's own subtask"


# ----- debug and meta -----


def debug_request(name: str, schema: type[object], **values: str) -> ModelRequest:
    messages = load_prompt(name).render(schema="{}", **values)
    return ModelRequest(messages=messages, schema_name=schema.__name__, purpose="planner")


async def test_debug_hypotheses_name_the_bound_that_overruns_and_the_fix() -> None:
    traceback = (EXAMPLE / "traceback.txt").read_text(encoding="utf-8")
    code = (EXAMPLE / "buggy.py").read_text(encoding="utf-8")
    request = debug_request("debug_hypotheses", DebugHypotheses, error=traceback, code=code,
                            context="(none)", signals="", min_hypotheses="3", max_hypotheses="4")
    out = DebugHypotheses.model_validate_json((await SimulatedModel(**FAST).complete(request)).text)
    assert 3 <= len(out.hypotheses) <= 4 and out.symptom.startswith("IndexError")
    top = out.hypotheses[0]
    assert "range(len(values) - k + 2)" in top.title and "window_sums" in top.title
    assert top.prior == max(h.prior for h in out.hypotheses)
    assert len({h.title for h in out.hypotheses}) == len(out.hypotheses)
    finding = analyze_bounds(code, "total += values[start + offset]")
    assert finding is not None and finding.over == 1
    assert finding.fixed_bound == "range(len(values) - k + 1)"
    assert analyze_bounds(code.replace("- k + 2", "- k + 1"), "total += values[start + offset]") is None


async def test_investigations_and_verdict_rank_the_confirmed_hypothesis_first() -> None:
    traceback = (EXAMPLE / "traceback.txt").read_text(encoding="utf-8")
    code = (EXAMPLE / "buggy.py").read_text(encoding="utf-8")
    model = SimulatedModel(**FAST)
    titles = {
        "h1": "Off-by-one in the loop bound `for start in range(len(values) - k + 2)` (line 17)",
        "h2": "The input is shorter than the code assumes",
    }
    results = []
    for hid, title in titles.items():
        subtask = load_prompt("debug_investigate").render(
            id=hid, title=title, rationale="r", check="c")[-1].content
        reply = await model.complete(solver_request(subtask, question=traceback, context=code))
        answer = ThreadAnswer.model_validate_json(reply.text)
        assert "Evidence for:" in answer.answer and "Fix:" in answer.answer
        results.append(f"[{hid}] Hypothesis: {title}\n(investigator confidence "
                       f"{answer.confidence:.2f})\n{answer.answer}")
    request = debug_request("debug_verdict", DebugVerdict, error=traceback, code=code,
                            results="\n\n".join(results[::-1]))
    verdict = DebugVerdict.model_validate_json((await model.complete(request)).text)
    assert [r.id for r in verdict.ranking] == ["h1", "h2"]
    assert verdict.ranking[0].likelihood > verdict.ranking[1].likelihood
    assert "range(len(values) - k + 1)" in verdict.answer and "h1" in verdict.answer


async def test_meta_decision_continues_unless_scripted() -> None:
    messages = load_prompt("controller").render(schema="{}", max_new="2", question="q",
                                                state="t1 running; t2 done")
    request = ModelRequest(messages=messages, schema_name="MetaDecision", purpose="controller")
    decision = MetaDecision.model_validate_json((await SimulatedModel(**FAST).complete(request)).text)
    assert decision.action == "continue" and decision.reason
    scripted = SimulatedModel(**FAST, script=SimScript(rules=[SimRule(
        pattern=".", purpose="controller", reply={"action": "merge", "reason": "enough"})]))
    assert MetaDecision.model_validate_json(
        (await scripted.complete(request)).text).action == "merge"


# ----- settings -----


def test_from_settings_reads_latency_script_and_optional_fields(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"pattern": "boom", "fault": "500"}]), encoding="utf-8")
    settings = Settings(backend="simulated", sim_ttft_s=0.2, sim_tokens_per_s=50.0, sim_script=script)
    model = SimulatedModel.from_settings(settings, model_name="m")
    assert (model.ttft_s, model.tokens_per_s, model.model_name) == (0.2, 50.0, "m")
    assert model.script is not None and model.script.rules[0].fault == "500"
    bare = SimulatedModel.from_settings(SimpleNamespace(sim_ttft_s=0.0, sim_tokens_per_s=9.0))
    assert bare.script is None and bare.reasoning_scale == 1.0 and bare.tokens_per_s == 9.0
    scaled = SimulatedModel.from_settings(
        SimpleNamespace(sim_ttft_s=0.0, sim_tokens_per_s=9.0, sim_reasoning_scale=2.5))
    assert scaled.reasoning_scale == 2.5
    with pytest.raises(ConfigError, match="cannot read simulation script"):
        SimulatedModel.from_settings(
            SimpleNamespace(sim_ttft_s=0.0, sim_tokens_per_s=9.0, sim_script=tmp_path / "missing"))

