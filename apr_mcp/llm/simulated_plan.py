"""What the simulated planner decides: split a question into independent parts, or not.

A pure function of the question text. It splits what a careful planner splits: numbered or
lettered parts and options ("(a) … (b) …", "(A) … (B) …"), competing hypotheses (also "it could
be A, or B, or C"), comparisons, choices among listed candidates ("Which planet is largest: Mars,
Venus or Earth?"), entity lists ("for each of A, B and C, …", "the pros and cons of A, B and C",
"three ways to …: A, B, and C"; names may hold dots, hyphens and digits), searches under several
conditions ("find the smallest / a … that …": one part per condition, intersected by the merge), number puzzles
(Countdown, the 24 game: one search branch per way of reaching the target) and several separate
questions. It does not split a single question or a sequential chain ("first … then …", "using
that result").

A trailing aggregation step after independent parts ("Work out each part separately, then give
the sum of all parts") is not a chain: the parts stay independent and only the merge aggregates,
so such tails (and answer-format instructions such as "Answer with the letter") are set aside
before the chain test.

Each :class:`Part` carries its ``core``: the unit of work its reasoning is sized by (see the
latency model in :mod:`apr_mcp.llm.simulated`). A subtask prompt is ``core`` followed by
:data:`PART_MARK` and the context it belongs to, so a solver can recover the core and spend
exactly what the sequential baseline spends on that part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PART_MARK", "Part", "Split", "decompose", "part_core", "plan_reply", "split_question"]

#: Separates a subtask's own work from the context it was cut out of.
PART_MARK = "\n(One part of: "


@dataclass(frozen=True)
class Part:
    """One independent unit of work."""

    core: str
    context: str = ""

    @property
    def prompt(self) -> str:
        """The self-contained subtask prompt."""
        return f"{self.core}{PART_MARK}{self.context})" if self.context else self.core


@dataclass(frozen=True)
class Split:
    """How a question decomposes: ``parts`` (empty: answer it in one call), why, and of what kind."""

    parts: list[Part]
    reason: str
    kind: str = "single"
    #: A search: a sequential answer tries the branches one after another until one works.
    search: bool = False
    #: The aggregation step set aside ("then give the sum of all parts"), if any.
    aggregate: str = ""
    tails: list[str] = field(default_factory=list)


def part_core(prompt: str) -> str:
    """The unit of work in a subtask prompt written by :class:`Part` (the whole prompt otherwise)."""
    return prompt.split(PART_MARK, 1)[0].strip()


# ----- tails: aggregation steps and answer-format instructions -----

_SENTENCE = re.compile(r"(?<=[.?!])\s+")
_AGGREGATE_WORDS = (
    r"(?:sum|total|product|difference|average|mean|maximum|minimum|all (?:the )?parts|the parts|"
    r"(?:the|all|these|those) (?:results|answers|values)|combined|comparison|overall|best one|"
    r"winner)"
)
_CHOOSE = r"(?:recommend|pick|choose|select|rank)\s+(?:one|the best(?: one)?|a winner|them)\b"
_TAILS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        (
            r"^(?:work out|solve|compute|answer|handle|do|evaluate|treat) (?:each|every|all)"
            r"(?: of the)? (?:parts?|items?|questions?|options?)\b.*$"
        ),
        (
            r"^(?:then\s+)?(?:give|report|return|state|write|add up|sum up|combine|compare|rank|"
            rf"pick|choose)\b[^.?!]*\b(?:{_AGGREGATE_WORDS}|final answer)\b.*$"
        ),
        (
            r"^(?:give|answer|reply|respond|write|express|round|state|show)\b[^.?!]*\b(?:final "
            r"answer|as a (?:number|word|letter|fraction)|with the \w+|in (?:capital|lower|upper)"
            r"[- ]?case|in capital letters)\b.*$"
        ),
        r"^check (?:every|each|all) (?:the )?(?:conditions?|constraints?|requirements?)\b.*$",
        r"^every (?:intermediate result|division)\b.*$",
        rf"^(?:then\s+)?{_CHOOSE}.*$",
    )
]
_INLINE_AGGREGATE = re.compile(
    r"[,;]?\s*(?:and\s+)?then\s+(?:(?:add|sum|combine|compare|total|rank|pick|choose|give|report)"
    rf"\b[^.?!]*\b{_AGGREGATE_WORDS}\b|{_CHOOSE})[^.?!]*[.?!]?\s*$",
    re.IGNORECASE,
)


def _set_aside_tails(question: str) -> tuple[str, list[str]]:
    """The question without its trailing aggregation/format sentences, and those sentences."""
    sentences = [s for s in _SENTENCE.split(question.strip()) if s]
    tails: list[str] = []
    while len(sentences) > 1 and any(t.match(sentences[-1].strip()) for t in _TAILS):
        tails.insert(0, sentences.pop())
    body = " ".join(sentences)
    inline = _INLINE_AGGREGATE.search(body)
    if inline and inline.start() > 0:
        tails.insert(0, inline.group(0).strip(" ,;"))
        body = body[: inline.start()].rstrip(" ,;") + "."
    return body, tails


# ----- the kinds of split -----

_SEQUENTIAL = re.compile(
    r"\b(then|after that|afterwards|using (the|that|this) (result|answer)|"
    r"based on (the|that|this) (result|answer)|step by step)\b",
    re.IGNORECASE,
)
_LIST_LINE = re.compile(r"^\s*(?:\(?\d{1,2}[.)]|[-*•]|\(?[a-h][.)])\s+(.+?)\s*$", re.MULTILINE)
_LABEL = re.compile(r"(?:^|(?<=[\s:;,]))\(?([a-hA-H]|[1-9])\)\s+")
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
_CHOICE_SPLIT = re.compile(r"\s*,\s*(?:and\s+|or\s+)?|\s+(?:and|or)\s+", re.IGNORECASE)
_VERSUS = re.compile(r"\s+(?:vs\.?|versus)\s+", re.IGNORECASE)
_ASPECT = re.compile(r"\s+(?:for|in terms of|regarding|with respect to|when)\s+", re.IGNORECASE)
_CHOICE_COLON = re.compile(r"^(?P<q>(?:which|what)\b[^:?]*?)\s*:\s*(?P<items>[^?]+)\?", re.IGNORECASE)
_CHOICE_AMONG = re.compile(r"^among\s+(?P<items>.+?),\s*(?P<q>(?:which|what)\b[^?]*)\?", re.IGNORECASE)
_QUOTED = re.compile(r"'([^']+)'|\"([^\"]+)\"")
_FIND = re.compile(
    r"^find the (?P<ext>smallest|largest|least|greatest|lowest|highest|first)\s+(?P<domain>.+?)\s+"
    r"(?P<link>that|which|such that|whose)\s+(?P<conds>.+?)[.?]?$",
    re.IGNORECASE,
)
_COND_SPLIT = re.compile(
    r",\s*(?:and\s+)?(?=(?:is|has|leaves|are|n\b|n \+|whose|its)\b)|"
    r"\s+and\s+(?=(?:is|has|leaves|are|n\b|n \+|whose|its)\b)|\s+(?=whose\b)",
    re.IGNORECASE,
)
_FIND_ANY = re.compile(
    r"^find (?:a|an|any|some|every|all)\s+(?P<domain>[^.?!,]+?)\s+(?P<link>that|which|such that|whose)"
    r"\s+(?P<conds>.+?)[.?]?$",
    re.IGNORECASE,
)
# "could be the load balancer, or the pool, or DNS": hypotheses listed after a modal.
_HYP_MODAL = re.compile(
    r"\b(?:it|this|that|the (?:cause|problem|issue|culprit))\s+(?:could|might|may)\s+(?:also\s+)?"
    r"be\s+(?:caused by\s+|due to\s+)?(?P<items>[^.?!;]+)",
    re.IGNORECASE,
)
_OR_SPLIT = re.compile(r"\s*,\s*(?:or\s+)?|\s+or\s+", re.IGNORECASE)
# An entity list "X, Y and Z" (names may hold dots, hyphens, digits, +, #): each item up to four
# words, and at least one letter in each (a list of bare numbers is data, not parts).
_ENTITY = r"[\w.+#/'-]+(?:\s+[\w.+#/'-]+){0,3}"
_ENTITY_LIST = re.compile(
    rf"(?P<items>{_ENTITY}(?:\s*,\s*{_ENTITY})+,?\s+(?:and|or)\s+{_ENTITY})", re.IGNORECASE
)
_LIST_LEAD = re.compile(
    r"^(?P<lead>.*?\b(?:for each of|for each|pros and cons of|advantages and disadvantages of|"
    r"strengths and weaknesses of|each of)\s+)(?P<rest>.+)$|"
    r"^(?P<lead2>.*?\b(?:ways|options|approaches|alternatives|strategies|methods|candidates|tools|"
    r"choices)\b[^:]*:\s*)(?P<rest2>.+)$|"
    r"^(?P<lead3>(?:summari[sz]e|describe|explain|estimate|list|outline|give|evaluate|assess|"
    r"review|check|what (?:are|is))\b[^,:]*?\b(?:of|for|about)\s+)(?P<rest3>.+)$",
    re.IGNORECASE | re.DOTALL,
)
# Where a list's last item ends: the aspect or task that follows it.
_ITEM_END = re.compile(
    r"\s+(?:for|in|on|when|with|as|to|under|regarding|in terms of|is|are|would|will)\s+|\s*(?:[,:;?!]|\.(?=\s|$))",
    re.IGNORECASE,
)
_AGGREGATE_LEAD = re.compile(r"\b(?:sum|total|product|average|mean|difference)\s+of\s+$", re.IGNORECASE)
_PUZZLE = re.compile(
    r"\busing (?:each of )?the numbers (?P<numbers>\d+(?:\s*,\s*\d+)+)\b.*?\bmake (?:exactly )?"
    r"(?P<target>\d+)\b",
    re.IGNORECASE | re.DOTALL,
)


def decompose(question: str) -> Split:
    """How the simulated planner splits ``question`` (no parts: one call is best)."""
    q = question.strip()
    if not q:
        return Split([], "empty question", "empty")
    body, tails = _set_aside_tails(q)
    aggregate = " ".join(
        t for t in tails if re.search(f"{_AGGREGATE_WORDS}|{_CHOOSE}", t, re.IGNORECASE)
    )
    if _SEQUENTIAL.search(body):
        return Split(
            [], "the steps are sequential (each needs the previous result); one call is best",
            "sequential", tails=tails,
        )
    for finder in (_lines, _labelled, _hypotheses, _compared, _choices, _listed, _conditions,
                   _puzzle, _questions):
        # A puzzle's rules often sit in the sentences set aside as format instructions.
        found = finder(q if finder is _puzzle else body)
        if found is not None and len(found.parts) >= 2:
            why = found.reason
            if aggregate:
                why += "; the last step only aggregates them (the merge does that)"
            return Split(found.parts, why, found.kind, found.search, aggregate, tails)
    return Split([], "a single question; one call is enough", tails=tails)


def split_question(question: str) -> tuple[list[str], str]:
    """Self-contained subtask prompts for ``question`` (empty if it should not be split) and why."""
    split = decompose(question)
    return [p.prompt for p in split.parts], split.reason


def _head(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _lines(body: str) -> Split | None:
    lines = _LIST_LINE.findall(body)
    if len(lines) < 2:
        return None
    first = _LIST_LINE.search(body)
    preamble = body[: first.start()].strip() if first else ""
    return Split([_item(i, preamble) for i in lines], f"an enumeration of {len(lines)} items",
                 "enumeration")


def _item(item: str, preamble: str) -> Part:
    item = item.strip().rstrip(" ;,")
    item = re.sub(r"[,;]?\s+(?:and|or)$", "", item).strip()
    words = preamble.rstrip(":").split()
    if preamble.endswith(":") and 0 < len(words) <= 6 and not preamble.endswith("?:"):
        # "Compute three things: (a) x" → "Compute x"
        return Part(f"{words[0]} {item}".rstrip(".") + ".")
    if preamble and not preamble.endswith((":", ".", "?", "!")) and len(preamble) < 60:
        return Part(f"{preamble} {item}")  # "Evaluate a) x b) y" → "Evaluate x"
    return Part(item, _head(preamble))


def _labelled(body: str) -> Split | None:
    """``(a) … (b) …`` or ``(A) … (B) …`` or ``1) … 2) …``: labels must run in order from the first."""
    marks: list[re.Match[str]] = []
    for m in _LABEL.finditer(body):
        label = m.group(1)
        if not marks:
            if label in "aA1":
                marks.append(m)
        elif ord(label) == ord(marks[-1].group(1)) + 1:
            marks.append(m)
    if len(marks) < 2:
        return None
    preamble = body[: marks[0].start()].strip()
    items = [
        body[m.end() : (marks[i + 1].start() if i + 1 < len(marks) else len(body))]
        for i, m in enumerate(marks)
    ]
    if preamble.endswith("?") or re.match(r"(?:which|what)\b", preamble, re.IGNORECASE):
        # Options to weigh against one question: each worker works out its option's figure.
        parts = [
            Part(f"Option ({m.group(1)}): {it.strip().rstrip(' ;,.')}. Work out what decides the "
                 "question for this option alone.", _head(preamble))
            for m, it in zip(marks, items, strict=True)
        ]
        return Split(parts, f"{len(parts)} options to evaluate", "options")
    parts = [_item(it, preamble) for it in items]
    return Split(parts, f"an enumeration of {len(parts)} items", "enumeration")


def _hypotheses(body: str) -> Split | None:
    hyps = [m.group(1) for m in _HYP_FIRST.finditer(body)]
    hyps += [m.group(1) for m in _HYP_OTHER.finditer(body)]
    if len(hyps) < 2:
        return _modal_hypotheses(body)
    head = _HYP_FIRST.split(body, maxsplit=1)[0].strip() or _head(body)
    parts = [Part(f"Evaluate this approach: {h.strip()}.", f"the question: {_head(head)}") for h in hyps]
    return Split(parts, f"{len(hyps)} competing approaches or hypotheses", "hypotheses")


def _modal_hypotheses(body: str) -> Split | None:
    """"It could be A, or B, or C": one part per candidate cause."""
    m = _HYP_MODAL.search(body)
    if not m or not re.search(r"\bor\b", m.group("items"), re.IGNORECASE):
        return None
    hyps = [h.strip(" .") for h in _OR_SPLIT.split(m.group("items")) if h.strip(" .")]
    if len(hyps) < 2 or any(len(h.split()) > 8 for h in hyps):
        return None
    parts = [Part(f"Evaluate this hypothesis: {h}. What evidence would confirm or rule it out?",
                  f"the question: {_head(body)}") for h in hyps]
    return Split(parts, f"{len(hyps)} competing hypotheses", "hypotheses")


def _listed(body: str) -> Split | None:
    """"For each of A, B and C, …", "the pros and cons of A, B and C", "three ways to …: A, B,
    and C", "Summarise the terms of A, B and C": one part per listed entity."""
    for sentence in _SENTENCE.split(body):
        lead_m = _LIST_LEAD.match(sentence.strip())
        if not lead_m:
            continue
        lead = lead_m.group("lead") or lead_m.group("lead2") or lead_m.group("lead3") or ""
        rest = lead_m.group("rest") or lead_m.group("rest2") or lead_m.group("rest3") or ""
        if _AGGREGATE_LEAD.search(lead):
            continue  # "the sum of 3, 5 and 7" is one computation
        listed = _ENTITY_LIST.match(rest)
        if not listed:
            continue
        items = [i.strip(" .") for i in _CHOICE_SPLIT.split(listed.group("items")) if i.strip(" .")]
        end = _ITEM_END.search(items[-1]) if items else None
        tail = rest[listed.end():]
        if end:
            tail = items[-1][end.start():] + tail
            items[-1] = items[-1][: end.start()].strip()
        if (len(items) < 3 or not all(re.search(r"[A-Za-z]", i) for i in items)
                or any(re.match(r"(?:and\s+)?then\b", i, re.IGNORECASE) for i in items)):
            continue
        if lead_m.group("lead2"):
            parts = [Part(f"Evaluate this option: {item}. Strengths, weaknesses and when it fits.",
                          _head(lead.rstrip(": ")))
                     for item in items]
        else:
            head = re.sub(r"\beach(?: of)?\s+$", "", lead, flags=re.IGNORECASE)
            tail = tail.strip()
            tail = tail if tail[:1] in {"", ".", "?", "!", ","} else " " + tail
            parts = [Part(f"{head}{item}{tail}".strip(), f"a list of {', '.join(items)}")
                     for item in items]
        return Split(parts, f"a list of {len(items)} entities, each handled on its own", "list")
    return None


def _compared(body: str) -> Split | None:
    items, aspect = _comparison(body)
    if len(items) < 2:
        return None
    suffix = f" for {aspect}" if aspect else ""
    parts = [
        Part(f"Assess {item}{suffix}: strengths, weaknesses and typical use.",
             f"a comparison of {', '.join(items)}")
        for item in items
    ]
    return Split(parts, f"a comparison of {len(items)} options", "comparison")


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


def _choices(body: str) -> Split | None:
    """"Which X is largest: a, b, c or d?" / "Among a, b and c, which …?": one part per candidate."""
    for sentence in _SENTENCE.split(body):
        m = _CHOICE_COLON.match(sentence.strip()) or _CHOICE_AMONG.match(sentence.strip())
        if not m:
            continue
        raw = m.group("items")
        quoted = [a or b for a, b in _QUOTED.findall(raw)]
        items = quoted or [i.strip(" .") for i in _CHOICE_SPLIT.split(raw) if i.strip(" .")]
        if len(items) < 3 or any(len(i.split()) > 6 for i in items):
            continue
        question = m.group("q").strip().rstrip(",") + "?"
        shown = [f"'{i}'" if quoted else i for i in items]
        parts = [
            Part(f"For {item} alone, work out the fact this question turns on: {question}",
                 f"a choice among {', '.join(shown)}")
            for item in shown
        ]
        return Split(parts, f"a choice among {len(items)} candidates, each checked on its own",
                     "choices")
    return None


def _conditions(body: str) -> Split | None:
    """"Find the smallest n that A, B and C": one part per condition; the merge intersects."""
    m = _FIND.match(body.strip())
    extreme = m is not None
    m = m or _FIND_ANY.match(body.strip())
    if not m:
        return None
    domain, link = m.group("domain").strip(), m.group("link").lower()
    conds = [c.strip(" ,.") for c in _COND_SPLIT.split(m.group("conds")) if c.strip(" ,.")]
    if link == "whose":
        conds[0] = f"whose {conds[0]}"
    if len(conds) < 2 and extreme:
        # "the largest two-digit prime whose digits sum to 10": the domain is a condition too.
        conds.insert(0, f"is a {domain}")
        domain = "number"
    if len(conds) < 2:
        return None
    noun = re.sub(r"\s+n$", "", domain)
    parts = [
        Part(f"Characterise the {noun}s that satisfy: {c} (a formula, or the first few in order), "
             "so the sets can be intersected.", _head(body, 100))
        for c in conds
    ]
    return Split(parts, f"{len(conds)} conditions, each checked separately", "conditions")


def _puzzle(body: str) -> Split | None:
    """Countdown / 24 game: one search branch per way of reaching the target."""
    m = _PUZZLE.search(body)
    if not m:
        return None
    numbers = [int(n) for n in re.findall(r"\d+", m.group("numbers"))]
    target = int(m.group("target"))
    allowed = "each exactly once" if re.search(r"exactly once", body, re.IGNORECASE) else (
        "each at most once")
    steps = ", whole-number steps" if re.search(r"whole number", body, re.IGNORECASE) else ""
    rules = f"numbers {', '.join(map(str, numbers))} ({allowed}), + - × ÷{steps}, target {target}"
    routes: list[str] = []
    factors: set[int] = set()
    for a in sorted(set(numbers), reverse=True):
        if 1 < a < target and target % a == 0 and a not in factors:
            factors |= {a, target // a}
            routes.append(f"as {a} × {target // a}: make {target // a} from the other numbers, then "
                          f"multiply by {a}")
    for big in sorted(set(numbers), reverse=True)[:2]:
        near = round(target / big) if big > 1 else 0
        gap = target - big * near
        if near > 1 and gap != 0:
            fix = f"add {gap}" if gap > 0 else f"subtract {-gap}"
            routes.append(f"near a multiple of {big}: reach {big} × {near} = {big * near} with the "
                          f"other numbers, then {fix}")
    big = max(numbers)
    if big < target <= 3 * big:
        routes.append(f"as a sum: {big} + {target - big}: make {target - big} from the other numbers")
    elif big > target:
        routes.append(f"as a difference: {big} − {big - target}: make {big - target} from the others")
    small = min(numbers)
    if small > 1:
        routes.append(f"backwards by division: make {target * small}, then divide by {small}")
    pair = sorted(numbers, reverse=True)[:2]
    if len(pair) == 2:
        # Different first operations on the two largest numbers fill up the branches.
        x, y = pair
        routes += [f"starting with {x} × {y} = {x * y}", f"starting with {x} + {y} = {x + y}",
                   f"starting with {x} − {y} = {x - y}"]
    routes = list(dict.fromkeys(routes))[:4]
    if len(routes) < 2:
        return None
    parts = [Part(f"Search branch: try to reach {target} {r}. Say if this route fails.", rules)
             for r in routes]
    return Split(parts, f"a number puzzle: {len(parts)} search branches (different ways to reach "
                 f"{target}) explored in parallel", "search", search=True)


def _questions(body: str) -> Split | None:
    sentences = [s.strip() for s in re.split(r"(?<=\?)\s+", body) if s.strip()]
    asked = [s for s in sentences if s.endswith("?")]
    if len(asked) < 2:
        return None
    context = " ".join(s for s in sentences if not s.endswith("?"))
    return Split([Part(s, _head(context)) for s in asked], f"{len(asked)} separate questions",
                 "questions")


def plan_reply(
    question: str, *, min_threads: int = 1, max_threads: int = 8, exact: int | None = None
) -> dict[str, Any]:
    """The planner's JSON (schemas.Plan) for ``question``. ``exact`` is an instruction to write
    exactly that many subtasks (the fixed-width baseline): a question that splits is padded
    with independent re-checks of its parts, or its extra parts folded into the last subtask; a
    question that does not split still is not split (the engine then runs attempts)."""
    split = decompose(question)
    parts = [p.prompt for p in split.parts]
    if len(parts) < 2:
        complexity = 3 if split.kind == "sequential" else min(4, 1 + len(question) // 300)
        return {"should_split": False, "reason": split.reason, "complexity": complexity,
                "subtasks": []}
    reason = split.reason
    width = max(2, exact if exact is not None else max_threads)
    if exact is not None and len(parts) < width:
        cores = [p.core for p in split.parts]
        parts += [
            f"Solve this again by a different method, as an independent check: "
            f"{cores[i % len(cores)]}{PART_MARK}{split.parts[i % len(cores)].context or _head(question, 100)})"
            for i in range(width - len(parts))
        ]
        reason += f"; padded to {width} subtasks with independent re-checks, as instructed"
    if len(parts) > width:
        keep, rest = parts[: width - 1], parts[width - 1 :]
        parts = keep + ["Address each of the following: " + "; ".join(part_core(r) for r in rest)]
    subtasks = [
        {"id": f"t{i}", "prompt": p, "depends_on": [], "priority": 5}
        for i, p in enumerate(parts, start=1)
    ]
    return {
        "should_split": True,
        "reason": reason,
        "complexity": min(10, 2 + len(parts) + len(question) // 400),
        "subtasks": subtasks,
        "max_concurrency": len(parts),
    }
