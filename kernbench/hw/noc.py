"""The router mesh (NOC) inside a cube.

Fidelity: each router is a wormhole forwarder charging ``router_overhead_ns`` once per
transfer on the head flit; neighbouring routers are joined by one directed edge per direction
(``link_bw_gbs``, length = router pitch of the floorplan). Every PE, HBM controller, m_cpu and
the shared SRAM attach to a router by an endpoint link. Routing is deterministic XY (columns
first, then rows). Not modelled: virtual channels, finite buffers, back-pressure.
"""

from dataclasses import dataclass
from typing import ClassVar

from kernbench.core.specs import check_non_negative, check_positive, param


@dataclass(frozen=True)
class NocSpec:
    KEY: ClassVar[str] = "hw.noc"

    router_overhead_ns: float = param(0.0, "router overhead per transfer (head flit), ns")
    link_bw_gbs: float = param(256.0, "router-to-router link bandwidth per direction, GB/s")
    endpoint_bw_gbs: float = param(256.0, "PE / HBM controller to router link bandwidth, GB/s")
    endpoint_length_mm: float = param(0.5, "PE / HBM controller to router wire length, mm")

    def __post_init__(self) -> None:
        check_non_negative(self, "router_overhead_ns")
        check_positive(self, "link_bw_gbs", "endpoint_bw_gbs", "endpoint_length_mm")
