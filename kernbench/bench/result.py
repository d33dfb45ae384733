"""What a bench returns: metrics, tables and numerical checks, as plain data; and what its
metrics mean for a comparison: which direction is better, and which are its headline."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from kernbench.core.errors import BenchError


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


LOWER = "lower"
HIGHER = "higher"
DIRECTIONS = (LOWER, HIGHER)

# Defaults by unit suffix (docs/metrics.md) for metrics no bench declares; checked in order,
# so ``_per_s`` (a rate) wins over ``_s`` (a duration).
SUFFIX_DIRECTIONS: tuple[tuple[str, str], ...] = (
    ("_per_s", HIGHER),
    ("_per_w", HIGHER),  # an efficiency: work per watt, before ``_w``
    ("_per_j", HIGHER),
    ("_uj", LOWER),
    ("_w", LOWER),
    ("_ns", LOWER),
    ("_s", LOWER),
    ("_bytes", LOWER),
    ("_gbs", HIGHER),
    ("_tflops", HIGHER),
)

# kernbench's own metrics of every run: simulated time is what the model charged; the event
# count describes the simulation, neither better nor worse; host wall time is better lower,
# though comparisons leave it out by default (it measures the machine, not the model).
RUN_METRIC_DIRECTIONS: dict[str, str | None] = {
    "sim_time_ns": LOWER,
    "sim_events": None,
    "wall_s": LOWER,
    # the energy model's metrics of every run (docs/energy.md)
    "energy_uj": LOWER,
    "avg_power_w": LOWER,
    "tflops_per_w": HIGHER,
    "tokens_per_j": HIGHER,
}


def check_directions(better: Mapping[str, str | None], where: str) -> dict[str, str | None]:
    """``better`` as a plain dict of metric-name globs to ``"lower"``, ``"higher"`` or None
    (no direction: a change is only "changed"); a wrong value raises naming ``where``."""
    out: dict[str, str | None] = {}
    for pattern, value in better.items():
        if value not in (*DIRECTIONS, None):
            raise BenchError(
                f"{where}: metric {pattern!r} has direction {value!r}; use 'lower', 'higher' "
                "or None"
            )
        out[str(pattern)] = value
    return out


def metric_direction(name: str, better: Mapping[str, str | None] = {}) -> str | None:
    """Whether a lower or a higher value of metric ``name`` is better, or None.

    The first glob of ``better`` (a bench's declaration, in its order) that matches the whole
    name decides; then kernbench's run metrics; then the unit suffix (:data:`SUFFIX_DIRECTIONS`).
    """
    for pattern, value in better.items():
        if fnmatchcase(name, pattern):
            return value
    if name in RUN_METRIC_DIRECTIONS:
        return RUN_METRIC_DIRECTIONS[name]
    for suffix, value in SUFFIX_DIRECTIONS:
        if name.endswith(suffix):
            return value
    return None


def headline_metrics(metrics: Iterable[str], headline: Sequence[str]) -> list[str]:
    """The metrics matching the ``headline`` globs, in glob order, then name order."""
    names = sorted(set(metrics))
    out: list[str] = []
    for pattern in headline:
        out += [n for n in names if fnmatchcase(n, pattern) and n not in out]
    return out
