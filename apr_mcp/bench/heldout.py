"""The held-out routing set: questions labelled split / no split that no rule or test is fitted to.

Written for apr-mcp (MIT) after the routing heuristics, by someone who did not look at how the
heuristics treat them; ``apr_mcp/engine/heuristics.py`` must never be tuned on them (tune on the
bundled tuning sets instead, see docs/evaluation.md). Labels say what a careful planner does:
split independent parts (items, candidates, conditions, hypotheses in a bug report), answer
single questions, short lookups and chains (each step needs the previous) with one call.

Numeric references are computed here; open questions carry grader ``none`` (routing only).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["PROVENANCE", "heldout_items"]

PROVENANCE = "written for apr-mcp held-out set, not used to tune rules"


def _primes_below(n: int) -> int:
    return sum(1 for k in range(2, n) if all(k % d for d in range(2, math.isqrt(k) + 1)))


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, math.isqrt(n) + 1))


def heldout_items() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []

    def add(
        question: str, split: bool, kind: str, answer: Any = None, grader: str = "none", **meta: Any
    ) -> None:
        items.append(
            {
                "id": f"ho-{len(items) + 1:03d}",
                "question": question,
                "answer": answer,
                "grader": grader,
                "should_split": split,
                "meta": {"kind": kind, "provenance": PROVENANCE, **meta},
            }
        )

    # ----- should split: independent parts -----
    add(
        "A user reports that our nightly export job sometimes produces an empty CSV. It could be "
        "the database replica lagging behind, the S3 upload timing out silently, or the cron job "
        "running before the upstream ETL finishes. Investigate each possibility.",
        True,
        "debug report",
    )
    add(
        "Our Flask API returns 502 errors under load. Check these suspects independently: the "
        "gunicorn worker timeout, the nginx upstream keepalive settings, and database connection "
        "pool exhaustion.",
        True,
        "debug report",
    )
    add(
        "After upgrading to Node 20 the test suite fails with 'ERR_REQUIRE_ESM'. Possible "
        "causes: a "
        "dependency that became ESM-only, a jest config still using CommonJS transforms, or a "
        "stale "
        "lockfile. Assess each one.",
        True,
        "debug report",
    )
    add(
        "Memory usage of our Go service grows steadily until it is OOM-killed. Candidates: "
        "goroutines "
        "leaking on cancelled requests, an unbounded in-memory cache, or a large slice kept "
        "alive by "
        "a sub-slice. For each, say how to confirm it.",
        True,
        "debug report",
    )
    add(
        "Our mobile app's crash rate doubled after release 4.2. Look into three leads: the new "
        "image-loading library, a change in how push notifications are parsed, and Android 14 "
        "permission changes.",
        True,
        "debug report",
    )
    add(
        "For each of these cities — Lisbon, Nairobi, Seoul — describe the climate in summer and in "
        "winter, and the best month to visit.",
        True,
        "list",
    )
    add(
        "Calculate separately: the area of a circle of radius 10 rounded to the nearest "
        "integer, the "
        "number of seconds in 45 minutes, and 13 squared. Report the three values and their total.",
        True,
        "arithmetic parts",
        round(math.pi * 100) + 45 * 60 + 13**2,
        "numeric",
        solution="314 + 2700 + 169",
    )
    add(
        "What are the main differences between PostgreSQL, MySQL and SQLite for a small web app? "
        "Cover licensing, concurrency and deployment.",
        True,
        "comparison",
    )
    add(
        "Summarise the plot of three novels: Pride and Prejudice, Moby-Dick and Frankenstein, one "
        "paragraph each.",
        True,
        "list",
    )
    add(
        "Write a short product description for each of three products: a standing desk, a "
        "noise-cancelling headset, and an ergonomic chair (about 100 words each).",
        True,
        "list",
    )
    add(
        "Evaluate these four marketing channels for a B2B SaaS launch — LinkedIn ads, webinars, "
        "cold "
        "email, and SEO content — on cost, time to results and lead quality.",
        True,
        "options",
    )
    add(
        "Compute independently: the number of primes below 60, the sum of the first 20 odd "
        "numbers, "
        "and the number of ways to choose 3 people from 8. Give the total.",
        True,
        "arithmetic parts",
        _primes_below(60) + 20**2 + math.comb(8, 3),
        "numeric",
        solution="17 + 400 + 56",
    )
    add(
        "Check whether each of these numbers is prime: 91, 97, 221, 233. How many of them are "
        "prime?",
        True,
        "candidates",
        sum(_is_prime(n) for n in (91, 97, 221, 233)),
        "numeric",
    )
    add(
        "List the pros and cons of remote work for employees, for managers, and for the company.",
        True,
        "list",
    )
    add(
        "For a trip to Japan, research three things independently: the best season for cherry "
        "blossoms, how the JR Pass works, and typical costs of a business hotel in Tokyo.",
        True,
        "list",
    )
    add(
        "Review this pull request from three angles in parallel: security, performance and "
        "readability. The change adds a caching layer to the user lookup endpoint.",
        True,
        "options",
    )
    add(
        "Which is the largest: 2^30, 10^9, or 3^19? Compute each value, then give the largest "
        "value.",
        True,
        "candidates",
        max(2**30, 10**9, 3**19),
        "numeric",
    )
    add(
        "Find a number between 1 and 100 that is divisible by 7, leaves remainder 1 when "
        "divided by "
        "4, and is a perfect square.",
        True,
        "conditions",
        next(n for n in range(1, 101) if n % 7 == 0 and n % 4 == 1 and math.isqrt(n) ** 2 == n),
        "numeric",
    )
    add(
        "Solve these two unrelated equations: 3x + 7 = 25, and 5y - 4 = 21. Give x + y.",
        True,
        "arithmetic parts",
        (25 - 7) // 3 + (21 + 4) // 5,
        "numeric",
    )
    add(
        "Compare the time complexity of binary search, linear search and hash table lookup, "
        "and say "
        "when each is appropriate.",
        True,
        "comparison",
    )
    add(
        "Convert 100 km to miles, 212 °F to Celsius and 5 pounds to kilograms, each rounded to one "
        "decimal place; report the sum of the three rounded values.",
        True,
        "arithmetic parts",
        round(
            round(100 / 1.609344, 1) + round((212 - 32) * 5 / 9, 1) + round(5 * 0.45359237, 1), 1
        ),
        "numeric",
        abs_tol=0.05,
        solution="62.1 + 100.0 + 2.3",
    )
    add(
        "Estimate the population of Canada, Australia and Argentina, then say which is largest.",
        True,
        "list",
    )

    # ----- should not split: single questions, lookups, chains, data lists -----
    add(
        "Who wrote the novel 'One Hundred Years of Solitude'?",
        False,
        "lookup",
        ["Gabriel García Márquez", "Gabriel Garcia Marquez", "García Márquez"],
        "exact",
    )
    add(
        "A shop sells pencils at 35 cents each. How much do 12 pencils cost in dollars?",
        False,
        "arithmetic",
        12 * 35 / 100,
        "numeric",
    )
    add(
        "Start with 7, double it, add 5, then multiply the result by 3. What do you get?",
        False,
        "chain",
        (7 * 2 + 5) * 3,
        "numeric",
    )
    add(
        "Alice is 4 years older than Bob. Bob is twice as old as Carol, who is 9. How old is "
        "Alice?",
        False,
        "chain",
        9 * 2 + 4,
        "numeric",
    )
    add("What is 15% of 80?", False, "arithmetic", 80 * 15 // 100, "numeric")
    add(
        "My Python script raises KeyError: 'user_id' on line 12 when I read a row from a dict. "
        "What "
        "does this error mean?",
        False,
        "debug question",
    )
    add("Explain in two sentences what a hash function is.", False, "single")
    add(
        "A train leaves at 14:20 and the trip takes 2 hours 55 minutes. At what time does it "
        "arrive?",
        False,
        "arithmetic",
        "17:15",
        "exact",
    )
    add(
        "Take the word 'stressed', reverse it, then capitalise the first letter. What is the "
        "result?",
        False,
        "chain",
        "stressed"[::-1].capitalize(),
        "exact",
    )
    add(
        "A recipe needs 250 g of flour for 4 servings. How much flour, in grams, is needed for 10 "
        "servings?",
        False,
        "arithmetic",
        250 * 10 // 4,
        "numeric",
    )
    add("Find x if 2^x = 1024.", False, "arithmetic", int(math.log2(1024)), "numeric")
    add(
        "Rewrite this sentence in the passive voice: 'The committee approved the budget.'",
        False,
        "single",
        "The budget was approved by the committee.",
        "exact",
    )
    add(
        "If a rectangle's perimeter is 30 cm and its length is 9 cm, what is its area in "
        "square cm?",
        False,
        "chain",
        9 * (30 // 2 - 9),
        "numeric",
    )
    add("List the steps to make a cup of tea.", False, "single")
    add(
        "What is the next number in the sequence 2, 6, 12, 20, 30?",
        False,
        "data list",
        6 * 7,
        "numeric",
    )
    add(
        "Sort these numbers in ascending order: 42, 7, 19, 3, 88.",
        False,
        "data list",
        ", ".join(map(str, sorted([42, 7, 19, 3, 88]))),
        "exact",
    )
    add(
        "Compute the mean of 4, 8, 15, 16, 23 and 42.",
        False,
        "data list",
        (4 + 8 + 15 + 16 + 23 + 42) / 6,
        "numeric",
    )
    add(
        "I have $1,000 in a savings account at 5% annual interest compounded yearly. How much "
        "will I "
        "have after 3 years? Round to the cent.",
        False,
        "arithmetic",
        round(1000 * 1.05**3, 2),
        "numeric",
        abs_tol=0.005,
    )
    add(
        "Read the value at index 2 of the list [5, 9, 14, 20]; use it as the number of times "
        "to add "
        "3 to 1. What is the final number?",
        False,
        "chain",
        1 + 3 * [5, 9, 14, 20][2],
        "numeric",
    )
    add(
        "A bug report says: 'Clicking Save does nothing in Firefox, but works in Chrome.' What "
        "is the "
        "first thing you would check?",
        False,
        "debug question",
    )
    add("What's the difference between a process and a thread?", False, "single")
    add("How many minutes are there in a week?", False, "arithmetic", 7 * 24 * 60, "numeric")
    add(
        "Is 1001 divisible by 7? Answer yes or no.",
        False,
        "single",
        "yes" if 1001 % 7 == 0 else "no",
        "exact",
    )
    add(
        "Using the result of 18 divided by 3, raise 2 to that power and subtract 10.",
        False,
        "chain",
        2 ** (18 // 3) - 10,
        "numeric",
    )
    for item in items:
        if item["answer"] is None:
            del item["answer"]
    return items
