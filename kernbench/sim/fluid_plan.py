"""The fluid model's plans: how a transfer is cut into legs, and each leg timed alone.

A leg is one flow of the fluid model (kernbench.sim.fluid). Legs end at store-and-forward
nodes, which release nothing before the tail has arrived. A read's request and its data meet
at the memory, so the last request leg, the memory and the first data leg are one flow: the
data streams out while later requests still arrive, as in the flit model. A transfer of several
address runs to one controller (one DMA) is one transfer: its runs' flits follow each other.

Each leg is timed alone in closed form with :mod:`kernbench.sim.pipeline` (the max-plus
recurrence of MODEL.md §3, all flits of the leg at once). What a leg carries per resource is
kept as a weight: bytes on that resource over the leg's bytes (1 on a data edge, the request
share on a request edge, the share of bytes on each pseudo-channel), so one rate moves all of
it. The leg's bottleneck rate is ``min(capacity / weight)``, and its fixed latency is its time
alone minus its bytes at that rate, so a lone leg takes exactly its closed-form time.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kernbench.sim.pipeline import (
    Chain,
    Passage,
    flit_sizes,
    memory_fifo,
    through,
)
from kernbench.sim.transfer import Fabric, Path, Runs


@dataclass(frozen=True)
class MemoryShape:
    """What a plan needs of a memory controller."""

    channels: int
    burst_bytes: int
    ns_per_byte: float


class Leg:
    """A flow's part of a transfer, timed alone (plans are cached per shape and reused)."""

    __slots__ = (
        "edges",
        "weights",
        "edge_bytes",
        "edge_flits",
        "size",
        "total_ns",
        "latency_ns",
        "rate",
        "first_start",
        "last_end",
        "heads",
        "shares",
        "reads",
        "overhead_ns",
        "fluid",
    )

    def __init__(
        self,
        edges: list[int],
        edge_bytes: list[int],
        edge_flits: list[int],
        size: int,
        total_ns: float,
        passages: list[Passage],
        heads: list[tuple[int, list[float]]],
        shares: tuple[tuple[int, int, int], ...],
        caps: "Caps",
        overhead_ns: Sequence[float] = (),
    ):
        self.edges = tuple(edges)
        self.weights = tuple(b / size for b in edge_bytes)
        self.edge_bytes = tuple(edge_bytes)
        self.edge_flits = tuple(edge_flits)
        self.size = size
        self.total_ns = total_ns
        self.first_start = [t for p in passages for t in p.first_start]
        self.last_end = [t for p in passages for t in p.last_end]
        self.heads = heads  # (path, head times relative to the leg's start) per route part
        self.shares = shares  # (channel, bytes, bursts) on the memory, if the leg reaches it
        self.reads = len(heads) > 1  # the leg around the memory of a read
        rate = min(caps.edge[e] / w for e, w in zip(self.edges, self.weights, strict=True))
        for _c, nbytes, _bursts in shares:
            rate = min(rate, caps.memory / (nbytes / size))
        self.rate = rate
        # Alone, the leg takes this latency, then its bytes at its bottleneck rate.
        self.latency_ns = max(total_ns - size / rate, 0.0)
        # Per edge, the head-only overhead of the node it reaches (none on a read's leg).
        self.overhead_ns = tuple(overhead_ns) or (0.0,) * len(self.edges)
        self.fluid: tuple | None = None  # the fluid model's timing of it (kernbench.sim.fluid)


@dataclass(frozen=True)
class Caps:
    edge: Sequence[float]  # GB/s per edge
    memory: float  # GB/s per pseudo-channel


class Planner:
    """Builds legs for one fabric (pure functions of the shapes asked for)."""

    def __init__(self, fabric: Fabric, flit_bytes: int, request_bytes: int, ns_per_mm: float):
        self.f = fabric
        self.flit = flit_bytes
        self.request = request_bytes
        self.per_byte = [1.0 / bw for bw in fabric.edge_bw_gbs]
        self.wire = [length * ns_per_mm for length in fabric.edge_length_mm]

    def stores(self, route: Path) -> bool:
        """Whether ``route`` passes a store-and-forward node."""
        sf = self.f.node_store_forward
        return any(sf[n] for n in route.nodes[1:-1])

    # -- pieces ----------------------------------------------------------------------------
    def _segments(self, route: Path) -> list[tuple[int, int]]:
        """Node index ranges between store-and-forward nodes."""
        sf = self.f.node_store_forward
        cut = [0] + [h for h in range(1, len(route.nodes) - 1) if sf[route.nodes[h]]]
        cut.append(len(route.nodes) - 1)
        return list(zip(cut, cut[1:], strict=False))

    def _chain(self, route: Path, a: int, b: int) -> Chain:
        f, edges, nodes = self.f, route.edges[a:b], route.nodes[a + 1 : b + 1]
        return Chain(
            tuple(self.per_byte[e] for e in edges),
            tuple(self.wire[e] for e in edges),
            tuple(f.node_overhead_ns[n] for n in nodes),
            tuple(f.node_store_forward[n] for n in nodes),
        )

    def _data(
        self, runs: Runs, mem: MemoryShape | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The flits of the runs, one after the other, the index of each run's first flit, and
        (with a memory) the flits' channels."""
        flit = self.flit
        addrs = np.fromiter((a for a, _n in runs), np.int64, len(runs))
        lens = np.fromiter((n for _a, n in runs), np.int64, len(runs))
        counts = -(-lens // flit)
        starts = np.zeros(len(runs), np.int64)
        np.cumsum(counts[:-1], out=starts[1:])
        sizes = np.full(int(counts.sum()), float(flit))
        sizes[starts + counts - 1] = lens - (counts - 1) * flit  # each run's last flit
        if mem is None:
            return sizes, starts, None
        # flit k of a run starts at addr + k * flit (channels_of, for every run at once)
        within = np.arange(sizes.size, dtype=np.int64) - np.repeat(starts, counts)
        flit_addr = np.repeat(addrs, counts) + flit * within
        chans = (flit_addr // mem.burst_bytes) & (mem.channels - 1)
        return sizes, starts, chans

    def _caps(self, mem: MemoryShape | None) -> Caps:
        return Caps(self.f.edge_bw_gbs, 1.0 / mem.ns_per_byte if mem else 0.0)

    def _leg(
        self,
        route: Path,
        seg: tuple[int, int],
        sizes: np.ndarray,
        path: int,
        starts: np.ndarray | None = None,
        mem: MemoryShape | None = None,
        chans: np.ndarray | None = None,
    ) -> Leg:
        """Flits all ready at the start of ``seg`` (messages starting at ``starts``); into the
        memory at its end if given."""
        a, b = seg
        passage = Passage([], [], [])
        chain = self._chain(route, a, b)
        out = through(chain, np.zeros(sizes.size), sizes, passage, starts)
        shares: tuple = ()
        if mem is not None:
            assert chans is not None
            out = memory_fifo(out, chans, sizes, mem.ns_per_byte)
            shares = _shares(chans, sizes)
        size, edges = int(sizes.sum()), list(route.edges[a:b])
        return Leg(
            edges,
            [size] * len(edges),
            [sizes.size] * len(edges),
            size,
            float(out.max()),
            [passage],
            [(path, passage.heads)],
            shares,
            self._caps(mem),
            chain.overhead_ns,
        )

    # -- the three kinds of transfer -------------------------------------------------------
    def send(self, route: Path, size: int) -> tuple[Leg, ...]:
        sizes = flit_sizes(size, self.flit)
        return tuple(self._leg(route, seg, sizes, 0) for seg in self._segments(route))

    def write(self, route: Path, runs: Runs, mem: MemoryShape) -> tuple[Leg, ...]:
        sizes, starts, chans = self._data(runs, mem)
        segs = self._segments(route)
        legs = [self._leg(route, seg, sizes, 0, starts) for seg in segs[:-1]]
        legs.append(self._leg(route, segs[-1], sizes, 0, starts, mem, chans))
        return tuple(legs)

    def read(self, request: Path, response: Path, runs: Runs, mem: MemoryShape) -> tuple[Leg, ...]:
        asks = np.full(len(runs), float(self.request))
        each = np.arange(len(runs))
        sizes, starts, _chans = self._data(runs, mem)
        req_segs, resp_segs = self._segments(request), self._segments(response)
        legs = [self._leg(request, seg, asks, 0, each) for seg in req_segs[:-1]]
        legs.append(self._around_memory(request, req_segs[-1], response, resp_segs[0], runs, mem))
        legs += [self._leg(response, seg, sizes, 1, starts) for seg in resp_segs[1:]]
        return tuple(legs)

    def _around_memory(
        self,
        request: Path,
        req_seg: tuple[int, int],
        response: Path,
        resp_seg: tuple[int, int],
        runs: Runs,
        mem: MemoryShape,
    ) -> Leg:
        """The requests' last leg, the memory and the data's first leg as one flow: each run's
        bursts queue on their channels when its request arrives; each run's data leaves in
        address order; the data of all runs crosses the response route in the order it is
        ready."""
        n = len(runs)
        asks = np.full(n, float(self.request))
        ask_pass = Passage([], [], [])
        chain = self._chain(request, *req_seg)
        arrive = through(chain, np.zeros(n), asks, ask_pass, np.arange(n))
        sizes, starts, chans = self._data(runs, mem)
        assert chans is not None
        counts = np.diff([*starts.tolist(), sizes.size])
        # Bursts queue on their channels in the order the requests arrive.
        queue = np.argsort(np.repeat(arrive, counts), kind="stable")
        done = np.empty(sizes.size)
        done[queue] = memory_fifo(
            np.repeat(arrive, counts)[queue], chans[queue], sizes[queue], mem.ns_per_byte
        )
        # A run's data leave in address order: each flit once it and those before are done.
        ready = done.copy()
        bounds = [*starts.tolist(), sizes.size]
        for j in np.flatnonzero(counts > 1).tolist():
            a, b = bounds[j], bounds[j + 1]
            ready[a:b] = np.maximum.accumulate(done[a:b])
        data_pass = Passage([], [], [])
        chain = self._chain(response, *resp_seg)
        out = through(chain, ready, sizes, data_pass, starts)
        size = int(sizes.sum())
        a, b = req_seg
        c, d = resp_seg
        req_edges, resp_edges = list(request.edges[a:b]), list(response.edges[c:d])
        return Leg(
            req_edges + resp_edges,
            [n * self.request] * len(req_edges) + [size] * len(resp_edges),
            [n] * len(req_edges) + [int(sizes.size)] * len(resp_edges),
            size,
            float(out.max()),
            [ask_pass, data_pass],
            [(0, ask_pass.heads), (1, data_pass.heads)],
            _shares(chans, sizes),
            self._caps(mem),
        )


def _shares(channel: np.ndarray, sizes: np.ndarray) -> tuple[tuple[int, int, int], ...]:
    """Per pseudo-channel a transfer uses: (channel, bytes, bursts), in channel order."""
    used, inverse = np.unique(channel, return_inverse=True)
    nbytes = np.bincount(inverse, weights=sizes)
    bursts = np.bincount(inverse)
    return tuple((int(c), int(b), int(k)) for c, b, k in zip(used, nbytes, bursts, strict=True))
