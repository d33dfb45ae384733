"""A lone transfer through a chain of FIFO stages, in closed form (MODEL.md §3).

With ``A(j, i)`` the time flit ``j`` reaches stage ``i`` and ``s(j, i)`` its service there, a
FIFO stage finishes flit ``j`` at ``D(j, i) = max(D(j-1, i), A(j, i)) + s(j, i)``. For all
flits at once this is ``D = S + cummax(A - S + s)`` with ``S`` the running sum of ``s``.

A :class:`Chain` is a path of the fabric as plain numbers: per edge its time per byte and wire
delay, per node after an edge its overhead and whether it stores and forwards. :func:`through`
pushes flits along it; :func:`memory_fifo` and :func:`memory_ready` are a controller's
pseudo-channels for a write and a read. The analytic value the probe prints
(:mod:`kernbench.runtime.analytic`) and the fluid model's fixed latencies
(:mod:`kernbench.sim.fluid`) are both evaluated here; the flit engine shares none of it.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Chain:
    """One path: edge ``h`` leaves node ``h`` and reaches node ``h + 1``."""

    ns_per_byte: tuple[float, ...]  # per edge
    wire_ns: tuple[float, ...]  # per edge
    overhead_ns: tuple[float, ...]  # per node after an edge (nodes[1:])
    store_forward: tuple[bool, ...]  # per node after an edge


@dataclass
class Passage:
    """What a lone transfer did on a chain: per node the head's arrival, per edge when its
    first flit started and its last flit ended serialization (absolute times)."""

    heads: list[float]
    first_start: list[float]
    last_end: list[float]


def flit_sizes(size_bytes: int, flit_bytes: int) -> np.ndarray:
    """Bytes of each flit of a message (the last may be shorter)."""
    n = -(-size_bytes // flit_bytes)
    sizes = np.full(n, float(flit_bytes))
    sizes[-1] = size_bytes - (n - 1) * flit_bytes
    return sizes


def fifo(arrive: np.ndarray, service: np.ndarray) -> np.ndarray:
    """Departure times of flits arriving at ``arrive`` at a FIFO server."""
    done_by = np.cumsum(service)
    return done_by + np.maximum.accumulate(arrive - done_by + service)


def through(
    chain: Chain,
    arrive: np.ndarray,
    sizes: np.ndarray,
    passage: Passage | None = None,
    starts: np.ndarray | None = None,
) -> np.ndarray:
    """When each flit has passed the last node of ``chain`` (its overhead included).

    With ``starts`` (the index of each message's first flit, ascending from 0) the flits are
    several messages back to back, each a message of its own: every node delays each
    message's head by its overhead, and an edge serves the flits of all of them in the order
    they reach it. The result keeps the flits' order of ``arrive``.
    """
    several = starts is not None and starts.size > 1
    if passage is not None:
        passage.heads.append(float(arrive[0]))
    for h, per_byte in enumerate(chain.ns_per_byte):
        service = sizes * per_byte
        if several and not _sorted(arrive):
            order = np.argsort(arrive, kind="stable")
            done = np.empty_like(arrive)
            done[order] = fifo(arrive[order], service[order])
        else:
            done = fifo(arrive, service)
        if passage is not None:
            first = int(np.argmin(done - service))
            passage.first_start.append(float(done[first] - service[first]))
            passage.last_end.append(float(done.max()))
        arrive = done + chain.wire_ns[h]
        if passage is not None:
            passage.heads.append(float(arrive[0]))
        overhead = chain.overhead_ns[h]
        if several:
            assert starts is not None
            arrive = _per_message(arrive, starts, overhead, chain.store_forward[h])
        elif chain.store_forward[h]:
            arrive = np.full_like(arrive, arrive.max() + overhead)
        elif overhead:
            head = np.zeros_like(sizes)
            head[0] = overhead
            arrive = fifo(arrive, head)
    return arrive


def _sorted(a: np.ndarray) -> bool:
    return bool((a[1:] >= a[:-1]).all())


def _per_message(
    arrive: np.ndarray, starts: np.ndarray, overhead: float, store_forward: bool
) -> np.ndarray:
    """A node's overhead on each message's head (or on all of a message, released at once
    when its tail is in), the messages independent of each other."""
    out = arrive.copy()
    bounds = [*starts.tolist(), arrive.size]
    for a, b in zip(bounds, bounds[1:], strict=False):
        if store_forward:
            out[a:b] = out[a:b].max() + overhead
        elif overhead:
            out[a] += overhead
            out[a:b] = np.maximum.accumulate(out[a:b])
    return out


def channels_of(
    addr: int, n_flits: int, flit_bytes: int, burst_bytes: int, channels: int
) -> np.ndarray:
    """The pseudo-channel of each flit of a transfer starting at ``addr``."""
    starts = addr + flit_bytes * np.arange(n_flits, dtype=np.int64)
    return (starts // burst_bytes) & (channels - 1)


def memory_fifo(
    arrive: np.ndarray, channel: np.ndarray, sizes: np.ndarray, ns_per_byte: float
) -> np.ndarray:
    """When each flit's pseudo-channel has finished it (one FIFO per channel)."""
    service = sizes * ns_per_byte
    done = np.empty_like(arrive)
    for c in np.unique(channel):
        mine = channel == c
        done[mine] = fifo(arrive[mine], service[mine])
    return done


def memory_ready(
    at_ns: float, channel: np.ndarray, sizes: np.ndarray, ns_per_byte: float
) -> np.ndarray:
    """When each flit of a read may leave the controller: all are queued at ``at_ns`` and leave
    in address order, each once it and every earlier flit are read."""
    done = memory_fifo(np.full(sizes.size, at_ns), channel, sizes, ns_per_byte)
    return np.maximum.accumulate(done)
