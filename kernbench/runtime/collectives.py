"""Collectives written as kernels over IPCQ ``tl.send`` / ``tl.recv`` (docs/collectives.md).

The building blocks are device functions: plain Python functions called from inside a kernel,
operating on a list of chunk blocks. ``ring_reduce_scatter`` + ``ring_all_gather`` is the ring
all-reduce: ``2(p-1)`` steps, each moving one chunk of ``S/p`` to the right neighbour. The
hierarchical all-reduce of a multi-SIP system runs per chunk *lane* (chunk ``j`` belongs to PE
``j`` of each cube):

1. reduce-scatter on the ring of the PEs of each cube;
2. reduce each lane along the chain of cubes (snake order over the mesh) to the root cube 0;
3. ring all-reduce of each lane over the SIPs' root cubes (over the switch);
4. broadcast each lane back along the chain of cubes;
5. all-gather on the ring of the PEs of each cube.
"""

from collections.abc import Sequence
from typing import Any

import kernbench.lang as tl

PeId = tuple[int, int, int]


def snake(rows: int, cols: int) -> list[int]:
    """Indices of a rows x cols grid in boustrophedon order: consecutive ones are neighbours,
    and for an even number of rows (or one row) the last is next to the first."""
    order = []
    for r in range(rows):
        line = [r * cols + c for c in range(cols)]
        order += line if r % 2 == 0 else line[::-1]
    return order


def cube_ring(rows: int, cols: int) -> list[int]:
    """A ring of the PEs of a rows x cols cube whose every step is a neighbour hop when it can
    be: column 0 is kept for the way back."""
    if rows == 1 or cols == 1:
        return list(range(rows * cols))
    order = [c for c in range(cols)]
    for r in range(1, rows):
        line = [r * cols + c for c in range(1, cols)]
        order += line[::-1] if r % 2 == 1 else line
    order += [r * cols for r in range(rows - 1, 0, -1)]
    return order


def chunk_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``numpy.array_split`` bounds of ``n`` elements into ``parts`` chunks."""
    q, r = divmod(n, parts)
    out, lo = [], 0
    for i in range(parts):
        hi = lo + q + (1 if i < r else 0)
        out.append((lo, hi))
        lo = hi
    return out


# -- device functions ----------------------------------------------------------------------
def ring_reduce_scatter(chunks: list[Any], ring: Sequence[PeId], me: int) -> None:
    """After ``p-1`` steps, ``chunks[(me + 1) % p]`` holds the sum over the ring."""
    p = len(ring)
    right, left = ring[(me + 1) % p], ring[(me - 1) % p]
    for step in range(p - 1):
        tl.send(chunks[(me - step) % p], right)
        idx = (me - step - 1) % p
        chunks[idx] = chunks[idx] + tl.recv(left)


def ring_all_gather(chunks: list[Any], ring: Sequence[PeId], me: int) -> None:
    """Starting from reduced ``chunks[(me + 1) % p]``, every chunk ends up everywhere."""
    p = len(ring)
    right, left = ring[(me + 1) % p], ring[(me - 1) % p]
    for step in range(p - 1):
        tl.send(chunks[(me + 1 - step) % p], right)
        chunks[(me - step) % p] = tl.recv(left)


def chain_reduce(value: Any, chain: Sequence[PeId], me: int) -> Any:
    """Sum ``value`` along ``chain`` towards ``chain[0]``; returns the total at ``chain[0]``."""
    if me + 1 < len(chain):
        value = value + tl.recv(chain[me + 1])
    if me > 0:
        tl.send(value, chain[me - 1])
    return value


def chain_broadcast(value: Any, chain: Sequence[PeId], me: int) -> Any:
    """``chain[0]``'s value passed down the chain; every member returns it."""
    if me > 0:
        value = tl.recv(chain[me - 1])
    if me + 1 < len(chain):
        tl.send(value, chain[me + 1])
    return value


def _load_chunks(x_ptr: Any, row: int, n: int, parts: int) -> list[Any]:
    data = tl.load(x_ptr + row * n + tl.arange(0, n))
    return [data[lo:hi] for lo, hi in chunk_bounds(n, parts)]


def _store_chunks(out_ptr: Any, row: int, n: int, chunks: list[Any]) -> None:
    for (lo, hi), c in zip(chunk_bounds(n, len(chunks)), chunks, strict=True):
        if hi > lo:
            tl.store(out_ptr + row * n + lo + tl.arange(0, hi - lo), c)


# -- kernels -------------------------------------------------------------------------------
@tl.jit
def ring_allreduce_kernel(
    x_ptr: Any, out_ptr: Any, n: int, ring: tuple, STEPS: tl.constexpr = True
) -> None:
    """Program ``k`` is ring member ``k``: it all-reduces row ``k`` of ``x`` (``n`` elements)
    with the other members and writes the sum to row ``k`` of ``out``. ``STEPS=False`` only
    loads and stores (the baseline that isolates the communication time)."""
    me = tl.program_id(0)
    chunks = _load_chunks(x_ptr, me, n, len(ring))
    if STEPS:
        ring_reduce_scatter(chunks, ring, me)
        ring_all_gather(chunks, ring, me)
    _store_chunks(out_ptr, me, n, chunks)


def hierarchical_allreduce(
    chunks: list[Any], pe_ring: Sequence[int], cube_chain: Sequence[int], sips: int
) -> None:
    """The five stages of the module docstring on this PE's ``chunks`` (one per PE of a cube),
    run by every PE of every SIP at once; afterwards every chunk holds the global sum."""
    sip, cube, pe = tl.pe_id()
    pes = len(pe_ring)
    me = pe_ring.index(pe)
    ring = [(sip, cube, p) for p in pe_ring]
    if pes > 1:
        ring_reduce_scatter(chunks, ring, me)
    lane = (me + 1) % pes
    pos = cube_chain.index(cube)
    chain = [(sip, c, pe) for c in cube_chain]
    value = chain_reduce(chunks[lane], chain, pos)
    if pos == 0 and sips > 1:
        parts = _split(value, sips)
        sip_ring = [(s, cube_chain[0], pe) for s in range(sips)]
        ring_reduce_scatter(parts, sip_ring, sip)
        ring_all_gather(parts, sip_ring, sip)
        value = _join(parts)
    chunks[lane] = chain_broadcast(value, chain, pos)
    if pes > 1:
        ring_all_gather(chunks, ring, me)


@tl.jit
def hierarchical_allreduce_kernel(
    x_ptr: Any,
    out_ptr: Any,
    n: int,
    pe_ring: tuple,
    cube_chain: tuple,
    sips: int,
    STEPS: tl.constexpr = True,
) -> None:
    """One program per PE of a SIP (row ``cube * pes + pe`` of ``x`` and ``out``); every SIP
    runs it at once and the rows of all PEs of all SIPs are summed (module docstring).
    ``STEPS=False`` only loads and stores."""
    _sip, cube, pe = tl.pe_id()
    row = cube * len(pe_ring) + pe
    chunks = _load_chunks(x_ptr, row, n, len(pe_ring))
    if STEPS:
        hierarchical_allreduce(chunks, pe_ring, cube_chain, sips)
    _store_chunks(out_ptr, row, n, chunks)


def _split(value: Any, parts: int) -> list[Any]:
    return [value[lo:hi] for lo, hi in chunk_bounds(value.shape[0], parts)]


def _join(parts: list[Any]) -> Any:
    out = parts[0]
    for p in parts[1:]:
        out = tl.cat(out, p)
    return out
