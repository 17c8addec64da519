"""Graders: decide whether a model's answer to a dataset item is correct.

Each item names its grader (``exact``, ``numeric``, ``choice``, ``countdown``, ``llm_judge``,
or ``none`` for a routing-only item, which is never graded).
Programmatic graders are pure functions of the item and the answer text; ``llm_judge`` asks the
configured merger model through :func:`apr_mcp.llm.structured.complete_structured` and is only
used when an item asks for it (answers with no crisp reference).

Answers from the pipeline are free text, so every grader first extracts what it needs: the text
after the last ``Answer:``/``Final answer:`` marker when present, else the whole answer.
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from ..errors import AprError, ConfigError
from ..llm.base import Message, Model, ModelRequest
from ..llm.structured import complete_structured
from .countdown import check_expression, extract_expression
from .datasets import GRADERS, Item

__all__ = [
    "GRADERS",
    "Grade",
    "JudgeVerdict",
    "final_answer_text",
    "grade",
    "grade_choice",
    "grade_countdown",
    "grade_exact",
    "grade_numeric",
]


@dataclass(frozen=True)
class Grade:
    """``correct`` is None when the answer could not be graded (e.g. no judge model)."""

    correct: bool | None
    detail: str = ""


def final_answer_text(answer: str) -> str:
    """The part of ``answer`` after its last "Answer:" marker (or all of it)."""
    matches = list(re.finditer(r"(?:final answer|answer)\s*(?:is\s*)?[:=]", answer, re.IGNORECASE))
    if matches:
        tail = answer[matches[-1].end() :].strip()
        if tail:
            return tail
    return answer.strip()


def _normalise(text: str) -> str:
    text = text.casefold().strip()
    text = text.translate(str.maketrans("", "", string.punctuation.replace("-", "")))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def grade_exact(answer: str, reference: str | list[str]) -> Grade:
    """Normalised exact match (case, punctuation, articles, whitespace ignored).

    Accepts the answer if its final-answer part equals a reference, or if its first line does
    (models often add an explanation below).
    """
    refs = [reference] if isinstance(reference, str) else list(reference)
    norm_refs = {_normalise(r) for r in refs}
    final = final_answer_text(answer)
    candidates = {_normalise(final), _normalise(final.splitlines()[0] if final else "")}
    if candidates & norm_refs:
        return Grade(True, "exact match")
    return Grade(False, f"expected {refs[0]!r}, got {final[:80]!r}")


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:e-?\d+)?|-?\.\d+", re.IGNORECASE)


def _parse_number(token: str) -> float | None:
    try:
        return float(token.replace(",", ""))
    except ValueError:
        return None


def extract_number(answer: str) -> float | None:
    """The last number in the final-answer part (``1,234.5`` → 1234.5; fractions ``3/4`` too)."""
    final = final_answer_text(answer)
    frac = re.findall(r"(-?\d+)\s*/\s*(\d+)(?!\s*[\d.])", final)
    tokens = _NUMBER.findall(final)
    if not tokens:
        return None
    if frac and final.rstrip(" .").endswith(frac[-1][1]):
        num, den = int(frac[-1][0]), int(frac[-1][1])
        return num / den if den else None
    return _parse_number(tokens[-1])


def grade_numeric(
    answer: str, reference: float | str, *, rel_tol: float = 1e-6, abs_tol: float = 1e-6
) -> Grade:
    """The last number of the answer equals ``reference`` within the tolerances."""
    ref = float(reference)
    got = extract_number(answer)
    if got is None:
        return Grade(False, "no number in the answer")
    if math.isclose(got, ref, rel_tol=rel_tol, abs_tol=abs_tol):
        return Grade(True, f"{got:g} ≈ {ref:g}")
    return Grade(False, f"expected {ref:g}, got {got:g}")


_CHOICE_PATTERNS = [
    re.compile(
        r"(?:final answer|answer|option|choice)\s*(?:is\s*)?[:=]?\s*\(?([A-Z])\)?(?![A-Za-z])",
        re.IGNORECASE,
    ),
    re.compile(r"^\s*\(?([A-Z])\)?\s*(?:[.):\-]|$)", re.MULTILINE),
    re.compile(r"\(([A-Z])\)"),
]


def grade_choice(answer: str, reference: str, choices: list[str] | None = None) -> Grade:
    """Multiple choice: the chosen letter equals ``reference`` (a letter like ``"B"``).

    The letter is taken from "Answer: B"/"(B)"/a line starting with "B." — the last such mention.
    """
    ref = reference.strip().upper()[:1]
    letters = (
        set(string.ascii_uppercase[: len(choices)]) if choices else set(string.ascii_uppercase)
    )
    for pattern in _CHOICE_PATTERNS:
        found = [m.upper() for m in pattern.findall(answer) if m.upper() in letters]
        if found:
            got = found[-1]
            return Grade(got == ref, f"chose {got}, expected {ref}")
    text = answer.strip().upper()
    if len(text) == 1 and text in letters:
        return Grade(text == ref, f"chose {text}, expected {ref}")
    return Grade(False, "no choice letter found in the answer")


def grade_countdown(
    answer: str, numbers: list[int], target: int, rules: str = "countdown"
) -> Grade:
    """The expression in the answer reaches ``target`` under the puzzle's rules
    (see :mod:`apr_mcp.bench.countdown`)."""
    if rules not in ("countdown", "24"):
        raise ConfigError(f"unknown countdown rules {rules!r}; use 'countdown' or '24'")
    expr = extract_expression(answer)
    result = check_expression(expr, numbers, target, rules=rules)  # type: ignore[arg-type]
    return Grade(result.ok, f"{expr[:80]!r}: {result.detail}")


class JudgeVerdict(BaseModel):
    """What the LLM judge returns."""

    correct: bool = Field(
        description="True if the answer is correct and complete given the reference."
    )
    reason: str = Field(default="", description="One sentence why.")


_JUDGE_SYSTEM = (
    "You grade answers. Given a question, a reference answer and a candidate answer, decide "
    "whether the candidate reaches the same conclusion as the reference. Ignore style and length; "
    "judge only correctness. Reply with JSON only."
)


async def grade_llm_judge(model: Model, question: str, answer: str, reference: str) -> Grade:
    """Ask ``model`` (the configured merger model) whether ``answer`` matches ``reference``."""
    request = ModelRequest(
        messages=[
            Message(role="system", content=_JUDGE_SYSTEM),
            Message(
                role="user",
                content=f"Question:\n{question}\n\nReference answer:\n{reference}\n\n"
                f"Candidate answer:\n{answer}",
            ),
        ],
        max_tokens=256,
        temperature=0.0,
        purpose="judge",
        prompt_version="bench-judge@1",
    )
    try:
        verdict, _ = await complete_structured(model, request, JudgeVerdict)
    except AprError as exc:
        return Grade(None, f"judge failed: {exc}")
    return Grade(verdict.correct, f"judge: {verdict.reason}"[:200])


async def grade(item: Item, answer: str, *, judge: Model | None = None) -> Grade:
    """Grade ``answer`` for ``item`` with the item's grader."""
    meta: dict[str, Any] = item.meta
    if item.grader == "exact":
        return grade_exact(answer, item.answer)
    if item.grader == "numeric":
        return grade_numeric(
            answer,
            item.answer,
            rel_tol=float(meta.get("rel_tol", 1e-6)),
            abs_tol=float(meta.get("abs_tol", 1e-6)),
        )
    if item.grader == "choice":
        return grade_choice(answer, str(item.answer), meta.get("choices"))
    if item.grader == "countdown":
        return grade_countdown(
            answer, list(meta["numbers"]), int(meta["target"]), str(meta.get("rules", "countdown"))
        )
    if item.grader == "none":
        return Grade(None, "not graded: a routing-only item with no reference answer")
    if item.grader == "llm_judge":
        if judge is None:
            return Grade(None, "llm_judge needs a model (none configured)")
        return await grade_llm_judge(judge, item.question, answer, str(item.answer))
    raise ConfigError(
        f"item {item.id}: unknown grader {item.grader!r}; use one of {', '.join(GRADERS)}"
    )
