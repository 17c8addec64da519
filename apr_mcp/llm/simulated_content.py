"""What the simulated model says: deterministic replies for each prompt role.

Pure functions of the request text (no I/O, no clock), so the same request always gets the same
reply. The planner reply really splits comparisons, enumerations, several questions and competing
hypotheses, and refuses to split short or sequential questions, so demos and benchmarks exercise
the whole pipeline; solver and sequential replies compute simple arithmetic so answers can be
graded.
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

__all__ = [
    "evaluate_arithmetic",
    "find_arithmetic",
    "free_text_reply",
    "merge_reply",
    "plan_reply",
    "reply_kind",
    "schema_default",
    "section",
    "split_question",
    "stable_hash",
    "thread_reply",
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


# ----- planner -----

_SEQUENTIAL = re.compile(
    r"\b(then|after that|afterwards|using (the|that|this) (result|answer)|"
    r"based on (the|that|this) (result|answer)|step by step)\b",
    re.IGNORECASE,
)
_LIST_LINE = re.compile(r"^\s*(?:\(?\d{1,2}[.)]|[-*•]|\(?[a-h][.)])\s+(.+?)\s*$", re.MULTILINE)
_INLINE_ITEM = re.compile(r"(?:^|\s)\(?(?:[a-h]|\d{1,2})\)\s+")
_HYP_FIRST = re.compile(
    r"\b(?:one|the first)\s+(?:approach|hypothesis|option|idea|possibility|explanation|theory|"
    r"cause)\s+is\s+(?:that\s+)?(.+?)(?:[.;]\s|[.;]?$)",
    re.IGNORECASE,
)
_HYP_OTHER = re.compile(
    r"\b(?:another|a second|the second|a third|the third|yet another|the other)\s+(?:one\s+)?"
    r"(?:(?:approach|hypothesis|option|idea|possibility|explanation|theory|cause)\s+)?is\s+"
    r"(?:that\s+)?(.+?)(?:[.;]\s|[.;]?$)",
    re.IGNORECASE,
)
_COMPARE = re.compile(
    r"\b(?:compare|comparing|comparison of|contrast)\s+(?P<items>.+?)"
    r"(?:\s+(?:for|in terms of|regarding|with respect to|when|on)\s+(?P<aspect>.+?))?\s*[.?!]?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_ITEM_SPLIT = re.compile(r"\s*,\s*(?:and\s+|or\s+)?|\s+(?:and|or|vs\.?|versus|with)\s+", re.IGNORECASE)
_VERSUS = re.compile(r"\s+(?:vs\.?|versus)\s+", re.IGNORECASE)
_ASPECT = re.compile(r"\s+(?:for|in terms of|regarding|with respect to|when)\s+", re.IGNORECASE)


def split_question(question: str) -> tuple[list[str], str]:
    """Self-contained subtask prompts for ``question`` (empty if it should not be split) and why."""
    q = question.strip()
    if not q:
        return [], "empty question"
    if _SEQUENTIAL.search(q):
        return [], "the steps are sequential (each needs the previous result); one call is best"

    lines = _LIST_LINE.findall(q)
    if len(lines) >= 2:
        first = _LIST_LINE.search(q)
        preamble = q[: first.start()].strip() if first else ""
        return [_with_context(item, preamble) for item in lines], f"an enumeration of {len(lines)} items"

    inline = [p.strip(" ;,") for p in _INLINE_ITEM.split(q)]
    if len(inline) >= 3:
        preamble, items = inline[0], [p for p in inline[1:] if p]
        if len(items) >= 2:
            return [_with_context(i, preamble) for i in items], f"an enumeration of {len(items)} items"

    hyps = [m.group(1) for m in _HYP_FIRST.finditer(q)] + [m.group(1) for m in _HYP_OTHER.finditer(q)]
    if len(hyps) >= 2:
        head = _HYP_FIRST.split(q, maxsplit=1)[0].strip() or _head(q, 160)
        return (
            [f"Evaluate this approach: {h.strip()}. Consider it as an answer to: {head}" for h in hyps],
            f"{len(hyps)} competing approaches or hypotheses",
        )

    items, aspect = _comparison(q)
    if len(items) >= 2:
        suffix = f" for {aspect}" if aspect else ""
        others = ", ".join(items)
        return (
            [f"Assess {item}{suffix}: strengths, weaknesses and typical use (one of the options "
             f"compared: {others})." for item in items],
            f"a comparison of {len(items)} options",
        )

    questions = [s.strip() for s in re.split(r"(?<=\?)\s+", q) if s.strip()]
    asked = [s for s in questions if s.endswith("?")]
    if len(asked) >= 2:
        context = " ".join(s for s in questions if not s.endswith("?"))
        return [_with_context(s, context) for s in asked], f"{len(asked)} separate questions"

    return [], "a single question; one call is enough"


def _with_context(item: str, context: str) -> str:
    item = item.strip()
    if context and not context.endswith((":", ".", "?", "!")) and len(context) < 60:
        return f"{context} {item}"  # "Evaluate a) x b) y" → "Evaluate x"
    return f"{item} (Context: {context})" if context else item


def _comparison(q: str) -> tuple[list[str], str]:
    match = _COMPARE.search(q)
    if match:
        items = [i.strip(" .?!") for i in _ITEM_SPLIT.split(match.group("items")) if i.strip(" .?!")]
        return items, (match.group("aspect") or "").strip(" .?!")
    if _VERSUS.search(q):
        parts = [p.strip(" .?!") for p in _VERSUS.split(q)]
        aspect = ""
        last = _ASPECT.split(parts[-1], maxsplit=1)
        if len(last) == 2:
            parts[-1], aspect = last[0].strip(), last[1].strip(" .?!")
        # "Which is faster: A vs B" — drop the lead-in before a colon.
        parts[0] = parts[0].split(":")[-1].strip()
        return [p for p in parts if p], aspect
    return [], ""


def plan_reply(question: str, *, min_threads: int = 1, max_threads: int = 8) -> dict[str, Any]:
    """The planner's JSON (schemas.Plan) for ``question``."""
    parts, reason = split_question(question)
    if len(parts) < 2:
        complexity = 3 if "sequential" in reason else min(4, 1 + len(question) // 300)
        return {"should_split": False, "reason": reason, "complexity": complexity, "subtasks": []}
    max_threads = max(2, max_threads)
    if len(parts) > max_threads:
        keep, rest = parts[: max_threads - 1], parts[max_threads - 1:]
        parts = keep + ["Address each of the following: " + "; ".join(rest)]
    subtasks = [
        {"id": f"t{i}", "prompt": p, "depends_on": [], "priority": 5}
        for i, p in enumerate(parts, start=1)
    ]
    return {
        "should_split": True,
        "reason": f"{reason}; each part can be worked on independently",
        "complexity": min(10, 2 + len(parts) + len(question) // 400),
        "subtasks": subtasks,
        "max_concurrency": len(parts),
    }


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
    ["about", "answer", "approach", "assess", "compared", "consider", "context", "does", "evaluate", "from", "options", "question", "should", "strengths", "that", "their", "there", "these", "this", "those", "typical", "weaknesses", "what", "when", "which", "why", "with", "would", "could", "each", "other", "part", "the", "and", "for", "how", "use", "one", "are"]
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


def thread_reply(user_text: str, seed: int) -> dict[str, Any]:
    """The solver's JSON (schemas.ThreadAnswer) for the subtask in ``user_text``."""
    subtask = section(user_text, "Your subtask:") or user_text.strip()
    head = _head(subtask)
    arithmetic = find_arithmetic(subtask, require_cue=True)
    if arithmetic:
        expr, value = arithmetic
        answer = f"[sim] {expr} = {value}. The value is {value}."
        summary = f"{expr} = {value}"
    else:
        rng = random.Random(stable_hash(seed, "len", subtask))
        body = _filler(subtask, seed, rng.randint(2, 5))
        answer = f"[sim] Findings on {head}: {body}"
        summary = f"[sim] Key point on {_head(subtask, 60)}: {body.split('. ')[0].rstrip('.')}."
    return {
        "answer": answer,
        "summary": summary,
        "confidence": confidence_for(subtask, seed),
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
        gist = " ".join(re.split(r"(?<=[.!?])\s+", body)[:2])
        gist = gist if len(gist) <= 240 else gist[:239] + "…"
        points.append(f"{label.group(1)}: {gist}" if label else gist)
    arithmetic = find_arithmetic(question, require_cue=True) if question else None
    lead = f"[sim] Merged answer to: {_head(question, 120)}" if question else "[sim] Merged answer"
    answer = lead + (f" ({len(ids)} results)." if ids else ".")
    if points:
        answer += " " + " ".join(points)
    if arithmetic:
        answer += f" Final answer: {arithmetic[1]}"
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


def free_text_reply(user_text: str, seed: int) -> str:
    """A step-by-step answer ending in "Final answer: ..." (the sequential baseline's format)."""
    question = user_text.strip()
    head = _head(question, 120)
    arithmetic = find_arithmetic(question, require_cue=True)
    if arithmetic:
        expr, value = arithmetic
        return (
            f"Step 1: The question asks for {expr}.\n"
            f"Step 2: Evaluating it gives {expr} = {value}.\n"
            f"Final answer: {value}"
        )
    return (
        f"Step 1: Restate the question: {head}\n"
        f"Step 2: {_filler(question, seed, 2)}\n"
        f"Step 3: {_filler(question + ' conclusion', seed, 1)}\n"
        f"Final answer: [sim] {head}"
    )


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
    if "planner of a parallel reasoning" in system:
        return "plan"
    if "one worker in a parallel reasoning" in system:
        return "thread"
    if "merge the results of parallel workers" in system:
        return "merge"
    return "text"


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
