"""Graders, the Countdown/24 checker and solver, the stats helpers and the bundled datasets."""

from __future__ import annotations

import ast
import json
import operator
from pathlib import Path
from typing import Any, cast

import pytest

from apr_mcp.bench.build_datasets import build_all
from apr_mcp.bench.countdown import (
    check_expression,
    extract_expression,
    generate_24,
    generate_countdown,
    solve,
)
from apr_mcp.bench.datasets import Item, bundled_datasets, load_dataset
from apr_mcp.bench.graders import grade, grade_choice, grade_countdown, grade_exact, grade_numeric
from apr_mcp.bench.stats import median, paired_compare, percentile, wilson_interval
from apr_mcp.errors import ConfigError
from apr_mcp.llm.simulated import SimRule, SimScript, SimulatedModel

# ----- exact / numeric / choice -----


@pytest.mark.parametrize(
    "answer", ["Oslo", "oslo.", "The answer: Oslo", "Answer: oslo\nBecause it is at 59.9°N"]
)
def test_exact_accepts_normalised_matches(answer: str) -> None:
    assert grade_exact(answer, "Oslo").correct is True


@pytest.mark.parametrize("answer", ["Rome", "Answer: Madrid", "Oslo or Rome"])
def test_exact_rejects_wrong_answers(answer: str) -> None:
    assert grade_exact(answer, "Oslo").correct is False


def test_exact_accepts_any_listed_reference() -> None:
    assert grade_exact("NYC", ["New York", "NYC"]).correct is True


@pytest.mark.parametrize(
    ("answer", "ref"),
    [
        ("The total is 1,234 apples.", 1234),
        ("Final answer: 48.6", 48.6),
        ("x = -7", -7),
        ("It costs $24.725 each", 24.725),
        ("Answer: 3/4", 0.75),
        ("first 12, then 5", 5),
    ],
)
def test_numeric_right(answer: str, ref: float) -> None:
    assert grade_numeric(answer, ref).correct is True


def test_numeric_wrong_and_missing_number() -> None:
    assert grade_numeric("Answer: 49", 48.6).correct is False
    g = grade_numeric("I don't know", 3)
    assert g.correct is False and "no number" in g.detail


def test_numeric_tolerance() -> None:
    assert grade_numeric("3.1416", 3.14159265, rel_tol=1e-4).correct is True
    assert grade_numeric("3.2", 3.14159265, rel_tol=1e-4).correct is False


@pytest.mark.parametrize(
    "answer", ["C", "Answer: C", "The best plan is (C).", "C. $450 total", "answer is c"]
)
def test_choice_right(answer: str) -> None:
    assert grade_choice(answer, "C", ["A", "B", "C", "D"]).correct is True


@pytest.mark.parametrize("answer", ["B", "Answer: (A)", "D) because it is cheapest"])
def test_choice_wrong(answer: str) -> None:
    assert grade_choice(answer, "C", ["A", "B", "C", "D"]).correct is False


def test_choice_without_a_letter_is_wrong() -> None:
    g = grade_choice("the cheapest one", "C", ["A", "B", "C", "D"])
    assert g.correct is False and "no choice" in g.detail


# ----- countdown / 24 -----


def test_countdown_valid_expression() -> None:
    assert check_expression("(100 - 4) * 2", [100, 4, 2, 7, 1, 3], 192).ok


def test_countdown_may_leave_numbers_unused_but_24_may_not() -> None:
    assert check_expression("100 + 4", [100, 4, 2], 104, rules="countdown").ok
    r = check_expression("4 * 6", [4, 6, 1, 1], 24, rules="24")
    assert not r.ok and "exactly once" in r.detail


def test_countdown_rejects_reusing_a_number() -> None:
    r = check_expression("100 + 100", [100, 4, 2], 200)
    assert not r.ok and "too often" in r.detail


def test_repeated_given_numbers_may_each_be_used_once() -> None:
    assert check_expression("8 / (3 - 8 / 3)", [3, 3, 8, 8], 24, rules="24").ok


def test_countdown_rejects_numbers_not_given() -> None:
    assert not check_expression("25 * 4", [25, 2, 2], 100).ok


def test_division_by_zero_is_wrong_not_a_crash() -> None:
    r = check_expression("4 / (2 - 2) + 24", [4, 2, 2, 24], 24, rules="24")
    assert not r.ok and "division by zero" in r.detail


def test_fraction_intermediates_follow_the_rules() -> None:
    # Countdown: intermediate results must be positive whole numbers.
    r = check_expression("(7 / 2) * 4", [7, 2, 4], 14, rules="countdown")
    assert not r.ok and "whole number" in r.detail
    # 24 game: fractions along the way are fine.
    r = check_expression("(7 / 2) * (4 + 3)", [7, 2, 4, 3], 24, rules="24")
    assert not r.ok and "49/2" in r.detail  # exact arithmetic: no float rounding to 24
    assert check_expression("8 / (3 - 8 / 3)", [8, 3, 8, 3], 24, rules="24").ok


def test_countdown_rejects_negative_and_zero_intermediates() -> None:
    r = check_expression("(2 - 5) * (1 - 100)", [2, 5, 1, 100], 297)
    assert not r.ok and "positive" in r.detail


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('echo hi')",
        "(lambda: 24)()",
        "2 ** 10",
        "-4 + 28",
        "24.0",
        "open('/etc/passwd')",
        "[24][0]",
        "x",
        "4 * 6; import os",
        "4 if 1 else 6",
        "6 << 2",
    ],
)
def test_malicious_or_disallowed_input_is_rejected(expr: str) -> None:
    r = check_expression(expr, [4, 6, 2, 10, 28, 24, 1], 24, rules="countdown")
    assert r.ok is False


def test_overlong_input_is_rejected_without_evaluating() -> None:
    r = check_expression("(" * 5000 + "1" + ")" * 5000, [1], 1)
    assert not r.ok and "longer" in r.detail


def test_extract_expression_from_prose() -> None:
    text = "Let me try.\n100 * 4 = 400 is too big.\n**Final answer:** (75 - 25) * 2 = 100"
    assert extract_expression(text) == "(75 - 25) * 2"
    assert grade_countdown("We get 6 × 4 = 24", [6, 4, 1, 1], 24, rules="countdown").correct is True
    assert grade_countdown("Answer: 6 ÷ 3 × 12", [6, 3, 12], 24).correct is True


def test_countdown_grader_rejects_unknown_rules() -> None:
    with pytest.raises(ConfigError):
        grade_countdown("1 + 1", [1, 1], 2, rules="chess")


def test_solver_finds_and_refutes() -> None:
    sol = solve([3, 3, 8, 8], 24, rules="24")
    assert sol is not None and check_expression(sol, [3, 3, 8, 8], 24, rules="24").ok
    assert solve([1, 1, 1, 1], 24, rules="24") is None
    assert solve([1, 2], 500, rules="countdown") is None


def test_generators_are_seeded_and_solvable() -> None:
    a = generate_24(4, seed=7)
    assert a == generate_24(4, seed=7)
    assert a != generate_24(4, seed=8)
    for p in a:
        assert check_expression(
            str(p["solution"]), cast(list[int], p["numbers"]), 24, rules="24"
        ).ok
    c = generate_countdown(2, seed=3, n_numbers=5)
    for p in c:
        assert check_expression(
            str(p["solution"]), cast(list[int], p["numbers"]), cast(int, p["target"])
        ).ok


# ----- the grade() dispatcher and the LLM judge -----


async def test_grade_dispatches_by_item_grader() -> None:
    item = Item(
        id="c1",
        question="make 24",
        grader="countdown",
        meta={"numbers": [4, 6, 1, 1], "target": 24, "rules": "countdown"},
    )
    assert (await grade(item, "4 * 6")).correct is True
    assert (await grade(item, "4 + 6")).correct is False
    num = Item(id="n1", question="?", answer=12, grader="numeric")
    assert (await grade(num, "Answer: 12")).correct is True


async def test_llm_judge_uses_the_model_and_reports_its_verdict() -> None:
    model = SimulatedModel(
        ttft_s=0.001,
        tokens_per_s=100000,
        script=SimScript(
            rules=[
                SimRule(
                    pattern="Candidate answer:\\s*Paris",
                    reply={"correct": True, "reason": "same city"},
                ),
                SimRule(
                    pattern="Candidate answer:",
                    reply={"correct": False, "reason": "different city"},
                ),
            ]
        ),
    )
    item = Item(id="j1", question="Capital of France?", answer="Paris", grader="llm_judge")
    right = await grade(item, "Paris", judge=model)
    wrong = await grade(item, "Lyon", judge=model)
    assert right.correct is True and "same city" in right.detail
    assert wrong.correct is False
    assert model.calls_by_purpose["judge"] == 2
    # Without a judge model the item is left ungraded rather than guessed.
    assert (await grade(item, "Paris")).correct is None


# ----- stats -----


def test_percentiles_and_median() -> None:
    assert median([3, 1, 2]) == 2
    assert median([1, 2, 3, 4]) == 2.5
    assert percentile(list(range(1, 11)), 90) == pytest.approx(9.1)
    assert median([]) is None


def test_wilson_interval_brackets_the_rate() -> None:
    lo, hi = wilson_interval(8, 10)
    assert 0.44 < lo < 0.8 < hi < 0.98


def test_paired_compare_is_deterministic_and_sane() -> None:
    base = [True] * 10 + [False] * 10
    better = [True] * 18 + [False] * 2
    c1 = paired_compare(base, better, seed=1)
    c2 = paired_compare(base, better, seed=1)
    assert c1 == c2
    assert c1.diff == pytest.approx(0.4) and c1.wins == 8 and c1.losses == 0
    assert 0 < c1.ci_low <= 0.4 <= c1.ci_high
    assert c1.mcnemar_p == pytest.approx(2 / 2**8)
    same = paired_compare(base, base)
    assert same.diff == 0 and same.mcnemar_p == 1.0 and same.ci_low == same.ci_high == 0


# ----- datasets -----


def _safe_eval(expr: str) -> float:
    ops: dict[type, Any] = {
        ast.Add: operator.add,
        ast.Sub: operator.sub,
        ast.Mult: operator.mul,
        ast.Div: operator.truediv,
        ast.Mod: operator.mod,
        ast.Pow: operator.pow,
    }

    def ev(n: ast.expr) -> float:
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)):
            return n.value
        if isinstance(n, ast.BinOp):
            return ops[type(n.op)](ev(n.left), ev(n.right))  # type: ignore[no-any-return]
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "ceil":
            import math

            return math.ceil(ev(n.args[0]))
        raise ValueError(ast.dump(n))

    return ev(ast.parse(expr, mode="eval").body)


def test_bundled_datasets_load_with_provenance_and_sizes() -> None:
    names = bundled_datasets()
    assert {"split_pays", "countdown", "arithmetic", "sequential_control"} <= set(names)
    for name in names:
        ds = load_dataset(name)
        assert 30 <= len(ds.items) <= 150, name
        assert ds.info.licence.startswith("MIT") and ds.info.version and ds.info.source
    assert all(i.should_split for i in load_dataset("split_pays").items)
    assert not any(i.should_split for i in load_dataset("sequential_control").items)


def test_routing_labels_are_split_into_a_tuning_set_and_a_held_out_set() -> None:
    sets = {name: load_dataset(name).info.routing_set for name in bundled_datasets()}
    assert sets.pop("routing_heldout") == "held-out"
    assert set(sets.values()) == {"tuning"}  # the rules were written from these labels
    held = load_dataset("routing_heldout")
    assert len(held.items) >= 40 and "not used to tune rules" in held.info.source
    labels = [i.should_split for i in held.items]
    assert labels.count(True) >= 15 and labels.count(False) >= 15
    kinds = {i.meta["kind"] for i in held.items}
    assert {"debug report", "list", "chain", "arithmetic", "arithmetic parts"} <= kinds
    assert all(
        i.meta["provenance"] == "written for apr-mcp held-out set, not used to tune rules"
        for i in held.items
    )
    tuned = {i.question for name in sets for i in load_dataset(name).items}
    assert not tuned & {i.question for i in held.items}


async def test_routing_only_items_are_never_graded() -> None:
    item = next(i for i in load_dataset("routing_heldout").items if i.grader == "none")
    assert item.answer is None
    assert (await grade(item, "anything at all")).correct is None


def test_bundled_references_are_right() -> None:
    for item in load_dataset("countdown").items:
        m = item.meta
        assert check_expression(m["solution"], m["numbers"], m["target"], rules=m["rules"]).ok, (
            item.id
        )
    for name in ("arithmetic", "split_pays", "routing_heldout"):
        for item in load_dataset(name).items:
            if "solution" in item.meta and item.grader == "numeric":
                assert _safe_eval(item.meta["solution"]) == pytest.approx(float(item.answer)), (
                    item.id
                )


def test_bundled_files_match_the_builder() -> None:
    built = build_all()
    for name, records in built.items():
        if name == "countdown":
            continue  # regenerating runs the solver; its puzzles are checked above
        path = Path(load_dataset(name).path)
        on_disk = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        assert on_disk == json.loads(json.dumps(records)), name


def test_user_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    good = tmp_path / "mine.jsonl"
    good.write_text(
        '{"id": "a", "question": "2+2?", "answer": 4, "grader": "numeric"}\n\n'
        '{"id": "b", "question": "Capital of Peru?", "answer": "Lima"}\n',
        encoding="utf-8",
    )
    ds = load_dataset(str(good), limit=1)
    assert ds.info.name == "mine" and [i.id for i in ds.items] == ["a"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"id": "a", "question": "q", "answer": 1}\n{"id": "a", "question": "q", "answer": 1}\n'
    )
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: duplicate id"):
        load_dataset(str(bad))
    bad.write_text('{"id": "a", "question": "q", "grader": "telepathy", "answer": 1}\n')
    with pytest.raises(ConfigError, match="bad.jsonl:1: invalid record"):
        load_dataset(str(bad))
    bad.write_text(
        '{"id": "a", "question": "q", "grader": "countdown", "meta": {"numbers": [1, "2"], '
        '"target": 3}}\n'
    )
    with pytest.raises(ConfigError, match="meta.numbers must be"):
        load_dataset(str(bad))
    bad.write_text(
        '{"id": "a", "question": "q", "grader": "countdown", "meta": {"numbers": [1], "target": 1, '
        '"rules": "go"}}\n'
    )
    with pytest.raises(ConfigError, match="meta.rules"):
        load_dataset(str(bad))
    bad.write_text("not json\n")
    with pytest.raises(ConfigError, match="bad.jsonl:1: not valid JSON"):
        load_dataset(str(bad))
    with pytest.raises(ConfigError, match="no dataset named"):
        load_dataset("nonexistent_set")
