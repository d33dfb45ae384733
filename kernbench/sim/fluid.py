"""The fluid transfer model (``sim.model=fluid``, MODEL.md §3a, ADR 0025).

A transfer is cut at store-and-forward nodes into legs; each leg is a flow. A flow first waits
a fixed latency, then moves its bytes at a rate:

- **Latency**: the leg's time alone, in closed form (:mod:`kernbench.sim.pipeline`, the same
  max-plus recurrence the probe's ``formula_ns`` uses). Its bytes set off when, moving alone
  through its queues below, the last of them is through at that time (for most legs: the
  closed form minus its bytes at its bottleneck rate minus its hops' delays), so a lone leg
  takes exactly its closed-form time, whatever its size.
- **Bytes**: a leg's first edge belongs to its source: legs leave it one after the other,
  each at the edge's full rate, as the flit model queues a message's flits behind the earlier
  messages'. Every resource after it (its directed edges; for a write, the pseudo-channels of
  its controller, each carrying the flow's share of bytes on it; a request edge carries the
  flow's request bytes per data byte) is a FIFO queue of fluid
  (:mod:`kernbench.sim.fluid_fifo`, ADR 0034): a flow's bytes set off early enough that, alone,
  its last byte is through at the end of its closed-form time, and each queue passes them on
  in the order they came, at its capacity while it holds some. Its head goes from one
  resource to the next in the time it takes alone; a node's overhead holds only the head, so
  the bytes that come meanwhile arrive with it at once (ADR 0035).
- **Reads at the memory**: a read's bursts are all queued when its request arrives, so its
  controller's channels serve reads first come, first served, as in the flit model: when a
  read's bytes start to move, its bursts are queued on each channel it uses behind what is
  queued there, and it cannot move faster than the last of them is read.

What the flit model has and this one does not: flits (a write's bursts reach its channels
spread evenly, not one a nanosecond; a held head brings its bytes along once per leg, not once
per address run), a latency that grows under load, and the order of bytes finer than the
queues keep it (ADR 0034). docs/fluid-model.md publishes the measured
differences.

Observation: per edge, bytes and flits are counted when a leg starts, at every trace level (the
energy model charges them); busy time follows from bytes. ``max_wait_ns`` of an edge is the
largest delay beyond its time alone of a flow this edge held back, and of a leg's first edge
also the longest a leg queued there behind earlier legs of its source; a controller's is the
longest a transfer's bursts waited for a channel.
With ``sim.trace=full`` each leg leaves one span per edge: from when its first byte would
start on the edge alone to when its last byte leaves it, with its bytes (the trace shows
their mean rate over the span); spans of concurrent flows on one edge overlap (the trace lays
them out in lanes). A span's ``wait_ns`` is the leg's delay beyond its time alone where the
edge held it back (zero elsewhere) plus, on its first edge, its queueing there, by which its
``arrive_ns`` precedes its start. A controller records one span per transfer and channel:
when the channel serves that transfer's bursts (a read's are queued, so they never overlap
another's; writes share the channels).
"""

from collections.abc import Callable

from kernbench.sim.context import Sim
from kernbench.sim.fluid_fifo import Flowing, Network, alone_ns
from kernbench.sim.fluid_plan import Leg, MemoryShape, Planner
from kernbench.sim.transfer import Done, Fabric, Heads, Memory, Path, Runs, TransferModel

# A flow "waited" when it took longer than alone by more than this fraction (not rounding).
WAIT_REL = 1e-9


class Flow:
    """One leg in flight."""

    __slots__ = (
        "id",
        "leg",
        "transfer",
        "begin",
        "active_at",
        "limits",
        "cap",
        "windows",
        "queued",
        "ready_at",
    )

    def __init__(self, fid: int, leg: Leg, transfer: "_Transfer", begin: float):
        self.id = fid
        self.leg = leg
        self.transfer = transfer
        self.begin = begin  # when the leg started (its latency began)
        self.active_at = 0.0  # when its bytes started to move
        self.limits: set[int] = set()
        self.cap = float("inf")  # its own limit besides the shared resources, GB/s
        self.windows: list[tuple[float, float]] = []  # per memory share: its channel's service
        self.queued = 0.0  # how long it waited behind earlier legs of its source, ns
        self.ready_at = 0.0  # when a read's bursts were queued on its channels


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
        self.net = Network(sim.call_at, sim.call_late, lambda: sim.env.now, sim.observer.enabled)
        self._channels: dict[int, list[float]] = {}  # id(memory) -> when each channel frees
        self._memories: dict[int, int] = {}
        self._ids = 0
        # Plans depend only on the fabric and the shapes, so systems of one topology share them.
        self.plans: dict = memo if memo is not None else {}
        planner = self.plans.get("planner")
        if planner is None:
            planner = self.plans["planner"] = Planner(
                fabric, self.flit_bytes, sim.spec.read_request_bytes, sim.spec.ns_per_mm
            )
        self.planner: Planner = planner
        self.observer = sim.observer
        self.n = {"transfers": 0, "flows": 0}

    def counters(self) -> dict[str, int]:
        return {**self.n, **self.net.n}

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
        if len(runs) > 1 and self.planner.stores(route):
            self._each(runs, done, lambda run, d: self._write(msg_id, route, run, memory, d))
            return
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
        if len(runs) > 1 and (self.planner.stores(request) or self.planner.stores(response)):
            self._each(
                runs, done, lambda run, d: self._read(msg_id, request, response, run, memory, d)
            )
            return
        shape, key = self._shape(memory, runs)
        key = ("read", request, response, shape, key)
        legs = self.plans.get(key)
        if legs is None:
            legs = self.plans[key] = self.planner.read(request, response, runs, shape)
        self._start(_Transfer(msg_id, legs, memory, done), self.sim.now)

    @staticmethod
    def _each(runs: Runs, done: Done, start: Callable[[Runs, Done], None]) -> None:
        """Each run a transfer of its own (as the flit model sends them): a store-and-forward
        node passes each run on once that run is in, not once all are."""
        left = [len(runs)]
        first: list[Heads] = []

        def one(heads: Heads) -> None:
            if not first:
                first.append(heads)
            left[0] -= 1
            if left[0] == 0:
                done(first[0])

        for run in runs:
            start((run,), one)

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
        # Counted at every trace level: the energy model charges each edge's bytes.
        st = self.stats
        for e, b, k in zip(leg.edges, leg.edge_bytes, leg.edge_flits, strict=True):
            st.bytes[e] += b  # a read's request edges carry fewer bytes than its data edges
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
        if leg.fluid is None:
            leg.fluid = self._timing(leg, tr.memory)
        self.sim.call_at(begin + leg.fluid[3], self._activate, flow)

    def _timing(
        self, leg: Leg, memory: Memory | None
    ) -> tuple[list[float], list[float], float, float]:
        """How the leg's bytes move: the delays and holds between the resources it shares,
        the hold before the first, and when its bytes set off after its start, so that alone
        its last byte is through at the end of its closed-form time.

        Alone, its bottleneck (the first resource of least rate, or its source) is busy from
        when the head reaches it until the last byte leaves, whatever came before; after
        it, a node that holds the head lets the bytes behind catch up, which the last byte
        may or may not feel: the part after the bottleneck is run alone (``alone_ns``)."""
        delays, holds, hold0 = self._delays(leg)
        if hold0 == 0.0 and not any(holds):
            # Its bytes reach its last resource by its delays, then drain at its rate.
            return delays, holds, hold0, leg.latency_ns - sum(delays)
        stages = [[(self.cap[e], w)] for e, w in zip(leg.edges[1:], leg.weights[1:], strict=True)]
        if leg.shares:
            assert memory is not None
            cap = 1.0 / memory.ns_per_byte
            stages.append([(cap, n / leg.size) for _c, n, _b in leg.shares])
        rate = self.cap[leg.edges[0]] / leg.weights[0]
        slowest = [min(c / w for c, w in stage) for stage in stages]
        least = min([rate, *slowest])
        b = next((s for s, r in enumerate(slowest) if r <= least * (1 + 1e-12)), -1)
        if rate <= least * (1 + 1e-12):
            b = -1  # its source: nothing before it to wait for
        after = holds[b + 1 :]
        hold = hold0 if b < 0 else holds[b] if b < len(holds) else 0.0
        if hold == 0.0 and not any(after):  # holds before the bottleneck only: as above
            return delays, holds, hold0, leg.latency_ns - sum(delays)
        # The bottleneck passes them on at its rate from when the head reaches it.
        tail = alone_ns(stages[b + 1 :], delays[b + 1 :], after, hold, least, leg.size)
        alone = sum(delays[: b + 1]) + tail
        return delays, holds, hold0, max(leg.total_ns - alone, 0.0)

    @staticmethod
    def _delays(leg: Leg) -> tuple[list[float], list[float], float]:
        """How long the leg's head takes alone from each resource it shares to the next: its
        edges after the first (a write's pseudo-channels last, no delay to them; a read's
        none, its data leaves when the memory serves it), never more than its latency in
        all; of each, how long the node between holds the head alone (its overhead); and the
        hold between its first edge and its second."""
        n = len(leg.edges)
        if leg.reads or n < 2:
            return [0.0] * max(n - 1, 0), [0.0] * max(n - 1, 0), 0.0
        fs, over = leg.first_start, leg.overhead_ns
        d = [fs[h + 1] - fs[h] for h in range(1, n - 1)]
        holds = [min(over[h], d[h - 1]) for h in range(1, n - 1)]
        if leg.shares:
            d.append(0.0)
            holds.append(0.0)
        total = sum(d)
        if total > leg.latency_ns:
            scale = leg.latency_ns / total
            d = [x * scale for x in d]
            holds = [x * scale for x in holds]
        return d, holds, min(over[0], fs[1] - fs[0])

    def _memory_base(self, memory: Memory) -> int:
        base = self._memories.get(id(memory))
        if base is None:
            base = self._memories[id(memory)] = len(self.cap)
            cap = 1.0 / memory.ns_per_byte
            for _ in range(memory.channels):
                self.cap.append(cap)
        return base

    def _queue(self, flow: Flow) -> None:
        """Queue a read's bursts on its memory's channels now, behind what is queued there."""
        memory = flow.transfer.memory
        assert memory is not None
        free = self._channels.get(id(memory))
        if free is None:
            free = self._channels[id(memory)] = [0.0] * memory.channels
        now, per_byte = self.sim.now, memory.ns_per_byte
        windows = []
        for c, nbytes, _bursts in flow.leg.shares:
            start = free[c] if free[c] > now else now
            free[c] = start + nbytes * per_byte
            windows.append((start, free[c]))
        flow.windows = windows
        flow.ready_at = now

    def _activate(self, flow: Flow) -> None:
        """The flow's latency is over: its bytes start to share the resources it crosses (a
        read's once its channels start on its bursts, at the rate they finish them)."""
        leg = flow.leg
        now = self.sim.now
        flow.cap = self.cap[leg.edges[0]] / leg.weights[0]
        if leg.shares and leg.reads:
            if not flow.windows:
                self._queue(flow)
                first = min(start for start, _end in flow.windows)
                if first > now:
                    self.sim.call_at(first, self._activate, flow)
                    return
            last = max(end for _start, end in flow.windows)
            flow.cap = min(flow.cap, leg.size / (last - now))
        self.n["flows"] += 1
        flow.active_at = now
        net = self.net
        delays, holds, hold0, _ = leg.fluid  # type: ignore[misc]
        flowing = Flowing(delays, flow.limits, lambda: self._finish(flow), holds)
        for e, w in zip(leg.edges[1:], leg.weights[1:], strict=True):
            flowing.stage([(net.queue(e, self.cap[e]), w)])
        if leg.shares and not leg.reads:
            base = self._memory_base(flow.transfer.memory)  # type: ignore[arg-type]
            flowing.stage(
                [(net.queue(base + c, self.cap[base + c]), n / leg.size) for c, n, _ in leg.shares]
            )
        if not flowing.stages:  # alone on its only edge
            self.sim.call_at(now + leg.size / flow.cap, self._finish, flow)
            return
        net.start(flowing, flow.cap, leg.size, now, hold0)

    def _finish(self, flow: Flow) -> None:
        """The flow's last byte is through: the leg is done."""
        now = self.sim.now
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

    # -- observation -----------------------------------------------------------------------
    def _observe(self, flow: Flow, now: float) -> None:
        leg = flow.leg
        wait = (now - flow.begin) - leg.total_ns
        memory = flow.transfer.memory
        if wait > WAIT_REL * leg.total_ns:
            edges = len(self.stats.max_wait_ns)
            for r in flow.limits:
                if r >= edges:  # one of its controller's channels (a write's)
                    memory.waited(wait)  # type: ignore[union-attr]
                elif wait > self.stats.max_wait_ns[r]:
                    self.stats.max_wait_ns[r] = wait
        else:
            wait = 0.0
        if leg.shares and memory is not None:
            windows = flow.windows or [(flow.active_at, now)] * len(leg.shares)
            for (c, nbytes, bursts), (start, end) in zip(leg.shares, windows, strict=True):
                memory.account(c, flow.transfer.msg_id, start, end, nbytes, bursts)
                memory.waited(start - (flow.ready_at if flow.windows else flow.active_at))
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
