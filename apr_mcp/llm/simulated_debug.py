"""What the simulated model says in debug mode and to the meta-controller.

Pure functions of the prompt text. The hypotheses come from the error (exception type, message,
the failing line) and the code: for an ``IndexError`` raised by a subscript inside ``for … in
range(…)`` loops, a small linear analysis of the loop bounds finds how far past the end the index
can reach, so the off-by-one hypothesis names the loop, the bound and the fix. Investigations
answer under the headings prompts/debug_investigate.toml asks for; the verdict ranks them by the
investigators' confidence. The meta-controller is told to ``continue`` (scripts can override).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["BoundFinding", "analyze_bounds", "hypotheses_reply", "investigation_reply",
           "meta_reply", "verdict_reply"]

_EXC = re.compile(r"^((?:[A-Za-z_][\w.]*)?(?:Error|Exception)|panic)\s*:\s*(.*)$", re.MULTILINE)
_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (\S+)[ \t]*\n[ \t]*([^\n]*)', re.MULTILINE)
_SUBSCRIPT = re.compile(r"\b(\w+)\[([^\]]+)\]")


def _section(text: str, header: str, stops: tuple[str, ...]) -> str:
    idx = text.find(header)
    if idx < 0:
        return ""
    rest = text[idx + len(header) :]
    ends = [rest.find("\n" + s) for s in stops if rest.find("\n" + s) >= 0]
    return rest[: min(ends)].strip() if ends else rest.strip()


def _error_parts(error: str, fallback: str = "") -> tuple[str, str, str, str]:
    """(exception type, message, source line and function of the innermost frame). When
    ``error`` names no exception (a host asking "what causes this?"), ``fallback`` (the code or
    context, which may carry the traceback) is read instead."""
    found = list(_EXC.finditer(error))
    frames = list(_FRAME.finditer(error))
    if not found and not frames and fallback:
        found, frames = list(_EXC.finditer(fallback)), list(_FRAME.finditer(fallback))
    exc, msg = (found[-1].group(1).rsplit(".", 1)[-1], found[-1].group(2).strip()) if found else ("", "")
    line = frames[-1].group(4).strip() if frames else ""
    func = frames[-1].group(3) if frames else ""
    if not msg and not exc:
        msg = next((ln.strip() for ln in error.splitlines() if ln.strip()), "")[:200]
    return exc, msg, line, func


def _parse_code(code: str) -> ast.Module | None:
    """The Python in ``code``; when a traceback or prose precedes it, from the first line where
    the rest parses."""
    lines = code.splitlines()
    starts = [0] + [i for i, ln in enumerate(lines) if ln[:1] not in ("", " ", "\t")][:60]
    for start in dict.fromkeys(starts):
        try:
            tree = ast.parse("\n" * start + "\n".join(lines[start:]))
        except (SyntaxError, ValueError):
            continue
        return tree
    return None


# ----- loop-bound analysis -----

Linear = dict[str, int]  # term -> coefficient; "" is the constant


@dataclass(frozen=True)
class BoundFinding:
    """An index that can run past the end of a sequence."""

    sequence: str
    index: str
    loop_line: int
    loop_source: str
    over: int  # how many positions past the last valid index
    fixed_bound: str

    @property
    def reach(self) -> str:
        """The largest index the loops allow, e.g. ``len(values)``."""
        extra = self.over - 1
        return f"len({self.sequence})" + (f" + {extra}" if extra else "")


def _linear(node: ast.expr) -> Linear | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return {"": node.value}
    if isinstance(node, ast.Name):
        return {node.id: 1}
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len"
            and len(node.args) == 1 and isinstance(node.args[0], ast.Name)):
        return {f"len({node.args[0].id})": 1}
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        left, right = _linear(node.left), _linear(node.right)
        if left is None or right is None:
            return None
        sign = 1 if isinstance(node.op, ast.Add) else -1
        out = dict(left)
        for k, v in right.items():
            out[k] = out.get(k, 0) + sign * v
        return {k: v for k, v in out.items() if v or k == ""}
    return None


def _render(form: Linear) -> str:
    text = ""
    for term, coeff in form.items():
        if term == "" or coeff == 0:
            continue
        sign = "-" if coeff < 0 else "+"
        mag = "" if abs(coeff) == 1 else f"{abs(coeff)} * "
        text += f" {sign} {mag}{term}" if text else ("-" if coeff < 0 else "") + f"{mag}{term}"
    const = form.get("", 0)
    if const:
        text += f" {'-' if const < 0 else '+'} {abs(const)}" if text else str(const)
    return text or "0"


def analyze_bounds(code: str, failing_line: str) -> BoundFinding | None:
    """If ``failing_line`` indexes ``seq[a + b]`` with loop variables of ``range(...)`` loops,
    the largest index those bounds allow, compared with ``len(seq) - 1``."""
    tree = _parse_code(code)
    if tree is None:
        return None
    loops: dict[str, tuple[Linear, ast.For]] = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.For) and isinstance(node.target, ast.Name)
                and isinstance(node.iter, ast.Call) and isinstance(node.iter.func, ast.Name)
                and node.iter.func.id == "range" and len(node.iter.args) == 1):
            stop = _linear(node.iter.args[0])
            if stop is not None:
                loops[node.target.id] = (stop, node)
    lines = code.splitlines()
    for seq, index_text in _SUBSCRIPT.findall(failing_line):
        try:
            index = _linear(ast.parse(index_text, mode="eval").body)
        except SyntaxError:
            continue
        if index is None or not any(v in loops for v in index):
            continue
        top: Linear = {"": index.get("", 0)}
        for var, coeff in index.items():
            if var == "":
                continue
            if var not in loops or coeff < 0:
                top = {}
                break
            for term, c in loops[var][0].items():  # the loop variable peaks at stop - 1
                top[term] = top.get(term, 0) + coeff * c
            top[""] = top.get("", 0) - coeff
        if not top:
            continue
        last = {f"len({seq})": 1, "": -1}
        diff = {k: top.get(k, 0) - last.get(k, 0) for k in {*top, *last}}
        over = diff.pop("", 0)
        if any(diff.values()) or over <= 0:
            continue
        # Blame the loop whose bound has a constant term (the usual off-by-one).
        blamed = [v for v in index if v in loops and loops[v][0].get("", 0)]
        var = (blamed or [v for v in index if v in loops])[0]
        stop, loop = loops[var]
        fixed = dict(stop)
        fixed[""] = fixed.get("", 0) - over
        source = lines[loop.lineno - 1].strip().rstrip(":") if loop.lineno <= len(lines) else ""
        return BoundFinding(seq, index_text.strip(), loop.lineno, source, over,
                            f"range({_render(fixed)})")
    return None


# ----- replies -----

_CAUSES: dict[str, list[tuple[str, str]]] = {
    "IndexError": [
        ("The input is shorter than the code assumes (empty, or fewer items than the window)",
         "Print len() of the sequence and the window size just before the failing line"),
        ("The wrong variable feeds the index, or the list changes size while it is iterated",
         "Check which names feed the index and whether the list is mutated in the loop"),
    ],
    "KeyError": [
        ("The key is missing because of a spelling, case or type mismatch", "Print the key and the keys"),
        ("The mapping is not populated on this path (initialisation order)", "Trace where it is filled"),
    ],
    "TypeError": [
        ("A value is None because a function returned nothing", "Find where the None was produced"),
        ("Arguments are passed in the wrong order or with the wrong type", "Compare call and signature"),
    ],
    "ZeroDivisionError": [
        ("An empty collection reaches a ratio without a guard", "Check the denominator's source"),
    ],
}


def hypotheses_reply(user_text: str) -> dict[str, Any]:
    """DebugHypotheses: competing root causes from the error and the code."""
    stops = ("Code (may be empty):", "Other context (may be empty):", "Heuristic notes")
    error = _section(user_text, "Error or symptom:", stops)
    code = _section(user_text, "Code (may be empty):", stops)
    exc, msg, line, func = _error_parts(error, code)
    where = f"`{line}`" if line else "the failing line"
    if func and func != "<module>":
        where += f" in `{func}`"
    hyps: list[dict[str, Any]] = []
    finding = analyze_bounds(code, line) if exc == "IndexError" and line else None
    if finding:
        hyps.append({
            "title": f"Off-by-one in the loop bound `{finding.loop_source}` (line {finding.loop_line}"
                     + (f", in `{func}`" if func and func != "<module>" else "") + "):"
                     f" `{finding.index}` reaches {finding.reach}, {finding.over} past the last "
                     "valid index",
            "rationale": f"{exc}: {msg} is raised at {where}; the loop bounds allow the index to "
                         f"reach {finding.over} position(s) past the end",
            "check": f"Print the largest {finding.index} against len({finding.sequence}) - 1",
            "prior": 0.6,
        })
    elif exc == "IndexError":
        hyps.append({"title": f"Off-by-one in a loop bound or index arithmetic at {where}",
                     "rationale": f"{exc}: {msg}", "prior": 0.5,
                     "check": "Compute the largest index the loop reaches and compare it with len()"})
    for title, check in _CAUSES.get(exc, []) + [
        (f"A logic error around {where}: the code does not do what its name promises",
         "Write the smallest failing test for that function"),
        ("The caller passes data that violates an assumption of the code", "Log the inputs"),
    ]:
        hyps.append({"title": title, "rationale": f"{exc}: {msg}".strip(": "), "check": check,
                     "prior": round(max(0.05, 0.3 - 0.07 * len(hyps)), 2)})
    symptom = f"{exc}: {msg} at {where}" if exc else msg
    return {"symptom": symptom, "hypotheses": hyps[:4]}


def investigation_reply(subtask: str, question: str, context: str) -> dict[str, Any] | None:
    """ThreadAnswer for a debug_investigate subtask (None if ``subtask`` is not one)."""
    head = re.match(r"\s*Hypothesis (h\d+): (.+)", subtask)
    if not head:
        return None
    hid, title = head.group(1), head.group(2).strip()
    exc, _msg, line, _ = _error_parts(question, context)
    finding = analyze_bounds(context, line) if exc == "IndexError" and line else None
    blames_bound = finding is not None and "loop bound" in title.lower()
    if blames_bound and finding is not None:
        evidence_for = (f"`{finding.loop_source}` (line {finding.loop_line}) lets `{finding.index}` "
                        f"reach {finding.reach}; the last valid index is "
                        f"len({finding.sequence}) - 1, which is exactly the {exc} at `{line}`.")
        against = "None: the error type, the line and the values all follow from the bound."
        confirm = f"assert {finding.index} < len({finding.sequence}) before `{line}`, or run the example."
        fix = f"Change the bound to `{finding.fixed_bound}`."
        confidence = 0.9
    else:
        evidence_for = f"The {exc or 'error'} is raised at `{line or 'the failing line'}`, which this could cause."
        against = (
            f"The loop bounds alone already explain the index: {finding.fixed_bound} is the "
            "correct bound." if finding else "Nothing in the code points to it specifically."
        )
        confirm = "Reproduce with the smallest input that fails and log the values this blames."
        fix = "Not applicable: the evidence points elsewhere." if finding else (
            "Guard the failing line against the case this hypothesis describes.")
        confidence = 0.15 if finding else 0.4
    answer = (f"Evidence for: {evidence_for}\nEvidence against: {against}\n"
              f"How to confirm: {confirm}\nFix: {fix}")
    verdict = "likely the root cause" if confidence >= 0.5 else "unlikely to be the root cause"
    return {"answer": answer, "summary": f"[sim] {hid} ({title[:80]}) is {verdict}. {fix}",
            "confidence": confidence, "settles_question": False, "follow_ups": []}


_RESULT = re.compile(r"^\[(h\d+)\] Hypothesis: (.+)\n\(investigator confidence ([\d.]+)", re.MULTILINE)
_HEADING = re.compile(r"^(Evidence for|Evidence against|How to confirm|Fix):\s*(.*)$", re.MULTILINE)


def verdict_reply(user_text: str) -> dict[str, Any]:
    """DebugVerdict: the investigations ranked by confidence, the top one as the verdict."""
    results = _section(user_text, "Worker results:", ())
    blocks = list(_RESULT.finditer(results))
    ranked = []
    for i, m in enumerate(blocks):
        body = results[m.end() : blocks[i + 1].start() if i + 1 < len(blocks) else len(results)]
        sections = {k.lower(): v.strip() for k, v in _HEADING.findall(body)}
        ranked.append({"id": m.group(1), "title": m.group(2).strip(),
                       "likelihood": min(1.0, float(m.group(3))),
                       "evidence_for": sections.get("evidence for", ""),
                       "evidence_against": sections.get("evidence against", ""),
                       "how_to_confirm": sections.get("how to confirm", ""),
                       "fix": sections.get("fix", "")})
    ranked.sort(key=lambda r: -float(r["likelihood"]))
    if not ranked:
        return {"answer": "[sim] No investigation finished; nothing to rank.", "confidence": 0.0,
                "ranking": []}
    top = ranked[0]
    answer = (f"Most likely root cause ({top['id']}): {top['title']}.\nFix: {top['fix']}\n"
              f"Confirm: {top['how_to_confirm']}").strip()
    for r in ranked:
        del r["title"]
    return {"answer": answer, "confidence": top["likelihood"], "ranking": ranked}


def meta_reply(user_text: str) -> dict[str, Any]:
    """MetaDecision: let the remaining work run (the usual, conservative answer)."""
    running = len(re.findall(r"\b(?:running|pending)\b", user_text, re.IGNORECASE))
    why = ("the remaining threads cover parts no finished result answers yet" if running
           else "nothing suggests stopping early or adding work")
    return {"action": "continue", "reason": f"[sim] Continue: {why}.", "new_subtasks": []}
