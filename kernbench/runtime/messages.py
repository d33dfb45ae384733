"""Host messages and their completions.

Every request ends in a :class:`Completion`: ok or an error code with a message, the total
simulated time, and the per-hop trace of the head flit.

"Done" is defined as: a write is done when its last burst is committed in HBM (no
acknowledgement travels back); a read is done when its last byte is back at the requester.
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class MemoryWriteMsg:
    """H2D: the host writes ``size_bytes`` at HBM address ``addr`` (real bytes or a fill)."""

    addr: int
    size_bytes: int
    data: np.ndarray | None = field(default=None, repr=False)
    fill: int = 0


@dataclass(frozen=True)
class MemoryReadMsg:
    """D2H: the host reads ``size_bytes`` from HBM address ``addr`` (a full round trip)."""

    addr: int
    size_bytes: int


@dataclass(frozen=True)
class PeDmaMsg:
    """A DMA issued at PE ``pe`` of ``cube`` on ``sip`` to any HBM address, local or remote.

    ``op="write"`` moves bytes from the PE to ``addr``; ``op="read"`` brings them to the PE.
    """

    sip: int
    cube: int
    pe: int
    addr: int
    size_bytes: int
    op: str = "write"
    data: np.ndarray | None = field(default=None, repr=False)
    fill: int = 0


Message = MemoryWriteMsg | MemoryReadMsg | PeDmaMsg


@dataclass(frozen=True, slots=True)
class Hop:
    """The head flit reached ``node`` at ``ns`` after the message was issued."""

    node: str
    ns: float


@dataclass(frozen=True)
class Completion:
    msg_id: int
    ok: bool
    start_ns: float
    end_ns: float
    size_bytes: int
    trace: tuple[Hop, ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    data: np.ndarray | None = field(default=None, repr=False)

    @property
    def total_ns(self) -> float:
        return self.end_ns - self.start_ns
