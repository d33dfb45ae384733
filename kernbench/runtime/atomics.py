"""Atomics (``tl.atomic_*``): a read-modify-write at the memory of the elements a pointer
block points at, serialised with every other atomic on the same elements (docs/kernels.md,
"Block pointers and atomics"); and :func:`address_runs`, which cuts a block's element
addresses into the runs of its DMAs (loads, stores and atomics alike)."""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from simpy.events import Event

from kernbench.lang.core import Pointer
from kernbench.runtime.system import DmaRun, System

if TYPE_CHECKING:
    from kernbench.runtime.kernel import PeWorker


def address_runs(addrs: np.ndarray, itemsize: int, segment: np.ndarray) -> list[tuple[int, int]]:
    """Split sorted unique element addresses into maximal contiguous runs that stay inside one
    HBM slice (``segment`` names each address's slice): ``(first index, count)`` pairs."""
    if addrs.size == 0:
        return []
    breaks = np.flatnonzero((np.diff(addrs) != itemsize) | (np.diff(segment) != 0)) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [addrs.size]))
    return list(zip(starts.tolist(), (ends - starts).tolist(), strict=True))


def atomic(
    worker: "PeWorker",
    name: str,
    ptr: Pointer,
    mask: np.ndarray | None,
    release: bool,
    update: Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray],
) -> np.ndarray:
    """A read-modify-write at the memory of the elements ``ptr`` points at where ``mask``:
    dispatch; with ``release``, wait until this PE's posted stores have committed; wait
    until no other atomic holds any of the elements; one DMA read of their address runs
    (as a load: the old values are written to TCM); ``update`` computes the new values at
    the memory; the operand bytes are read from TCM and one DMA write of the same runs
    commits the new values. The call returns when the write has committed, with each
    lane's old value (0 where masked off)."""
    tensor, idx, valid = worker._elements(name, ptr, mask)
    worker._writable(name, tensor)
    pe = worker.pe
    t = pe.dispatch(worker.t)
    shape = ptr.offsets.shape
    out = np.zeros(int(np.prod(shape)), tensor.dtype)
    if idx.size == 0:
        worker.t = t
        return out.reshape(shape)
    if release:
        for ev in worker.pending:
            worker.hub.wait(ev, f"{worker.where}: tl.{name} to release this PE's stores")
        worker.pending = [ev for ev in worker.pending if ev.callbacks is not None]
    t = max(t, worker.system.now)
    uniq, inverse, runs = worker.runs(tensor, idx)
    held = worker.hub.wait(
        _reserve(worker.system, uniq, t),
        f"{worker.where}: tl.{name} for elements another atomic holds",
    )
    size = tensor.dtype.itemsize
    read = [(int(uniq[i]), n * size, None) for i, n in runs]
    ev = worker.system.dma(worker.node, "read", read, worker.system.now)
    grant, completions = worker.hub.wait(ev, f"{worker.where}: tl.{name} (read)")
    current = np.concatenate([c.data for c in completions]).view(tensor.dtype).copy()
    nbytes = current.nbytes
    tcm_end = pe.tcm_write.serve(grant, nbytes / pe.spec.tcm_write_bw_gbs, nbytes)
    old = update(current, inverse.reshape(-1), valid)
    raw = current.view(np.uint8)
    t = pe.tcm_read.serve(worker.system.now, nbytes / pe.spec.tcm_read_bw_gbs, nbytes)
    write: list[DmaRun] = [
        (int(uniq[i]), n * size, raw[i * size : (i + n) * size]) for i, n in runs
    ]
    worker.hub.wait(
        worker.system.dma(worker.node, "write", write, t), f"{worker.where}: tl.{name} (write)"
    )
    _release(worker.system, uniq, held)
    now = worker.system.now
    worker.t = now if now > tcm_end else tcm_end
    if valid is None:
        out[:] = old
    else:
        out[valid] = old
    return out.reshape(shape)


def _reserve(system: System, addrs: np.ndarray, at_ns: float) -> Event:
    """At ``at_ns``, wait until no atomic holds any of ``addrs``, then hold them all: the event
    succeeds with the event that :func:`_release` fires. Atomics on shared elements thus
    follow one another in simulated time, each from its read to its write's commit."""
    held: dict[int, Event] = system.extensions.setdefault("atomics", {})
    keys = addrs.tolist()
    granted = system.sim.event()

    def attempt(_ev: Any = None) -> None:
        busy = next((held[a] for a in keys if a in held), None)
        if busy is not None:
            busy.callbacks.append(attempt)
            return
        mine = system.sim.event()
        for a in keys:
            held[a] = mine
        granted.succeed(mine)

    system.sim.call_at(at_ns, attempt)
    return granted


def _release(system: System, addrs: np.ndarray, mine: Event) -> None:
    held: dict[int, Event] = system.extensions["atomics"]
    for a in addrs.tolist():
        del held[a]
    mine.succeed()
