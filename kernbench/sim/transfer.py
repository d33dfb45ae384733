"""The transfer interface: how the system asks a model to move bytes (MODEL.md §3a).

Everything that moves bytes — host messages, PE DMA, IPCQ sends and credits, kernel launch —
reaches a :class:`TransferModel` through three calls, and nothing above this layer knows which
model runs (``sim.model``):

- :meth:`~TransferModel.send`: bytes from one node to another (control messages, pushes into a
  TCM or SRAM); done when the last byte has reached the destination;
- :meth:`~TransferModel.write`: bytes into a memory controller; done when the last burst is
  committed by its pseudo-channel;
- :meth:`~TransferModel.read`: a request to a memory controller, then the data back on the
  response route; done when the last byte is back at the requester.

A write or read moves one or more address runs of one controller (a host message is one run,
a PE's DMA one run per contiguous stretch); a read sends one request per run. The runs leave
their source back to back.

Each call ends by calling ``done(heads)`` at the simulated time the transfer is done, where
``heads`` holds, per route the transfer took (one for send and write; request and response for
read), when the head of the transfer reached each node of it.

A model observes what it moves: :class:`LinkStats` per directed edge (bytes and busy time are
exact under both models), spans per edge with ``sim.trace=full``, and whatever a
:class:`Memory` records of its pseudo-channels.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from kernbench.sim.context import Sim

Heads = tuple[list[float], ...]
Runs = Sequence[tuple[int, int]]  # (address, bytes) of each run of one transfer
Done = Callable[[Heads], None]


class Path(Protocol):
    """A route: node ids, and the ids of the directed edges between them."""

    @property
    def nodes(self) -> tuple[int, ...]: ...

    @property
    def edges(self) -> tuple[int, ...]: ...


class Memory(Protocol):
    """A memory controller with pseudo-channels, as the transfer models see it."""

    @property
    def channels(self) -> int: ...

    @property
    def burst_bytes(self) -> int: ...

    @property
    def ns_per_byte(self) -> float:
        """Time one pseudo-channel is busy per byte."""
        ...

    def serve(self, addr: int, nbytes: int, now: float, msg_id: int = 0) -> float:
        """Queue one burst at ``now``; return when its channel has finished it (flit model)."""
        ...

    def account(
        self, channel: int, msg_id: int, start: float, end: float, nbytes: int, bursts: int
    ) -> None:
        """Record that a transfer put ``nbytes`` in ``bursts`` on ``channel`` between ``start``
        and ``end`` (fluid model)."""
        ...

    def waited(self, wait_ns: float) -> None:
        """A transfer limited by this controller took ``wait_ns`` longer than alone."""
        ...


@dataclass(frozen=True)
class Fabric:
    """The graph as plain numbers, indexed by edge and node id."""

    edge_bw_gbs: Sequence[float]
    edge_length_mm: Sequence[float]
    node_overhead_ns: Sequence[float]
    node_store_forward: Sequence[bool]


class LinkStats:
    """Per-edge counters, indexed by edge id.

    Bytes and flits are added per transfer when it starts (every transfer crosses every edge of
    its route), so they are exact once the run is over; busy time follows from bytes and
    bandwidth. ``max_wait_ns`` is the longest wait the model saw on the edge: of a flit for the
    edge (flit), or of a transfer this edge slowed down beyond its time alone or, on its first
    edge, kept waiting behind its source's earlier transfers (fluid).
    """

    __slots__ = ("bytes", "flits", "max_wait_ns", "_ns_per_byte")

    def __init__(self, n: int, ns_per_byte: Sequence[float] | None = None):
        self.bytes = [0] * n
        self.flits = [0] * n
        self.max_wait_ns = [0.0] * n
        self._ns_per_byte = list(ns_per_byte) if ns_per_byte is not None else [0.0] * n

    @property
    def busy_ns(self) -> list[float]:
        """Time each edge spent serializing bytes."""
        return [b * k for b, k in zip(self.bytes, self._ns_per_byte, strict=True)]

    def count(self, edges: Sequence[int], nbytes: int, flits: int) -> None:
        for e in edges:
            self.bytes[e] += nbytes
            self.flits[e] += flits


class TransferModel(ABC):
    """What the system needs of a transfer model; see the module docstring."""

    name: str
    stats: LinkStats
    # Finished spans: (edge, msg id, start, end, bytes, flits, busy_ns, wait_ns, arrive_ns).
    spans: list[tuple[int, int, float, float, int, int, float, float, float]]

    def __init__(self, sim: Sim, fabric: Fabric):
        self.sim = sim
        self.fabric = fabric
        self.flit_bytes = sim.spec.flit_bytes
        self.ns_per_byte = [1.0 / bw for bw in fabric.edge_bw_gbs]
        self.stats = LinkStats(len(fabric.edge_bw_gbs), self.ns_per_byte)
        self.spans = []
        # With a list here, every transfer is logged when done: (kind, first node, last node,
        # first address or -1, bytes, start, end); kind is send, write or read.
        self.log: list[tuple[str, int, int, int, int, float, float]] | None = None

    def send(self, msg_id: int, route: Path, size_bytes: int, at_ns: float, done: Done) -> None:
        """Move ``size_bytes`` along ``route``, starting at ``at_ns``."""
        if self.log is not None:
            done = self._logged(done, "send", route, ((-1, size_bytes),), at_ns)
        self._send(msg_id, route, size_bytes, at_ns, done)

    def write(self, msg_id: int, route: Path, runs: Runs, memory: Memory, done: Done) -> None:
        """Move the bytes of ``runs`` along ``route`` into ``memory``, starting now."""
        if self.log is not None:
            done = self._logged(done, "write", route, runs, self.sim.now)
        self._write(msg_id, route, runs, memory, done)

    def read(
        self, msg_id: int, request: Path, response: Path, runs: Runs, memory: Memory, done: Done
    ) -> None:
        """Request ``runs`` from ``memory`` along ``request`` now; the data comes back along
        ``response``."""
        if self.log is not None:
            done = self._logged(done, "read", request, runs, self.sim.now)
        self._read(msg_id, request, response, runs, memory, done)

    def _logged(self, done: Done, kind: str, route: Path, runs: Runs, start: float) -> Done:
        log = self.log
        assert log is not None
        addr, size = runs[0][0], sum(n for _a, n in runs)

        def logged(heads: Heads) -> None:
            log.append((kind, route.nodes[0], route.nodes[-1], addr, size, start, self.sim.now))
            done(heads)

        return logged

    @abstractmethod
    def _send(
        self, msg_id: int, route: Path, size_bytes: int, at_ns: float, done: Done
    ) -> None: ...

    @abstractmethod
    def _write(self, msg_id: int, route: Path, runs: Runs, memory: Memory, done: Done) -> None: ...

    @abstractmethod
    def _read(
        self, msg_id: int, request: Path, response: Path, runs: Runs, memory: Memory, done: Done
    ) -> None: ...

    @abstractmethod
    def close_spans(self) -> None:
        """Finish every open span (call when the run is over, before reading ``spans``)."""

    def counters(self) -> dict[str, int]:
        """The model's own work counters (for validation and speed studies)."""
        return {}
