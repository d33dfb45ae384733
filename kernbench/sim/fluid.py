"""The fluid transfer model (``sim.model=fluid``, MODEL.md §3a, ADR 0025).

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
this resource held back (froze), and of a leg's first edge also the longest a leg queued there
behind earlier legs of its source. With ``sim.trace=full`` each leg leaves one span per edge:
from when its first byte would start on the edge alone to when its last byte leaves it, with
its bytes (the trace shows their mean rate over the span); spans of concurrent flows on one
edge overlap (the trace lays them out in lanes). A span's ``wait_ns`` is the leg's delay
beyond its time alone where the edge held it back (zero elsewhere) plus, on its first edge,
its queueing there, by which its ``arrive_ns`` precedes its start.
"""

from collections.abc import Sequence

from kernbench.sim.context import Sim
from kernbench.sim.fluid_plan import Leg, MemoryShape, Planner
from kernbench.sim.transfer import Done, Fabric, Memory, Path, Runs, TransferModel

# A rate is "unchanged" (no reschedule) within this relative tolerance.
RATE_REL = 1e-12
# A flow "waited" when it took longer than alone by more than this fraction (not rounding).
WAIT_REL = 1e-9
# A resource is saturated when what is left of it is below this fraction of its capacity.
SATURATED_REL = 1e-9


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
        "cap",
        "queued",
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
        self.cap = float("inf")  # its own limit besides the shared resources, GB/s
        self.queued = 0.0  # how long it waited behind earlier legs of its source, ns


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
        self.cap: list[float] = list(fabric.edge_bw_gbs)  # per resource, GB/s
        self.source_free = [0.0] * len(self.cap)  # per edge, when its source's queue empties
        self.users: list[dict[Flow, float]] = [{} for _ in self.cap]
        self.memory_of: list[Memory | None] = [None] * len(self.cap)
        self._memories: dict[int, int] = {}  # id(memory) -> its first channel's resource
        self._dirty: set[int] = set()
        self._pending = False
        self._ids = 0
        self.plans: dict = memo if memo is not None else {}
        self.planner = Planner(
            fabric, self.flit_bytes, sim.spec.read_request_bytes, sim.spec.ns_per_mm
        )
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
    def _send(self, msg_id: int, route: Path, size_bytes: int, at_ns: float, done: Done) -> None:
        key = ("send", route, size_bytes)
        legs = self.plans.get(key)
        if legs is None:
            legs = self.plans[key] = self.planner.send(route, size_bytes)
        self._start(_Transfer(msg_id, legs, None, done), at_ns)

    def _write(self, msg_id: int, route: Path, runs: Runs, memory: Memory, done: Done) -> None:
        shape, key = self._shape(memory, runs)
        key = ("write", route, shape, key)
        legs = self.plans.get(key)
        if legs is None:
            legs = self.plans[key] = self.planner.write(route, runs, shape)
        self._start(_Transfer(msg_id, legs, memory, done), self.sim.now)

    def _read(
        self,
        msg_id: int,
        request: Path,
        response: Path,
        runs: Runs,
        memory: Memory,
        done: Done,
    ) -> None:
        shape, key = self._shape(memory, runs)
        key = ("read", request, response, shape, key)
        legs = self.plans.get(key)
        if legs is None:
            legs = self.plans[key] = self.planner.read(request, response, runs, shape)
        self._start(_Transfer(msg_id, legs, memory, done), self.sim.now)

    @staticmethod
    def _shape(memory: Memory, runs: Runs) -> tuple[MemoryShape, tuple]:
        """The memory's shape, and the runs as a key that only keeps what times them: each
        run's size and its address relative to the first run's channel round."""
        shape = MemoryShape(memory.channels, memory.burst_bytes, memory.ns_per_byte)
        base = runs[0][0] - runs[0][0] % (memory.burst_bytes * memory.channels)
        return shape, tuple((a - base, n) for a, n in runs)

    # -- transfers and flows ---------------------------------------------------------------
    def _start(self, tr: _Transfer, at_ns: float) -> None:
        self.n["transfers"] += 1
        self._leg(tr, at_ns)

    def _leg(self, tr: _Transfer, begin: float) -> None:
        leg = tr.legs[tr.i]
        if self.observer.enabled:
            st = self.stats
            for e, b, k in zip(leg.edges, leg.edge_bytes, leg.edge_flits, strict=True):
                st.bytes[e] += b
                st.flits[e] += k
        # All of a leg's bytes are ready at its source at once: the first edge serves the
        # legs of its source one after the other, each at the edge's full rate (as the flit
        # model queues a message's flits behind the earlier messages' on it).
        e = leg.edges[0]
        free = self.source_free[e]
        queued = 0.0
        if free > begin:
            queued = free - begin
            if self.observer.enabled and queued > self.stats.max_wait_ns[e]:
                self.stats.max_wait_ns[e] = queued
            begin = free
        self.source_free[e] = begin + leg.edge_bytes[0] * self.ns_per_byte[e]
        self._ids += 1
        flow = Flow(self._ids, leg, tr, begin)
        flow.queued = queued
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
        res, w = list(leg.edges[1:]), list(leg.weights[1:])
        flow.cap = self.cap[leg.edges[0]] / leg.weights[0]
        if leg.shares:
            base = self._memory_base(flow.transfer.memory)  # type: ignore[arg-type]
            for c, nbytes, _bursts in leg.shares:
                res.append(base + c)
                w.append(nbytes / leg.size)
        flow.res, flow.w = res, w
        if not res:  # alone on its only edge: its rate is that edge's
            self._rate(flow, flow.cap, self.sim.now)
            return
        for r, x in zip(res, w, strict=True):
            self.users[r][flow] = x
        self._touch(res)

    def _touch(self, res: Sequence[int]) -> None:
        self._dirty.update(res)
        if not self._pending:
            self._pending = True
            self.sim.call_late(self._recompute)

    def _finish(self, flow: Flow, version: int) -> None:
        """The flow's last byte is through: the leg is done."""
        if version != flow.version:
            return  # rescheduled since
        now = self.sim.now
        for r in flow.res:
            del self.users[r][flow]
        if flow.res:
            self._touch(flow.res)
        leg, tr = flow.leg, flow.transfer
        if self.observer.enabled:
            self._observe(flow, now)
        for path, heads in leg.heads:
            if len(tr.heads) <= path:
                tr.heads.append([flow.begin + h for h in heads])
            else:
                tr.heads[path].extend(flow.begin + h for h in heads[1:])
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
            self._rate(f, rate, now)

    def _rate(self, f: Flow, rate: float, now: float) -> None:
        """From ``now`` on ``f`` moves at ``rate``: when it will be done."""
        self.n["rerated"] += 1
        old = f.rate
        if old:
            f.left -= old * (now - f.t)
            if f.left < 0.0:
                f.left = 0.0
        f.t = now
        f.rate = rate
        f.version += 1
        self.sim.call_at(now + f.left / rate, self._finish, f, f.version)

    def _fill(self, flows: list[Flow], res: list[int]) -> dict[Flow, float]:
        """Progressive filling over ``res`` for ``flows`` (every user of ``res``), each flow
        also held to its own ``cap``."""
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
        capped = sorted((f for f in flows if f.cap < float("inf")), key=lambda f: f.cap)
        c = 0
        active = [r for r in res if live[r]]
        level = 0.0
        while active:
            best, arg = float("inf"), -1
            for r in active:
                x = rem[r] / wsum[r]
                if x < best:
                    best, arg = x, r
            while c < len(capped) and capped[c] in rates:
                c += 1
            if c < len(capped) and capped[c].cap - level <= best:
                best, arg = capped[c].cap - level, -1
            level += best
            saturated = []
            for r in active:
                rem[r] -= best * wsum[r]
                if r == arg or rem[r] <= SATURATED_REL * cap[r]:
                    saturated.append(r)
            frozen = [f for r in saturated for f in users[r]]
            while c < len(capped) and capped[c].cap <= level * (1 + SATURATED_REL):
                frozen.append(capped[c])
                c += 1
            for f in frozen:
                if f in rates:
                    continue
                rates[f] = level
                if track:
                    f.limits.update(r for r in saturated if r in f.res)
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
        # A span's wait, as the flit model's sums its flits' waits for the edge: the leg's delay
        # beyond its time alone on the edges that held it back, and on its first edge the
        # time it queued there behind its source's earlier legs (from its arrival).
        tail = now - leg.total_ns  # what the last byte's times alone shift by
        for h, e in enumerate(leg.edges):
            if not self.observer.admit():
                return
            start = flow.begin + leg.first_start[h]
            nbytes = leg.edge_bytes[h]
            held = wait if e in flow.limits else 0.0
            queued = flow.queued if h == 0 else 0.0
            self.spans.append(
                (
                    e,
                    flow.transfer.msg_id,
                    start,
                    tail + leg.last_end[h],
                    nbytes,
                    leg.edge_flits[h],
                    nbytes * self.ns_per_byte[e],
                    held + queued,
                    start - queued,
                )
            )
