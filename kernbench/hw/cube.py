"""A compute cube: its floorplan, router grid, PEs, m_cpu and shared SRAM.

Fidelity: the floorplan places the routers at the centres of a ``router_rows`` x
``router_cols`` grid of equal tiles over a ``width_mm`` x ``height_mm`` die; PE ``i`` and its
HBM controller sit on router ``i`` (row-major). ``m_cpu`` is a control-path node charging
``m_cpu_overhead_ns`` (kernel launch); the shared SRAM is an endpoint on router 0.
"""

from dataclasses import dataclass
from typing import ClassVar

from kernbench.core.errors import ConfigError
from kernbench.core.specs import check_non_negative, check_positive, param


@dataclass(frozen=True)
class CubeSpec:
    KEY: ClassVar[str] = "hw.cube"

    pes: int = param(8, "processing elements per cube, each on its own router")
    router_rows: int = param(2, "rows of the cube's router grid")
    router_cols: int = param(4, "columns of the cube's router grid")
    width_mm: float = param(20.0, "cube die width (east-west), mm")
    height_mm: float = param(10.0, "cube die height (north-south), mm")
    m_cpu_overhead_ns: float = param(5.0, "m_cpu overhead per control message, ns")
    sram_bw_gbs: float = param(128.0, "shared SRAM to router bandwidth, GB/s")
    sram_bytes: int = param(64 * 1024 * 1024, "shared SRAM capacity, bytes")

    def __post_init__(self) -> None:
        check_positive(
            self,
            "pes",
            "router_rows",
            "router_cols",
            "width_mm",
            "height_mm",
            "sram_bw_gbs",
            "sram_bytes",
        )
        check_non_negative(self, "m_cpu_overhead_ns")
        routers = self.router_rows * self.router_cols
        if self.pes > routers:
            raise ConfigError(
                f"{self.KEY}.pes",
                f"{self.pes} PEs do not fit on {self.router_rows}x{self.router_cols} = "
                f"{routers} routers (one PE per router); use at most {routers}",
            )
