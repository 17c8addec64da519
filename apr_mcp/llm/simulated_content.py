"""What the simulated model says: deterministic replies for each prompt role.

Pure functions of the request text (no I/O, no clock), so the same request always gets the same
reply. The planner reply really splits comparisons, enumerations, several questions and competing
hypotheses, and refuses to split short or sequential questions, so demos and benchmarks exercise
the whole pipeline; solver and sequential replies compute simple arithmetic and search number
puzzles (:mod:`~apr_mcp.llm.simulated_search`) so answers can be graded.
"""

from __future__ import annotations

import ast
import hashlib
import json
import operator
import random
import re
from collections.abc import Callable
from typing import Any

from ..tokens import count_tokens, truncate_to_tokens
from . import simulated_debug
from .simulated_plan import PART_MARK, Split, decompose, part_core, plan_reply, split_question
from .simulated_search import BranchOutcome, found_share, search_branch

__all__ = [
    "REASONING_BASE",
    "REASONING_PER_WORD",
    "SEARCH_FACTOR",
    "evaluate_arithmetic",
    "find_arithmetic",
    "free_text_reply",
    "merge_reply",
    "plan_reply",
    "reasoning_tokens",
    "reply_kind",
    "schema_default",
    "section",
    "split_question",
    "stable_hash",
    "thread_reply",
    "work_units",
]

# Headers of the prompts in prompts/*.toml; a section runs until the next one of these.
_HEADERS = (
    "Question:",
    "Original question (for orientation):",
    "Original question:",
    "Context (may be empty):",
    "Heuristic signals noticed (may be empty):",
    "Results of subtasks you depend on (may be empty):",
    "Your subtask:",
    "Worker results:",
    "The problem with it:",
)


def stable_hash(*parts: object) -> int:
    """A process-independent hash (Python's ``hash`` is salted per process)."""
    data = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


def section(text: str, header: str) -> str | None:
    """The text after ``header`` up to the next known prompt header, or None if absent."""
    idx = text.find(header)
    if idx < 0:
        return None
    rest = text[idx + len(header):]
    end = len(rest)
    for other in _HEADERS:
        pos = rest.find("\n" + other)
        if 0 <= pos < end:
            end = pos
    return rest[:end].strip()


def _head(text: str, limit: int = 80) -> str:
    """The first sentence (or line) of ``text``, at most ``limit`` characters."""
    first = re.split(r"(?<=[.?!])\s+|\n", text.strip(), maxsplit=1)[0].strip()
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


# ----- arithmetic -----

_OPS: dict[type[ast.AST], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_WORDS = (
    (r"\bmultiplied by\b", "*"),
    (r"\btimes\b", "*"),
    (r"\bdivided by\b", "/"),
    (r"\bplus\b", "+"),
    (r"\bminus\b", "-"),
    ("×", "*"),
    ("÷", "/"),
)
_CANDIDATE = re.compile(r"[\d(][\d\s.+\-*/()]*[\d)]")
_HAS_OP = re.compile(r"[\d)]\s*[-+*/]\s*[\d(]")
_CUE = re.compile(r"\b(comput|calculat|evaluat|what is|what's|how much|sum|product|solve)|=", re.IGNORECASE)


def evaluate_arithmetic(expr: str) -> float | int | None:
    """Value of an expression of numbers, + - * / and parentheses; None if it is anything else.

    Walks the AST instead of calling ``eval``, so no name, call or power can ever run.
    """
    if len(expr) > 200:
        return None
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        return None

    def walk(node: ast.AST) -> float | int:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        value = node.value if isinstance(node, ast.Constant) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))  # type: ignore[no-any-return]
        raise ValueError("not arithmetic")

    try:
        value = walk(tree)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value


def _format_number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.10g}"


def find_arithmetic(text: str, *, require_cue: bool = False) -> tuple[str, str] | None:
    """The longest arithmetic expression in ``text`` and its value, as ``(expr, value)``.

    With ``require_cue`` an expression whose only operator is ``-`` (a range such as "10-20")
    counts only if the text asks for a computation ("compute", "what is", "=", ...).
    """
    normal = text
    for pattern, symbol in _WORDS:
        normal = re.sub(pattern, symbol, normal, flags=re.IGNORECASE)
    candidates = sorted(_CANDIDATE.findall(normal), key=len, reverse=True)
    for raw in candidates:
        expr = _balance(raw.strip())
        if not _HAS_OP.search(expr):
            continue
        if require_cue and not re.search(r"[+*/]", expr) and not _CUE.search(text):
            continue
        value = evaluate_arithmetic(expr)
        if value is not None:
            return " ".join(expr.split()), _format_number(value)
    return None


def _balance(expr: str) -> str:
    """Drop unmatched parentheses at the ends ("(see 2+3" → "2+3")."""
    while expr.startswith("(") and expr.count("(") > expr.count(")"):
        expr = expr[1:].strip()
    while expr.endswith(")") and expr.count(")") > expr.count("("):
        expr = expr[:-1].strip()
    return expr


# ----- planner (see simulated_plan) and the work model -----

#: Reasoning tokens for one unit of work: ``(BASE + PER_WORD × words) × jitter`` (0.8–1.2, fixed
#: per unit text), times SEARCH_FACTOR for a search branch, within [MIN, MAX]. A unit is one
#: part, option, condition or search branch, or a whole question that does not decompose.
REASONING_BASE = 100
REASONING_PER_WORD = 6
SEARCH_FACTOR = 1.5
REASONING_MIN, REASONING_MAX = 60, 1200


def reasoning_tokens(unit: str, *, search: bool = False) -> int:
    """How many tokens a chain of thought spends on one unit of work (deterministic)."""
    text = " ".join(unit.split())
    jitter = 0.8 + (stable_hash("work", text) % 401) / 1000
    tokens = (REASONING_BASE + REASONING_PER_WORD * len(text.split())) * jitter
    tokens *= SEARCH_FACTOR if search else 1.0
    return max(REASONING_MIN, min(REASONING_MAX, round(tokens)))


def work_units(question: str, *, scale: float = 1.0) -> tuple[list[tuple[str, int]], Split]:
    """The units a single chain of thought works through for ``question``, with their reasoning
    tokens: every independent part in turn (for a search: the branches in order until the first
    whose route really reaches the target, see :mod:`~apr_mcp.llm.simulated_search`; all of them
    when none does), or the whole question as one unit. ``scale`` multiplies every unit's
    reasoning (a "thinking" model reasons longer per unit)."""
    split = decompose(question)
    if not split.parts:
        core = part_core(question)
        return [(core, round(scale * reasoning_tokens(core, search=_is_branch(core))))], split
    if split.search:
        units = []
        for part in split.parts:
            outcome = search_branch(part.core, part.context)
            units.append((part.core, round(scale * branch_tokens(part.core, outcome))))
            if outcome is not None and outcome.works:
                break
        return units, split
    return [(p.core, round(scale * reasoning_tokens(p.core))) for p in split.parts], split


def branch_tokens(core: str, outcome: BranchOutcome | None) -> int:
    """A search branch's reasoning: the whole route when it fails, less when it finds the answer."""
    full = reasoning_tokens(core, search=True)
    return round(full * found_share(core)) if outcome is not None and outcome.works else full


def _is_branch(core: str) -> bool:
    return "Search branch:" in core


# ----- solver, merger, free text -----

_FILLER = (
    "The key consideration for {a} is how it interacts with {b}.",
    "In practice {a} tends to matter most when {b} is constrained.",
    "Evidence on {a} points to a trade-off against {b}.",
    "A careful reading suggests {a} is well supported, with caveats about {b}.",
    "For {a}, the usual recommendation is to measure {b} before deciding.",
    "Most sources agree that {a} depends on {b}.",
)


_STOP = frozenset(
    ["about", "answer", "approach", "assess", "compared", "consider", "context", "does", "evaluate", "from", "options", "question", "should", "strengths", "that", "their", "there", "these", "this", "those", "typical", "weaknesses", "what", "when", "which", "why", "with", "would", "could", "each", "other", "part", "the", "and", "for", "how", "use", "one", "are",
     # instruction words say nothing about the topic
     "then", "give", "out", "all", "things", "work", "separately", "parts", "number", "numbers",
     "final", "two", "three", "four", "compute", "sum", "make", "using", "try", "say", "route",
     "fails", "branch", "search", "option", "alone", "decides", "once", "most", "exactly", "whole",
     "expression", "result", "results", "target", "find", "check", "every", "condition", "positive",
     "below", "above"]
)


def _keywords(text: str) -> list[str]:
    words = re.findall(r"[A-Za-z][A-Za-z0-9+#.-]{2,}", text)
    seen: dict[str, None] = {}
    for w in words:
        w = w.strip(".").lower()
        if w not in _STOP:
            seen.setdefault(w, None)
    return list(seen) or ["the question"]


def _filler(text: str, seed: int, sentences: int) -> str:
    rng = random.Random(stable_hash(seed, text))
    words = _keywords(text)
    out = []
    for _ in range(sentences):
        template = rng.choice(_FILLER)
        out.append(template.format(a=rng.choice(words), b=rng.choice(words)))
    return " ".join(out)


def confidence_for(text: str, seed: int) -> float:
    """A deterministic confidence in [0.55, 0.9]."""
    return round(0.55 + (stable_hash("confidence", seed, text) % 3501) / 10000, 3)


def reasoning_text(unit: str, seed: int, tokens: int, *, lead: str = "") -> str:
    """Chain-of-thought text about ``unit`` of exactly ``tokens`` tokens (``lead`` first).

    The content is canned filler; the length is what the latency model prescribes.
    """
    out = lead
    rng = random.Random(stable_hash(seed, "reasoning", unit))
    words = _keywords(unit)
    while count_tokens(out) < tokens:
        template = rng.choice(_FILLER)
        out = f"{out} {template.format(a=rng.choice(words), b=rng.choice(words))}".strip()
    return truncate_to_tokens(out, tokens)


def thread_reply(user_text: str, seed: int, *, scale: float = 1.0) -> dict[str, Any]:
    """The solver's JSON (schemas.ThreadAnswer) for the subtask in ``user_text``.

    The answer spends the reasoning of the subtask's units of work (one part's worth for a
    part, the whole chain for an undivided question).
    """
    subtask = section(user_text, "Your subtask:") or user_text.strip()
    investigation = simulated_debug.investigation_reply(
        subtask,
        section(user_text, "Original question (for orientation):") or "",
        section(user_text, "Context (may be empty):") or "",
    )
    if investigation is not None:
        return investigation
    # Only the subtask's own work counts: the context after PART_MARK may quote the whole question.
    core = part_core(subtask)
    if _is_branch(core):
        context = subtask.split(PART_MARK, 1)[1] if PART_MARK in subtask else ""
        outcome = search_branch(core, context)
        if outcome is not None:
            return _branch_reply(core, outcome, seed, scale)
    units, split = work_units(core, scale=scale)
    head = _head(core)
    arithmetic = find_arithmetic(core, require_cue=True)
    if split.parts:  # the whole multi-part question in one thread: the whole chain
        answer = "[sim] " + "\n".join(_chain(units, split, seed))
        summary = f"[sim] Worked through {len(units)} parts of: {_head(core, 100)}"
    elif arithmetic:
        expr, value = arithmetic
        lead = f"[sim] {expr} = {value}."
        answer = reasoning_text(core, seed, units[0][1], lead=lead) + f" The value is {value}."
        summary = f"{expr} = {value}"
    else:
        answer = reasoning_text(core, seed, units[0][1], lead=f"[sim] Findings on {head}:")
        body = answer.split(":", 1)[1] if ":" in answer else answer
        first = body.strip().split(". ")[0].rstrip(".")
        summary = f"[sim] Key point on {_head(core, 60)}: {first}."
    return {
        "answer": answer,
        "summary": summary,
        "confidence": confidence_for(subtask, seed),
        "settles_question": False,
        "follow_ups": [],
    }


def _branch_reply(core: str, outcome: BranchOutcome, seed: int, scale: float) -> dict[str, Any]:
    """A search branch's answer. A verified expression settles the whole question (confidently:
    it was checked against the rules); a route that fails says so, with low confidence, so the
    merge does not lean on it."""
    tokens = round(scale * branch_tokens(core, outcome))
    route = _head(core.split("Search branch:", 1)[1], 100)
    if outcome.expression is not None:
        lead = f"[sim] Searching the route {route}"
        answer = (reasoning_text(core, seed, tokens, lead=lead)
                  + f"\nThis route works: {outcome.detail}.\nFinal answer: {outcome.expression}")
        return {
            "answer": answer,
            "summary": f"This route works: {outcome.detail}. Final answer: {outcome.expression}",
            "confidence": 0.97,
            "settles_question": True,
            "follow_ups": [],
        }
    answer = reasoning_text(core, seed, tokens, lead=f"[sim] Searching the route {route}")
    answer += f"\nThis route fails: {outcome.detail}."
    return {
        "answer": answer,
        "summary": f"This route fails: {outcome.detail} ({route})",
        "confidence": round(0.1 + (stable_hash("fails", seed, core) % 101) / 1000, 3),
        "settles_question": False,
        "follow_ups": [],
    }


_JSON_STRING = r'"{key}"\s*:\s*"((?:[^"\\]|\\.)*)'


def repaired_thread_reply(user_text: str, seed: int) -> dict[str, Any]:
    """A repair of a broken (e.g. cut-off) ThreadAnswer: the answer re-emitted, shortened to a
    paragraph, as a model asked for "JSON only" does."""
    previous = section(user_text, "Your previous answer:") or user_text
    found = re.search(_JSON_STRING.format(key="answer"), previous)
    text = found.group(1) if found else previous
    try:
        text = json.loads(f'"{text}"')
    except ValueError:
        pass
    answer = truncate_to_tokens(" ".join(text.split()), 60) or "[sim] (no answer recovered)"
    summary = re.search(_JSON_STRING.format(key="summary"), previous)
    return {
        "answer": answer,
        "summary": summary.group(1) if summary else _head(answer, 120),
        "confidence": confidence_for(previous, seed),
        "settles_question": False,
        "follow_ups": [],
    }


_CONFIDENCE = re.compile(r"confidence[\"']?\s*[:=]?\s*([01](?:\.\d+)?)", re.IGNORECASE)
_IDS = re.compile(r"\b(t\d+(?:\.\d+)*)\b")


def merge_reply(user_text: str, seed: int, schema: dict[str, Any] | None) -> dict[str, Any]:
    """The merger's JSON: combine the worker results in the prompt into one answer."""
    question = section(user_text, "Original question:") or ""
    results = section(user_text, "Worker results:") or user_text
    ids = list(dict.fromkeys(_IDS.findall(results)))
    confidences = [float(c) for c in _CONFIDENCE.findall(results) if float(c) <= 1.0]
    points = []
    # One block per worker result (blank-line separated); keep the gist of its "Result:" part.
    for block in re.split(r"\n\s*\n", results.strip())[:8]:
        if not block.strip():
            continue
        label = _IDS.search(block)
        body = block.split("Result:", 1)[1] if "Result:" in block else block
        body = " ".join(body.replace("[sim]", "").split())
        # One sentence per result: a synthesis, not a copy of the workers' reasoning.
        gist = re.split(r"(?<=[.!?])\s+", body)[0]
        gist = gist if len(gist) <= 160 else gist[:159] + "…"
        points.append(f"{label.group(1)}: {gist}" if label else gist)
    arithmetic = find_arithmetic(question, require_cue=True) if question else None
    lead = f"[sim] Merged answer to: {_head(question, 120)}" if question else "[sim] Merged answer"
    answer = lead + (f" ({len(ids)} results)." if ids else ".")
    if points:
        answer += " " + " ".join(points)
    settled = re.search(r"settles the question\).*?Final answer: ([^\n]+)", results, re.DOTALL)
    if arithmetic:
        answer += f" Final answer: {arithmetic[1]}"
    elif settled:  # a search branch found a checked expression: that is the answer
        answer += f"\nFinal answer: {settled.group(1).strip()}"
    confidence = (
        round(sum(confidences) / len(confidences), 3) if confidences else confidence_for(results, seed)
    )
    out: dict[str, Any] = schema_default(schema) if schema else {}
    props = (schema or {}).get("properties", {})
    out["answer"] = answer
    if not props or "confidence" in props:
        out["confidence"] = confidence
    if "used" in props:
        out["used"] = ids
    return out


def free_text_reply(user_text: str, seed: int, *, scale: float = 1.0) -> str:
    """A chain of thought ending in "Final answer: ..." (the sequential baseline's format).

    It works through every unit of the question in turn (see :func:`work_units`), so its length
    is the sum of the parts' reasoning, then states the aggregation step if there is one.
    """
    question = user_text.strip()
    head = _head(question, 120)
    units, split = work_units(question, scale=scale)
    arithmetic = find_arithmetic(question, require_cue=True)
    lines: list[str] = []
    if not split.parts:
        unit, tokens = units[0]
        lead = f"Step 1: The question asks for {arithmetic[0]}." if arithmetic else (
            f"Step 1: Restate the question: {head}")
        lines.append(reasoning_text(unit, seed, tokens, lead=lead))
        if arithmetic:
            lines.append(f"Step 2: Evaluating it gives {arithmetic[0]} = {arithmetic[1]}.")
    else:
        lines += _chain(units, split, seed)
    if split.search:
        found = _found_expression(split, len(units))
        final = found or "[sim] no expression found along the routes tried"
    elif split.parts:
        final = f"[sim] the combined result of the {len(units)} parts"
    else:
        final = arithmetic[1] if arithmetic else f"[sim] {head}"
    return "\n".join(lines) + f"\nFinal answer: {final}"


def _chain(units: list[tuple[str, int]], split: Split, seed: int) -> list[str]:
    """One paragraph per unit ("Part n" or, for a search, "Attempt n"), then the aggregation."""
    label = "Attempt" if split.search else "Part"
    lines = []
    for n, (unit, tokens) in enumerate(units, start=1):
        sub = find_arithmetic(unit, require_cue=True)
        lead = f"{label} {n}: {_head(unit, 100)}" + (f" {sub[0]} = {sub[1]}." if sub else "")
        lines.append(reasoning_text(unit, seed, tokens, lead=lead))
    if split.search:
        found = _found_expression(split, len(units))
        lines.append(f"Attempt {len(units)} works: {found}; the earlier routes fail." if found
                     else f"None of the {len(units)} routes reaches the target.")
    elif split.aggregate:
        lines.append(f"Combining the parts as asked: {_head(split.aggregate, 120)}")
    return lines


def _found_expression(split: Split, attempts: int) -> str | None:
    """The expression the last attempt found, if it works (see :func:`work_units`)."""
    part = split.parts[attempts - 1]
    outcome = search_branch(part.core, part.context)
    return outcome.expression if outcome is not None else None


# ----- schema-driven fallback -----


def schema_default(schema: dict[str, Any], defs: dict[str, Any] | None = None, name: str = "") -> Any:
    """A minimal value valid for ``schema`` (required properties only), for unknown schemas."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        target = defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {})
        return schema_default(target, defs, name)
    if "default" in schema:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key, []) if o.get("type") != "null"]
        if options:
            return schema_default(options[0], defs, name)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props: dict[str, Any] = schema.get("properties", {})
        return {
            key: schema_default(props.get(key, {}), defs, key) for key in schema.get("required", [])
        }
    if kind == "array":
        item = schema.get("items", {})
        return [schema_default(item, defs, name) for _ in range(int(schema.get("minItems", 0)))]
    if kind == "string":
        text = f"[sim] {name}" if name else "[sim]"
        return text.ljust(int(schema.get("minLength", 0)), ".")
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        high = schema.get("maximum", schema.get("exclusiveMaximum", low + 1))
        value = (low + high) / 2
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    return None


def reply_kind(schema_name: str, schema: dict[str, Any] | None, system: str) -> str:
    """Which reply to give: plan, thread, merge, schema (generic JSON) or text."""
    name = schema_name.lower()
    special = {"debughypotheses": "debug_hypotheses", "debugverdict": "debug_verdict",
               "metadecision": "meta"}
    if name in special:
        return special[name]
    if name == "plan":
        return "plan"
    if name == "threadanswer":
        return "thread"
    if "merge" in name:
        return "merge"
    props = (schema or {}).get("properties", {})
    if {"should_split", "subtasks"} <= props.keys():
        return "plan"
    if "answer" in props and {"settles_question", "follow_ups"} & props.keys():
        return "thread"
    if "answer" in props:
        return "merge"
    if schema is not None:
        return "schema"
    # No schema: recognise the role from the system prompt (JSON-in-prompt mode).
    if "lead of a debugging team" in system:
        return "debug_verdict" if "each investigated ONE hypothesis" in system else "debug_hypotheses"
    if "You supervise a parallel reasoning run" in system:
        return "meta"
    if "planner of a parallel reasoning" in system:
        return "plan"
    if "one worker in a parallel reasoning" in system:
        return "thread"
    if "merge the results of parallel workers" in system:
        return "merge"
    return "text"


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
