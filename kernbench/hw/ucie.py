"""UCIe ports joining neighbouring cubes (N/E/S/W) and the IO chiplet to the edge cubes.

Fidelity: a port is a wormhole forwarder charging ``port_overhead_ns`` once per transfer on the
head flit, so a cube-to-cube crossing costs two port overheads. A port has ``connections``
parallel lanes; each is one directed edge per direction of ``conn_bw_gbs``. A transfer uses
one connection, chosen deterministically (see ``docs/latency-model.md``), so a single stream
is limited to one connection while up to ``connections`` streams share a port in parallel.
The port attaches to its edge router with a link of ``port_link_bw_gbs``.
Not modelled: link training, retries, sideband, lane failures.
"""

from dataclasses import dataclass
from typing import ClassVar

from kernbench.core.specs import check_non_negative, check_positive, param


@dataclass(frozen=True)
class UcieSpec:
    KEY: ClassVar[str] = "hw.ucie"

    connections: int = param(4, "parallel connections per port")
    conn_bw_gbs: float = param(128.0, "bandwidth of one connection per direction, GB/s")
    port_overhead_ns: float = param(8.0, "port overhead per transfer (head flit), ns")
    crossing_length_mm: float = param(2.0, "die-to-die wire length of a crossing, mm")
    port_link_bw_gbs: float = param(512.0, "port-to-edge-router link bandwidth, GB/s")

    def __post_init__(self) -> None:
        check_non_negative(self, "port_overhead_ns")
        check_positive(self, "connections", "conn_bw_gbs", "crossing_length_mm", "port_link_bw_gbs")
