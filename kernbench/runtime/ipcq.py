"""IPCQ channels between PEs: ``tl.send`` / ``tl.recv`` with credits (kernbench.hw.ipcq).

A PE is named by its id ``(sip, cube, pe)``. :class:`Ipcq` (one per system) owns a
:class:`Channel` per ordered pair of PEs that talk, created on first use, and knows the PE grid
that defines the N/E/S/W neighbours: inside a SIP, PE ``pe`` of cube ``c`` sits at grid row
``(c // mesh_w) * router_rows + pe // router_cols`` and column
``(c % mesh_w) * router_cols + pe % router_cols``; SIP ``s`` continues the grid east of SIP
``s - 1``.
"""

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from simpy.events import Event

from kernbench.core.errors import KernelError
from kernbench.hw.pe import Pe
from kernbench.runtime.hub import Hub
from kernbench.runtime.system import System
from kernbench.topology.graph import Node

PeId = tuple[int, int, int]


class PeWorker(Protocol):
    """What IPCQ needs of the worker running a program on a PE (kernbench.runtime.kernel)."""

    sip: int
    cube: int
    index: int
    pe: Pe
    node: Node
    hub: Hub
    t: float
    pending: list[Any]

    @property
    def where(self) -> str: ...


DIRECTIONS = {"N": (-1, 0), "S": (1, 0), "E": (0, 1), "W": (0, -1)}


@dataclass
class Message:
    """One ``tl.send``: its data, per chunk its arrival event and (``hbm``, once issued) its ring
    slot."""

    data: np.ndarray
    chunks: int
    arrivals: list[Event] = field(default_factory=list)
    slots: list[tuple[int, int]] = field(default_factory=list)  # (address, bytes) per chunk


class Channel:
    """The receive ring of ``dst`` for messages from ``src`` and the sender's credits."""

    def __init__(self, ipcq: "Ipcq", src: PeId, dst: PeId):
        self.src = src
        self.dst = dst
        spec = ipcq.spec
        self.credits = spec.slots
        self.backlog: deque[tuple] = deque()  # chunks waiting for a credit
        self.queue: deque[Message] = deque()
        self.posted: Event | None = None  # fires when a message is queued for a waiting recv
        self.sent = 0
        self.received = 0
        self.seq = 0
        self.ring_addr = -1
        if spec.buffer == "hbm":
            allocs = ipcq.system.hbm_allocators
            sip, cube, pe = dst
            off = allocs.slice(sip, cube, pe).alloc(
                spec.slots * spec.slot_bytes,
                f"the IPCQ ring sip{src[0]}.cube{src[1]}.pe{src[2]} -> this PE",
            )
            self.ring_addr = ipcq.system.topology.address.hbm(sip, cube, pe, off)

    @property
    def name(self) -> str:
        return f"{pe_name(self.src)} -> {pe_name(self.dst)}"


def pe_name(pe: PeId) -> str:
    return f"sip{pe[0]}.cube{pe[1]}.pe{pe[2]}"


class Ipcq:
    """The IPCQ channels of one system; :meth:`of` gives a system's, made on first use."""

    @classmethod
    def of(cls, system: System) -> "Ipcq":
        ipcq = system.extensions.get("ipcq")
        if ipcq is None:
            ipcq = system.extensions["ipcq"] = cls(system)
        return ipcq

    def __init__(self, system: System):
        self.system = system
        self.spec = system.spec.ccl
        t, c = system.spec.topology, system.spec.hw.cube
        self.sips, self.cubes, self.pes = t.sips, t.cubes, c.pes
        self.mesh_w = t.mesh_w
        self.rows, self.cols = c.router_rows, c.router_cols
        self.grid_h = t.mesh_h * c.router_rows
        self.grid_w = t.mesh_w * c.router_cols
        self.channels: dict[tuple[PeId, PeId], Channel] = {}

    # -- naming ----------------------------------------------------------------------------
    def check(self, pe: Any, what: str) -> PeId:
        if not (isinstance(pe, tuple | list) and len(pe) == 3):
            raise KernelError(f"{what}: a PE is named (sip, cube, pe), got {pe!r}")
        sip, cube, idx = (int(v) for v in pe)
        if not (0 <= sip < self.sips and 0 <= cube < self.cubes and 0 <= idx < self.pes):
            raise KernelError(
                f"{what}: no PE {pe_name((sip, cube, idx))}; this topology has {self.sips} "
                f"SIP(s), {self.cubes} cubes per SIP and {self.pes} PEs per cube"
            )
        return (sip, cube, idx)

    def grid_pos(self, pe: PeId) -> tuple[int, int]:
        sip, cube, idx = pe
        row = (cube // self.mesh_w) * self.rows + idx // self.cols
        col = sip * self.grid_w + (cube % self.mesh_w) * self.cols + idx % self.cols
        return row, col

    def at(self, row: int, col: int) -> PeId | None:
        if not (0 <= row < self.grid_h and 0 <= col < self.grid_w * self.sips):
            return None
        sip, col_in = divmod(col, self.grid_w)
        cube = (row // self.rows) * self.mesh_w + col_in // self.cols
        idx = (row % self.rows) * self.cols + col_in % self.cols
        if idx >= self.pes:
            return None
        return (sip, cube, idx)

    def neighbor(self, pe: PeId, direction: str) -> PeId | None:
        """The PE next to ``pe`` in direction N, E, S or W, or None at the edge of the grid."""
        if direction not in DIRECTIONS:
            raise KernelError(f"direction must be one of N, E, S, W; got {direction!r}")
        dr, dc = DIRECTIONS[direction]
        row, col = self.grid_pos(pe)
        return self.at(row + dr, col + dc)

    def channel(self, src: PeId, dst: PeId) -> Channel:
        ch = self.channels.get((src, dst))
        if ch is None:
            if src == dst:
                raise KernelError(f"tl.send/tl.recv: {pe_name(src)} cannot talk to itself")
            ch = self.channels[(src, dst)] = Channel(self, src, dst)
        return ch

    # -- the two calls ---------------------------------------------------------------------
    def send(self, worker: PeWorker, dst: PeId, data: np.ndarray) -> None:
        system, spec, pe = self.system, self.spec, worker.pe
        me = (worker.sip, worker.cube, worker.index)
        ch = self.channel(me, dst)
        raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        nbytes = raw.size
        t = pe.dispatch(worker.t)
        t = pe.tcm_read.serve(t, nbytes / pe.spec.tcm_read_bw_gbs, nbytes)
        t += spec.setup_ns
        topo = system.topology
        dst_node = (
            topo.node(f"sip{dst[0]}.cube{dst[1]}.sram")
            if spec.buffer == "sram"
            else topo.pe_dma(*dst)
        )
        msg = Message(np.array(data, copy=True), max(1, -(-nbytes // spec.slot_bytes)))
        ch.queue.append(msg)
        ch.sent += 1
        _wake(ch, "posted")
        if nbytes == 0:
            raw = np.zeros(1, np.uint8)  # an empty block still moves a doorbell's worth
        for i in range(msg.chunks):
            lo, hi = i * spec.slot_bytes, min(raw.size, (i + 1) * spec.slot_bytes)
            done = system.sim.event()  # the chunk's arrival, whenever it gets its credit
            msg.arrivals.append(done)
            worker.pending.append(done)
            ch.backlog.append((msg, done, raw[lo:hi], max(hi - lo, 1), t, worker, dst_node))
        self._drain(ch)
        worker.t = t

    def _credit(self, ch: Channel) -> None:
        ch.credits += 1
        self._drain(ch)

    def _drain(self, ch: Channel) -> None:
        """Issue queued chunks while the channel has credits (the DMA engine waits for
        credits, not the program)."""
        system, spec = self.system, self.spec
        while ch.backlog and ch.credits > 0:
            msg, done, raw, size, t, worker, dst_node = ch.backlog.popleft()
            ch.credits -= 1
            at = t if t > system.now else system.now
            if spec.buffer == "hbm":
                slot = ch.ring_addr + (ch.seq % spec.slots) * spec.slot_bytes
                msg.slots.append((slot, size))
                moved = system.dma(worker.node, "write", [(slot, size, raw)], at)
            else:
                moved = system.push(worker.node, dst_node, size, at)
            moved.callbacks.append(lambda ev, d=done: d.succeed(ev.value))
            ch.seq += 1

    def recv(self, worker: PeWorker, src: PeId) -> np.ndarray:
        system, spec, pe = self.system, self.spec, worker.pe
        me = (worker.sip, worker.cube, worker.index)
        ch = self.channel(src, me)
        t = pe.dispatch(worker.t)
        what = f"{worker.where}: tl.recv from {pe_name(src)}"
        if not ch.queue:
            ch.posted = system.sim.event()
            worker.hub.wait(ch.posted, what + " (nothing sent)")
        msg = ch.queue[0]
        src_node = system.topology.pe_dma(*src)
        parts = []
        for i in range(msg.chunks):
            worker.hub.wait(msg.arrivals[i], what)
            t = max(t, system.now)
            if spec.buffer == "sram":
                size = min(spec.slot_bytes, max(msg.data.nbytes - i * spec.slot_bytes, 1))
                sram = system.topology.node(f"sip{me[0]}.cube{me[1]}.sram")
                ev = system.send(sram, worker.node, size, t)
                t = max(t, worker.hub.wait(ev, what + " (SRAM -> TCM)"))
            elif spec.buffer == "hbm":
                addr, size = msg.slots[i]
                ev = system.dma(worker.node, "read", [(addr, size, None)], t)
                _grant, comps = worker.hub.wait(ev, what + " (HBM -> TCM)")
                t = max(t, system.now)
                parts.append(comps[0].data)
            back = system.send(worker.node, src_node, spec.credit_bytes, t)
            back.callbacks.append(lambda _e, c=ch: self._credit(c))
        ch.queue.popleft()
        ch.received += 1
        worker.t = t
        if spec.buffer == "hbm":
            raw = np.concatenate(parts)[: msg.data.nbytes]
            return raw.view(msg.data.dtype).reshape(msg.data.shape)
        return msg.data


def _wake(obj: Any, attr: str) -> None:
    ev = getattr(obj, attr)
    if ev is not None:
        setattr(obj, attr, None)
        ev.succeed()
