"""What a bench returns: metrics, tables and numerical checks, as plain data."""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    """A titled table of rows; cells are numbers or short strings.

    A ``detail`` table goes to the report only, not to the console summary. Tables with the
    same ``section`` are grouped under that heading in the report; a row whose ``emphasis``
    column is not empty is set in bold (e.g. the bottleneck hop of a route).
    """

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    detail: bool = False
    section: str | None = None
    emphasis: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "title": self.title,
            "columns": self.columns,
            "rows": self.rows,
            "detail": self.detail,
        }
        if self.section:
            out["section"] = self.section
        if self.emphasis:
            out["emphasis"] = self.emphasis
        return out


@dataclass
class BenchResult:
    """Metrics use the documented names (``case/metric``); checks map a name to pass/fail."""

    metrics: dict[str, float] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sim_time_ns: float = 0.0
    sim_events: int = 0
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(self.checks.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "checks": self.checks,
            "tables": [t.to_dict() for t in self.tables],
            "notes": self.notes,
            "sim_time_ns": self.sim_time_ns,
            "sim_events": self.sim_events,
            "data": self.data,
        }
