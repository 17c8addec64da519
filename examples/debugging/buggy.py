"""Sliding-window statistics for a latency dashboard.

This file contains a real bug on purpose: it is the example that `apr-mcp solve --mode debug`
investigates (see README.md next to it). Run it to reproduce the traceback:

    python examples/debugging/buggy.py
"""

from __future__ import annotations


def window_sums(values: list[float], k: int) -> list[float]:
    """The sum of every run of ``k`` consecutive values, in order."""
    if k <= 0:
        raise ValueError("window size must be positive")
    sums = []
    for start in range(len(values) - k + 2):
        total = 0.0
        for offset in range(k):
            total += values[start + offset]
        sums.append(total)
    return sums


def moving_averages(values: list[float], k: int) -> list[float]:
    """The mean of every window of ``k`` consecutive values."""
    return [s / k for s in window_sums(values, k)]


if __name__ == "__main__":
    latencies_ms = [120.0, 135.0, 128.0, 400.0, 131.0, 127.0]
    print(moving_averages(latencies_ms, 3))
