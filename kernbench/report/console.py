"""Console rendering of a run's tables with rich, from the same dicts as the markdown report."""

from collections.abc import Mapping
from typing import Any

from rich.table import Table

from kernbench.report.markdown import fmt_cell


def rich_table(table: Mapping[str, Any]) -> Table:
    """A ``{"title", "columns", "rows"}`` table as a rich table, numbers right-aligned."""
    rows = table.get("rows", [])
    out = Table(title=table.get("title") or None, title_justify="left", title_style="bold")
    for i, column in enumerate(table.get("columns", [])):
        numeric = bool(rows) and all(
            isinstance(r[i], int | float) and not isinstance(r[i], bool) for r in rows if i < len(r)
        )
        out.add_column(str(column), justify="right" if numeric else "left")
    for row in rows:
        out.add_row(*(fmt_cell(v) for v in row))
    return out


def metrics_table(metrics: Mapping[str, Any]) -> Table:
    return rich_table(
        {"title": "metrics", "columns": ["metric", "value"], "rows": list(metrics.items())}
    )
