"""How the routing heuristics alone score on a labelled dataset, without any model.

``apr-mcp bench --routing-only --dataset routing_heldout`` prints it. The heuristics decide the
sure cases (``should_split_hint`` True/False) and leave the uncertain middle to the model planner;
this counts both, so the figure is exactly what the rules get right on their own. It names the
dataset's routing set: on ``held-out`` labels it is an out-of-sample figure, on ``tuning`` labels
(the rules were written from them) only a regression check. The adaptive engine's full routing
accuracy, planner included, comes from a bench run on a real model (see docs/evaluation.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..engine import heuristics
from .datasets import Dataset

__all__ = ["RoutingTally", "heuristic_routing", "render_routing"]


@dataclass
class RoutingTally:
    """Labelled items of one dataset, by what the heuristics decided."""

    dataset: str
    routing_set: str | None
    labelled: int = 0
    decided: int = 0
    decided_right: int = 0
    #: Left to the model planner, and how many of those a planner following the heuristics'
    #: suggested width (what the simulated planner does) would get right.
    undecided: int = 0
    width_right: int = 0
    wrong: list[str] = field(default_factory=list)


def heuristic_routing(
    dataset: Dataset, *, min_threads: int = 2, max_threads: int = 8
) -> RoutingTally:
    tally = RoutingTally(dataset.info.name, dataset.info.routing_set)
    for item in dataset.items:
        if item.should_split is None:
            continue
        tally.labelled += 1
        hints = heuristics.analyze(
            item.question, item.context, min_threads=min_threads, max_threads=max_threads
        )
        if hints.should_split_hint is None:
            tally.undecided += 1
            tally.width_right += (hints.suggested_width > 1) == item.should_split
            continue
        tally.decided += 1
        if hints.should_split_hint == item.should_split:
            tally.decided_right += 1
        else:
            tally.wrong.append(f"{item.id} (label {'split' if item.should_split else 'no split'})")
    return tally


def _pct(right: int, n: int) -> str:
    return f"{right / n:.1%} ({right}/{n})" if n else "— (0/0)"


def render_routing(tally: RoutingTally) -> str:
    kind = {
        "held-out": "held-out set: no rule or test is fitted to these labels",
        "tuning": "tuning set: the rules were written from these labels, an in-sample figure",
    }
    lines = [
        (
            f"routing by the heuristics alone on `{tally.dataset}` "
            f"({kind.get(tally.routing_set or '', 'labels of unstated provenance')}), "
            f"{tally.labelled} labelled items:"
        ),
        (
            f"  decided by the heuristics: {tally.decided}, right "
            f"{_pct(tally.decided_right, tally.decided)}"
        ),
        f"  left to the model planner: {tally.undecided}",
        (
            "  heuristics + a planner that follows their suggested width (= the simulated "
            "planner): "
            f"{_pct(tally.decided_right + tally.width_right, tally.labelled)}"
        ),
    ]
    if tally.wrong:
        lines.append(f"  decided wrongly: {', '.join(tally.wrong)}")
    return "\n".join(lines)
