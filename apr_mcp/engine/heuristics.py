"""Fast, model-free signals on whether a question is worth splitting, and how wide.

The planner model makes the final call; these regex heuristics run in microseconds beforehand so
that (a) obvious cases skip or steer the planner, (b) the plan can say *why* it split, and (c) the
fan-out follows the size of the problem instead of a fixed number.

Positive signals: several independent sub-questions, enumerations (numbered or bulleted lists,
``a) … b) …``), comparisons (``compare``, ``vs``, ``pros and cons``, ``which of``), competing
hypotheses (``one approach is … another is``, ``could be caused by``, ``either … or``, ``could be
A, or B, or C``), errors with stack traces (debugging → hypotheses), lists of three or more
entities (``for each of A, B and C``; names may hold dots, hyphens and digits, but bare numbers are
data), searches under several conditions (``find a … that is …, has …, and is …``).
Negative signals: short factual questions, inherently sequential work (``first … then``,
``using that result``, comma-separated steps ending in ``then``), multi-hop chains (``the X of the Y
of Z``) where each hop needs the last.
Neither vetoes independent parts when it only concerns them from the inside or the end: a chain
inside one enumerated part ("(b) the sum of the digits of 2^20") or a last step that aggregates
the parts ("…, then give the sum of all parts", "then recommend one") — the merge does that.
"""

from __future__ import annotations

import itertools
import re

from pydantic import BaseModel, Field

from ..errors import ConfigError
from .text import one_line

__all__ = ["SplitSignals", "analyze", "concurrency_for", "width_for"]


class SplitSignals(BaseModel):
    """What the heuristics saw in a question."""

    signals: list[str] = Field(default_factory=list, description="Human-readable observations.")
    should_split_hint: bool | None = Field(
        default=None,
        description="True: clearly split. False: clearly one call. None: ask the planner.",
    )
    complexity: int = Field(default=1, ge=1, le=10)
    suggested_width: int = Field(
        default=1, ge=1, description="Threads to use; 1 when not splitting."
    )
    entities: list[str] = Field(default_factory=list)
    n_parts: int | None = Field(default=None, description="Independent parts found, if countable.")
    part_kind: str | None = Field(
        default=None,
        description="What the countable parts are: enumeration, comparison, list, conditions or "
        "questions (None when not countable).",
    )
    parts: list[str] = Field(
        default_factory=list, description="The text of each countable part, in question order."
    )


def width_for(
    complexity: int, n_parts: int | None, min_threads: int = 2, max_threads: int = 8
) -> int:
    """Fan-out for a question: one thread per independent part when the parts are countable,
    otherwise scaled linearly with complexity between the bounds."""
    _check_bounds(min_threads, max_threads)
    complexity = min(10, max(1, complexity))
    if n_parts is not None and n_parts >= 2:
        width = n_parts
    else:
        width = min_threads + round((complexity - 1) * (max_threads - min_threads) / 9)
    return min(max_threads, max(min_threads, width))


def concurrency_for(width: int, max_concurrency: int) -> int:
    """How many threads to run at once: never more than the width or the configured cap."""
    if max_concurrency < 1:
        raise ConfigError(f"max_concurrency must be at least 1, got {max_concurrency}")
    return max(1, min(width, max_concurrency))


def _check_bounds(min_threads: int, max_threads: int) -> None:
    if min_threads < 1 or max_threads < min_threads:
        raise ConfigError(
            "thread bounds must satisfy 1 <= min_threads <= max_threads, got "
            f"{min_threads}..{max_threads}"
        )


# ----- patterns -----

_I = re.IGNORECASE
_M = re.MULTILINE
_NUMBERED = re.compile(
    r"^\s*(?:\d{1,2}[.)]|\(\d{1,2}\)|[a-hA-H][.)]|\([a-hA-H]\)|[-*•])\s+(\S.*)$", _M
)
_INLINE_ENUM = re.compile(r"(?:^|[\s:;,])(?:\(?([a-h]|[1-9])\))\s+", _I)
_COMPARE = re.compile(
    r"\b(?:compare|comparing|comparison|contrast|vs\.?|versus|pros and cons|trade-?offs?|"
    r"differences? between|which of|which is (?:better|faster|cheaper|best)|better choice)\b",
    _I,
)
_HYPOTHESES = re.compile(
    r"\b(?:one (?:approach|option|way|explanation|possibility|theory) is|another "
    r"(?:approach|option|way|"
    r"explanation|possibility|theory) is|alternatively|could be (?:caused|due) |might be "
    r"(?:caused|due) |"
    r"may be (?:caused|due) |possible (?:causes|reasons|explanations)|hypothes[ie]s|root cause|"
    r"competing (?:explanations|theories)|either\b.{1,80}\bor\b|"
    # "It could be A, or B, or C": candidates listed after a modal.
    r"(?:could|might|may) (?:also )?be\b[^.?!;]{1,120}?(?:,\s*or\b|\bor\b[^.?!;]{1,120}?\bor\b))",
    _I,
)
_TRACE = re.compile(
    r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+|^\s+at [\w$.<>]+\([\w.]+:\d+\)|"
    r"^\s+at .+:\d+:\d+\)?$|^panic: |goroutine \d+ \[|Segmentation fault|error\[E\d{4}\]|"
    r"^\w*(?:Error|Exception)(?::|$)|\bthread '.+' panicked at",
    _M,
)
_ERROR_WORDS = re.compile(
    r"\b(?:error|exception|crash(?:es|ed)?|fails?|failing|failed|bug|broken|hangs?|deadlock|"
    r"race condition|segfault|wrong (?:result|output|answer))\b",
    _I,
)
_CODE = re.compile(
    r"^\s*(?:def |class |async def |fn |func |function |import |from \S+ import |#include|"
    r"public |private |const |let |var )|[{};]\s*$|```",
    _M,
)
# "First …, then …" as adverbs; "the first four primes" (a determiner or a count around "first")
# is an ordinal, not a step.
_SEQUENTIAL = re.compile(
    r"(?<!\bthe )(?<!\bits )(?<!\btheir )(?<!\ba )\bfirst\b(?!\s+(?:\d|one|two|three|four|five|six|"
    r"seven|eight|nine|ten|few|several|half|of\b))"
    r".{1,200}?\bthen\b|\bstep by step\b|\busing (?:that|this|the) "
    r"(?:result|answer|value|output)\b|"
    r"\bbased on (?:that|this|the previous)\b|\b(?:after|once) (?:that|you have)\b|\band then\b|"
    r"\bplug (?:it|that) into\b|\bfrom (?:the )?(?:previous|last) step\b|\bthe result of step\b|"
    # "Take the year X, add 50, then find …": comma-separated steps ending in "then".
    r"[^,.?!\n]{3,80},[^,.?!\n]{2,60},\s*(?:and\s+)?then\s",
    _I | re.DOTALL,
)
# A last step that only aggregates what independent parts found ("…, then give the sum of all
# parts", "then recommend one", "then combine them") to the end of its sentence: the merge does
# that, so it does not chain the parts.
_AGGREGATE_TAIL = re.compile(
    r"\bthen\s+(?:(?:give|report|state|compute|calculate|find|return|output|take|add up)\s+"
    r"(?:the\s+|their\s+|a\s+)?(?:sum|total|product|average|mean|maximum|minimum|max|min|best|"
    r"winner|overall|combined|final)\b|(?:add|sum)\s+(?:them|these|those|up|all|the (?:parts|"
    r"results|answers))\b|(?:combine|merge|compare|rank|recommend|pick|choose|select|summari[sz]e)\b)"
    r"[^.?!\n]*(?:[.?!]|$)",
    _I,
)
_SENTENCE_END = re.compile(r"[.?!](?=\s|$)|\n")
_MULTIHOP = re.compile(
    r"\bthe\s+[\w-]+(?:\s+[\w-]+)?\s+of\s+the\s+[\w-]+(?:\s+[\w-]+)?\s+(?:of|who|that|which|where|whose)\b",
    _I,
)
_FACTUAL = re.compile(
    r"^\s*(?:what|who|when|where|which|how (?:many|much|old|long|far|tall)|is|are|does|did|"
    r"define|name)\b",
    _I,
)
_CONSTRAINT = re.compile(
    r"\b(?:must|must not|should(?: not)?|needs? to|has to|have to|at (?:most|least)|no more than|"
    r"fewer than|less than|more than|without|within|under "
    r"\$?\d|budget|deadline|required|cannot|can't)\b",
    _I,
)
_PRONOUN_START = re.compile(
    r"^\W*(?:\w+\s+){0,3}?(?:it|its|that|this|they|them|those|these|the result)\b", _I
)
_CLAUSE_END = re.compile(
    r"[.?!;:\n]|\s(?:for|in terms of|when|regarding|with respect to|to decide|to pick|to choose|so "
    r"that|"
    r"because|if|on|as|is|are|would|will|should|better|best)\s",
    _I,
)
_LIST_SPLIT = re.compile(
    r"\s*(?:,\s*(?:and|or)\s+|,|\s+and\s+|\s+or\s+|\s+vs\.?\s+|\s+versus\s+|/|\s+with\s+|\s+to\s+)\s*",
    _I,
)
# "A, B and C" or "A, B, C": names may hold dots, hyphens, digits, + and # (Apache-2.0, C++).
_ITEM = r"[\w.+#/'-]*[\w+#](?:\s[\w.+#/'-]*[\w+#]){0,2}"
_INLINE_LIST = re.compile(
    rf"({_ITEM}(?:,\s+{_ITEM})+,?\s+(?:and|or)\s+{_ITEM}|{_ITEM}(?:,\s+{_ITEM}){{2,}})", _I
)
# Where the last listed item ends and the rest of the sentence (its aspect or task) begins.
_ITEM_TAIL = re.compile(r"\s(?:for|in|to|when|with|as|on|under|is|are|would|will|using)\s.*$", _I)
_STEP_ITEM = re.compile(r"^(?:and\s+)?(?:then|after that|finally|next)\b", _I)
# "Find a four-digit number that is divisible by 7, has digits summing to 20, and is a palindrome":
# a search under several conditions, each checkable on its own.
_SEARCH = re.compile(
    r"^\s*find\s+(?:a|an|any|all|every|the "
    r"(?:smallest|largest|least|greatest|first|lowest|highest))"
    r"\s+[^.?!]{1,60}?\s+(?:that|which|such that|whose)\s+(?P<conds>[^.?!]+)",
    _I,
)
_COND_SPLIT = re.compile(
    r",\s*(?:and\s+)?(?=(?:is|has|have|are|leaves|whose|its|n\b|n \+|it)\b)|"
    r"\s+and\s+(?=(?:is|has|have|are|leaves|whose|its|n\b|n \+|it)\b)",
    _I,
)
_STOP = {
    "the",
    "a",
    "an",
    "of",
    "for",
    "and",
    "or",
    "to",
    "in",
    "on",
    "with",
    "between",
    "me",
    "us",
    "please",
    "compare",
    "comparing",
    "contrast",
    "which",
    "is",
    "are",
    "what",
    "how",
    "do",
    "does",
}
_CAPITALISED = re.compile(
    r"(?<![.?!]\s)(?<!^)\b([A-Z][\w+#.-]*[A-Za-z0-9+#]|[A-Z]{2,}|[a-z]+[A-Z]\w*)\b"
)


def _clean(item: str) -> str:
    words = [w for w in re.split(r"\s+", item.strip(" \t\"'`.,;:?!()")) if w]
    while words and words[0].lower() in _STOP:
        words.pop(0)
    while words and words[-1].lower() in _STOP:
        words.pop()
    return " ".join(words)


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        key = item.lower()
        if item and key not in seen and len(item.split()) <= 5:
            seen.add(key)
            out.append(item)
    return out


def _comparison_entities(text: str) -> list[str]:
    """The things being compared, e.g. ``["Python", "Go", "Rust"]``."""
    vs = re.search(r"\b(?:vs\.?|versus)\s", text, _I)
    if vs:
        # "…for a CLI: Python vs Go vs Rust?" — take the clause around the first "vs".
        start = max(text.rfind(c, 0, vs.start()) for c in ".?!:;\n")
        before = text[start + 1 : vs.start()].split()[-3:]
        head = " ".join(before)
        rest = text[vs.start() :]
        end = _CLAUSE_END.search(rest, 3)
        span = head + " " + (rest[: end.start()] if end else rest)
        head_words = [w for w in before if w.lower() not in _STOP]
        parts = [_clean(p) for p in _LIST_SPLIT.split(span)]
        if parts and head_words:
            parts[0] = _clean(
                " ".join(head_words[-2:])
                if len(head_words) > 1 and head_words[-2][:1].isupper()
                else head_words[-1]
            )
        return _dedupe([p for p in parts if p])
    m = re.search(
        r"\b(?:compare|comparing|contrast|differences? between|pros and cons of|trade-?offs? "
        r"(?:between|of)|which of)\s+(.*)",
        text,
        _I | re.DOTALL,
    )
    if not m:
        return []
    rest = m.group(1)
    end = _CLAUSE_END.search(rest)
    span = rest[: end.start()] if end else rest
    return _dedupe([_clean(p) for p in _LIST_SPLIT.split(span) if _clean(p)])


def _independent_questions(text: str) -> int:
    questions = [q for q in re.split(r"(?<=\?)\s+", text.strip()) if q.strip().endswith("?")]
    if len(questions) < 2:
        return len(questions)
    independent = 1 + sum(1 for q in questions[1:] if not _PRONOUN_START.search(q))
    return independent


def analyze(
    question: str, context: str = "", *, min_threads: int = 2, max_threads: int = 8
) -> SplitSignals:
    """Look at a question (and its context) and say whether splitting looks worthwhile.

    ``should_split_hint`` is True for a strong yes, False for a strong no (short factual,
    sequential or multi-hop questions), None when the planner should judge.
    """
    _check_bounds(min_threads, max_threads)
    text = question or ""
    words = len(text.split())
    signals: list[str] = []
    entities: list[str] = []
    parts: list[int] = []  # candidate counts of independent parts
    strong: list[str] = []  # kinds of strong positive evidence
    found: list[tuple[str, list[str]]] = []  # (kind, part texts) for the heuristic planner

    numbered = list(_NUMBERED.finditer(text))
    listed = [_clean(m.group(1)) for m in numbered]
    inline_matches = list(_INLINE_ENUM.finditer(text))
    inline = [m.group(1) for m in inline_matches]
    spans: list[tuple[int, int]] = []  # where each enumerated part's text lies
    if len(listed) >= 2:
        signals.append(f"enumeration of {len(listed)} items")
        parts.append(len(listed))
        strong.append("enumeration")
        entities += [item for item in listed if len(item.split()) <= 4]
        spans = [m.span(1) for m in numbered]
        found.append(("enumeration", [" ".join(m.group(1).split()) for m in numbered]))
    elif len(inline) >= 2:
        signals.append(
            f"inline enumeration of {len(inline)} items ({', '.join(x + ')' for x in inline)})"
        )
        parts.append(len(inline))
        strong.append("enumeration")
        spans = _inline_spans(text, inline_matches)
        found.append(("enumeration", [" ".join(text[a:b].split()).rstrip(",;") for a, b in spans]))

    if _COMPARE.search(text):
        compared = _comparison_entities(text)
        if len(compared) >= 2:
            signals.append(f"comparison of {len(compared)} entities: {', '.join(compared)}")
            parts.append(len(compared))
            strong.append("comparison")
            entities += compared
            found.append(("comparison", compared))
        else:
            signals.append("comparison wording")

    inline_list = _INLINE_LIST.search(text)
    if inline_list and "comparison" not in strong:
        raw = _LIST_SPLIT.split(inline_list.group(1))
        # "the licensing terms of React, Vue, …": the first item starts after the last "of".
        raw[0] = re.split(r"\s(?:of|for|about|on)\s", raw[0])[-1]
        raw[-1] = _ITEM_TAIL.sub("", raw[-1])
        items = _dedupe([_clean(p) for p in raw if _clean(p)])
        # Bare numbers are data ("four of them are 10, 12 and 15"); "…, add 50, then find …" is
        # a chain of steps, not a list of things.
        listy = all(re.search(r"[A-Za-z]", i) for i in items) and not any(
            _STEP_ITEM.match(p.strip()) for p in raw
        )
        if len(items) >= 3 and listy:
            signals.append(f"list of {len(items)} entities: {', '.join(items)}")
            parts.append(len(items))
            strong.append("list")
            entities += items
            found.append(("list", items))

    search = _SEARCH.search(text)
    conds = [c for c in _COND_SPLIT.split(search.group("conds")) if c.strip()] if search else []
    if len(conds) >= 2:
        signals.append(f"search under {len(conds)} conditions, each checkable on its own")
        parts.append(len(conds))
        strong.append("conditions")
        found.append(("conditions", [" ".join(c.split()) for c in conds]))

    n_questions = _independent_questions(text)
    if n_questions >= 2:
        signals.append(f"{n_questions} independent sub-questions")
        parts.append(n_questions)
        strong.append("questions")
        found.append(
            (
                "questions",
                [
                    q.strip()
                    for q in re.split(r"(?<=\?)\s+", text.strip())
                    if q.strip().endswith("?")
                ],
            )
        )

    hyp = _HYPOTHESES.search(text)
    if hyp:
        signals.append(f"competing hypotheses ('{_snippet(hyp.group(0))}')")
        strong.append("hypotheses")

    trace = _TRACE.search(text) or _TRACE.search(context)
    has_code = bool(_CODE.search(context) or _CODE.search(text))
    debugging = bool(trace) or (has_code and bool(_ERROR_WORDS.search(text)))
    if debugging:
        what = "stack trace" if trace else "error report with code"
        signals.append(f"{what}: debugging → competing hypotheses")
        strong.append("debugging")

    n_constraints = len(_CONSTRAINT.findall(text))
    if n_constraints >= 3:
        signals.append(f"{n_constraints} constraints to check")

    entities += [e for e in _CAPITALISED.findall(text) if e.lower() not in _STOP]
    entities = _dedupe(entities)[:12]

    steps = text
    if strong:
        after = spans[-1][1] if spans else 0
        tail = _AGGREGATE_TAIL.search(text, after)
        if tail:
            signals.append(f"aggregation step after the parts ('{_snippet(tail.group(0))}')")
            steps = text[: tail.start()] + text[tail.end() :]
    sequential = _SEQUENTIAL.search(steps)
    if sequential:
        signals.append(f"sequential steps ('{_snippet(sequential.group(0))}')")
    multihop = None
    for hop in _MULTIHOP.finditer(text):
        if any(start <= hop.start() and hop.end() <= end for start, end in spans):
            # "(b) the sum of the digits of 2^20": a chain inside one part does not chain the parts.
            signals.append(f"multi-hop chain inside one part ('{_snippet(hop.group(0))}')")
        elif multihop is None:
            multihop = hop
            signals.append(f"multi-hop chain ('{_snippet(hop.group(0))}')")
    short_factual = words <= 15 and not strong and bool(_FACTUAL.search(text)) and n_constraints < 3
    if short_factual:
        signals.append("short factual question")

    hint: bool | None
    if strong and not (sequential or multihop):
        hint = True
    elif strong:
        # Numbered steps that chain into each other are a recipe, not parallel work.
        hint = False if set(strong) <= {"enumeration", "list"} else None
    elif sequential or multihop or short_factual:
        hint = False
    elif words <= 12 and n_constraints < 3:
        hint = False
        signals.append("short single question")
    else:
        hint = None

    n_parts = max(parts) if parts else None
    best = max(found, key=lambda kp: len(kp[1]), default=None)
    complexity = 1
    if n_parts:
        complexity += min(4, n_parts - 1)
    complexity += (words > 40) + (words > 120) + min(2, n_constraints // 2)
    complexity += 2 * debugging + ("hypotheses" in strong)
    complexity += len(context) > 2000
    complexity = min(10, max(1, complexity))

    if hint is False:
        width = 1
    elif debugging or "hypotheses" in strong:
        # Hypotheses are not countable up front: at least three competing ones when splitting.
        width = max(width_for(complexity, None, min_threads, max_threads), min(3, max_threads))
    else:
        width = width_for(complexity, n_parts, min_threads, max_threads)
    return SplitSignals(
        signals=signals,
        should_split_hint=hint,
        complexity=complexity,
        suggested_width=width,
        entities=entities,
        n_parts=n_parts,
        part_kind=best[0] if best and len(best[1]) == n_parts else None,
        parts=best[1] if best and len(best[1]) == n_parts else [],
    )


def _inline_spans(text: str, markers: list[re.Match[str]]) -> list[tuple[int, int]]:
    """The text of each inline part ``(a) … (b) …``: from its marker to the next one; the last
    part ends with its sentence."""
    spans = [(a.end(), b.start()) for a, b in itertools.pairwise(markers)]
    if markers:
        start = markers[-1].end()
        end = _SENTENCE_END.search(text, start)
        spans.append((start, end.start() if end else len(text)))
    return spans


def _snippet(text: str, limit: int = 40) -> str:
    return one_line(text, limit)
