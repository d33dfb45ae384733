"""The system's shape (the ``topology`` config group) and the whole system spec."""

from dataclasses import dataclass, field
from typing import ClassVar

from kernbench.core.errors import ConfigError
from kernbench.core.specs import check_positive, param
from kernbench.hw import HwSpec
from kernbench.hw.ipcq import CclSpec
from kernbench.sim.spec import SimSpec

MAX_SIPS = 16
# Cubes per side of a SIP's mesh (ADR 0017): 32 x 32 = 1024 cubes is the largest mesh whose
# address layout (ADR 0003) still holds the default 48 GiB of HBM per cube, and it builds in
# about half a second; the presets go up to 8 x 8.
MAX_MESH_SIDE = 32


@dataclass(frozen=True)
class TopologySpec:
    KEY: ClassVar[str] = "topology"

    name: str = param("4x4", "name of the topology preset")
    sips: int = param(1, "systems-in-package; two or more are joined by a fabric switch")
    mesh_w: int = param(4, f"cube mesh width (columns, east-west), 1..{MAX_MESH_SIDE}")
    mesh_h: int = param(4, f"cube mesh height (rows, north-south), 1..{MAX_MESH_SIDE}")

    def __post_init__(self) -> None:
        check_positive(self, "mesh_w", "mesh_h")
        for key in ("mesh_w", "mesh_h"):
            value = getattr(self, key)
            if value > MAX_MESH_SIDE:
                raise ConfigError(
                    f"{self.KEY}.{key}",
                    f"must be between 1 and {MAX_MESH_SIDE} (a SIP's mesh is at most "
                    f"{MAX_MESH_SIDE}x{MAX_MESH_SIDE} cubes), got {value}",
                )
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
