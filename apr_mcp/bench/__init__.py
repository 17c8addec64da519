"""Evaluation of apr-mcp's strategies against the sequential baseline.

``apr-mcp bench`` runs datasets (bundled in ``apr_mcp/datasets`` or the user's JSONL) through
the strategies, grades the answers, streams records to ``results.jsonl`` (resumable) and writes
``report.md`` and a self-contained ``report.html``. ``apr-mcp trace view`` draws one saved run's
thread timeline with the same renderer.
"""

from .cli import run_bench, run_trace
from .datasets import Dataset, DatasetInfo, Item, bundled_datasets, load_dataset
from .graders import Grade, grade
from .report import aggregate, write_reports
from .runner import STRATEGIES, BenchConfig, execute_bench
from .timeline import Timeline, render_svg, render_text, timeline_from_result

__all__ = [
    "STRATEGIES",
    "BenchConfig",
    "Dataset",
    "DatasetInfo",
    "Grade",
    "Item",
    "Timeline",
    "aggregate",
    "bundled_datasets",
    "execute_bench",
    "grade",
    "load_dataset",
    "render_svg",
    "render_text",
    "run_bench",
    "run_trace",
    "timeline_from_result",
    "write_reports",
]
