"""Rebuild the bundled datasets in ``apr_mcp/datasets/``: ``python -m
apr_mcp.bench.build_datasets``.

Every question here was written for apr-mcp (MIT). Reference answers are *computed* by the
Python next to each question rather than typed in, so a wrong reference cannot slip in; numeric
items keep the computation in ``meta.solution`` for readers. The Countdown/24 puzzles come from
the seeded generator in :mod:`apr_mcp.bench.countdown` and each is verified by its solver.
Output is deterministic: re-running writes byte-identical files.

The four original sets are the routing *tuning* set: the heuristics were written from their
``should_split`` labels. ``routing_heldout`` (:mod:`apr_mcp.bench.heldout`) is the *held-out*
set no rule or test is fitted to; routing accuracy is reported on it.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from .countdown import check_expression, generate_24, generate_countdown
from .heldout import PROVENANCE, heldout_items

__all__ = ["build_all", "main"]

VERSION = "1.0"
LICENCE = "MIT (authored for apr-mcp)"


def _primes_below(n: int) -> int:
    return sum(1 for k in range(2, n) if all(k % d for d in range(2, int(k**0.5) + 1)))


def _digit_sum(n: int) -> int:
    return sum(int(c) for c in str(n))


def _vowels(word: str) -> int:
    return sum(c in "aeiou" for c in word)


def _split_pays() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []

    def num(q: str, a: float, sol: str, **meta: Any) -> None:
        items.append(
            {
                "question": q,
                "answer": a,
                "grader": "numeric",
                "meta": {"kind": "multi-part", "solution": sol, **meta},
            }
        )

    def choice(q: str, opts: dict[str, float], best: str, kind: str) -> None:
        pick = (min if best == "min" else max)(opts, key=lambda k: opts[k])
        values = sorted(opts.values())
        assert values.count(opts[pick]) == 1, q  # the question must have one right answer
        items.append(
            {
                "question": q,
                "answer": pick,
                "grader": "choice",
                "meta": {"kind": kind, "choices": list(opts), "values": opts},
            }
        )

    def exact(q: str, a: str, kind: str, **meta: Any) -> None:
        items.append(
            {"question": q, "answer": a, "grader": "exact", "meta": {"kind": kind, **meta}}
        )

    tail = " Work out each part separately, then give the sum of all parts as the final answer."
    num(
        "Compute three things: (a) the number of primes below 50, (b) the sum of the digits of "
        "2^20, "
        "(c) the number of days from January 1 to June 30 inclusive in a leap year." + tail,
        _primes_below(50) + _digit_sum(2**20) + (31 + 29 + 31 + 30 + 31 + 30),
        "15 + 31 + 182",
    )
    num(
        "Compute: (a) 17 × 23, (b) the number of edges of a cube, (c) 1000 divided by 8, "
        "(d) the number of minutes in 3.5 hours." + tail,
        17 * 23 + 12 + 125 + 210,
        "391 + 12 + 125 + 210",
    )
    num(
        "Compute: (a) 5 factorial, (b) the 10th Fibonacci number (F1 = F2 = 1), (c) the square "
        "of 19." + tail,
        120 + 55 + 361,
        "120 + 55 + 361",
    )
    num(
        "Compute: (a) the number of seconds in a day, (b) the number of hours in a (non-leap) year."
        + tail,
        86400 + 8760,
        "86400 + 8760",
    )
    num(
        "Compute: (a) the sum of the integers from 1 to 100, (b) the product of the first four "
        "primes, "
        "(c) 2^10." + tail,
        5050 + 210 + 1024,
        "5050 + 210 + 1024",
    )
    num(
        "Compute: (a) the number of letters in the English alphabet, (b) the number of squares on "
        "a chess "
        "board, (c) the number of degrees in the interior angles of a hexagon." + tail,
        26 + 64 + 720,
        "26 + 64 + 720",
    )
    num(
        "Compute: (a) the greatest common divisor of 84 and 126, (b) the least common multiple of "
        "12 and 18, "
        "(c) the remainder of 1000 divided by 7." + tail,
        math.gcd(84, 126) + 36 + 1000 % 7,
        "42 + 36 + 6",
    )
    num(
        "Compute: (a) the number of two-element subsets of a 10-element set, (b) the number of "
        "ways to "
        "arrange 4 distinct books on a shelf, (c) the number of diagonals of an octagon." + tail,
        math.comb(10, 2) + math.factorial(4) + 8 * 5 // 2,
        "45 + 24 + 20",
    )
    num(
        "Compute: (a) 15% of 240, (b) the perimeter of a 7 by 11 rectangle, (c) the area of a "
        "triangle "
        "with base 10 and height 9." + tail,
        36 + 36 + 45,
        "36 + 36 + 45",
    )
    num(
        "Compute: (a) the number of primes between 50 and 100, (b) the sum of the digits of 999 "
        "× 9, "
        "(c) the number of weeks in 91 days." + tail,
        _primes_below(100) - _primes_below(50) + _digit_sum(999 * 9) + 13,
        "10 + 27 + 13",
    )
    num(
        "Compute: (a) the cube of 7, (b) the square root of 1764, (c) 3 to the power 5." + tail,
        343 + 42 + 243,
        "343 + 42 + 243",
    )
    num(
        "Compute: (a) the number of vowels (a, e, i, o, u) in the word 'encyclopedia', (b) the "
        "number of consonants in "
        "'rhythm', (c) the number of distinct letters in 'mississippi'." + tail,
        _vowels("encyclopedia") + 6 + len(set("mississippi")),
        "5 + 6 + 4",
    )

    choice(
        "Which plan costs least over 12 months? (A) $40 per month; (B) $290 up front plus $16 per "
        "month; "
        "(C) $25 per month plus a one-time $150 fee; (D) $520 per year paid once. Answer with the "
        "letter.",
        {"A": 40 * 12, "B": 290 + 16 * 12, "C": 25 * 12 + 150, "D": 520},
        "min",
        "comparison",
    )
    choice(
        "Which box has the largest volume? (A) 10 × 10 × 10 cm; (B) 20 × 8 × 6 cm; (C) 12 × 12 × "
        "7 cm; "
        "(D) 25 × 5 × 9 cm. Answer with the letter.",
        {"A": 1000, "B": 960, "C": 1008, "D": 1125},
        "max",
        "comparison",
    )
    choice(
        "Which is the best value per gram? (A) 250 g for $3.00; (B) 400 g for $4.60; (C) 1 kg for "
        "$11.90; "
        "(D) 750 g for $8.70. Answer with the letter.",
        {"A": 3.00 / 250, "B": 4.60 / 400, "C": 11.90 / 1000, "D": 8.70 / 750},
        "min",
        "comparison",
    )
    choice(
        "Which trip is fastest? (A) 120 km at 60 km/h; (B) 150 km at 90 km/h; (C) 90 km at 40 "
        "km/h; "
        "(D) 200 km at 110 km/h. Answer with the letter.",
        {"A": 120 / 60, "B": 150 / 90, "C": 90 / 40, "D": 200 / 110},
        "min",
        "comparison",
    )
    choice(
        "Which number is largest? (A) 2^30; (B) 3^19; (C) 10^9; (D) 5^13. Answer with the letter.",
        {"A": 2**30, "B": 3**19, "C": 10**9, "D": 5**13},
        "max",
        "comparison",
    )
    choice(
        "Which savings option yields the most after 3 years on $1,000? (A) 5% simple interest per "
        "year; "
        "(B) 4.8% compounded yearly; (C) 4.7% compounded monthly; (D) a one-off $155 bonus at the "
        "end. "
        "Answer with the letter.",
        {"A": 1000 * 1.15, "B": 1000 * 1.048**3, "C": 1000 * (1 + 0.047 / 12) ** 36, "D": 1155},
        "max",
        "comparison",
    )
    choice(
        "Which shape has the largest area? (A) a circle of radius 5; (B) a square of side 9; "
        "(C) a 7 × 12 rectangle; (D) a right triangle with legs 12 and 13. Answer with the letter.",
        {"A": math.pi * 25, "B": 81, "C": 84, "D": 78},
        "max",
        "comparison",
    )
    choice(
        "Which job pays the most for a 40-hour week? (A) $28 per hour; (B) $1,150 per week flat; "
        "(C) $24 per hour plus a $190 weekly bonus; (D) $60,000 per year over 52 weeks. Answer "
        "with the letter.",
        {"A": 28 * 40, "B": 1150, "C": 24 * 40 + 190, "D": 60000 / 52},
        "max",
        "comparison",
    )
    choice(
        "Which fraction is closest to 1/3? (A) 5/16; (B) 7/20; (C) 11/32; (D) 3/10. Answer with "
        "the letter.",
        {
            "A": abs(5 / 16 - 1 / 3),
            "B": abs(7 / 20 - 1 / 3),
            "C": abs(11 / 32 - 1 / 3),
            "D": abs(3 / 10 - 1 / 3),
        },
        "min",
        "comparison",
    )
    choice(
        "Which phone plan is cheapest for 30 GB of data in a month? (A) $20 plus $1.50 per GB; "
        "(B) $45 flat for up to 40 GB; (C) $10 plus $2 per GB; (D) $30 for 20 GB plus $2 per "
        "extra GB. "
        "Answer with the letter.",
        {"A": 20 + 1.5 * 30, "B": 45, "C": 10 + 60, "D": 30 + 20},
        "min",
        "comparison",
    )

    constraint = "multi-constraint"
    cases: list[tuple[str, Any]] = [
        (
            (
                "the smallest positive integer that leaves remainder 1 when divided by 2, 3, 4, "
                "5 and "
                "6 and is divisible by 7"
            ),
            lambda n: all(n % d == 1 for d in (2, 3, 4, 5, 6)) and n % 7 == 0,
        ),
        (
            "the smallest positive integer divisible by 3, 4 and 5 whose digits sum to 12",
            lambda n: n % 60 == 0 and _digit_sum(n) == 12,
        ),
        (
            (
                "the smallest three-digit number that is a perfect square and whose digits are "
                "all even"
            ),
            lambda n: n >= 100 and math.isqrt(n) ** 2 == n and all(int(c) % 2 == 0 for c in str(n)),
        ),
        ("the largest two-digit prime whose digits sum to 10", None),
        (
            (
                "the smallest positive integer that is divisible by 11, leaves remainder 2 when "
                "divided by 5 and is odd"
            ),
            lambda n: n % 11 == 0 and n % 5 == 2 and n % 2 == 1,
        ),
        (
            (
                "the smallest number greater than 1000 that is divisible by 7, by 13 and has an "
                "even "
                "digit sum"
            ),
            lambda n: n > 1000 and n % 91 == 0 and _digit_sum(n) % 2 == 0,
        ),
        (
            (
                "the smallest positive integer n such that n is a multiple of 6, n + 1 is a "
                "multiple "
                "of 5 and n + 2 is a multiple of 4"
            ),
            lambda n: n % 6 == 0 and (n + 1) % 5 == 0 and (n + 2) % 4 == 0,
        ),
        (
            "the smallest palindrome greater than 200 that is divisible by 9",
            lambda n: n > 200 and str(n) == str(n)[::-1] and n % 9 == 0,
        ),
    ]
    for text, pred in cases:
        if pred is None:
            answer = max(
                p
                for p in range(10, 100)
                if _primes_below(p + 1) - _primes_below(p) == 1 and _digit_sum(p) == 10
            )
        else:
            answer = next(n for n in range(1, 100000) if pred(n))
        items.append(
            {
                "question": f"Find {text}. Check every condition. Give the number as the final "
                "answer.",
                "answer": answer,
                "grader": "numeric",
                "meta": {"kind": constraint},
            }
        )

    words = [
        (
            (
                "Among the words 'banana', 'strength', 'queue', 'rhythm' and 'orange', which has "
                "the most vowels "
                "(a, e, i, o, u)? Answer with the word."
            ),
            max(["banana", "strength", "queue", "rhythm", "orange"], key=_vowels),
        ),
        (
            (
                "Among 'elephant', 'giraffe', 'hippopotamus' and 'crocodile', which word is "
                "longest? "
                "Answer with the word."
            ),
            "hippopotamus",
        ),
        (
            (
                "Which of these cities is farthest north: Madrid, Rome, Oslo, Cairo? Answer "
                "with the "
                "city."
            ),
            "Oslo",
        ),
        (
            "Which planet is largest: Mars, Venus, Neptune or Earth? Answer with the planet.",
            "Neptune",
        ),
        (
            (
                "Which of these has the highest melting point: ice, lead, iron or tin? Answer "
                "with the "
                "substance."
            ),
            "iron",
        ),
        (
            "Which of these numbers has the most divisors: 48, 60, 64, 81? Answer with the number.",
            str(max([48, 60, 64, 81], key=lambda n: sum(n % d == 0 for d in range(1, n + 1)))),
        ),
    ]
    vowel_counts = sorted(_vowels(w) for w in ["banana", "strength", "queue", "rhythm", "orange"])
    assert vowel_counts[-1] != vowel_counts[-2]
    for q, a in words:
        exact(q, a, "comparison")
    return items


def _arithmetic() -> list[dict[str, Any]]:
    """GSM8K-style word problems, written for apr-mcp (GSM8K itself is not bundled)."""
    rows: list[tuple[str, str]] = [
        (
            (
                "Maya buys 3 notebooks at $4 each and 2 pens at $1.50 each. She pays with a $20 "
                "bill. "
                "How much change does she get, in dollars?"
            ),
            "20 - (3*4 + 2*1.5)",
        ),
        (
            (
                "A baker makes 12 trays of cookies with 18 cookies per tray. He sells 150 "
                "cookies and "
                "gives away 20. How many cookies are left?"
            ),
            "12*18 - 150 - 20",
        ),
        (
            (
                "A train travels 240 km in 3 hours. At the same speed, how many kilometres does it "
                "travel in 5 hours?"
            ),
            "240/3*5",
        ),
        (
            (
                "Tom reads 25 pages a day. His book has 410 pages and he has already read 135. How "
                "many more full days does he need to finish it?"
            ),
            "ceil((410-135)/25)",
        ),
        (
            (
                "A shirt costs $40. It is discounted by 25%, and then a further $5 coupon is "
                "applied. "
                "What is the final price in dollars?"
            ),
            "40*0.75 - 5",
        ),
        (
            (
                "There are 28 students in a class. Three sevenths of them walk to school and a "
                "quarter "
                "of the rest take the bus. The others are driven. How many are driven?"
            ),
            "(28 - 28*3/7) - (28 - 28*3/7)/4",
        ),
        (
            (
                "Lena earns $15 per hour and works 6 hours a day, 5 days a week. How much does she "
                "earn in 4 weeks, in dollars?"
            ),
            "15*6*5*4",
        ),
        (
            (
                "A garden is 12 m long and 8 m wide. A path 1 m wide runs around the outside "
                "of it. "
                "What is the area of the path in square metres?"
            ),
            "14*10 - 12*8",
        ),
        (
            (
                "A car uses 6 litres of fuel per 100 km. Fuel costs $1.80 per litre. How much does "
                "fuel cost for a 450 km trip, in dollars?"
            ),
            "450/100*6*1.8",
        ),
        (
            (
                "Sam has twice as many marbles as Ana. Ana has 7 more than Ben, who has 11. How "
                "many "
                "marbles do the three have together?"
            ),
            "11 + 18 + 36",
        ),
        (
            (
                "A water tank holds 1,200 litres. It is 40% full. A pump adds 75 litres per "
                "minute. "
                "How many minutes until it is full?"
            ),
            "1200*0.6/75",
        ),
        (
            (
                "A school orders 17 boxes of 24 pencils. Each of 34 classrooms gets an equal "
                "share. "
                "How many pencils does each classroom get?"
            ),
            "17*24/34",
        ),
        (
            (
                "Jo saves $8 in week one, and each week saves $3 more than the week before. How "
                "much "
                "has she saved after 6 weeks, in dollars?"
            ),
            "8+11+14+17+20+23",
        ),
        (
            (
                "A recipe needs 250 g of flour for 10 pancakes. How many grams of flour are "
                "needed for "
                "36 pancakes?"
            ),
            "250/10*36",
        ),
        (
            (
                "A cinema has 18 rows of 22 seats. 3/4 of the seats are sold at $12 each. What "
                "is the "
                "ticket revenue in dollars?"
            ),
            "18*22*3/4*12",
        ),
        (
            (
                "Pete is 4 times as old as his son. In 20 years he will be twice as old as his "
                "son. "
                "How old is Pete now?"
            ),
            "40",
        ),
        (
            (
                "A phone costs $600. It loses 20% of its value each year. What is it worth after 2 "
                "years, in dollars?"
            ),
            "600*0.8*0.8",
        ),
        (
            (
                "A rectangle's perimeter is 50 cm and its length is 15 cm. What is its area in "
                "square "
                "centimetres?"
            ),
            "15*(50/2-15)",
        ),
        ("A shop sells apples at 3 for $2. How much do 27 apples cost, in dollars?", "27/3*2"),
        (
            (
                "Nina runs 5 km on Monday, 20% farther on Tuesday and half of Tuesday's "
                "distance on "
                "Wednesday. How many km does she run in total?"
            ),
            "5 + 6 + 3",
        ),
        (
            (
                "A box of 48 chocolates is shared: Ali takes a sixth, Bea takes a quarter of what "
                "remains, and Cai takes 10. How many are left?"
            ),
            "48 - 8 - 10 - 10",
        ),
        (
            (
                "A cyclist rides at 18 km/h for 2.5 hours and then at 12 km/h for 1.5 hours. "
                "What is "
                "the total distance in km?"
            ),
            "18*2.5 + 12*1.5",
        ),
        (
            (
                "A farmer has 120 m of fence and fences a square pen. What is the area of the "
                "pen in "
                "square metres?"
            ),
            "(120/4)**2",
        ),
        (
            (
                "A printer prints 14 pages per minute. How many minutes does it take to print 35 "
                "copies of a 12-page report?"
            ),
            "35*12/14",
        ),
        (
            (
                "Four friends split a $86 restaurant bill and add a 15% tip on the bill, shared "
                "equally. How much does each pay, in dollars?"
            ),
            "86*1.15/4",
        ),
        (
            (
                "A tank loses 3 litres of water per hour through a leak. Starting with 120 "
                "litres, how "
                "many litres remain after 1 day and 6 hours?"
            ),
            "120 - 3*30",
        ),
        (
            (
                "A bus carries 45 passengers. At the first stop a third get off and 8 get on. "
                "At the "
                "second stop half get off. How many are on the bus now?"
            ),
            "(45 - 15 + 8)/2",
        ),
        (
            (
                "Rosa's salary is $3,200 a month. She spends 35% on rent and 15% on food. How many "
                "dollars are left each month?"
            ),
            "3200*0.5",
        ),
        (
            (
                "A wall is 6 m by 2.5 m. One litre of paint covers 5 square metres and the wall "
                "needs "
                "two coats. How many litres are needed?"
            ),
            "6*2.5*2/5",
        ),
        (
            (
                "The average of five numbers is 14. Four of them are 10, 12, 15 and 18. What "
                "is the "
                "fifth?"
            ),
            "5*14 - (10+12+15+18)",
        ),
        (
            (
                "A ticket costs $9 for adults and $5 for children. A group of 11 people pays "
                "$79. How "
                "many adults are in the group?"
            ),
            "6",
        ),
        (
            (
                "A clock gains 3 minutes every hour. It is set right at noon. How many minutes "
                "fast is "
                "it at 8 a.m. the next day?"
            ),
            "20*3",
        ),
        (
            (
                "A store buys a lamp for $45 and sells it with a 60% markup. During a sale it "
                "takes "
                "10% off the selling price. What is the sale price in dollars?"
            ),
            "45*1.6*0.9",
        ),
        (
            (
                "Eggs are packed in cartons of 12. A farm collects 500 eggs. How many eggs are "
                "left "
                "over after filling as many full cartons as possible?"
            ),
            "500 % 12",
        ),
        ("Kai is 3 years older than Leo. The sum of their ages is 41. How old is Kai?", "(41+3)/2"),
        (
            (
                "A pool fills in 6 hours with one pipe and in 3 hours with a second pipe. How many "
                "hours does it take with both pipes open?"
            ),
            "1/(1/6+1/3)",
        ),
    ]
    # Unknowns solved by hand are checked here, so the stated answer is verified too.
    assert 40 == 4 * 10 and 40 + 20 == 2 * (10 + 20)
    assert 6 * 9 + 5 * 5 == 79
    items = []
    for q, sol in rows:
        value = eval(sol, {"__builtins__": {}, "ceil": math.ceil})  # authored constants only
        value = round(float(value), 6)
        answer: float | int = int(value) if value.is_integer() else value
        items.append(
            {
                "question": q + " Give the final answer as a number.",
                "answer": answer,
                "grader": "numeric",
                "meta": {"solution": sol, "rel_tol": 1e-4},
            }
        )
    return items


def _sequential_control() -> list[dict[str, Any]]:
    """Chains where every step needs the previous one: splitting cannot help."""
    items: list[dict[str, Any]] = []
    chains: list[tuple[int, list[tuple[str, Callable[[int], int]]]]] = [
        (
            7,
            [
                ("double it", lambda x: 2 * x),
                ("subtract 3", lambda x: x - 3),
                ("square the result", lambda x: x * x),
                ("divide by 11", lambda x: x // 11),
            ],
        ),
        (
            5,
            [
                ("multiply by 9", lambda x: 9 * x),
                ("add 7", lambda x: x + 7),
                ("take the sum of its digits", _digit_sum),
                ("multiply by the original starting number", lambda x: x * 5),
            ],
        ),
        (
            100,
            [
                ("subtract 37", lambda x: x - 37),
                ("multiply by 3", lambda x: 3 * x),
                ("subtract the sum of its digits", lambda x: x - _digit_sum(x)),
                ("divide by 9", lambda x: x // 9),
            ],
        ),
        (
            12,
            [
                ("cube it", lambda x: x**3),
                ("take the remainder when divided by 100", lambda x: x % 100),
                ("add 19", lambda x: x + 19),
                ("double it", lambda x: 2 * x),
            ],
        ),
        (
            3,
            [
                ("raise 2 to that power", lambda x: 2**x),
                ("add 1", lambda x: x + 1),
                ("multiply by itself", lambda x: x * x),
                ("subtract 50", lambda x: x - 50),
            ],
        ),
        (
            44,
            [
                ("halve it", lambda x: x // 2),
                ("add 8", lambda x: x + 8),
                ("halve it", lambda x: x // 2),
                ("square it", lambda x: x * x),
            ],
        ),
        (
            9,
            [
                ("multiply by 12", lambda x: 12 * x),
                ("subtract 8", lambda x: x - 8),
                ("divide by 4", lambda x: x // 4),
                ("add the number of days in a week", lambda x: x + 7),
            ],
        ),
        (
            250,
            [
                ("take 40% of it", lambda x: x * 2 // 5),
                ("add 35", lambda x: x + 35),
                ("divide by 9", lambda x: x // 9),
                ("multiply by 13", lambda x: 13 * x),
            ],
        ),
        (
            6,
            [
                ("compute its factorial", math.factorial),
                ("divide by 8", lambda x: x // 8),
                ("subtract 40", lambda x: x - 40),
                ("multiply by 7", lambda x: 7 * x),
            ],
        ),
        (
            81,
            [
                ("take its square root", math.isqrt),
                ("multiply by 15", lambda x: 15 * x),
                ("subtract 100", lambda x: x - 100),
                ("take the sum of its digits", _digit_sum),
            ],
        ),
        (
            2,
            [
                ("add 13", lambda x: x + 13),
                ("multiply by 4", lambda x: 4 * x),
                ("reverse its digits", lambda x: int(str(x)[::-1])),
                ("add 100", lambda x: x + 100),
            ],
        ),
        (
            17,
            [
                ("multiply by 3", lambda x: 3 * x),
                ("add 49", lambda x: x + 49),
                ("divide by 4", lambda x: x // 4),
                ("subtract 11", lambda x: x - 11),
                ("square it", lambda x: x * x),
            ],
        ),
    ]
    for start, steps in chains:
        value = start
        for _, fn in steps:
            value = fn(value)
        text = f"Start with {start}. " + " ".join(
            f"Then {s}." if i else f"First {s}." for i, (s, _) in enumerate(steps)
        )
        items.append(
            {
                "question": text
                + " Every division here divides exactly. What number do you end with?",
                "answer": value,
                "grader": "numeric",
                "meta": {"kind": "arithmetic-chain", "steps": len(steps)},
            }
        )
        # The phrase "divides exactly" must be true: check every division step was exact.
    _check_exact_divisions(chains)

    # Relation chains: the next fact depends on the previous one.
    people = ["Ava", "Ben", "Cleo", "Dan", "Eli", "Fay"]
    for n in range(3, 9):
        names = people[: min(n, len(people))]
        ages = {names[0]: 10 + n}
        facts = [f"{names[0]} is {10 + n} years old."]
        for i in range(1, len(names)):
            delta = (i * 3 + n) % 7 + 1
            older = (i + n) % 2 == 0
            ages[names[i]] = ages[names[i - 1]] + (delta if older else -delta)
            facts.append(
                f"{names[i]} is {delta} year{'s' if delta > 1 else ''} "
                f"{'older' if older else 'younger'} than {names[i - 1]}."
            )
        last = names[-1]
        items.append(
            {
                "question": " ".join(facts) + f" How old is {last}?",
                "answer": ages[last],
                "grader": "numeric",
                "meta": {"kind": "relation-chain", "steps": len(names) - 1},
            }
        )

    # Pointer chasing: each lookup needs the previous result.
    for k in range(6):
        mult = (3, 5, 7)[k % 3]  # coprime to 8, so the table is a permutation
        table = {chr(65 + i): chr(65 + (i * mult + k + 1) % 8) for i in range(8)}
        hops = 4 + k % 3
        cur = "A"
        for _ in range(hops):
            cur = table[cur]
        desc = ", ".join(f"{a} → {b}" for a, b in table.items())
        items.append(
            {
                "question": f"A lookup table maps letters: {desc}. Start at A and follow the table "
                f"{hops} times. "
                "Which letter do you reach? Answer with the letter only.",
                "answer": cur,
                "grader": "exact",
                "meta": {"kind": "pointer-chain", "steps": hops},
            }
        )

    # Word transformations: each step rewrites the previous word.
    words = ["planet", "garden", "silver", "window", "rocket", "marble", "thunder", "pencil"]
    for w in words:
        step1 = w[1:]
        step2 = step1[::-1]
        step3 = step2 + w[0]
        step4 = step3.upper()
        items.append(
            {
                "question": f"Take the word '{w}'. Remove its first letter. Reverse what is left. "
                "Append the letter "
                "you removed to the end. Write the result in capital letters. What is the result?",
                "answer": step4,
                "grader": "exact",
                "meta": {"kind": "string-chain", "steps": 4},
            }
        )
    return items


def _check_exact_divisions(chains: list[tuple[int, list[tuple[str, Any]]]]) -> None:
    for start, steps in chains:
        value = start
        for text, fn in steps:
            new = fn(value)
            if "divide by" in text:
                divisor = int(text.split("divide by")[1].split()[0])
                assert value % divisor == 0, (start, text, value)
            if "halve" in text:
                assert value % 2 == 0, (start, text, value)
            if "40%" in text:
                assert value * 2 % 5 == 0, (start, text, value)
            value = new


def _countdown() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for i, p in enumerate(generate_countdown(20, seed=2026)):
        numbers, target = cast(list[int], p["numbers"]), p["target"]
        items.append(
            {
                "id": f"cd-{i + 1:03d}",
                "question": f"Countdown: using the numbers {', '.join(map(str, numbers))} (each at "
                "most once) and + - × ÷, "
                f"make exactly {target}. Every intermediate result must be a positive whole "
                "number. "
                "Give the expression as the final answer.",
                "grader": "countdown",
                "meta": {
                    "numbers": numbers,
                    "target": target,
                    "rules": "countdown",
                    "solution": p["solution"],
                },
            }
        )
    for i, p in enumerate(generate_24(20, seed=24)):
        numbers = cast(list[int], p["numbers"])
        items.append(
            {
                "id": f"g24-{i + 1:03d}",
                "question": f"24 game: using each of the numbers {', '.join(map(str, numbers))} "
                "exactly once and + - × ÷ "
                "(fractions allowed along the way), make 24. Give the expression as the final "
                "answer.",
                "grader": "countdown",
                "meta": {
                    "numbers": numbers,
                    "target": 24,
                    "rules": "24",
                    "solution": p["solution"],
                },
            }
        )
    for it in items:
        m = it["meta"]
        assert check_expression(m["solution"], m["numbers"], m["target"], rules=m["rules"]).ok
    return items


#: name → (id prefix, description, should_split for every item (None: per item), builder).
_SETS: dict[str, tuple[str, str, bool | None, Callable[[], list[dict[str, Any]]]]] = {
    "split_pays": (
        "sp",
        (
            "Multi-part comparison and multi-constraint questions with independent parts; "
            "splitting should pay."
        ),
        True,
        _split_pays,
    ),
    "countdown": (
        "",
        (
            "Countdown (6 numbers, at most once each) and 24-game puzzles from a seeded generator "
            "(seeds 2026 and 24), each verified solvable; hypothesis search parallelises."
        ),
        True,
        _countdown,
    ),
    "arithmetic": (
        "ar",
        (
            "GSM8K-style arithmetic word problems written for apr-mcp (not GSM8K itself); "
            "accuracy must not drop when the engine decides."
        ),
        False,
        _arithmetic,
    ),
    "sequential_control": (
        "sq",
        (
            "Inherently sequential multi-hop chains (arithmetic, relations, pointer "
            "chasing, string rewriting): negative control, splitting should not happen."
        ),
        False,
        _sequential_control,
    ),
    "routing_heldout": (
        "ho",
        (
            "Held-out routing set: split and no-split questions (debugging reports, lists, "
            "options, conditions, chains, arithmetic) that no routing rule or test is "
            "fitted to; routing accuracy is reported on it."
        ),
        None,
        heldout_items,
    ),
}


def build_all() -> dict[str, list[dict[str, Any]]]:
    """Every bundled dataset as a list of JSON records (header first)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, (prefix, description, split, fn) in _SETS.items():
        records = fn()
        for i, r in enumerate(records):
            r.setdefault("id", f"{prefix}-{i + 1:03d}")
            if split is not None:
                r["should_split"] = split
        held_out = split is None
        source = (
            f"{PROVENANCE}; see apr_mcp/bench/heldout.py"
            if held_out
            else "authored for apr-mcp; see apr_mcp/bench/build_datasets.py"
        )
        header: dict[str, Any] = {
            "_meta": {
                "name": name,
                "version": VERSION,
                "licence": LICENCE,
                "source": source,
                "description": description,
                "items": len(records),
                "routing_set": "held-out" if held_out else "tuning",
            }
        }
        ordered: list[dict[str, Any]] = [
            {
                k: r[k]
                for k in ("id", "question", "answer", "grader", "should_split", "meta")
                if k in r
            }
            for r in records
        ]
        out[name] = [header, *ordered]
    return out


def main(argv: list[str] | None = None) -> int:
    target = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "datasets"
    target.mkdir(parents=True, exist_ok=True)
    for name, records in build_all().items():
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        (target / f"{name}.jsonl").write_text(text, encoding="utf-8")
        print(f"{name}: {len(records) - 1} items", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
