"""A running system: the topology, its Sim, the transfer model, HBM controllers and memory.

The system knows messages, addresses, memory contents and DMA channels; how long bytes take to
cross the fabric is the transfer model's business (``sim.model``, kernbench.sim.transfer), and
nothing here depends on which model runs.

:meth:`System.submit` accepts a host message and returns a SimPy event that succeeds with the
message's :class:`Completion`. Requests that cannot be served (an address outside every
window, a size of zero) complete at once with ``ok=False`` and an error code.
"""

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from simpy.events import Event

from kernbench.core.errors import AddressError, KernbenchError, SimulationError
from kernbench.hw import HbmController, MemoryStore
from kernbench.hw.pe import Pe
from kernbench.runtime.dma_channel import DmaChannel
from kernbench.runtime.messages import (
    Completion,
    Hop,
    MemoryReadMsg,
    MemoryWriteMsg,
    Message,
    PeDmaMsg,
)
from kernbench.runtime.tensor import HbmAllocators
from kernbench.sim.context import Sim
from kernbench.sim.models import make_model
from kernbench.sim.observer import Observer
from kernbench.sim.transfer import Fabric, Heads, TransferModel
from kernbench.topology import NodeKind, SystemSpec, Topology
from kernbench.topology.graph import Node
from kernbench.topology.topology import Route

# One address run of a DMA: (address, bytes, data to write or None).
DmaRun = tuple[int, int, np.ndarray | None]


class System:
    def __init__(
        self,
        spec: SystemSpec | None = None,
        *,
        topology: Topology | None = None,
        observer: Observer | None = None,
    ):
        self.topology = topology or Topology(spec or SystemSpec())
        self.spec = self.topology.spec
        self.sim = Sim(self.spec.sim, observer)
        g = self.topology.graph
        fabric = Fabric(
            edge_bw_gbs=[e.bw_gbs for e in g.edges],
            edge_length_mm=[e.length_mm for e in g.edges],
            node_overhead_ns=[n.overhead_ns for n in g.nodes],
            node_store_forward=[n.kind is NodeKind.STORE_FORWARD for n in g.nodes],
        )
        self.transfers: TransferModel = make_model(
            self.spec.sim.model, self.sim, fabric, self.topology.memo.setdefault("transfers", {})
        )
        self.memory = MemoryStore()
        self._hbm: dict[int, HbmController] = {}
        self._dma: dict[tuple[int, str], DmaChannel] = {}
        self._ctrl_of: dict[tuple[int, int], int] = {}  # (SIP and die, slice) -> controller
        self.in_flight: dict[int, str] = {}
        self.completed = 0
        self._pes: dict[tuple[int, int, int], Pe] = {}
        self.hbm_allocators = HbmAllocators(self.topology)
        # State that runtime pieces above the system keep per system (e.g. its IPCQ channels).
        self.extensions: dict[str, Any] = {}

    # -- public API ------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.sim.env.now

    def submit(self, msg: Message) -> Event:
        """Issue ``msg`` now; the returned event succeeds with its :class:`Completion`."""
        done = self.sim.event()
        msg_id = self.sim.next_id()
        try:
            if isinstance(msg, MemoryWriteMsg):
                self._write(
                    msg_id,
                    self.topology.node("host"),
                    msg.addr,
                    msg.size_bytes,
                    msg.data,
                    msg.fill,
                    done,
                    start_ns=self.now,
                    pre_hops=[],
                )
            elif isinstance(msg, MemoryReadMsg):
                self._read(
                    msg_id,
                    self.topology.node("host"),
                    msg.addr,
                    msg.size_bytes,
                    done,
                    start_ns=self.now,
                    pre_hops=[],
                )
            elif isinstance(msg, PeDmaMsg):
                self._pe_dma(msg_id, msg, done)
            else:
                raise TypeError(f"unknown message type {type(msg).__name__}")
        except AddressError as exc:
            done.succeed(self._failed(msg_id, msg, "ADDRESS", str(exc)))
        except KernbenchError as exc:
            done.succeed(self._failed(msg_id, msg, "INVALID", str(exc)))
        return done

    def execute(self, msg: Message) -> Completion:
        """Submit ``msg`` and run the simulation until it completes."""
        ev = self.submit(msg)
        self.run_until(ev)
        return ev.value

    def execute_all(self, msgs: Iterable[Message]) -> list[Completion]:
        """Submit every message at the current time and run until all have completed."""
        events = [self.submit(m) for m in msgs]
        self.run_until(self.sim.env.all_of(events))
        return [ev.value for ev in events]

    def run_until(self, event: Event) -> None:
        try:
            self.sim.env.run(until=event)
        except RuntimeError as exc:
            if event.triggered:
                raise
            waiting = ", ".join(sorted(self.in_flight.values())[:8]) or "nothing in flight"
            raise SimulationError(
                f"deadlock at t={self.now:.3f} ns: no event is pending but the run is not "
                f"finished; waiting: {waiting}"
            ) from exc

    def hbm_controller(self, node: Node) -> HbmController:
        ctrl = self._hbm.get(node.id)
        if ctrl is None:
            ctrl = self._hbm[node.id] = HbmController(
                node.name, self.spec.hw.hbm, self.sim.observer
            )
        return ctrl

    def pe(self, sip: int, cube: int, index: int) -> Pe:
        """The compute state of PE ``index`` of ``cube`` on ``sip`` (created on first use)."""
        key = (sip, cube, index)
        pe = self._pes.get(key)
        if pe is None:
            pe = self._pes[key] = Pe(
                f"sip{sip}.cube{cube}.pe{index}", self.spec.hw.pe, self.sim.observer
            )
        return pe

    @property
    def pes(self) -> list[Pe]:
        """The PEs that have run kernels so far."""
        return list(self._pes.values())

    @property
    def hbm_controllers(self) -> list[HbmController]:
        """The controllers this system has used so far."""
        return list(self._hbm.values())

    @property
    def dma_channels(self) -> list[DmaChannel]:
        """The PE DMA channels this system has used so far."""
        return list(self._dma.values())

    def close_spans(self) -> None:
        """Finish the open spans of every component (``sim.trace=full``); idempotent."""
        self.transfers.close_spans()
        for ctrl in self._hbm.values():
            ctrl.close_spans()

    # -- messages --------------------------------------------------------------------------
    def _failed(self, msg_id: int, msg: Message, code: str, text: str) -> Completion:
        return Completion(
            msg_id,
            False,
            self.now,
            self.now,
            getattr(msg, "size_bytes", 0),
            error_code=code,
            error_message=text,
        )

    def _check_size(self, size_bytes: int, data: np.ndarray | None) -> np.ndarray | None:
        if size_bytes <= 0:
            raise KernbenchError(f"size_bytes must be > 0, got {size_bytes}")
        if data is None:
            return None
        raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        if raw.size != size_bytes:
            raise KernbenchError(f"data holds {raw.size} bytes but size_bytes is {size_bytes}")
        return raw

    def _pe_dma(self, msg_id: int, msg: PeDmaMsg, done: Event) -> None:
        topo = self.topology
        try:
            src = topo.pe_dma(msg.sip, msg.cube, msg.pe)
        except KernbenchError:
            raise AddressError(
                f"no PE sip{msg.sip}.cube{msg.cube}.pe{msg.pe} in this topology"
            ) from None
        if msg.op not in ("read", "write"):
            raise KernbenchError(f"PeDmaMsg.op must be 'read' or 'write', got {msg.op!r}")
        prefix = src.name.rsplit(".", 1)[0]
        overhead = (topo.node(f"{prefix}.cpu"), topo.node(f"{prefix}.sched"))
        data = self._check_size(msg.size_bytes, msg.data)
        topo.address.decode_hbm(msg.addr, msg.size_bytes)
        issue_ns = self.now
        pre_hops, pre_ns = self._overhead_hops(overhead)

        def body(finished: Event) -> None:
            if msg.op == "write":
                self._write(
                    msg_id,
                    src,
                    msg.addr,
                    msg.size_bytes,
                    data,
                    msg.fill,
                    finished,
                    start_ns=issue_ns,
                    pre_hops=pre_hops,
                )
            else:
                self._read(msg_id, src, msg.addr, msg.size_bytes, finished, issue_ns, pre_hops)

        # pe_cpu and pe_scheduler come first; then the DMA waits for its channel.
        self._on_channel(src, msg.op, issue_ns + pre_ns, msg_id, msg.size_bytes, body, done)

    def dma(self, src: Node, op: str, runs: list[DmaRun], at_ns: float) -> Event:
        """One DMA of PE ``src`` (its ``.dma`` node) at ``at_ns``: wait for the ``op`` channel,
        then move every run at once, as one transfer per HBM controller the runs reach;
        succeeds with ``(grant_ns, completions)`` once all are done, a completion per run (a
        read's carry the bytes)."""
        done = self.sim.event()
        total = sum(r[1] for r in runs)
        dma_id = self.sim.next_id()
        groups: dict[int, list[int]] = {}
        raw: list[np.ndarray | None] = []
        for i, (addr, size, data) in enumerate(runs):
            raw.append(self._check_size(size, data))
            groups.setdefault(self._controller_of(addr, size), []).append(i)

        def body(finished: Event) -> None:
            grant = self.now
            results: list[Completion | None] = [None] * len(runs)
            left = [len(groups)]
            for node_id, idx in groups.items():
                group_id = self.sim.next_id()
                ctrl_node = self.topology.graph.nodes[node_id]
                ctrl = self.hbm_controller(ctrl_node)
                spans = tuple((runs[i][0], runs[i][1]) for i in idx)
                what = "write" if op == "write" else "read"
                self.in_flight[group_id] = f"DMA {what} #{group_id} {src.name} <-> {ctrl_node.name}"

                def moved(
                    _heads: Heads, group_id: int = group_id, idx: list[int] = idx, ctrl=ctrl
                ) -> None:
                    now = self.now
                    if op == "write":
                        for i in idx:
                            addr, size, _data = runs[i]
                            data = raw[i]
                            if data is None:  # no bytes given: zeros, as a message's fill
                                self.memory.fill(addr, size, 0)
                            else:
                                self.memory.write(addr, data)
                            results[i] = Completion(group_id, True, grant, now, size)
                    else:
                        got = self.memory.read_runs([(runs[i][0], runs[i][1]) for i in idx])
                        for i, data in zip(idx, got, strict=True):
                            results[i] = Completion(
                                group_id, True, grant, now, runs[i][1], data=data
                            )
                    written = sum(runs[i][1] for i in idx)
                    if op == "write":
                        ctrl.bytes_written += written
                    else:
                        ctrl.bytes_read += written
                    self._finish(group_id, None, None)
                    left[0] -= 1
                    if left[0] == 0:
                        finished.succeed((grant, results))

                if op == "write":
                    self.transfers.write(group_id, self.topology.route(src, ctrl_node), spans,
                                         ctrl, moved)  # fmt: skip
                else:
                    request, response = self._read_routes(src, ctrl_node)
                    self.transfers.read(group_id, request, response, spans, ctrl, moved)

        self._on_channel(src, op, at_ns, dma_id, total, body, done)
        return done

    def _controller_of(self, addr: int, size: int) -> int:
        """The node id of the HBM controller whose slice holds ``[addr, addr + size)`` (an
        AddressError if no slice holds all of it); memoised per (SIP and die, slice)."""
        a = self.topology.address
        bits, mask = a.offset_bits, (1 << a.offset_bits) - 1
        key = (addr >> bits, (addr & mask) // a.slice_bytes)
        end = addr + size - 1
        if key == (end >> bits, (end & mask) // a.slice_bytes):
            node = self._ctrl_of.get(key)
            if node is not None:
                return node
        loc = a.decode_hbm(addr, size)
        node = self._ctrl_of[key] = self.topology.hbm_ctrl(loc.sip, loc.cube, loc.pe).id
        return node

    def _on_channel(
        self,
        src: Node,
        op: str,
        ready_ns: float,
        msg_id: int,
        size_bytes: int,
        body: Callable[[Event], None],
        done: Event,
    ) -> None:
        """At ``ready_ns`` wait for the ``op`` DMA channel of ``src``, run ``body(finished)``
        holding it, and succeed ``done`` with ``finished``'s value when it fires."""
        channel = self._dma.get((src.id, op))
        if channel is None:
            channel = self._dma[(src.id, op)] = DmaChannel(
                f"{src.name}.{op}", self.spec.hw.pe.dma_outstanding
            )

        def start() -> None:
            started = self.now
            if channel.active == 0:
                channel.since = started
            channel.active += 1
            queued = started - ready_ns
            if queued > channel.max_wait_ns:
                channel.max_wait_ns = queued
            finished = self.sim.event()

            def release(ev: Event) -> None:
                channel.ops += 1
                channel.bytes += size_bytes
                if self.sim.observer.full and self.sim.observer.admit():
                    channel.spans.append((msg_id, started, self.now, size_bytes, queued))
                done.succeed(ev.value)
                self._next_dma(channel)

            finished.callbacks.append(release)
            body(finished)

        def acquire() -> None:
            if channel.active >= channel.capacity or channel.waiting:
                channel.waiting.append(start)
            else:
                start()

        self.sim.call_at(ready_ns, acquire)

    def push(self, src: Node, dst: Node, size_bytes: int, at_ns: float) -> Event:
        """A DMA write of PE ``src`` (its ``.dma`` node) to a component that is not HBM (a PE's
        TCM, a cube's SRAM): waits for the write channel, moves ``size_bytes`` to ``dst``;
        succeeds with the arrival time of the last byte."""
        done = self.sim.event()
        msg_id = self.sim.next_id()

        def body(finished: Event) -> None:
            arrived = self.send(src, dst, size_bytes, self.now)
            arrived.callbacks.append(lambda ev: finished.succeed(ev.value))

        self._on_channel(src, "write", at_ns, msg_id, size_bytes, body, done)
        return done

    def send(self, src: Node, dst: Node, size_bytes: int, at_ns: float) -> Event:
        """A control message (kernel launch, completion notice) from ``src`` to ``dst`` leaving
        at ``at_ns``; succeeds with the time its last byte reaches ``dst`` (``dst``'s own
        overhead is the receiver's to charge)."""
        done = self.sim.event()
        msg_id = self.sim.next_id()
        route = self.topology.route(src, dst)
        self.in_flight[msg_id] = f"control message #{msg_id} {src.name} -> {dst.name}"

        def arrived(_heads: Heads) -> None:
            self.in_flight.pop(msg_id, None)
            done.succeed(self.now)

        self.transfers.send(msg_id, route, size_bytes, at_ns, arrived)
        return done

    def _next_dma(self, channel: DmaChannel) -> None:
        channel.active -= 1
        if channel.active == 0:
            channel.busy_ns += self.now - channel.since
        if channel.waiting:
            channel.waiting.popleft()()

    def _overhead_hops(self, nodes: tuple[Node, ...]) -> tuple[list[Hop], float]:
        hops, t = [], 0.0
        for n in nodes:
            hops.append(Hop(n.name, t))
            t += n.overhead_ns
        return hops, t

    def _read_routes(self, src: Node, ctrl: Node) -> tuple[Route, Route]:
        """A read's request route and its response route (on the request's UCIe key)."""
        topo = self.topology
        return topo.route(src, ctrl), topo.route(ctrl, src, topo.flow_key(src, ctrl))

    def _route_hops(self, nodes: tuple[int, ...], heads: list[float], base_ns: float) -> list[Hop]:
        names = self.topology.graph.nodes
        return [Hop(names[n].name, t - base_ns) for n, t in zip(nodes, heads, strict=True)]

    def _write(
        self,
        msg_id: int,
        src: Node,
        addr: int,
        size_bytes: int,
        data: np.ndarray | None,
        fill: int,
        done: Event,
        start_ns: float,
        pre_hops: list[Hop],
    ) -> None:
        data = self._check_size(size_bytes, data)
        loc = self.topology.address.decode_hbm(addr, size_bytes)
        dst = self.topology.hbm_ctrl(loc.sip, loc.cube, loc.pe)
        ctrl = self.hbm_controller(dst)
        route = self.topology.route(src, dst)
        self.in_flight[msg_id] = f"write #{msg_id} to {dst.name}"

        def commit(heads: Heads) -> None:
            if data is None:
                self.memory.fill(addr, size_bytes, fill)
            else:
                self.memory.write(addr, data)
            ctrl.bytes_written += size_bytes
            hops = pre_hops + self._route_hops(route.nodes, heads[0], start_ns)
            hops.append(Hop(f"{dst.name} (committed)", self.now - start_ns))
            self._finish(
                msg_id, done, Completion(msg_id, True, start_ns, self.now, size_bytes, tuple(hops))
            )

        self.transfers.write(msg_id, route, ((addr, size_bytes),), ctrl, commit)

    def _read(
        self,
        msg_id: int,
        src: Node,
        addr: int,
        size_bytes: int,
        done: Event,
        start_ns: float,
        pre_hops: list[Hop],
    ) -> None:
        self._check_size(size_bytes, None)
        loc = self.topology.address.decode_hbm(addr, size_bytes)
        ctrl_node = self.topology.hbm_ctrl(loc.sip, loc.cube, loc.pe)
        ctrl = self.hbm_controller(ctrl_node)
        request, response = self._read_routes(src, ctrl_node)
        self.in_flight[msg_id] = f"read #{msg_id} from {ctrl_node.name}"

        def arrived(heads: Heads) -> None:
            ctrl.bytes_read += size_bytes
            hops = pre_hops + self._route_hops(request.nodes, heads[0], start_ns)
            hops += self._route_hops(response.nodes, heads[1], start_ns)[1:]
            hops.append(Hop(f"{src.name} (last byte)", self.now - start_ns))
            self._finish(
                msg_id,
                done,
                Completion(
                    msg_id,
                    True,
                    start_ns,
                    self.now,
                    size_bytes,
                    tuple(hops),
                    data=self.memory.read(addr, size_bytes),
                ),
            )

        self.transfers.read(msg_id, request, response, ((addr, size_bytes),), ctrl, arrived)

    def _finish(self, msg_id: int, done: Event | None, completion: Completion | None) -> None:
        self.in_flight.pop(msg_id, None)
        self.completed += 1
        if done is not None:
            done.succeed(completion)
