"""IPCQ: the inter-PE queues that carry ``tl.send`` / ``tl.recv`` (the ``ccl`` config group).

Fidelity contract (docs/collectives.md):

- Every ordered pair of PEs that talks has a channel: a receive ring of ``slots`` slots of
  ``slot_bytes`` in the buffer tier ``buffer``; the sender holds one credit per slot. A PE's
  N/E/S/W queues are the channels to its neighbours in the SIP's PE grid (neighbouring SIPs
  continue the grid east-west, over the switch).
- ``tl.send`` dispatches, reads the block from the sender's TCM, pays the tier's
  ``*_setup_ns`` once per message and queues the message in slot-sized chunks; the program goes
  on (posted). Each chunk leaves on the sender's DMA write channel once it has a credit (the DMA
  engine waits for credits, not the program), to where the ring lives: ``tcm``: the receiver's
  PE; ``sram``: the shared SRAM of the receiver's cube; ``hbm``: the ring's slot in the
  receiver's HBM slice (a committed write).
- ``tl.recv`` dispatches, waits until every chunk of the next message from that peer has
  arrived, then brings it into TCM: nothing more for ``tcm``; a transfer SRAM -> PE for
  ``sram``; a DMA read of the ring slots from its own HBM slice for ``hbm``. Then it returns one
  credit per chunk to the sender as a ``credit_bytes`` message: a credit costs its path latency.
- Messages between one pair arrive in order. Not modelled: ring-pointer polling, interrupts.
"""

from dataclasses import dataclass
from typing import ClassVar

from kernbench.core.errors import ConfigError
from kernbench.core.specs import check_non_negative, check_positive, param

BUFFERS = ("tcm", "sram", "hbm")
# Smallest ring slot (ADR 0017): a cache line. Every slot-sized chunk of a message is a DMA
# and a credit, so a 1-byte slot turns a 96 KiB all-reduce into minutes of simulated DMAs.
MIN_SLOT_BYTES = 64


@dataclass(frozen=True)
class CclSpec:
    KEY: ClassVar[str] = "ccl"

    buffer: str = param("tcm", "where IPCQ receive rings live: tcm | sram | hbm")
    slots: int = param(4, "slots per receive ring (= credits per channel), count")
    slot_bytes: int = param(
        16384, f"bytes per ring slot (>= {MIN_SLOT_BYTES}); larger messages use several slots"
    )
    credit_bytes: int = param(64, "size of a credit-return message, bytes")
    tcm_setup_ns: float = param(10.0, "setup per message with rings in TCM, ns")
    sram_setup_ns: float = param(20.0, "setup per message with rings in shared SRAM, ns")
    hbm_setup_ns: float = param(40.0, "setup per message with rings in HBM, ns")

    def __post_init__(self) -> None:
        if self.buffer not in BUFFERS:
            raise ConfigError(
                f"{self.KEY}.buffer", f"must be one of {', '.join(BUFFERS)}, got {self.buffer!r}"
            )
        check_positive(self, "slots", "slot_bytes", "credit_bytes")
        if self.slot_bytes < MIN_SLOT_BYTES:
            raise ConfigError(
                f"{self.KEY}.slot_bytes",
                f"must be at least {MIN_SLOT_BYTES} bytes (a cache line; each slot-sized chunk "
                f"of a message is a DMA and a credit), got {self.slot_bytes}",
            )
        check_non_negative(self, "tcm_setup_ns", "sram_setup_ns", "hbm_setup_ns")

    @property
    def setup_ns(self) -> float:
        return {"tcm": self.tcm_setup_ns, "sram": self.sram_setup_ns, "hbm": self.hbm_setup_ns}[
            self.buffer
        ]
