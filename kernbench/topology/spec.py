"""The system's shape (the ``topology`` config group) and the whole system spec."""

from dataclasses import dataclass, field
from typing import ClassVar

from kernbench.core.errors import ConfigError
from kernbench.core.specs import check_positive, param
from kernbench.hw import HwSpec
from kernbench.hw.ipcq import CclSpec
from kernbench.sim.spec import SimSpec

MAX_SIPS = 16


@dataclass(frozen=True)
class TopologySpec:
    KEY: ClassVar[str] = "topology"

    name: str = param("4x4", "name of the topology preset")
    sips: int = param(1, "systems-in-package; two or more are joined by a fabric switch")
    mesh_w: int = param(4, "cube mesh width (columns, east-west)")
    mesh_h: int = param(4, "cube mesh height (rows, north-south)")

    def __post_init__(self) -> None:
        check_positive(self, "mesh_w", "mesh_h")
        if not 1 <= self.sips <= MAX_SIPS:
            raise ConfigError(
                f"{self.KEY}.sips",
                f"must be between 1 and {MAX_SIPS} (4 address bits), got {self.sips}",
            )

    @property
    def cubes(self) -> int:
        return self.mesh_w * self.mesh_h


@dataclass(frozen=True)
class SystemSpec:
    """Topology, hardware, simulation and IPCQ settings: everything needed to build a system."""

    topology: TopologySpec = field(default_factory=TopologySpec)
    hw: HwSpec = field(default_factory=HwSpec)
    sim: SimSpec = field(default_factory=SimSpec)
    ccl: CclSpec = field(default_factory=CclSpec)
