"""Report layer: renders a run from its result files or dicts, never from live objects."""

from kernbench.report.artifacts import clear_observation, write_observation
from kernbench.report.console import metrics_table, rich_table
from kernbench.report.markdown import fmt_cell, markdown_table, render_report

__all__ = [
    "clear_observation",
    "fmt_cell",
    "markdown_table",
    "metrics_table",
    "render_report",
    "rich_table",
    "write_observation",
]
