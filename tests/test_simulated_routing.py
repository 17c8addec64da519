"""Held-out routing phrasings for the simulated planner: entity lists (names with dots, hyphens
and digits), "for each of", "pros and cons of", "ways to …: A, B, and C", "could be A, or B, or
C" hypotheses and multi-condition searches split one part per item; chains stay one call."""

from __future__ import annotations

import pytest
from routing_cases import HELD_OUT_SINGLE

from apr_mcp.llm.base import ModelRequest
from apr_mcp.llm.simulated import SimulatedModel
from apr_mcp.llm.simulated_plan import decompose, part_core
from apr_mcp.prompts import load_prompt
from apr_mcp.schemas import Plan

# (question, number of parts, a word every part's own work must carry one of, per part)
SPLIT = [
    (
        "What are the pros and cons of Kafka, RabbitMQ and NATS for an event bus?",
        ["Kafka", "RabbitMQ", "NATS"],
    ),
    (
        "Evaluate three ways to cache API responses: in-process LRU, Redis, and a CDN.",
        ["in-process LRU", "Redis", "CDN"],
    ),
    (
        "For each of Paris, Tokyo and New York, estimate the monthly rent of a one-bedroom flat.",
        ["Paris", "Tokyo", "New York"],
    ),
    (
        "Which of these sorting algorithms is stable: quicksort, mergesort, heapsort, insertion sort?",
        ["quicksort", "mergesort", "heapsort", "insertion sort"],
    ),
    (
        (
            "My service returns 502s intermittently. It could be the load balancer timeout, or the "
            "upstream pool exhaustion, or DNS flapping. Which is most likely?"
        ),
        ["load balancer timeout", "upstream pool exhaustion", "DNS flapping"],
    ),
    (
        "Summarise the licensing terms of MIT, Apache-2.0 and GPL-3.0 for a commercial SaaS.",
        ["MIT", "Apache-2.0", "GPL-3.0"],
    ),
    (
        (
            "1) What is the boiling point of water at sea level? 2) What is the freezing point of "
            "ethanol? 3) What is the melting point of iron?"
        ),
        ["water", "ethanol", "iron"],
    ),
    ("Compare PostgreSQL vs MySQL for a write-heavy workload.", ["PostgreSQL", "MySQL"]),
    (
        (
            "List the trade-offs of monorepo versus polyrepo for a team of 40 engineers, and then "
            "recommend one."
        ),
        ["monorepo", "polyrepo"],
    ),
    (
        "Find a four-digit number that is divisible by 7, has digits summing to 20, and is a palindrome.",
        ["divisible by 7", "digits summing to 20", "palindrome"],
    ),
]
NO_SPLIT = HELD_OUT_SINGLE


def planner_request(question: str) -> ModelRequest:
    messages = load_prompt("planner").render(
        question=question, context="", signals="", schema="{}", min_threads=2, max_threads=8
    )
    return ModelRequest(messages=messages, schema_name="Plan", purpose="planner",
                        json_schema=Plan.model_json_schema())


@pytest.mark.parametrize(("question", "items"), SPLIT)
def test_held_out_lists_hypotheses_and_searches_split_one_part_per_item(
    question: str, items: list[str]
) -> None:
    split = decompose(question)
    cores = [part_core(p.prompt) for p in split.parts]
    assert len(cores) == len(items), (split.kind, cores)
    for core, item in zip(cores, items, strict=True):
        # Each part carries its own item, and no other item of the list as its own work.
        assert item in core, (item, core)
        assert not any(other in core for other in items if other != item and other not in item), core


@pytest.mark.parametrize("question", NO_SPLIT)
def test_held_out_single_and_chained_questions_stay_one_call(question: str) -> None:
    assert decompose(question).parts == [], question


async def test_a_listed_split_reaches_the_plan_with_self_contained_subtasks() -> None:
    question = "Summarise the licensing terms of MIT, Apache-2.0 and GPL-3.0 for a commercial SaaS."
    reply = await SimulatedModel(ttft_s=0.0, tokens_per_s=1e6).complete(planner_request(question))
    plan = Plan.model_validate_json(reply.text)
    assert plan.should_split and len(plan.subtasks) == 3
    assert all("commercial SaaS" in s.prompt for s in plan.subtasks)
    assert all(s.depends_on == [] for s in plan.subtasks)


@pytest.mark.parametrize(
    "question",
    [
        # Bare numbers are data, an aggregate over a list is one computation, and comma steps
        # ending in "then" are a chain.
        "The average of five numbers is 14. Four of them are 10, 12, 15 and 18. What is the fifth?",
        "What is the sum of the ages of Ann, Bob and Cy if they total twice Ann's age?",
        "Find a number that is divisible by 7.",
        "Summarise the plot of the book, then list its main characters, and then rate it.",
    ],
)
def test_lists_that_are_data_aggregates_or_steps_do_not_split(question: str) -> None:
    assert decompose(question).parts == [], decompose(question)
