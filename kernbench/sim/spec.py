"""Simulation settings (the ``sim`` config group)."""

from dataclasses import dataclass
from typing import ClassVar

from kernbench.core.specs import check_positive, param


@dataclass(frozen=True)
class SimSpec:
    KEY: ClassVar[str] = "sim"

    flit_bytes: int = param(256, "flit size; equal to the HBM burst by default, bytes")
    ns_per_mm: float = param(0.01, "wire propagation delay, ns per mm")
    read_request_bytes: int = param(64, "size of a read request travelling to memory, bytes")

    def __post_init__(self) -> None:
        check_positive(self, "flit_bytes", "ns_per_mm", "read_request_bytes")
