"""Questions that must be answered with one call: shared by the heuristics tests and the
simulated planner's routing tests, so both judge the same held-out phrasings."""

HELD_OUT_SINGLE = [
    "What is the capital of Australia?",
    "Convert 72 degrees Fahrenheit to Celsius.",
    "Take the year the Eiffel Tower was completed, add 50, then find what major event happened in that year.",
    "Who directed the film that won Best Picture in the year the author of Dune was born?",
    "Translate 'good morning' into Spanish.",
    "First compute 17 * 23, then subtract 100, then divide the result by 3.",
    "A train leaves at 3 pm travelling 80 km/h; how far has it gone by 5:30 pm?",
    "What is the square root of 1764?",
    "Explain what a mutex is in one paragraph.",
    "Using the result of 2^10, compute that number modulo 7.",
]
