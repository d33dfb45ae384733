"""The fluid transfer model (``sim.model=fluid``, MODEL.md §3a, ADR 0017).

A transfer is cut at store-and-forward nodes into legs; each leg is a flow. A flow first waits
a fixed latency, then moves its bytes at a rate:

- **Latency**: the leg's time alone, in closed form (:mod:`kernbench.sim.pipeline`, the same
  max-plus recurrence the probe's ``formula_ns`` uses), minus its bytes at its bottleneck rate.
  A lone leg therefore takes exactly its closed-form time, whatever its size.
- **Rate**: max-min fair over every resource the flow crosses: each directed edge (capacity
  its bandwidth) and, for the leg that reaches a memory controller, each pseudo-channel it
  uses (capacity ``pc_bw × efficiency``), which carries the flow's share of bytes on that
  channel. Rates come from progressive filling: all unfrozen flows grow together until a
  resource saturates; the flows through it freeze; repeat.

Rates are recomputed when flows start or end, only for the flows connected to a change through
shared resources, at most once per simulated instant (every start and end of an instant is in
by then), and a flow's completion is rescheduled only when its rate changed. The cost of a
transfer is a few events per leg plus the recomputations it causes, whatever its size.

What the flit model has and this one does not: flit-by-flit interleaving (a flow's share is
the fair share, not what FIFO order gives each flit), head-of-line blocking at a source link
(flit: one message's flits all queue ahead of the next message's), and a latency that grows
under load (here the latency is fixed; only the rate is shared). docs/fluid-model.md lists the
measured differences.

Observation: per edge, bytes and flits are counted when a leg starts; busy time follows from
bytes. ``max_wait_ns`` of a resource is the largest delay beyond its time alone of a flow that
this resource held back (froze). With ``sim.trace=full`` each leg leaves one span per edge:
from when its first byte would start on the edge alone to when its last byte leaves it, with
its bytes and mean rate; spans of concurrent flows on one edge overlap.
"""

from collections.abc import Sequence

import numpy as np

from kernbench.sim.context import Sim
from kernbench.sim.pipeline import (
    Chain,
    Passage,
    channels_of,
    flit_sizes,
    memory_fifo,
    memory_ready,
    through,
)
from kernbench.sim.transfer import Done, Fabric, Memory, Path, TransferModel

# A rate is "unchanged" (no reschedule) within this relative tolerance.
RATE_REL = 1e-12
# A flow "waited" when it took longer than alone by more than this fraction (not rounding).
WAIT_REL = 1e-9
# A resource is saturated when what is left of it is below this fraction of its capacity.
SATURATED_REL = 1e-9


class Leg:
    """A stretch of a route between store-and-forward nodes, timed alone (cached per shape)."""

    __slots__ = (
        "edges",
        "size",
        "n_flits",
        "total_ns",
        "latency_ns",
        "rate",
        "heads",
        "first_start",
        "last_end",
        "shares",
        "path",
    )

    def __init__(
        self,
        edges: tuple[int, ...],
        size: int,
        n_flits: int,
        total_ns: float,
        rate: float,
        passage: Passage,
        shares: tuple[tuple[int, int, int], ...],
        path: int,
    ):
        self.edges = edges
        self.size = size
        self.n_flits = n_flits
        self.total_ns = total_ns
        self.rate = rate
        self.latency_ns = max(total_ns - size / rate, 0.0)
        self.heads = passage.heads
        self.first_start = passage.first_start
        self.last_end = passage.last_end
        self.shares = shares  # (channel, bytes, bursts) on the memory, if the leg reaches it
        self.path = path  # which route of the transfer (0, or 1 for a read's response)


class Flow:
    """One leg in flight."""

    __slots__ = (
        "id",
        "leg",
        "transfer",
        "res",
        "w",
        "left",
        "rate",
        "t",
        "version",
        "begin",
        "active_at",
        "limits",
    )

    def __init__(self, fid: int, leg: Leg, transfer: "_Transfer", begin: float):
        self.id = fid
        self.leg = leg
        self.transfer = transfer
        self.res: list[int] = []
        self.w: list[float] = []
        self.left = float(leg.size)
        self.rate = 0.0
        self.t = 0.0
        self.version = 0
        self.begin = begin  # when the leg started (its latency began)
        self.active_at = 0.0  # when its bytes started to move
        self.limits: set[int] = set()


class _Transfer:
    __slots__ = ("msg_id", "legs", "i", "memory", "heads", "done")

    def __init__(self, msg_id: int, legs: tuple[Leg, ...], memory: Memory | None, done: Done):
        self.msg_id = msg_id
        self.legs = legs
        self.i = 0
        self.memory = memory
        self.heads: list[list[float]] = []
        self.done = done


class FluidModel(TransferModel):
    name = "fluid"

    def __init__(self, sim: Sim, fabric: Fabric, memo: dict | None = None):
        super().__init__(sim, fabric)
        self.wire_ns = [length * sim.spec.ns_per_mm for length in fabric.edge_length_mm]
        self.cap: list[float] = list(fabric.edge_bw_gbs)  # per resource, GB/s
        self.users: list[dict[Flow, float]] = [{} for _ in self.cap]
        self.memory_of: list[Memory | None] = [None] * len(self.cap)
        self._memories: dict[int, int] = {}  # id(memory) -> its first channel's resource
        self._dirty: set[int] = set()
        self._pending = False
        self._ids = 0
        self.plans: dict = memo if memo is not None else {}
        self.observer = sim.observer
        self.n = {
            "transfers": 0,
            "flows": 0,
            "recomputes": 0,
            "rerated": 0,
            "component_flows": 0,
            "max_component_flows": 0,
        }

    def counters(self) -> dict[str, int]:
        return dict(self.n)

    def close_spans(self) -> None:
        """Nothing is open: a flow's spans are written when it ends."""

    # -- the interface ---------------------------------------------------------------------
    def send(self, msg_id: int, route: Path, size_bytes: int, at_ns: float, done: Done) -> None:
        key = ("send", route, size_bytes)
        legs = self.plans.get(key)
        if legs is None:
            legs = self.plans[key] = self._plan(route, size_bytes, 0)
        self._start(_Transfer(msg_id, legs, None, done), at_ns)

    def write(
        self, msg_id: int, route: Path, addr: int, size_bytes: int, memory: Memory, done: Done
    ) -> None:
        phase = addr % (memory.burst_bytes * memory.channels)
        key = ("write", route, size_bytes, phase, memory.channels)
        legs = self.plans.get(key)
        if legs is None:
            legs = self.plans[key] = self._plan(route, size_bytes, 0, memory, phase, "write")
        self._start(_Transfer(msg_id, legs, memory, done), self.sim.now)

    def read(
        self,
        msg_id: int,
        request: Path,
        response: Path,
        addr: int,
        size_bytes: int,
        memory: Memory,
        done: Done,
    ) -> None:
        phase = addr % (memory.burst_bytes * memory.channels)
        key = ("read", request, response, size_bytes, phase, memory.channels)
        legs = self.plans.get(key)
        if legs is None:
            ask = self._plan(request, self.sim.spec.read_request_bytes, 0)
            data = self._plan(response, size_bytes, 1, memory, phase, "read")
            legs = self.plans[key] = ask + data
        self._start(_Transfer(msg_id, legs, memory, done), self.sim.now)

    # -- closed-form plans -----------------------------------------------------------------
    def _plan(
        self,
        route: Path,
        size: int,
        path: int,
        memory: Memory | None = None,
        phase: int = 0,
        op: str = "",
    ) -> tuple[Leg, ...]:
        """The legs of ``size`` bytes along ``route``; a write's last leg ends in ``memory``
        and a read's first leg starts there (``phase`` is the address modulo a channel
        round)."""
        f = self.fabric
        nodes, edges = route.nodes, route.edges
        cut = [0] + [h for h in range(1, len(nodes) - 1) if f.node_store_forward[nodes[h]]]
        cut.append(len(nodes) - 1)
        sizes = flit_sizes(size, self.flit_bytes)
        channel = shares = None
        if memory is not None:
            channel = channels_of(
                phase, sizes.size, self.flit_bytes, memory.burst_bytes, memory.channels
            )
            shares = _shares(channel, sizes)
        legs = []
        for k in range(len(cut) - 1):
            a, b = cut[k], cut[k + 1]
            chain = Chain(
                tuple(self.ns_per_byte[e] for e in edges[a:b]),
                tuple(self.wire_ns[e] for e in edges[a:b]),
                tuple(f.node_overhead_ns[n] for n in nodes[a + 1 : b + 1]),
                tuple(f.node_store_forward[n] for n in nodes[a + 1 : b + 1]),
            )
            first, last = k == 0, k == len(cut) - 2
            reads = op == "read" and first
            writes = op == "write" and last
            assert memory is not None or not (reads or writes)
            if reads:
                arrive = memory_ready(0.0, channel, sizes, memory.ns_per_byte)
            else:
                arrive = np.zeros(sizes.size)
            passage = Passage([], [], [])
            out = through(chain, arrive, sizes, passage)
            if writes:
                out = memory_fifo(out, channel, sizes, memory.ns_per_byte)
            rate = min(f.edge_bw_gbs[e] for e in edges[a:b])
            leg_shares: tuple = ()
            if reads or writes:
                cap = 1.0 / memory.ns_per_byte
                for _c, nbytes, _bursts in shares:
                    rate = min(rate, cap / (nbytes / size))
                leg_shares = shares
            legs.append(
                Leg(
                    tuple(edges[a:b]),
                    size,
                    int(sizes.size),
                    float(out.max()),
                    rate,
                    passage,
                    leg_shares,
                    path,
                )
            )
        return tuple(legs)

    # -- transfers and flows ---------------------------------------------------------------
    def _start(self, tr: _Transfer, at_ns: float) -> None:
        self.n["transfers"] += 1
        self._leg(tr, at_ns)

    def _leg(self, tr: _Transfer, begin: float) -> None:
        leg = tr.legs[tr.i]
        if self.observer.enabled:
            self.stats.count(leg.edges, leg.size, leg.n_flits)
        self._ids += 1
        flow = Flow(self._ids, leg, tr, begin)
        self.sim.call_at(begin + leg.latency_ns, self._activate, flow)

    def _memory_base(self, memory: Memory) -> int:
        base = self._memories.get(id(memory))
        if base is None:
            base = self._memories[id(memory)] = len(self.cap)
            cap = 1.0 / memory.ns_per_byte
            for _ in range(memory.channels):
                self.cap.append(cap)
                self.users.append({})
                self.memory_of.append(memory)
        return base

    def _activate(self, flow: Flow) -> None:
        """The flow's latency is over: its bytes start to share the resources it crosses."""
        self.n["flows"] += 1
        leg = flow.leg
        flow.active_at = flow.t = self.sim.now
        res, w = list(leg.edges), [1.0] * len(leg.edges)
        if leg.shares:
            base = self._memory_base(flow.transfer.memory)  # type: ignore[arg-type]
            for c, nbytes, _bursts in leg.shares:
                res.append(base + c)
                w.append(nbytes / leg.size)
        flow.res, flow.w = res, w
        for r, x in zip(res, w, strict=True):
            self.users[r][flow] = x
        self._touch(res)

    def _touch(self, res: Sequence[int]) -> None:
        self._dirty.update(res)
        if not self._pending:
            self._pending = True
            self.sim.call_late(self._recompute)

    def _finish(self, flow: Flow, version: int) -> None:
        if version != flow.version:
            return  # rescheduled since
        now = self.sim.now
        for r in flow.res:
            del self.users[r][flow]
        self._touch(flow.res)
        leg, tr = flow.leg, flow.transfer
        if self.observer.enabled:
            self._observe(flow, now)
        if len(tr.heads) <= leg.path:
            tr.heads.append([flow.begin + h for h in leg.heads])
        else:
            tr.heads[leg.path].extend(flow.begin + h for h in leg.heads[1:])
        tr.i += 1
        if tr.i < len(tr.legs):
            self._leg(tr, now)
        else:
            tr.done(tuple(tr.heads))

    # -- rates -----------------------------------------------------------------------------
    def _recompute(self) -> None:
        """Max-min fair rates for the flows connected to what changed since the last time."""
        self._pending = False
        dirty, self._dirty = self._dirty, set()
        users = self.users
        seen: set[int] = set()
        flows: dict[Flow, None] = {}
        stack = sorted(dirty, reverse=True)
        while stack:
            r = stack.pop()
            if r in seen:
                continue
            seen.add(r)
            for f in users[r]:
                if f not in flows:
                    flows[f] = None
                    stack.extend(x for x in f.res if x not in seen)
        if not flows:
            return
        self.n["recomputes"] += 1
        self.n["component_flows"] += len(flows)
        if len(flows) > self.n["max_component_flows"]:
            self.n["max_component_flows"] = len(flows)
        rates = self._fill(list(flows), sorted(seen))
        now = self.sim.now
        for f, rate in rates.items():
            old = f.rate
            if old and abs(rate - old) <= RATE_REL * old:
                continue
            self.n["rerated"] += 1
            if old:
                f.left -= old * (now - f.t)
                if f.left < 0.0:
                    f.left = 0.0
            f.t = now
            f.rate = rate
            f.version += 1
            self.sim.call_at(now + f.left / rate, self._finish, f, f.version)

    def _fill(self, flows: list[Flow], res: list[int]) -> dict[Flow, float]:
        """Progressive filling over ``res`` for ``flows`` (every user of ``res``)."""
        cap, users = self.cap, self.users
        rem = {r: cap[r] for r in res}
        wsum = dict.fromkeys(res, 0.0)
        live = dict.fromkeys(res, 0)
        for f in flows:
            for r, x in zip(f.res, f.w, strict=True):
                wsum[r] += x
                live[r] += 1
        track = self.observer.enabled
        rates: dict[Flow, float] = {}
        active = [r for r in res if live[r]]
        level = 0.0
        while active:
            best, arg = float("inf"), -1
            for r in active:
                x = rem[r] / wsum[r]
                if x < best:
                    best, arg = x, r
            level += best
            saturated = []
            for r in active:
                rem[r] -= best * wsum[r]
                if r == arg or rem[r] <= SATURATED_REL * cap[r]:
                    saturated.append(r)
            for r in saturated:
                for f in users[r]:
                    if f in rates:
                        continue
                    rates[f] = level
                    if track:
                        f.limits.add(r)
                    for r2, x in zip(f.res, f.w, strict=True):
                        wsum[r2] -= x
                        live[r2] -= 1
            active = [r for r in active if live[r]]
        return rates

    # -- observation -----------------------------------------------------------------------
    def _observe(self, flow: Flow, now: float) -> None:
        leg = flow.leg
        wait = (now - flow.begin) - leg.total_ns
        if wait > WAIT_REL * leg.total_ns:
            for r in flow.limits:
                if r < len(self.stats.max_wait_ns):
                    if wait > self.stats.max_wait_ns[r]:
                        self.stats.max_wait_ns[r] = wait
                else:
                    self.memory_of[r].waited(wait)  # type: ignore[union-attr]
        else:
            wait = 0.0
        memory = flow.transfer.memory
        if leg.shares and memory is not None:
            for c, nbytes, bursts in leg.shares:
                memory.account(c, flow.transfer.msg_id, flow.active_at, now, nbytes, bursts)
        if not self.observer.full:
            return
        tail = now - leg.total_ns  # what the last byte's times alone shift by
        for h, e in enumerate(leg.edges):
            if not self.observer.admit():
                return
            start = flow.begin + leg.first_start[h]
            end = tail + leg.last_end[h]
            self.spans.append(
                (
                    e,
                    flow.transfer.msg_id,
                    start,
                    end,
                    leg.size,
                    leg.n_flits,
                    leg.size * self.ns_per_byte[e],
                    wait,
                    flow.begin + leg.heads[h],
                )
            )


def _shares(channel: np.ndarray, sizes: np.ndarray) -> tuple[tuple[int, int, int], ...]:
    """Per pseudo-channel a transfer uses: (channel, bytes, bursts), in channel order."""
    used = np.unique(channel)
    return tuple((int(c), int(sizes[channel == c].sum()), int((channel == c).sum())) for c in used)
