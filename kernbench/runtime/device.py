"""The host API, in the style of PyTorch: one :class:`Device` per SIP.

``dev.tensor(array, placement=...)`` allocates HBM and deploys the bytes host-to-device through
the simulated path; ``t.numpy()`` reads them back; ``dev.launch(kernel, grid, *args, **meta)``
starts a kernel on the device's PEs and ``dev.synchronize()`` waits for every launch. Calls
that take simulated time block the calling host program (a greenlet of the :class:`Hub`), so
several devices or ranks can run at once in one simulation.

Kernel launch (MODEL.md §3): a ``LAUNCH_BYTES`` descriptor travels host -> pcie_ep -> io_cpu;
io_cpu forwards it to the m_cpu of each target cube, each m_cpu to its target PEs' pe_cpu.
io_cpu's start barrier is the latest arrival over the target PEs (after pe_cpu's overhead), so
every PE of a launch starts at the same simulated time. Launches on one device run in order, as
on one stream: a launch starts no earlier than every earlier launch has finished on every one of
its PEs. A D2H read first waits for the device's launches. When a PE has run its
programs and its stores are committed it sends a ``LAUNCH_BYTES`` notice to io_cpu; once all
are in, io_cpu (its overhead again) sends the completion to the host. The launch is done when
that completion arrives.
"""

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from simpy.events import Event

from kernbench.core.errors import KernelError
from kernbench.lang.autotune import Autotuner
from kernbench.lang.core import Pointer
from kernbench.lang.dtypes import dtype_of
from kernbench.runtime.autotuning import launch_autotuned
from kernbench.runtime.hub import Hub
from kernbench.runtime.kernel import PeWorker
from kernbench.runtime.messages import MemoryReadMsg, MemoryWriteMsg
from kernbench.runtime.system import System
from kernbench.runtime.tensor import HbmAllocators, Placement, Tensor

LAUNCH_BYTES = 64  # bytes of a kernel descriptor and of a completion notice (ours)
MAX_MESSAGE_BYTES = 1 << 20  # H2D / D2H of a shard are cut into messages of at most this


@dataclass
class PeTiming:
    """One PE's share of a launch: when its programs started and ended (ns), and the times its
    kernels recorded with ``tl.timestamp(name)`` (the last one per name)."""

    name: str
    programs: int
    start_ns: float
    end_ns: float
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def busy_ns(self) -> float:
        return self.end_ns - self.start_ns


# Triton's launch options (``kernel[grid](..., num_stages=3)``), not arguments of the kernel.
LAUNCH_OPTIONS = ("num_stages", "num_warps", "num_ctas", "maxnreg")


@dataclass
class Launch:
    """A kernel launch; ``done`` fires when its completion reaches the host."""

    kernel_name: str
    grid: tuple[int, int, int]
    args: tuple
    meta: dict[str, Any]
    system: System
    hub: Hub
    issue_ns: float
    done: Event
    start_ns: float = 0.0
    end_ns: float = 0.0
    pes: list[PeTiming] = field(default_factory=list)
    failed: bool = False
    num_stages: int = 1
    # A kernel of tl.autotune: the configs tried before this launch and their kernel time
    # (ns; None if the config failed), in order; empty if the launch's key was tuned before.
    autotune: list[tuple[Any, float | None]] = field(default_factory=list)

    @property
    def total_ns(self) -> float:
        """From the host issuing the launch to its completion arriving back."""
        return self.end_ns - self.issue_ns


def _grid(grid: Any, meta: dict[str, Any]) -> tuple[int, int, int]:
    if callable(grid):
        grid = grid(meta)
    if isinstance(grid, int):
        grid = (grid,)
    try:
        dims = tuple(int(g) for g in grid)
    except (TypeError, ValueError):
        raise KernelError(f"launch: grid must be an int or a tuple of ints, got {grid!r}") from None
    if not 1 <= len(dims) <= 3 or any(d < 1 for d in dims):
        raise KernelError(f"launch: grid must have 1 to 3 dimensions >= 1, got {dims}")
    return (dims + (1, 1))[:3]  # type: ignore[return-value]


class Device:
    """One SIP seen from the host. Use it from a host program run by the :class:`Hub`
    (``BenchContext.run_devices``) or directly from the main program."""

    def __init__(self, system: System, hub: Hub, sip: int = 0):
        t = system.spec.topology
        if not 0 <= sip < t.sips:
            raise KernelError(f"device: no SIP {sip}; this topology has {t.sips} SIP(s)")
        self.system = system
        self.hub = hub
        self.sip = sip
        self.cubes = t.cubes
        self.pes_per_cube = system.spec.hw.cube.pes
        self.launches: list[Launch] = []
        self._pe_free: dict[tuple[int, int], Event] = {}
        self._names = 0
        allocs = getattr(system, "hbm_allocators", None)
        if allocs is None:
            allocs = system.hbm_allocators = HbmAllocators(system.topology)  # type: ignore[attr-defined]
        self.allocators: HbmAllocators = allocs

    @property
    def name(self) -> str:
        return f"sip{self.sip}"

    @property
    def now(self) -> float:
        return self.system.now

    @property
    def pe_count(self) -> int:
        return self.cubes * self.pes_per_cube

    def all_pes(self) -> list[tuple[int, int]]:
        """Every PE of the device as (cube, pe), cube-major."""
        return [(c, p) for c in range(self.cubes) for p in range(self.pes_per_cube)]

    # -- tensors ---------------------------------------------------------------------------
    def _check_pes(self, what: str, cube_ids: Sequence[int], pe_ids: Sequence[int]) -> None:
        bad_c = [c for c in cube_ids if not (isinstance(c, int) and 0 <= c < self.cubes)]
        if bad_c:
            raise KernelError(
                f"{what}: cube {bad_c[0]} does not exist; {self.name} has cubes 0-{self.cubes - 1}"
            )
        bad_p = [p for p in pe_ids if not (isinstance(p, int) and 0 <= p < self.pes_per_cube)]
        if bad_p:
            raise KernelError(
                f"{what}: PE {bad_p[0]} does not exist; each cube has PEs 0-{self.pes_per_cube - 1}"
            )

    def empty(
        self,
        shape: Sequence[int] | int,
        dtype: Any = "fp32",
        placement: Placement | str | None = None,
        name: str | None = None,
    ) -> Tensor:
        """Allocate a tensor without moving data (its bytes read as zero until written)."""
        shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
        if not shape or any(s < 1 for s in shape):
            raise KernelError(f"tensor shape must have dims >= 1, got {shape}")
        dt = dtype_of(dtype)
        pl = Placement.of(placement)
        cube_ids = pl.cube_ids if pl.cube_ids is not None else tuple(range(self.cubes))
        pe_ids = pl.pe_ids if pl.pe_ids is not None else tuple(range(self.pes_per_cube))
        self._names += 1
        name = name or f"t{self._names}"
        self._check_pes(f"placement of tensor {name!r}", cube_ids, pe_ids)
        tensor = Tensor(self, shape, dt, pl, name)
        burst = self.system.spec.hw.hbm.burst_bytes
        tensor.layout(self.sip, tuple(cube_ids), tuple(pe_ids), burst)
        addr_map = self.system.topology.address
        done: list[tuple[Any, int, int]] = []
        try:
            for shard in tensor.shards:
                nbytes = shard.span * dt.itemsize
                for cube, pe in list(shard.copies):
                    alloc = self.allocators.slice(self.sip, cube, pe)
                    what = f"tensor {name!r} rows {shard.r0}:{shard.r1} cols {shard.c0}:{shard.c1}"
                    off = alloc.alloc(nbytes, what)
                    done.append((alloc, off, nbytes))
                    shard.copies[(cube, pe)] = addr_map.hbm(self.sip, cube, pe, off)
        except Exception:
            for alloc, off, nbytes in done:
                alloc.release(off, nbytes)
            raise
        tensor._allocations = done  # type: ignore[attr-defined]
        return tensor

    def tensor(
        self,
        data: Any,
        dtype: Any = None,
        placement: Placement | str | None = None,
        name: str | None = None,
    ) -> Tensor:
        """A tensor holding ``data`` (cast to ``dtype``), deployed H2D; blocks until every
        byte is committed in HBM."""
        arr = np.asarray(data)
        dt = dtype_of(dtype if dtype is not None else arr.dtype)
        arr = np.ascontiguousarray(arr.astype(dt))
        tensor = self.empty(arr.shape, dt, placement, name)
        self._deploy(tensor, arr.reshape(tensor.rows, tensor.cols))
        return tensor

    def zeros(
        self,
        shape: Sequence[int] | int,
        dtype: Any = "fp32",
        placement: Placement | str | None = None,
        name: str | None = None,
    ) -> Tensor:
        """A tensor of zeros, written H2D (a fill pattern: the bytes move, no data is sent)."""
        tensor = self.empty(shape, dtype, placement, name)
        self._deploy(tensor, None)
        return tensor

    def free(self, tensor: Tensor) -> None:
        """Give the tensor's HBM back."""
        for alloc, off, nbytes in getattr(tensor, "_allocations", ()):
            alloc.release(off, nbytes)
        tensor._allocations = []  # type: ignore[attr-defined]
        tensor.freed = True

    def _deploy(self, tensor: Tensor, matrix: np.ndarray | None) -> None:
        events = []
        for shard in tensor.shards:
            part = None
            if matrix is not None:
                rows = matrix[shard.r0 : shard.r1, shard.c0 : shard.c1]
                if shard.row_stride != shard.width:  # padded rows: zeros in the padding
                    padded = np.zeros((shard.r1 - shard.r0, shard.row_stride), rows.dtype)
                    padded[:, : shard.width] = rows
                    rows = padded
                part = np.ascontiguousarray(rows).reshape(-1).view(np.uint8)
            nbytes = shard.span * tensor.dtype.itemsize
            for addr in shard.copies.values():
                for pos in range(0, nbytes, MAX_MESSAGE_BYTES):
                    n = min(MAX_MESSAGE_BYTES, nbytes - pos)
                    chunk = None if part is None else part[pos : pos + n]
                    events.append(self.system.submit(MemoryWriteMsg(addr + pos, n, chunk)))
        self._wait_all(events, f"H2D of tensor {tensor.name!r}")

    def read_tensor(self, tensor: Tensor) -> np.ndarray:
        """D2H: read every shard (the first copy of replicated ones) and assemble the array,
        after the device's launches have completed (stream order)."""
        self.synchronize()
        if tensor.freed:
            raise KernelError(f"tensor {tensor.name!r} was freed")
        pieces = []
        for shard in tensor.shards:
            addr = next(iter(shard.copies.values()))
            nbytes = shard.span * tensor.dtype.itemsize
            evs = [
                self.system.submit(MemoryReadMsg(addr + pos, min(MAX_MESSAGE_BYTES, nbytes - pos)))
                for pos in range(0, nbytes, MAX_MESSAGE_BYTES)
            ]
            pieces.append((shard, evs))
        out = np.zeros((tensor.rows, tensor.cols), tensor.dtype)
        for shard, evs in pieces:
            comps = self._wait_all(evs, f"D2H of tensor {tensor.name!r}")
            raw = np.concatenate([c.data for c in comps])
            rows = raw.view(tensor.dtype).reshape(shard.r1 - shard.r0, shard.row_stride)
            out[shard.r0 : shard.r1, shard.c0 : shard.c1] = rows[:, : shard.width]
        return out.reshape(tensor.shape)

    def read_rows(self, tensor: Tensor, start: int, stop: int) -> np.ndarray:
        """D2H of rows ``start:stop`` of the tensor's matrix view only (first copy of
        replicated shards), as a ``(stop - start, columns)`` array, after the device's
        launches have completed."""
        self.synchronize()
        if not 0 <= start < stop <= tensor.rows:
            raise KernelError(
                f"read_rows of tensor {tensor.name!r}: rows {start}:{stop} are outside "
                f"0:{tensor.rows}"
            )
        size = tensor.dtype.itemsize
        pieces = []
        for shard in tensor.shards:
            a, b = max(start, shard.r0), min(stop, shard.r1)
            if a >= b:
                continue
            stride = shard.row_stride
            addr = next(iter(shard.copies.values())) + (a - shard.r0) * stride * size
            ev = self.system.submit(MemoryReadMsg(addr, (b - a) * stride * size))
            pieces.append((shard, a, b, ev))
        out = np.zeros((stop - start, tensor.cols), tensor.dtype)
        comps = self._wait_all([ev for *_, ev in pieces], f"D2H of rows of {tensor.name!r}")
        for (shard, a, b, _ev), comp in zip(pieces, comps, strict=True):
            block = comp.data.view(tensor.dtype).reshape(b - a, shard.row_stride)
            out[a - start : b - start, shard.c0 : shard.c1] = block[:, : shard.width]
        return out

    def _wait_all(self, events: list[Event], what: str) -> list:
        comps = self.hub.wait(self.system.sim.env.all_of(events), f"{self.name}: {what}")
        results = [comps[ev] for ev in events]
        failed = [c for c in results if not c.ok]
        if failed:
            raise KernelError(f"{self.name}: {what} failed: {failed[0].error_message}")
        return results

    # -- kernels ---------------------------------------------------------------------------
    def launch(
        self,
        kernel: Callable[..., Any],
        grid: Any,
        *args: Any,
        pes: Sequence[tuple[int, int]] | None = None,
        **meta: Any,
    ) -> Launch:
        """Start ``kernel`` over ``grid`` on ``pes`` (default: every PE of the device, as
        (cube, pe) pairs). Program ``k`` (grid points in row-major order with axis 0 fastest)
        runs on ``pes[k % len(pes)]``; a PE runs its programs one after the other (in waves
        when the grid exceeds the PEs). Returns at once; ``synchronize()`` waits.

        A kernel made by ``tl.autotune`` first runs its configs to completion, one after the
        other, if the launch's key is new (kernbench.runtime.autotuning); then it returns at
        once as any launch."""
        if isinstance(kernel, Autotuner):
            return launch_autotuned(self, kernel, grid, args, pes, meta)
        name = getattr(kernel, "__name__", repr(kernel))
        if not callable(kernel):
            raise KernelError(f"launch: {name} is not a function")
        g = _grid(grid, meta)
        targets = list(pes) if pes is not None else self.all_pes()
        if not targets:
            raise KernelError(f"launch of {name}: no PEs to run on")
        for tgt in targets:
            if not (isinstance(tgt, tuple) and len(tgt) == 2):
                raise KernelError(f"launch of {name}: pes must be (cube, pe) pairs, got {tgt!r}")
        self._check_pes(f"launch of {name}", [c for c, _ in targets], [p for _, p in targets])
        if len(set(targets)) != len(targets):
            raise KernelError(f"launch of {name}: a PE is listed twice in pes")
        kargs = tuple(Pointer(a) if isinstance(a, Tensor) else a for a in args)
        meta, num_stages = self._launch_options(name, kernel, meta)
        try:
            inspect.signature(kernel).bind(*kargs, **meta)
        except TypeError as exc:
            raise KernelError(f"launch of {name}: {exc}") from None
        for a in args:
            if isinstance(a, Tensor) and a.device is not self:
                raise KernelError(
                    f"launch of {name} on {self.name}: tensor {a.name!r} lives on {a.device.name}"  # type: ignore[attr-defined]
                )
        n_programs = g[0] * g[1] * g[2]
        pids = [(i % g[0], (i // g[0]) % g[1], i // (g[0] * g[1])) for i in range(n_programs)]
        used = targets[: min(len(targets), n_programs)]
        share: dict[tuple[int, int], list] = {t: [] for t in used}
        for k, pid in enumerate(pids):
            share[used[k % len(used)]].append(pid)
        launch = Launch(
            name, g, kargs, dict(meta), self.system, self.hub, self.now, self.system.sim.event(),
            num_stages=num_stages,
        )  # fmt: skip
        self.launches.append(launch)
        self._start(launch, kernel, share)
        return launch

    def _launch_options(
        self, name: str, kernel: Callable[..., Any], meta: dict[str, Any]
    ) -> tuple[dict[str, Any], int]:
        """Split Triton's launch options from the kernel's arguments: ``num_stages`` (default
        ``sim.num_stages``) sets the PE pipeline's depth; ``num_warps``, ``num_ctas`` and
        ``maxnreg`` are accepted and have no effect. An option the kernel also takes as a
        parameter (e.g. ``num_stages: tl.constexpr``) is passed on to it as well."""
        params = inspect.signature(kernel).parameters
        num_stages = meta.get("num_stages", self.system.spec.sim.num_stages)
        if isinstance(num_stages, bool) or not isinstance(num_stages, int) or num_stages < 1:
            raise KernelError(
                f"launch of {name}: num_stages must be a positive integer, got {num_stages!r}"
            )
        kept = {k: v for k, v in meta.items() if k not in LAUNCH_OPTIONS or k in params}
        return kept, num_stages

    def synchronize(self) -> None:
        """Block until every launch issued so far has completed."""
        pending = [launch.done for launch in self.launches if not launch.done.processed]
        if pending:
            self.hub.wait(self.system.sim.env.all_of(pending), f"{self.name}: synchronize")

    def _start(self, launch: Launch, kernel: Callable[..., Any], share: dict) -> None:
        system, topo, sim = self.system, self.system.topology, self.system.sim
        spec = system.spec.hw
        host = topo.node("host")
        io_cpu = topo.node(f"sip{self.sip}.io.cpu")
        by_cube: dict[int, list[int]] = {}
        for cube, pe in share:
            by_cube.setdefault(cube, []).append(pe)
        arrivals: list[Event] = []
        previous = list(self._pe_free.values())  # stream order: every earlier launch
        finished = {t: sim.event() for t in share}
        self._pe_free.update(finished)

        at_io = system.send(host, io_cpu, LAUNCH_BYTES, self.now)

        def fan_out(_ev: Event) -> None:
            t_io = system.now + spec.io.io_cpu_overhead_ns
            for cube, pes in by_cube.items():
                m_cpu = topo.node(f"sip{self.sip}.cube{cube}.m_cpu")
                at_m = system.send(io_cpu, m_cpu, LAUNCH_BYTES, t_io)
                at_m.callbacks.append(lambda _e, c=cube, ps=pes, m=m_cpu: to_pes(c, ps, m))

        def to_pes(cube: int, pes: list[int], m_cpu: Any) -> None:
            t_m = system.now + spec.cube.m_cpu_overhead_ns
            for pe in pes:
                ev = system.send(m_cpu, topo.pe_dma(self.sip, cube, pe), LAUNCH_BYTES, t_m)
                arrivals.append(ev)
                if len(arrivals) == len(share):
                    sim.env.all_of(arrivals + previous).callbacks.append(barrier)

        def barrier(_ev: Event) -> None:
            start = max(
                [system.now]
                + [ev.value + spec.pe.cpu_overhead_ns for ev in arrivals]
                + [ev.value for ev in previous]
            )
            launch.start_ns = start
            sim.call_at(start, begin)

        def guarded(worker: PeWorker, programs: list) -> None:
            try:
                worker.run(programs, kernel)
            except BaseException:
                # The error goes to whoever runs the simulation; the launch is over (failed) and
                # its PEs are free, so the device stays usable after the error is handled.
                launch.failed = True
                ev = finished[(worker.cube, worker.index)]
                if not ev.triggered:
                    ev.succeed(max(worker.t, system.now))
                if not launch.done.triggered:
                    launch.end_ns = system.now
                    launch.done.succeed(launch)
                raise

        def begin() -> None:
            workers = []
            for (cube, pe), programs in share.items():
                worker = PeWorker(
                    launch, system.pe(self.sip, cube, pe), self.sip, cube, pe,
                    topo.pe_dma(self.sip, cube, pe),
                )  # fmt: skip
                workers.append(worker)
                task = self.hub.spawn(
                    guarded, worker, programs, name=f"{launch.kernel_name}@{worker.pe.name}",
                    kernel_program=None,
                )  # fmt: skip
                task.done.callbacks.append(lambda _e, w=worker: pe_done(w))
            launch._workers = workers  # type: ignore[attr-defined]

        notices: list[Event] = []
        order: dict[str, tuple[int, int]] = {}

        def pe_done(worker: PeWorker) -> None:
            launch.pes.append(
                PeTiming(
                    worker.pe.name, worker.programs, worker.start_ns, worker.end_ns, worker.marks
                )
            )
            order[worker.pe.name] = (worker.cube, worker.index)
            ev = system.send(worker.node, io_cpu, LAUNCH_BYTES, worker.end_ns)
            finished[(worker.cube, worker.index)].succeed(worker.end_ns)
            notices.append(ev)
            if len(notices) == len(share):
                sim.env.all_of(notices).callbacks.append(complete)

        def complete(_ev: Event) -> None:
            t_io = system.now + spec.io.io_cpu_overhead_ns
            back = system.send(io_cpu, host, LAUNCH_BYTES, t_io)
            back.callbacks.append(finish)

        def finish(ev: Event) -> None:
            if launch.done.triggered:  # failed earlier
                return
            launch.end_ns = ev.value
            launch.pes.sort(key=lambda p: order[p.name])
            launch.done.succeed(launch)

        at_io.callbacks.append(fan_out)
