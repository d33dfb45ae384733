"""Bench registry, context and result schema."""

from kernbench.bench.context import BenchContext
from kernbench.bench.model import ModelSpec, check_tp
from kernbench.bench.registry import BenchInfo, bench, discover, get_bench
from kernbench.bench.result import (
    HIGHER,
    LOWER,
    BenchResult,
    Table,
    headline_metrics,
    metric_direction,
)

__all__ = [
    "HIGHER",
    "LOWER",
    "BenchContext",
    "BenchInfo",
    "BenchResult",
    "ModelSpec",
    "Table",
    "bench",
    "check_tp",
    "discover",
    "get_bench",
    "headline_metrics",
    "metric_direction",
]
