"""What the simulated model says: visible ``[sim]`` placeholders of a modelled length.

Pure functions of the request (no I/O, no clock). Nothing here reads the task for meaning: the
reply's *shape* comes from the request's purpose and JSON schema, its *length* from the length
model below, its *flags* (confidence, settles, follow-ups) from the script (see
:class:`~apr_mcp.llm.simulated.script.SimRule`), and a plan's *width* from the heuristic signals
line the engine put in the planner prompt. It never computes an answer.

Length model (tokens of a reply, deterministic):

* The *task text* is what the model was asked to work on: a solver's ``Your subtask:`` section,
  a merger's ``Original question:`` section, else the whole last user message.
* A solver, sequential or merger reply spends ``(BASE + PER_WORD × words of the task text) ×
  jitter`` tokens on its body (40 + 10 per word, so a 40-word word problem gets ~440 tokens and
  an 8-word part ~120; jitter 0.8–1.2 fixed by the text and seed, so equal parts still straggle a
  little; clamped to 40–800), times ``scale`` (``reasoning_scale``, > 1 for a "thinking" model;
  not for a merger, which writes a synthesis, not a chain of thought).
  The ``[sim] part k of N:`` label the simulated planner writes is not counted. A solver adds
  its trailer, a sequential reply its final-answer line.
* A lead line, and the answer re-sent by a repair call (``Your previous answer:``), is
  ``LEAD_TOKENS`` (40); plans and other JSON replies are as long as their JSON.
* A rule's ``output_tokens`` replaces the model; ``max_tokens`` bounds every reply: a longer one
  is cut there with finish reason ``length``, as a real one is.

So a question of W words costs the sequential baseline ``40 + 10W`` tokens; split N ways by the
simulated planner (each subtask gets one N-th of the question's words), each thread costs about
``40 + 10W/N`` plus a trailer: splitting pays in simulation exactly when the saved generation
outweighs the plan and merge calls — the question the benchmark asks.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from ...tokens import count_tokens, truncate_to_tokens
from ..base import ModelRequest
from .script import SimRule

__all__ = [
    "BASE",
    "LEAD_TOKENS",
    "PER_WORD",
    "body_tokens",
    "default_reply",
    "json_text",
    "placeholder",
    "plan_reply",
    "task_text",
]

BASE = 40
PER_WORD = 10
MIN_TOKENS, MAX_TOKENS = 40, 800
LEAD_TOKENS = 40
DEFAULT_CONFIDENCE = 0.5

# Headers of the shipped prompts (prompts/*.toml); a section runs until the next one of these.
_HEADERS = (
    "Question:",
    "Original question (for orientation):",
    "Original question:",
    "Context (may be empty):",
    "Heuristic signals noticed (may be empty):",
    "Results of subtasks you depend on (may be empty):",
    "Your subtask:",
    "Worker results:",
    "Parts (id, task, distilled result):",
)
_WIDTH = re.compile(r"suggested width (\d+)", re.IGNORECASE)
_EXACT = re.compile(r"into exactly (\d+)", re.IGNORECASE)
_LABEL = re.compile(r"^\s*\[sim\] part \d+ of \d+:\s*")


def stable_hash(*parts: object) -> int:
    """A process-independent hash (Python's ``hash`` is salted per process)."""
    data = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


def section(text: str, header: str) -> str | None:
    """The text after ``header`` up to the next known prompt header, or None if absent."""
    idx = text.find(header)
    if idx < 0:
        return None
    rest = text[idx + len(header) :]
    ends = [p for p in (rest.find("\n" + h) for h in _HEADERS) if p >= 0]
    return rest[: min(ends, default=len(rest))].strip()


def user_text(request: ModelRequest) -> str:
    return next((m.content for m in reversed(request.messages) if m.role == "user"), "")


def task_text(request: ModelRequest) -> str:
    """What the model was asked to work on (see the length model)."""
    user = user_text(request)
    if request.purpose == "merger":
        return section(user, "Original question:") or user.strip()
    return section(user, "Your subtask:") or section(user, "Question:") or user.strip()


def head(text: str, limit: int = 80) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def body_tokens(task: str, *, seed: int = 0, scale: float = 1.0) -> int:
    """The body length the length model gives a reply about ``task``."""
    words = _LABEL.sub("", task).split()  # a "[sim] part k of N:" label is not work
    jitter = 0.8 + (stable_hash("len", seed, " ".join(words)) % 401) / 1000
    tokens = max(MIN_TOKENS, min(MAX_TOKENS, round((BASE + PER_WORD * len(words)) * jitter)))
    return round(tokens * scale)


def filled(lead: str, tokens: int) -> str:
    """``lead`` padded with neutral filler to about ``tokens`` tokens (never cut below ``lead``)."""
    missing = tokens - count_tokens(lead)
    return lead + " filler" * missing if missing > 0 else lead


def fit(build: Callable[[int], str], target: int) -> str:
    """``build(n)`` with ``n`` adjusted until the whole text is ``target`` tokens (or close)."""
    n = target
    text = build(n)
    for _ in range(4):
        diff = target - count_tokens(text)
        if diff == 0 or n + diff < 0:
            break
        n += diff
        text = build(n)
    return text if count_tokens(text) <= target else truncate_to_tokens(text, target)


# ----- free text -----


def trailer(rule: SimRule | None, task: str) -> str:
    """The solver trailer (PROTOCOL.md): Summary, Confidence, Settles, Follow-up lines."""
    confidence = rule.confidence if rule and rule.confidence is not None else DEFAULT_CONFIDENCE
    lines = [
        f"Summary: [sim] placeholder summary of a reply about: {head(task, 60)}",
        f"Confidence: {confidence:g}",
        f"Settles: {'yes' if rule and rule.settles else 'no'}",
    ]
    lines += [f"Follow-up: {f}" for f in (rule.follow_ups or [] if rule else [])]
    return "\n\n" + "\n".join(lines)


def free_text(request: ModelRequest, rule: SimRule | None, *, seed: int, scale: float) -> str:
    task = task_text(request)
    asked = head(task)
    if request.purpose == "lead":
        lead = f"[sim] lead line; a real model was asked to introduce the merged parts of: {asked}"
        tokens = rule.output_tokens if rule and rule.output_tokens else LEAD_TOKENS
        return truncate_to_tokens(filled(lead, tokens), min(tokens, request.max_tokens))
    if request.purpose == "sequential":
        lead = f"[sim] step-by-step placeholder; a real model was asked: {asked}."
        tail = f"\nFinal answer: [sim] placeholder, no answer computed for: {head(task, 60)}"
    else:
        lead = f"[sim] solver placeholder; a real model was asked: {asked}."
        tail = trailer(rule, task)
    if rule and rule.output_tokens:
        return fit(lambda n: filled(lead, n) + tail, rule.output_tokens)
    return filled(lead, body_tokens(task, seed=seed, scale=scale)) + tail


# ----- JSON -----


def placeholder(
    schema: dict[str, Any], name: str = "", asked: str = "", width: int = 2, tag: str = ""
) -> Any:
    """A value shaped like ``schema``: ``[sim]`` strings (``tag`` numbers list items, so items
    differ), numbers mid-range, lists of ``width`` items (within minItems/maxItems)."""
    if "default" in schema and not isinstance(schema["default"], str):  # strings say [sim]
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key, []) if o.get("type") != "null"]
        if options:
            return placeholder(options[0], name, asked, width, tag)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props: dict[str, Any] = schema.get("properties", {})
        return {key: placeholder(sub, key, asked, width, tag) for key, sub in props.items()}
    if kind == "array":
        count = max(int(schema.get("minItems", 0)), min(width, int(schema.get("maxItems", width))))
        item = schema.get("items", {})
        return [placeholder(item, name, asked, width, f"{tag} {k + 1}") for k in range(count)]
    if kind == "string":
        text = f"[sim] {name or 'text'}{tag}"
        text += f"; a real model was asked: {asked}" if name in ("answer", "title") else ""
        return text.ljust(int(schema.get("minLength", 0)), ".")
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        high = schema.get("maximum", schema.get("exclusiveMaximum", low + 1))
        value = (low + high) / 2
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    return None


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def structured(request: ModelRequest, rule: SimRule | None, *, seed: int, scale: float) -> str:
    """A JSON reply for a request with a schema (not a plan)."""
    schema = request.json_schema or {}
    task = task_text(request)
    value = placeholder(schema, asked=head(task, 60))
    if not isinstance(value, dict):
        return json_text(value)
    props = schema.get("properties", {})
    if rule and rule.confidence is not None and "confidence" in props:
        value["confidence"] = rule.confidence
    elif "confidence" in props:
        value["confidence"] = DEFAULT_CONFIDENCE
    if "settles_question" in props:
        value["settles_question"] = bool(rule and rule.settles)
    if "follow_ups" in props:
        value["follow_ups"] = list(rule.follow_ups or []) if rule else []
    if "summary" in props:
        value["summary"] = f"[sim] placeholder summary of a reply about: {head(task, 60)}"
    if "answer" in props and request.purpose in ("solver", "merger", "sequential"):
        role = "merged answer" if request.purpose == "merger" else "answer"
        lead = f"[sim] {role} placeholder; a real model was asked: {head(task)}."

        def build(n: int) -> str:
            return json_text({**value, "answer": filled(lead, n)})

        if rule and rule.output_tokens:
            return fit(build, rule.output_tokens)
        if user_text(request).lstrip().startswith("Your previous answer:"):
            return build(LEAD_TOKENS)  # a repair re-sends a short, valid answer
        # A merger writes a synthesis, not a chain of thought: reasoning_scale does not apply.
        return build(
            body_tokens(task, seed=seed, scale=1.0 if request.purpose == "merger" else scale)
        )
    return json_text(value)


def plan_width(request: ModelRequest) -> int:
    """The split the request asks for: an "exactly N" instruction, else the heuristic signals'
    suggested width, else 1 (no split). No phrase rules: only what the engine wrote."""
    text = user_text(request)
    found = _EXACT.search(text) or _WIDTH.search(text)
    return int(found.group(1)) if found else 1


def plan_reply(request: ModelRequest) -> tuple[str, list[int]]:
    """A plan's JSON and the offsets where each subtask object closes (chunk boundaries, so an
    engine that dispatches subtasks as they stream can start each one early)."""
    user = user_text(request)
    question = section(user, "Question:") or user.strip()
    width = plan_width(request)
    if width < 2:
        reason = "[sim] the heuristic signals suggest no width, so one call answers it"
        return json_text({"should_split": False, "reason": reason, "subtasks": []}), []
    words = question.split()
    size = -(-len(words) // width) if words else 0
    reason = f"[sim] split {width} ways, the width the heuristic signals suggested"
    text = json_text({"should_split": True, "reason": reason})[:-1] + ', "subtasks": ['
    breaks: list[int] = []
    for k in range(width):
        part = " ".join(words[k * size : (k + 1) * size]) or head(question, 60)
        subtask = {
            "id": f"t{k + 1}",
            "prompt": f"[sim] part {k + 1} of {width}: {part}",
            "depends_on": [],
        }
        text += (", " if k else "") + json_text(subtask)
        breaks.append(len(text))
    return text + "]}", breaks


def default_reply(
    request: ModelRequest, rule: SimRule | None, *, seed: int, scale: float
) -> tuple[str, list[int]]:
    """The simulator's own reply text for ``request`` and its forced chunk boundaries."""
    props = (request.json_schema or {}).get("properties", {})
    if request.purpose == "planner" and "should_split" in props:
        return plan_reply(request)
    if request.json_schema is not None:
        return structured(request, rule, seed=seed, scale=scale), []
    return free_text(request, rule, seed=seed, scale=scale), []
