"""What one search branch of a number puzzle finds, in the simulated model.

The simulated planner splits a Countdown or 24-game question into search branches, one per route
to the target (``as 4 × 179: make 179 from the other numbers``, ``near a multiple of 10``, ``as a
sum``, ``backwards by division``, ``starting with 75 × 9``; see
:func:`apr_mcp.llm.simulated_plan.decompose`). A branch really searches its own route: the route
reduces the puzzle to smaller ones that :func:`apr_mcp.bench.countdown.solve` searches
exhaustively, the pieces are assembled into one expression, and that expression is checked
against the whole puzzle with :func:`apr_mcp.bench.countdown.check_expression`. So a branch that
reports a solution has a verified one — it settles the question — and one that reports failure
has exhausted its route. The sequential baseline tries the same routes in the same order until
one works, so both strategies do the same work per route.

Cost: a route that fails is searched to the end (a search branch's full reasoning); one that
works stops when the expression is found, a deterministic 40–70 % of the way.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import Literal

__all__ = ["BranchOutcome", "found_share", "puzzle_rules", "search_branch"]

Rules = Literal["countdown", "24"]

_RULES = re.compile(r"numbers (?P<numbers>\d+(?:, \d+)+) \((?P<allowed>[^)]*)\).*?target (?P<target>\d+)")
_MULTIPLE = re.compile(r"as (\d+) × (\d+): make \d+ from the other numbers")
_NEAR = re.compile(r"near a multiple of (\d+): reach \d+ × (\d+) = \d+ with the other numbers, "
                   r"then (add|subtract) (\d+)")
_SUM = re.compile(r"as a sum: (\d+) \+ (\d+)")
_DIFFERENCE = re.compile(r"as a difference: (\d+) − (\d+)")
_DIVISION = re.compile(r"backwards by division: make (\d+), then divide by (\d+)")
_START = re.compile(r"starting with (\d+) ([×+−]) (\d+) = (-?\d+)")


@dataclass(frozen=True)
class BranchOutcome:
    """A branch's result: the verified ``expression`` (None: the route fails) and why."""

    expression: str | None
    detail: str

    @property
    def works(self) -> bool:
        return self.expression is not None


def puzzle_rules(context: str) -> tuple[list[int], int, Rules] | None:
    """Numbers, target and rules from a branch's context (``numbers 6, 9, … (each at most once),
    + - × ÷, whole-number steps, target 716``), or None if it is not a puzzle's."""
    m = _RULES.search(context)
    if not m:
        return None
    rules: Rules = "24" if "exactly once" in m["allowed"] else "countdown"
    return [int(n) for n in m["numbers"].split(", ")], int(m["target"]), rules


def found_share(core: str) -> float:
    """The share of a branch's full reasoning spent before a working route yields the answer."""
    from .simulated_content import stable_hash  # simulated_content imports this module

    return 0.4 + (stable_hash("found", " ".join(core.split())) % 301) / 1000


def search_branch(core: str, context: str) -> BranchOutcome | None:
    """Search the route named in ``core`` for the puzzle in ``context``.

    None when ``core`` is not a search branch this simulator wrote (the caller answers generically).
    """
    puzzle = puzzle_rules(context)
    if puzzle is None or "Search branch:" not in core:
        return None
    numbers, target, rules = puzzle
    return _search(core[core.index("Search branch:"):], tuple(numbers), target, rules)


@lru_cache(maxsize=512)
def _search(route: str, numbers: tuple[int, ...], target: int, rules: Rules) -> BranchOutcome | None:
    candidates = _candidates(route, list(numbers), target, rules)
    if candidates is None:
        return None
    # Imported late: the bench package imports the engine, which imports the backends.
    from ..bench.countdown import check_expression

    for expression in candidates:
        check = check_expression(expression, list(numbers), target, rules=rules)
        if check.ok:
            return BranchOutcome(expression, f"{expression} = {target}, checked against the rules")
    return BranchOutcome(None, "no expression along this route reaches the target")


def _candidates(route: str, numbers: list[int], target: int, rules: Rules) -> list[str] | None:
    """Expressions the route yields (possibly none); None for a route this module does not know."""
    if m := _MULTIPLE.search(route):
        factor, other = int(m[1]), int(m[2])
        return _around(numbers, [factor], other, rules, lambda e: f"{factor} * {_group(e)}")
    if m := _SUM.search(route):
        big, rest = int(m[1]), int(m[2])
        return _around(numbers, [big], rest, rules, lambda e: f"{big} + {_group(e)}")
    if m := _DIFFERENCE.search(route):
        big, rest = int(m[1]), int(m[2])
        return _around(numbers, [big], rest, rules, lambda e: f"{big} - {_group(e)}")
    if m := _DIVISION.search(route):
        product, small = int(m[1]), int(m[2])
        return _around(numbers, [small], product, rules, lambda e: f"{_group(e)} / {small}")
    if m := _NEAR.search(route):
        return _near(numbers, int(m[1]), int(m[2]), m[3], int(m[4]), rules)
    if m := _START.search(route):
        return _start(numbers, target, int(m[1]), m[2], int(m[3]), int(m[4]), rules)
    return None


def _group(expression: str) -> str:
    return expression if expression.isdigit() else f"({expression})"


def _without(numbers: list[int], used: list[int]) -> list[int] | None:
    rest = Counter(numbers)
    rest.subtract(used)
    return None if any(v < 0 for v in rest.values()) else sorted(rest.elements())


def _around(numbers: list[int], used: list[int], goal: int, rules: Rules,
            wrap: Callable[[str], str]) -> list[str]:
    """Make ``goal`` from the numbers left after ``used``; ``wrap`` puts the route around it."""
    rest = _without(numbers, used)
    if rest is None or not rest or (goal <= 0 and rules == "countdown"):
        return []
    inner = _solve(tuple(rest), goal, rules)
    return [] if inner is None else [wrap(inner)]


def _near(numbers: list[int], big: int, near: int, op: str, gap: int, rules: Rules) -> list[str]:
    """``big × (near from some numbers) ± (gap from the others)``: every split of the rest."""
    rest = _without(numbers, [big])
    if rest is None:
        return []
    sign = "+" if op == "add" else "-"
    tried: set[tuple[int, ...]] = set()
    for size in range(1, len(rest)):
        for chosen in combinations(rest, size):
            if chosen in tried:
                continue
            tried.add(chosen)
            others = _without(rest, list(chosen))
            assert others is not None
            left = _solve(chosen, near, rules)
            right = _solve(tuple(others), gap, rules) if left is not None else None
            if left is not None and right is not None:
                return [f"{big} * {_group(left)} {sign} {_group(right)}"]
    return []


def _start(numbers: list[int], target: int, x: int, op: str, y: int, value: int,
           rules: Rules) -> list[str]:
    """Combine ``x op y`` first, then solve the smaller puzzle with its value in their place."""
    rest = _without(numbers, [x, y])
    if rest is None or (rules == "countdown" and value <= 0):
        return []
    found = _solve(tuple(sorted([*rest, value])), target, rules)
    # Put "(x op y)" back for one occurrence of its value; without one the route was not taken.
    literal = re.compile(rf"(?<![\d-]){re.escape(str(value))}(?!\d)")
    if found is None or not literal.search(found):
        return []
    ascii_op = {"×": "*", "+": "+", "−": "-"}[op]
    return [literal.sub(f"({x} {ascii_op} {y})", found, count=1)]


@lru_cache(maxsize=4096)
def _solve(numbers: tuple[int, ...], target: int, rules: Rules) -> str | None:
    """:func:`apr_mcp.bench.countdown.solve` on a sub-puzzle (memoised: routes share them)."""
    from ..bench.countdown import solve

    return solve(list(numbers), target, rules=rules)
