"""The analytic latency of one uncontended message (MODEL.md §3), computed without the engine.

The route is a chain of FIFO stages. With ``A(j, i)`` the time flit ``j`` reaches stage ``i``
and ``s(j, i)`` its service there, a FIFO stage finishes flit ``j`` at
``D(j, i) = max(D(j-1, i), A(j, i)) + s(j, i)``. This is evaluated stage by stage for all flits
at once in closed form (:mod:`kernbench.sim.pipeline`), ``D = S + cummax(A - S + s)`` with
``S`` the running sum of ``s``, and shares no code with the flit engine, so the two agreeing is
evidence that the engine is right. The fluid model takes its fixed latencies from the same
closed form, so for it the agreement checks the rates and the way a transfer is split.

Stages: an edge serves ``bytes / bw`` and then adds its wire delay; a forwarding node or the
destination serves the head for its overhead and the other flits for nothing; a
store-and-forward node releases every flit at ``max(A) + overhead``; an HBM controller is one
FIFO per pseudo-channel; read data leaves the controller in order.
"""

from dataclasses import dataclass

import numpy as np

from kernbench.runtime.messages import MemoryReadMsg, MemoryWriteMsg, Message, PeDmaMsg
from kernbench.sim.pipeline import (
    Chain,
    channels_of,
    flit_sizes,
    memory_fifo,
    memory_ready,
    through,
)
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


def chain_of(topology: Topology, route: Route) -> Chain:
    """``route`` as the plain numbers of :mod:`kernbench.sim.pipeline`."""
    g = topology.graph
    ns_per_mm = topology.spec.sim.ns_per_mm
    edges = [g.edges[e] for e in route.edges]
    after = [g.nodes[n] for n in route.nodes[1:]]
    return Chain(
        tuple(1.0 / e.bw_gbs for e in edges),
        tuple(e.length_mm * ns_per_mm for e in edges),
        tuple(n.overhead_ns for n in after),
        tuple(n.kind is NodeKind.STORE_FORWARD for n in after),
    )


class _Path:
    """Accumulates the per-part sums while flits are pushed through routes."""

    def __init__(self, topology: Topology):
        self.t = topology
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
        chain = chain_of(self.t, route)
        self.wire += sum(chain.wire_ns)
        self.overhead += sum(chain.overhead_ns)
        self.serialization += sum(sizes[0] * k for k in chain.ns_per_byte)
        for eid in route.edges:
            edge = g.edges[eid]
            if track and edge.bw_gbs < self.bottleneck[0]:
                self.bottleneck = (edge.bw_gbs, edge.name, g.nodes[edge.dst].name)
        return through(chain, arrive, sizes)

    def channels(self, addr: int, sizes: np.ndarray) -> np.ndarray:
        spec = self.t.spec
        hbm = spec.hw.hbm
        return channels_of(
            addr, sizes.size, spec.sim.flit_bytes, hbm.burst_bytes, hbm.pseudo_channels
        )

    def charge_hbm(self, ctrl: Node, channel: np.ndarray, sizes: np.ndarray, track: bool) -> None:
        spec = self.t.spec.hw.hbm
        self.serialization += sizes[0] * spec.ns_per_byte
        rate = len(np.unique(channel)) * spec.pc_bw_gbs * spec.efficiency
        if track and rate < self.bottleneck[0]:
            self.bottleneck = (rate, "hbm pseudo-channels", ctrl.name)


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
    sizes = flit_sizes(msg.size_bytes, t.spec.sim.flit_bytes)
    channel = path.channels(msg.addr, sizes)
    per_byte = t.spec.hw.hbm.ns_per_byte
    if op == "write":
        at_ctrl = path.traverse(t.route(src, ctrl), np.full(sizes.size, start), sizes, True)
        path.charge_hbm(ctrl, channel, sizes, True)
        total = float(memory_fifo(at_ctrl, channel, sizes, per_byte).max())
    else:
        req = np.array([float(t.spec.sim.read_request_bytes)])
        at_ctrl = path.traverse(t.route(src, ctrl), np.array([start]), req, False)
        path.charge_hbm(ctrl, channel, sizes, True)
        ready = memory_ready(float(at_ctrl[0]), channel, sizes, per_byte)
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
