"""Questions that must be answered with one call, pinned by the heuristics tests.

These phrasings were used while writing the rules (commit 6a2c7e4 tuned them here), so they are
part of the tuning set, not a held-out check: routing accuracy out of sample is measured only on
the bundled ``routing_heldout`` dataset, which no rule or test is fitted to."""

TUNED_SINGLE = [
    "What is the capital of Australia?",
    "Convert 72 degrees Fahrenheit to Celsius.",
    (
        "Take the year the Eiffel Tower was completed, add 50, then find what major event "
        "happened in "
        "that year."
    ),
    "Who directed the film that won Best Picture in the year the author of Dune was born?",
    "Translate 'good morning' into Spanish.",
    "First compute 17 * 23, then subtract 100, then divide the result by 3.",
    "A train leaves at 3 pm travelling 80 km/h; how far has it gone by 5:30 pm?",
    "What is the square root of 1764?",
    "Explain what a mutex is in one paragraph.",
    "Using the result of 2^10, compute that number modulo 7.",
]
