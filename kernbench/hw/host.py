"""The host and its PCIe link to the system.

Fidelity: the host is a traffic source and sink with no internal timing. Its PCIe link is one
directed edge per direction with ``pcie_bw_gbs`` and a wire length; it serializes flits like
every other edge. Not modelled: PCIe packet headers, flow-control credits, the root complex.
"""

from dataclasses import dataclass
from typing import ClassVar

from kernbench.core.specs import check_positive, param


@dataclass(frozen=True)
class HostSpec:
    KEY: ClassVar[str] = "hw.host"

    pcie_bw_gbs: float = param(64.0, "host PCIe link bandwidth per direction (Gen5 x16), GB/s")
    pcie_length_mm: float = param(100.0, "host-to-package PCIe trace length, mm")

    def __post_init__(self) -> None:
        check_positive(self, "pcie_bw_gbs", "pcie_length_mm")
