"""Units, value types and errors shared by every layer."""

from kernbench.core.errors import (
    AddressError,
    BenchError,
    ConfigError,
    KernbenchError,
    RouteError,
    SimulationError,
)
from kernbench.core.units import GIB, KIB, MIB, fmt_bytes, fmt_ns

__all__ = [
    "AddressError",
    "BenchError",
    "ConfigError",
    "GIB",
    "KIB",
    "KernbenchError",
    "MIB",
    "RouteError",
    "SimulationError",
    "fmt_bytes",
    "fmt_ns",
]
