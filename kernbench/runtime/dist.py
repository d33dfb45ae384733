"""Ranks in the style of ``torch.multiprocessing.spawn`` and ``torch.distributed``.

``spawn(fn, nprocs, args, system=...)`` runs ``fn(rank, *args)`` once per rank as cooperative
greenlets in one simulation; rank ``r`` drives SIP ``r`` (its :class:`Device`). Inside ``fn``:
``init_process_group()``, ``get_rank()``, ``get_world_size()``, ``device()``,
``all_reduce(tensor)`` and ``barrier()``. An exception in one rank stops the simulation and
surfaces as one :class:`KernelError` naming the rank; a deadlock (every rank waiting, no event
pending) is reported by the hub with who waits on what.

``all_reduce`` sums a tensor over the ranks in place: each rank launches a kernel on PE 0 of
cube 0 that loads the tensor in pieces of at most ``ALLREDUCE_PIECE_BYTES``, runs a ring
all-reduce with the other ranks' PE 0 of cube 0 over IPCQ, and stores the sums back.
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
ROOT_PE = (0, 0)  # (cube, pe) of a rank that runs its part of all_reduce


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
def rank_allreduce_kernel(t_ptr: Any, numel: int, piece: int, ring: tuple, me: int) -> None:
    """Ring all-reduce of a whole tensor among one PE per rank, ``piece`` elements at a time."""
    p = len(ring)
    for lo in range(0, numel, piece):
        n = min(piece, numel - lo)
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
    ring = tuple((r, *ROOT_PE) for r in range(g.world_size))
    piece = max(g.world_size, ALLREDUCE_PIECE_BYTES // tensor.dtype.itemsize)
    dev.launch(
        rank_allreduce_kernel, (1,), tensor, tensor.numel, piece, ring, ctx.rank, pes=[ROOT_PE]
    )
    dev.synchronize()
