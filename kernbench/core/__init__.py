"""Units, value types and errors shared by every layer."""

from kernbench.core.errors import (
    AddressError,
    AllocationError,
    BenchError,
    ConfigError,
    KernbenchError,
    KernelError,
    RouteError,
    SimulationError,
)
from kernbench.core.units import GIB, KIB, MIB, fmt_bytes, fmt_ns

__all__ = [
    "AddressError",
    "AllocationError",
    "BenchError",
    "ConfigError",
    "GIB",
    "KIB",
    "KernbenchError",
    "KernelError",
    "MIB",
    "RouteError",
    "SimulationError",
    "fmt_bytes",
    "fmt_ns",
]
