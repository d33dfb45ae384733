"""Hardware blocks: one module per block, each a frozen spec dataclass plus its behaviour."""

from dataclasses import dataclass, field
from typing import ClassVar

from kernbench.hw.cube import CubeSpec
from kernbench.hw.energy import EnergySpec
from kernbench.hw.hbm import HbmController, HbmSpec
from kernbench.hw.host import HostSpec
from kernbench.hw.io import IoSpec
from kernbench.hw.memory import MemoryStore
from kernbench.hw.noc import NocSpec
from kernbench.hw.pe import PeSpec
from kernbench.hw.switch import SwitchSpec
from kernbench.hw.ucie import UcieSpec


@dataclass(frozen=True)
class HwSpec:
    """Every hardware parameter of the system (the ``hw`` config group)."""

    KEY: ClassVar[str] = "hw"

    name: str = "default"
    host: HostSpec = field(default_factory=HostSpec)
    io: IoSpec = field(default_factory=IoSpec)
    switch: SwitchSpec = field(default_factory=SwitchSpec)
    noc: NocSpec = field(default_factory=NocSpec)
    ucie: UcieSpec = field(default_factory=UcieSpec)
    cube: CubeSpec = field(default_factory=CubeSpec)
    pe: PeSpec = field(default_factory=PeSpec)
    hbm: HbmSpec = field(default_factory=HbmSpec)
    energy: EnergySpec = field(default_factory=EnergySpec)


__all__ = [
    "CubeSpec",
    "EnergySpec",
    "HbmController",
    "HbmSpec",
    "HostSpec",
    "HwSpec",
    "IoSpec",
    "MemoryStore",
    "NocSpec",
    "PeSpec",
    "SwitchSpec",
    "UcieSpec",
]
