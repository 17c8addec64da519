"""Countdown and 24-game puzzles: a safe expression checker, a solver and a seeded generator.

Rules (what :func:`check_expression` enforces; the ``countdown`` grader uses it):

* Only integer literals, ``+ - * /`` and parentheses. ``×``/``x``/``÷``/``−`` are read as the
  ASCII operators. No unary minus, no powers, no names, calls, attributes or any other syntax —
  the text is parsed with :mod:`ast` and walked; nothing is ever evaluated by Python.
* Every literal must be one of the given numbers, each given number used at most once
  (``countdown``) or exactly once (``24``). Repeated numbers in the list may each be used once.
* Arithmetic is exact (:class:`fractions.Fraction`). Division by zero makes the answer wrong.
* ``countdown`` rules (as in the TV show): every intermediate result must be a positive
  integer — no fractions, no zero or negative intermediates.
  ``24`` rules: intermediate fractions are allowed (``8 / (3 - 8/3)`` is a valid 24), only the
  final value must equal the target.
"""

from __future__ import annotations

import ast
import random
import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

__all__ = [
    "CheckResult",
    "Rules",
    "check_expression",
    "extract_expression",
    "generate_24",
    "generate_countdown",
    "solve",
]

Rules = Literal["countdown", "24"]

_MAX_EXPR_CHARS = 300
_TRANSLATE = str.maketrans({"×": "*", "x": "*", "X": "*", "÷": "/", "−": "-", "–": "-", "·": "*"})
_EXPR_LINE = re.compile(r"^[\d\s+\-*/()×xX÷−–·.]+$")


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    value: Fraction | None
    detail: str


class _Reject(Exception):
    pass


def extract_expression(text: str) -> str:
    """Pull the arithmetic expression out of a model's answer.

    Takes the last line that is only an expression (optionally ``expr = target``); falls back to
    the longest run of expression characters in the text.
    """
    candidates: list[str] = []
    for raw in text.replace("`", " ").splitlines():
        # Markdown bold around labels ("**Answer:** ...") — not a power operator between numbers.
        line = re.sub(r"\*\*(?=\s*[A-Za-z])|(?<=[A-Za-z:])\*\*", "", raw).strip().strip("*").strip()
        line = re.sub(r"^(final answer|answer|expression)\s*[:=]\s*", "", line, flags=re.IGNORECASE)
        left = line.split("=")[0].strip() if "=" in line else line
        if (
            left
            and _EXPR_LINE.match(left)
            and re.search(r"\d", left)
            and re.search(r"[+\-*/×x÷−]", left)
        ):
            candidates.append(left)
    if candidates:
        return candidates[-1]
    runs = re.findall(r"[\d\s+\-*/()×÷−]{3,}", text)
    runs = [r.strip() for r in runs if re.search(r"\d\s*[+\-*/×÷−]\s*[\d(]", r)]
    return max(runs, key=len) if runs else text.strip()


def check_expression(
    expression: str, numbers: list[int], target: int, *, rules: Rules = "countdown"
) -> CheckResult:
    """Check ``expression`` against the puzzle. Never raises on bad input; ``ok`` says it all."""
    text = expression.strip().translate(_TRANSLATE)
    if not text:
        return CheckResult(False, None, "empty expression")
    if len(text) > _MAX_EXPR_CHARS:
        return CheckResult(False, None, f"expression longer than {_MAX_EXPR_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return CheckResult(False, None, f"not an arithmetic expression: {expression[:80]!r}")
    used: list[int] = []
    try:
        value = _eval(tree.body, used, rules)
    except _Reject as exc:
        return CheckResult(False, None, str(exc))
    except RecursionError:
        return CheckResult(False, None, "expression nested too deeply")
    have = Counter(numbers)
    want = Counter(used)
    over = want - have
    if over:
        return CheckResult(
            False, value, f"uses numbers not available (or too often): {sorted(over.elements())}"
        )
    if rules == "24" and want != have:
        missing = sorted((have - want).elements())
        return CheckResult(False, value, f"must use every number exactly once; unused: {missing}")
    if value != target:
        return CheckResult(False, value, f"evaluates to {_fmt(value)}, not {target}")
    return CheckResult(True, value, "ok")


def _fmt(v: Fraction) -> str:
    return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"


def _eval(node: ast.expr, used: list[int], rules: Rules) -> Fraction:
    if isinstance(node, ast.Constant):
        if type(node.value) is not int:
            raise _Reject(f"only whole-number literals are allowed, got {node.value!r}")
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp):
        left = _eval(node.left, used, rules)
        right = _eval(node.right, used, rules)
        op = node.op
        if isinstance(op, ast.Add):
            out = left + right
        elif isinstance(op, ast.Sub):
            out = left - right
        elif isinstance(op, ast.Mult):
            out = left * right
        elif isinstance(op, ast.Div):
            if right == 0:
                raise _Reject("division by zero")
            out = left / right
        else:
            raise _Reject(f"operator {type(op).__name__} is not allowed (only + - * /)")
        if rules == "countdown" and (out.denominator != 1 or out <= 0):
            raise _Reject(
                f"intermediate result {_fmt(out)} is not a positive whole number (Countdown rules)"
            )
        return out
    if isinstance(node, ast.UnaryOp):
        raise _Reject("unary operators are not allowed")
    raise _Reject(f"{type(node).__name__} is not allowed in an expression")


# ----- solver -----

_Expr = tuple[Fraction, str]


def solve(numbers: list[int], target: int, *, rules: Rules = "countdown") -> str | None:
    """Return one expression that reaches ``target`` under ``rules``, or None if none exists.

    Exhaustive search over pairs with memoisation of visited multisets; fine for up to six
    numbers. Used to verify generated puzzles and in tests.
    """
    start: list[_Expr] = [(Fraction(n), str(n)) for n in numbers]
    seen: set[tuple[Fraction, ...]] = set()
    exact = rules == "24"

    def search(items: list[_Expr]) -> str | None:
        if not exact:
            for v, e in items:
                if v == target:
                    return e
        if len(items) == 1:
            return items[0][1] if items[0][0] == target else None
        key = tuple(sorted(v for v, _ in items))
        if key in seen:
            return None
        seen.add(key)
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                (a, ea), (b, eb) = items[i], items[j]
                rest = [items[k] for k in range(len(items)) if k not in (i, j)]
                options: list[_Expr] = [(a + b, f"({ea} + {eb})"), (a * b, f"({ea} * {eb})")]
                options += [(a - b, f"({ea} - {eb})"), (b - a, f"({eb} - {ea})")]
                if b != 0:
                    options.append((a / b, f"({ea} / {eb})"))
                if a != 0:
                    options.append((b / a, f"({eb} / {ea})"))
                for v, e in options:
                    if not exact and (v.denominator != 1 or v <= 0):
                        continue
                    found = search(rest + [(v, e)])
                    if found is not None:
                        return found
        return None

    found = search(start)
    if found is not None and found.startswith("(") and found.endswith(")"):
        inner = found[1:-1]
        if check_expression(inner, numbers, target, rules=rules).ok:
            return inner
    return found


# ----- generators -----

_LARGE = [25, 50, 75, 100]
_SMALL = [n for n in range(1, 11) for _ in range(2)]


def generate_countdown(count: int, *, seed: int = 0, n_numbers: int = 6) -> list[dict[str, object]]:
    """Seeded, solvable Countdown puzzles (target 101–999), each verified with :func:`solve`."""
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    while len(out) < count:
        n_large = rng.randint(0, min(2, n_numbers))
        numbers = rng.sample(_LARGE, n_large) + rng.sample(_SMALL, n_numbers - n_large)
        target = rng.randint(101, 999)
        solution = solve(numbers, target, rules="countdown")
        if solution is None:
            continue  # unsolvable target: draw again (keeps every bundled puzzle solvable)
        out.append({"numbers": numbers, "target": target, "solution": solution})
    return out


def generate_24(count: int, *, seed: int = 0) -> list[dict[str, object]]:
    """Seeded, solvable 24-game puzzles (four numbers 1–13), each verified with :func:`solve`."""
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    seen: set[tuple[int, ...]] = set()
    while len(out) < count:
        numbers = sorted(rng.randint(1, 13) for _ in range(4))
        if tuple(numbers) in seen:
            continue
        seen.add(tuple(numbers))
        solution = solve(numbers, 24, rules="24")
        if solution is None:
            continue
        out.append({"numbers": numbers, "target": 24, "solution": solution})
    return out
