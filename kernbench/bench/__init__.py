"""Bench registry, context and result schema."""

from kernbench.bench.context import BenchContext
from kernbench.bench.registry import BenchInfo, bench, discover, get_bench
from kernbench.bench.result import BenchResult, Table

__all__ = ["BenchContext", "BenchInfo", "BenchResult", "Table", "bench", "discover", "get_bench"]
