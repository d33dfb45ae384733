"""The IO chiplet of a SIP: pcie_ep, io_noc, io_cpu and the io_ucie PHYs to the edge cubes.

Fidelity: ``pcie_ep`` is store-and-forward: it releases a message only after its tail flit has
arrived, then charges ``pcie_ep_overhead_ns`` and sends all flits on back to back. ``io_noc``
and the ``io_ucie`` PHYs are wormhole forwarders charging their overhead once per transfer on
the head flit. ``io_cpu`` sits on the control path (kernel launch) and is not on data paths.
One PHY per cube row joins the IO chiplet to the west UCIe port of that row's first cube.
Not modelled: the io_noc's internal topology (it is a single crossbar node), buffers.
"""

from dataclasses import dataclass
from typing import ClassVar

from kernbench.core.specs import check_non_negative, check_positive, param


@dataclass(frozen=True)
class IoSpec:
    KEY: ClassVar[str] = "hw.io"

    pcie_ep_overhead_ns: float = param(
        5.0, "PCIe endpoint overhead per message (store-and-forward), ns"
    )
    io_cpu_overhead_ns: float = param(10.0, "IO CPU overhead per control message, ns")
    noc_overhead_ns: float = param(0.0, "io_noc overhead per transfer (head flit), ns")
    ucie_overhead_ns: float = param(8.0, "io_ucie PHY overhead per transfer (head flit), ns")
    noc_bw_gbs: float = param(512.0, "io_noc link bandwidth to pcie_ep and to each PHY, GB/s")
    noc_length_mm: float = param(5.0, "wire length of each io_noc link, mm")

    def __post_init__(self) -> None:
        check_non_negative(
            self, "pcie_ep_overhead_ns", "io_cpu_overhead_ns", "noc_overhead_ns", "ucie_overhead_ns"
        )
        check_positive(self, "noc_bw_gbs", "noc_length_mm")
