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
    if not several and _train(arrive, sizes):
        return _through_train(chain, float(arrive[0]), sizes, passage)
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


def _train(arrive: np.ndarray, sizes: np.ndarray) -> bool:
    """Whether the flits are one message all ready at once, equal but for the last."""
    n = sizes.size
    return (
        n > 1
        and bool(arrive[0] == arrive[-1])
        and bool((arrive == arrive[0]).all())
        and bool((sizes[:-1] == sizes[0]).all())
    )


def _through_train(
    chain: Chain, at: float, sizes: np.ndarray, passage: Passage | None
) -> np.ndarray:
    """:func:`through` for a train: flits 0 .. n - 2 of ``sizes[0]`` bytes and a last one, all
    ready at ``at``. A flit's time at a node is then the largest of a few lines in its index
    j, ``a + b j`` (a FIFO server of service ``s`` per flit turns each line into
    ``a + s + max(b, s) j``; a node's overhead on the head adds the flat line ``a_0 + o``), so
    each hop costs a few operations instead of a pass over every flit. The last flit, of its
    own size, is carried beside them."""
    n = sizes.size
    body, tail = float(sizes[0]), float(sizes[-1])
    lines = {0.0: at}  # slope -> intercept, over j = 0 .. n - 2
    last = at
    if passage is not None:
        passage.heads.append(at)
    for h, per_byte in enumerate(chain.ns_per_byte):
        s = body * per_byte
        moved: dict[float, float] = {}
        for b, a in lines.items():
            slope = b if b > s else s
            if moved.get(slope, -np.inf) < a + s:
                moved[slope] = a + s
        lines = moved
        before = max(a + b * (n - 2) for b, a in lines.items())  # flit n - 2 leaves
        last = max(last, before) + tail * per_byte
        if passage is not None:
            passage.first_start.append(max(lines.values()) - s)
            passage.last_end.append(last)
        wire = chain.wire_ns[h]
        lines = {b: a + wire for b, a in lines.items()}
        last += wire
        head = max(lines.values())
        if passage is not None:
            passage.heads.append(head)
        overhead = chain.overhead_ns[h]
        if chain.store_forward[h]:
            lines, last = {0.0: last + overhead}, last + overhead
        elif overhead:
            lines[0.0] = max(lines.get(0.0, -np.inf), head + overhead)
            last = max(last, head + overhead)
    j = np.arange(n - 1, dtype=float)
    out = np.empty(n)
    out[:-1] = np.max([a + b * j for b, a in lines.items()], axis=0)
    out[-1] = last
    return out


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
    n = arrive.size
    count = int(channel.max()) + 1
    if n >= count and np.array_equal(channel, (channel[0] + np.arange(n)) % count):
        # Flit j on channel (c0 + j) mod count: column j mod count of a table is one channel.
        rows = -(-n // count)
        a = np.full(rows * count, arrive[-1])
        t = np.zeros(rows * count)
        a[:n], t[:n] = arrive, service
        a, t = a.reshape(rows, count), t.reshape(rows, count)
        done_by = np.cumsum(t, axis=0)
        return (done_by + np.maximum.accumulate(a - done_by + t, axis=0)).reshape(-1)[:n]
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
