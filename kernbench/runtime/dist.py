"""Ranks in the style of ``torch.multiprocessing.spawn`` and ``torch.distributed``.

``spawn(fn, nprocs, args, system=...)`` runs ``fn(rank, *args)`` once per rank as cooperative
greenlets in one simulation; rank ``r`` drives SIP ``r`` (its :class:`Device`). Inside ``fn``:
``init_process_group()``, ``get_rank()``, ``get_world_size()``, ``device()``,
``all_reduce(tensor)`` and ``barrier()``. An exception in one rank stops the simulation and
surfaces as one :class:`KernelError` naming the rank; a deadlock (every rank waiting, no event
pending) is reported by the hub with who waits on what.

``all_reduce`` sums a tensor over the ranks in place, in parallel rings: the tensor is cut
into up to one range per PE of cube 0 (each at least ``ALLREDUCE_RING_BYTES``), and PE ``i``
of cube 0 of every rank runs a ring all-reduce of range ``i`` with the other ranks' PE ``i``
over IPCQ, loading it in pieces of at most ``ALLREDUCE_PIECE_BYTES`` and storing the sums
back. The rings share the ranks' switch ports; splitting the work over the PEs takes the
per-PE load, add and IPCQ costs of one ring off the critical path.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import greenlet
from simpy.events import Event

import kernbench.lang as tl
from kernbench.core.errors import KernbenchError, KernelError
from kernbench.runtime.collectives import chunk_bounds, ring_all_gather, ring_reduce_scatter
from kernbench.runtime.device import Device
from kernbench.runtime.hub import Hub
from kernbench.runtime.system import System
from kernbench.runtime.tensor import Tensor

ALLREDUCE_PIECE_BYTES = 1 << 20
ALLREDUCE_RING_BYTES = 4096  # least bytes of the tensor a ring of all_reduce takes
RING_CUBE = 0  # the cube whose PEs run a rank's rings of all_reduce


@dataclass
class Group:
    """The ranks of one ``spawn``: their devices and the state of the current barrier."""

    world_size: int
    devices: list[Device]
    initialized: set[int] = field(default_factory=set)
    barrier_waiting: list[int] = field(default_factory=list)
    barrier_event: Event | None = None
    tp_size: int | None = None


@dataclass
class RankContext:
    rank: int
    group: Group


class RankError(KernelError):
    """An exception raised in one rank."""


def _ctx(what: str) -> RankContext:
    ctx = getattr(greenlet.getcurrent(), "kernbench_rank", None)
    if ctx is None:
        raise KernelError(f"{what} must be called by a rank started with spawn(fn, nprocs)")
    return ctx


def spawn(
    fn: Callable[..., Any],
    nprocs: int,
    args: tuple = (),
    *,
    system: System,
    hub: Hub | None = None,
) -> list[Any]:
    """Run ``fn(rank, *args)`` for ranks ``0..nprocs-1`` on SIPs ``0..nprocs-1`` of ``system``
    and return what each returned."""
    sips = system.spec.topology.sips
    if not isinstance(nprocs, int) or not 1 <= nprocs <= sips:
        raise KernelError(
            f"spawn: world size {nprocs!r} needs as many SIPs; this topology has {sips} "
            f"(topology.sips); use 1..{sips}"
        )
    hub = hub or Hub(system.sim)
    group = Group(nprocs, [Device(system, hub, r) for r in range(nprocs)])

    def run_rank(rank: int) -> Any:
        try:
            return fn(rank, *args)
        except RankError:
            raise
        except KernbenchError as exc:
            raise RankError(f"rank {rank}: {exc}") from exc
        except Exception as exc:
            raise RankError(f"rank {rank} raised {type(exc).__name__}: {exc}") from exc

    tasks = [
        hub.spawn(run_rank, r, name=f"rank {r}", kernbench_rank=RankContext(r, group))
        for r in range(nprocs)
    ]
    hub.run(system.sim.env.all_of([t.done for t in tasks]))
    return [t.value for t in tasks]


def init_process_group(backend: str = "ipcq", **_kwargs: Any) -> None:
    """Join the group of this spawn (the backend is IPCQ; other names are refused)."""
    ctx = _ctx("init_process_group")
    if backend != "ipcq":
        raise KernelError(f"init_process_group: backend {backend!r} is not available; use 'ipcq'")
    ctx.group.initialized.add(ctx.rank)


def _joined(what: str) -> RankContext:
    ctx = _ctx(what)
    if ctx.rank not in ctx.group.initialized:
        raise KernelError(f"{what}: call init_process_group() first (rank {ctx.rank})")
    return ctx


def get_rank() -> int:
    return _joined("get_rank").rank


def get_world_size() -> int:
    return _joined("get_world_size").group.world_size


def device() -> Device:
    """This rank's device (SIP ``rank``)."""
    ctx = _ctx("device")
    return ctx.group.devices[ctx.rank]


def barrier() -> None:
    """Wait until every rank has reached the barrier (each first synchronizes its device)."""
    ctx = _joined("barrier")
    g = ctx.group
    dev = g.devices[ctx.rank]
    dev.synchronize()
    if g.barrier_event is None:
        g.barrier_event = dev.system.sim.event()
    ev = g.barrier_event
    g.barrier_waiting.append(ctx.rank)
    if len(g.barrier_waiting) == g.world_size:
        g.barrier_waiting = []
        g.barrier_event = None
        ev.succeed()
        return
    dev.hub.wait(
        ev,
        f"rank {ctx.rank}: dist.barrier ({len(g.barrier_waiting)} of {g.world_size} ranks in)",
    )


@tl.jit
def rank_allreduce_kernel(t_ptr: Any, numel: int, piece: int, rings: tuple, me: int) -> None:
    """Program ``i``: ring all-reduce of the ``i``-th of ``len(rings)`` ranges of a tensor among
    the PEs of ``rings[i]`` (one per rank), ``piece`` elements at a time."""
    i = tl.program_id(axis=0)
    ring = rings[i]
    p = len(ring)
    first, end = chunk_bounds(numel, len(rings))[i]
    for lo in range(first, end, piece):
        n = min(piece, end - lo)
        data = tl.load(t_ptr + lo + tl.arange(0, n))
        chunks = [data[a:b] for a, b in chunk_bounds(n, p)]
        ring_reduce_scatter(chunks, ring, me)
        ring_all_gather(chunks, ring, me)
        for (a, b), c in zip(chunk_bounds(n, p), chunks, strict=True):
            if b > a:
                tl.store(t_ptr + lo + a + tl.arange(0, b - a), c)


def all_reduce(tensor: Tensor, op: str = "sum") -> None:
    """Sum ``tensor`` over the ranks, in place (every rank passes its own tensor of the same
    shape and dtype). Blocks until this rank's part is done."""
    ctx = _joined("all_reduce")
    if op != "sum":
        raise KernelError(f"all_reduce: op {op!r} is not available; use 'sum'")
    g = ctx.group
    dev = g.devices[ctx.rank]
    if tensor.device is not dev:
        raise KernelError(
            f"all_reduce on rank {ctx.rank}: tensor {tensor.name!r} is not on its device"
        )
    if g.world_size == 1:
        return
    item = tensor.dtype.itemsize
    n_rings = max(1, min(dev.pes_per_cube, tensor.numel * item // ALLREDUCE_RING_BYTES))
    rings = tuple(tuple((r, RING_CUBE, i) for r in range(g.world_size)) for i in range(n_rings))
    piece = max(g.world_size, ALLREDUCE_PIECE_BYTES // item)
    dev.launch(
        rank_allreduce_kernel, (n_rings,), tensor, tensor.numel, piece, rings, ctx.rank,
        pes=[(RING_CUBE, i) for i in range(n_rings)],
    )  # fmt: skip
    dev.synchronize()
