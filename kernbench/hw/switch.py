"""The fabric switch joining the SIPs of a multi-SIP system and the host.

Fidelity: a wormhole forwarder charging ``overhead_ns`` once per transfer on the head flit;
each port is a directed edge per direction with ``link_bw_gbs``. Present only when the system
has two or more SIPs. Not modelled: switch buffers, arbitration beyond per-edge FIFO.
"""

from dataclasses import dataclass
from typing import ClassVar

from kernbench.core.specs import check_non_negative, check_positive, param


@dataclass(frozen=True)
class SwitchSpec:
    KEY: ClassVar[str] = "hw.switch"

    overhead_ns: float = param(5.0, "switch overhead per transfer (head flit), ns")
    link_bw_gbs: float = param(64.0, "switch port bandwidth per direction, GB/s")
    link_length_mm: float = param(200.0, "switch-to-SIP link length, mm")

    def __post_init__(self) -> None:
        check_non_negative(self, "overhead_ns")
        check_positive(self, "link_bw_gbs", "link_length_mm")
