"""The analytic latency of one uncontended message (MODEL.md §3), computed without the engine.

The route is a chain of FIFO stages. With ``A(j, i)`` the time flit ``j`` reaches stage ``i``
and ``s(j, i)`` its service there, a FIFO stage finishes flit ``j`` at
``D(j, i) = max(D(j-1, i), A(j, i)) + s(j, i)``. This is evaluated stage by stage for all flits
at once in closed form, ``D = S + cummax(A - S + s)`` with ``S`` the running sum of ``s``, and
shares no code with the event engine, so the two agreeing is evidence that the engine is right.

Stages: an edge serves ``bytes / bw`` and then adds its wire delay; a forwarding node or the
destination serves the head for its overhead and the other flits for nothing; a
store-and-forward node releases every flit at ``max(A) + overhead``; an HBM controller is one
FIFO per pseudo-channel; read data leaves the controller in order.
"""

from dataclasses import dataclass

import numpy as np

from kernbench.runtime.messages import MemoryReadMsg, MemoryWriteMsg, Message, PeDmaMsg
from kernbench.topology import NodeKind, Topology
from kernbench.topology.graph import Node
from kernbench.topology.topology import Route


@dataclass(frozen=True)
class Formula:
    """Analytic latency and its parts; ``drain_ns`` is what the others leave of the total."""

    total_ns: float
    overhead_ns: float
    wire_ns: float
    serialization_ns: float
    drain_ns: float
    bottleneck_gbs: float
    bottleneck: str  # the slowest edge's name, or "hbm pseudo-channels"
    bottleneck_at: str  # the node the bottleneck delivers to (edge end or HBM controller)


def _fifo(arrive: np.ndarray, service: np.ndarray) -> np.ndarray:
    done_by = np.cumsum(service)
    return done_by + np.maximum.accumulate(arrive - done_by + service)


class _Path:
    """Accumulates the per-part sums while flits are pushed through routes."""

    def __init__(self, topology: Topology):
        self.t = topology
        self.ns_per_mm = topology.spec.sim.ns_per_mm
        self.overhead = 0.0
        self.wire = 0.0
        self.serialization = 0.0
        self.bottleneck = (float("inf"), "", "")

    def charge_overhead(self, nodes: tuple[Node, ...]) -> float:
        total = sum(n.overhead_ns for n in nodes)
        self.overhead += total
        return total

    def traverse(
        self, route: Route, arrive: np.ndarray, sizes: np.ndarray, track: bool
    ) -> np.ndarray:
        g = self.t.graph
        for h, eid in enumerate(route.edges):
            edge = g.edges[eid]
            wire = edge.length_mm * self.ns_per_mm
            arrive = _fifo(arrive, sizes / edge.bw_gbs) + wire
            self.wire += wire
            self.serialization += sizes[0] / edge.bw_gbs
            if track and edge.bw_gbs < self.bottleneck[0]:
                self.bottleneck = (edge.bw_gbs, edge.name, g.nodes[edge.dst].name)
            node = g.nodes[route.nodes[h + 1]]
            self.overhead += node.overhead_ns
            if node.kind is NodeKind.STORE_FORWARD:
                arrive = np.full_like(arrive, arrive.max() + node.overhead_ns)
            else:
                head = np.zeros_like(sizes)
                head[0] = node.overhead_ns
                arrive = _fifo(arrive, head)
        return arrive

    def hbm(
        self, ctrl: Node, addr: int, arrive: np.ndarray, sizes: np.ndarray, track: bool
    ) -> np.ndarray:
        """When each flit's pseudo-channel has finished it."""
        spec = self.t.spec.hw.hbm
        flit = self.t.spec.sim.flit_bytes
        channel = ((addr + flit * np.arange(sizes.size)) // spec.burst_bytes) & (
            spec.pseudo_channels - 1
        )
        service = sizes / (spec.pc_bw_gbs * spec.efficiency)
        done = np.empty_like(arrive)
        for c in np.unique(channel):
            mine = channel == c
            done[mine] = _fifo(arrive[mine], service[mine])
        self.serialization += service[0]
        rate = len(np.unique(channel)) * spec.pc_bw_gbs * spec.efficiency
        if track and rate < self.bottleneck[0]:
            self.bottleneck = (rate, "hbm pseudo-channels", ctrl.name)
        return done


def _flit_sizes(size_bytes: int, flit_bytes: int) -> np.ndarray:
    n = -(-size_bytes // flit_bytes)
    sizes = np.full(n, float(flit_bytes))
    sizes[-1] = size_bytes - (n - 1) * flit_bytes
    return sizes


def formula(topology: Topology, msg: Message) -> Formula:
    """The analytic latency of ``msg`` on an idle system (same "done" as the engine)."""
    t = topology
    if isinstance(msg, PeDmaMsg):
        src = t.pe_dma(msg.sip, msg.cube, msg.pe)
        prefix = src.name.rsplit(".", 1)[0]
        pre = (t.node(f"{prefix}.cpu"), t.node(f"{prefix}.sched"))
        op = msg.op
    else:
        src, pre = t.node("host"), ()
        op = "write" if isinstance(msg, MemoryWriteMsg) else "read"
        assert isinstance(msg, MemoryWriteMsg | MemoryReadMsg)
    loc = t.address.decode_hbm(msg.addr, msg.size_bytes)
    ctrl = t.hbm_ctrl(loc.sip, loc.cube, loc.pe)
    path = _Path(t)
    start = path.charge_overhead(pre)
    sizes = _flit_sizes(msg.size_bytes, t.spec.sim.flit_bytes)
    if op == "write":
        at_ctrl = path.traverse(t.route(src, ctrl), np.full(sizes.size, start), sizes, True)
        total = float(path.hbm(ctrl, msg.addr, at_ctrl, sizes, True).max())
    else:
        req = np.array([float(t.spec.sim.read_request_bytes)])
        at_ctrl = path.traverse(t.route(src, ctrl), np.array([start]), req, False)
        ready = np.maximum.accumulate(
            path.hbm(ctrl, msg.addr, np.full(sizes.size, at_ctrl[0]), sizes, True)
        )
        back = t.route(ctrl, src, t.flow_key(src, ctrl))
        total = float(path.traverse(back, ready, sizes, True).max())
    drain = total - path.overhead - path.wire - path.serialization
    return Formula(
        total,
        float(path.overhead),
        float(path.wire),
        float(path.serialization),
        float(drain),
        float(path.bottleneck[0]),
        path.bottleneck[1],
        path.bottleneck[2],
    )
