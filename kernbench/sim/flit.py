"""The flit-level wormhole transfer engine: the ``flit`` transfer model, the reference.

Contract (MODEL.md §3): a transfer is cut into flits of ``flit_bytes`` (the last may be
shorter). Along its route every directed edge is a FIFO server: a flit holds it for
``bytes / bw_gbs`` ns, then flies ``length_mm * ns_per_mm`` ns. A forwarding node delays the
head flit by its overhead and passes the others on in order without waiting for the tail; a
store-and-forward node releases nothing until the tail has arrived, then releases every flit
after its overhead. The destination node's overhead also applies to the head flit; what
happens at the destination is the transfer's ``sink``.

Each flit costs one scheduled event per hop. A flit's departure from an edge is computed when
it reaches that edge, in simulated-time order, so concurrent transfers interleave flit by flit
and queue behind one another first come, first served. Not modelled: finite buffers,
back-pressure, credit loops (a flit always finds room downstream).

Observation (``sim.observer``): every edge counts its bytes and flits at every level, once per
transfer (the energy model needs them, kernbench.runtime.energy); with ``summary`` it also
keeps each edge's longest wait, which ``off`` skips per flit; with ``full`` it
also records spans: a span is a maximal run of consecutive flits of one transfer on one edge,
from the first flit's start to the last flit's end, so spans of one edge never overlap. Its
``busy_ns`` is the serialization time of its flits (the span may hold idle gaps), ``wait_ns``
their summed wait for the edge and ``arrive_ns`` when its first flit reached the edge.
"""

from collections.abc import Callable, Sequence

from kernbench.sim.context import Sim
from kernbench.sim.transfer import Done, Fabric, LinkStats, Memory, Path, Runs, TransferModel

Sink = Callable[["Transfer", int], None]


class Transfer:
    """One message in flight along one route."""

    __slots__ = (
        "id",
        "nodes",
        "edges",
        "size_bytes",
        "flit_bytes",
        "n_flits",
        "last_bytes",
        "sink",
        "dep",
        "arrived",
        "held",
        "head_at",
        "start_ns",
        "tag",
    )

    def __init__(
        self,
        tid: int,
        nodes: Sequence[int],
        edges: Sequence[int],
        size_bytes: int,
        flit_bytes: int,
        sink: Sink,
        tag: object = None,
    ):
        self.id = tid
        self.nodes = nodes
        self.edges = edges
        self.size_bytes = size_bytes
        self.flit_bytes = flit_bytes
        self.n_flits = -(-size_bytes // flit_bytes)
        self.last_bytes = size_bytes - (self.n_flits - 1) * flit_bytes
        self.sink = sink
        self.dep = [float("-inf")] * len(nodes)  # last departure time per node (in-order)
        self.arrived = [0] * len(nodes)  # flits arrived per node (store-and-forward count)
        self.held = [0] * len(nodes)  # flits waiting at a node for an earlier flit to leave
        self.head_at = [float("nan")] * len(nodes)  # when the head reached each node
        self.start_ns = 0.0
        self.tag = tag

    def flit_size(self, j: int) -> int:
        return self.flit_bytes if j < self.n_flits - 1 else self.last_bytes


class WireEngine:
    def __init__(
        self,
        sim: Sim,
        *,
        edge_bw_gbs: Sequence[float],
        edge_length_mm: Sequence[float],
        node_overhead_ns: Sequence[float],
        node_store_forward: Sequence[bool],
        stats: LinkStats | None = None,
    ):
        self.sim = sim
        ns_per_mm = sim.spec.ns_per_mm
        self.ns_per_byte = [1.0 / bw for bw in edge_bw_gbs]
        self.wire_ns = [length * ns_per_mm for length in edge_length_mm]
        self.free_at = [0.0] * len(edge_bw_gbs)
        self.overhead_ns = list(node_overhead_ns)
        self.store_forward = list(node_store_forward)
        self.stats = stats or LinkStats(len(edge_bw_gbs), self.ns_per_byte)
        self.observer = sim.observer
        # Finished spans: (edge, msg id, start, end, bytes, flits, busy_ns, wait_ns, arrive_ns).
        self.spans: list[tuple[int, int, float, float, int, int, float, float, float]] = []
        self._open: list[list | None] = [None] * len(edge_bw_gbs)
        if not self.observer.enabled:
            self._edge = self._edge_bare  # type: ignore[method-assign]
        elif self.observer.full:
            self._edge = self._edge_full  # type: ignore[method-assign]

    # -- starting a transfer ---------------------------------------------------------------
    def _count(self, tr: Transfer) -> None:
        self.stats.count(tr.edges, tr.size_bytes, tr.n_flits)

    def inject(self, tr: Transfer) -> None:
        """All flits are ready at the source now; they enter the first edge back to back."""
        self._count(tr)
        tr.start_ns = now = self.sim.env.now
        tr.head_at[0] = now
        for j in range(tr.n_flits):
            self._edge(tr, j, 0)

    def inject_staggered(self, tr: Transfer, ready_ns: Sequence[float]) -> None:
        """Flit ``j`` becomes ready at the source at ``ready_ns[j]`` (non-decreasing)."""
        self._count(tr)
        tr.start_ns = self.sim.env.now
        tr.head_at[0] = ready_ns[0]
        call_at = self.sim.call_at
        for j, t in enumerate(ready_ns):
            call_at(t, self._edge, tr, j, 0)

    # -- the stages ------------------------------------------------------------------------
    def _edge(self, tr: Transfer, j: int, h: int) -> None:
        """Flit ``j`` enters the edge leaving node ``h`` of its route, now."""
        e = tr.edges[h]
        now = self.sim.env.now
        start = self.free_at[e]
        if start <= now:
            start = now
        elif start - now > self.stats.max_wait_ns[e]:
            self.stats.max_wait_ns[e] = start - now
        end = start + (tr.flit_bytes if j < tr.n_flits - 1 else tr.last_bytes) * self.ns_per_byte[e]
        self.free_at[e] = end
        self.sim.call_at(end + self.wire_ns[e], self._arrive, tr, j, h + 1)

    def _edge_bare(self, tr: Transfer, j: int, h: int) -> None:
        """:meth:`_edge` without statistics (``sim.trace=off``)."""
        e = tr.edges[h]
        now = self.sim.env.now
        free = self.free_at[e]
        start = now if now > free else free
        end = start + (tr.flit_bytes if j < tr.n_flits - 1 else tr.last_bytes) * self.ns_per_byte[e]
        self.free_at[e] = end
        self.sim.call_at(end + self.wire_ns[e], self._arrive, tr, j, h + 1)

    def _edge_full(self, tr: Transfer, j: int, h: int) -> None:
        """:meth:`_edge` that also extends or opens the edge's span (``sim.trace=full``)."""
        e = tr.edges[h]
        now = self.sim.env.now
        free = self.free_at[e]
        start = now if now > free else free
        nbytes = tr.flit_bytes if j < tr.n_flits - 1 else tr.last_bytes
        service = nbytes * self.ns_per_byte[e]
        end = start + service
        self.free_at[e] = end
        wait = start - now
        if wait > self.stats.max_wait_ns[e]:
            self.stats.max_wait_ns[e] = wait
        span = self._open[e]
        if span is not None and span[0] is tr:
            span[2] = end
            span[3] += nbytes
            span[4] += 1
            span[5] += service
            span[6] += wait
        else:
            if span is not None:
                self._close(e, span)
            self._open[e] = [tr, start, end, nbytes, 1, service, wait, now]
        self.sim.call_at(end + self.wire_ns[e], self._arrive, tr, j, h + 1)

    def _close(self, e: int, span: list) -> None:
        if self.observer.admit():
            tr, start, end, nbytes, flits, busy, wait, arrive = span
            self.spans.append((e, tr.id, start, end, nbytes, flits, busy, wait, arrive))

    def close_spans(self) -> None:
        """Finish every open span (call when the run is over, before reading ``spans``)."""
        for e, span in enumerate(self._open):
            if span is not None:
                self._close(e, span)
                self._open[e] = None

    def _arrive(self, tr: Transfer, j: int, h: int) -> None:
        """Flit ``j`` has reached node ``h`` of its route."""
        now = self.sim.env.now
        node = tr.nodes[h]
        if j == 0:
            tr.head_at[h] = now
        if self.store_forward[node]:
            tr.arrived[h] += 1
            if tr.arrived[h] == tr.n_flits:
                self.sim.call_at(now + self.overhead_ns[node], self._release, tr, h)
            return
        dep = tr.dep[h]
        t = now if now > dep else dep
        if j == 0:
            t += self.overhead_ns[node]
        tr.dep[h] = t
        # A flit may leave now only if no earlier flit of its transfer still waits here;
        # otherwise it queues behind them, in order, even when they leave at this instant.
        if t > now or tr.held[h]:
            tr.held[h] += 1
            self.sim.call_at(t, self._depart_held, tr, j, h)
        else:
            self._depart(tr, j, h)

    def _depart_held(self, tr: Transfer, j: int, h: int) -> None:
        tr.held[h] -= 1
        self._depart(tr, j, h)

    def _depart(self, tr: Transfer, j: int, h: int) -> None:
        if h == len(tr.nodes) - 1:
            tr.sink(tr, j)
        else:
            self._edge(tr, j, h)

    def _release(self, tr: Transfer, h: int) -> None:
        """A store-and-forward node sends the whole message on, flits back to back."""
        for j in range(tr.n_flits):
            self._depart(tr, j, h)


class FlitModel(TransferModel):
    """The transfer interface over the :class:`WireEngine`: a write's flits are served by the
    memory's pseudo-channels as they arrive; a read's data flits leave the controller in
    order, each once its burst and every earlier one are read."""

    name = "flit"

    def __init__(self, sim: Sim, fabric: Fabric):
        super().__init__(sim, fabric)
        self.engine = WireEngine(
            sim,
            edge_bw_gbs=fabric.edge_bw_gbs,
            edge_length_mm=fabric.edge_length_mm,
            node_overhead_ns=fabric.node_overhead_ns,
            node_store_forward=fabric.node_store_forward,
            stats=self.stats,
        )
        self.spans = self.engine.spans

    def close_spans(self) -> None:
        self.engine.close_spans()

    def _send(self, msg_id: int, route: Path, size_bytes: int, at_ns: float, done: Done) -> None:
        def arrive(tr: Transfer, _j: int) -> None:
            tr.tag[0] -= 1
            if tr.tag[0] == 0:
                done((tr.head_at,))

        def inject() -> None:
            tr = Transfer(msg_id, route.nodes, route.edges, size_bytes, self.flit_bytes, arrive)
            tr.tag = [tr.n_flits]
            self.engine.inject(tr)

        self.sim.call_at(at_ns, inject)

    def _write(self, msg_id: int, route: Path, runs: Runs, memory: Memory, done: Done) -> None:
        """Each run is a message of its own; done when the last run's last burst is in."""
        flit = self.flit_bytes
        state = {"runs": len(runs), "heads": None}

        def committed(heads: list[float]) -> None:
            state["runs"] -= 1
            if state["heads"] is None:
                state["heads"] = heads
            if state["runs"] == 0:
                done((state["heads"],))

        for addr, size in runs:
            run = [0, self.sim.now]  # flits still to be served, when the last one is committed

            def sink(tr: Transfer, j: int, addr: int = addr, run: list = run) -> None:
                end = memory.serve(addr + j * flit, tr.flit_size(j), self.sim.now, msg_id)
                if end > run[1]:
                    run[1] = end
                run[0] -= 1
                if run[0] == 0:
                    self.sim.call_at(run[1], committed, tr.head_at)

            tr = Transfer(msg_id, route.nodes, route.edges, size, flit, sink)
            run[0] = tr.n_flits
            self.engine.inject(tr)

    def _read(
        self, msg_id: int, request: Path, response: Path, runs: Runs, memory: Memory, done: Done
    ) -> None:
        """One request per run; each run's data leaves the controller in address order."""
        flit = self.flit_bytes
        state = {"runs": len(runs), "heads": None}

        def arrived(req: Transfer, data: Transfer) -> None:
            state["runs"] -= 1
            if state["heads"] is None:
                state["heads"] = (req.head_at, data.head_at)
            if state["runs"] == 0:
                done(state["heads"])

        for addr, size in runs:

            def issue(req: Transfer, _j: int, addr: int = addr, size: int = size) -> None:
                now = self.sim.now

                def arrive(tr: Transfer, _j: int) -> None:
                    tr.tag[0] -= 1
                    if tr.tag[0] == 0:
                        arrived(req, tr)

                data = Transfer(msg_id, response.nodes, response.edges, size, flit, arrive)
                ready, last = [], now
                for j in range(data.n_flits):
                    end = memory.serve(addr + j * flit, data.flit_size(j), now, msg_id)
                    last = end if end > last else last
                    ready.append(last)
                data.tag = [data.n_flits]
                self.engine.inject_staggered(data, ready)

            req = Transfer(
                msg_id, request.nodes, request.edges, self.sim.spec.read_request_bytes, flit, issue
            )
            self.engine.inject(req)
