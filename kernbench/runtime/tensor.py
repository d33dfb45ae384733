"""Device tensors: placements over cubes and PEs, HBM allocation and element addressing.

A tensor is viewed as a matrix: rows are all leading axes, columns the last axis (a 1-D tensor
is one column). A :class:`Placement` spreads it in two levels: first over the listed cubes,
then inside each cube over the listed PEs; each level either replicates the part it gets or
splits it into contiguous row or column chunks (NumPy ``array_split`` sizes: the first chunks
are one longer). Every resulting sub-matrix (a shard) is stored row-major in the HBM slice of
its PE. A PE reading a replicated shard uses its own copy, else the copy in its cube, else the
first one (docs/kernels.md).
"""

from dataclasses import dataclass
from math import prod

import numpy as np

from kernbench.core.errors import AllocationError, ConfigError, KernelError
from kernbench.core.units import fmt_bytes
from kernbench.topology import Topology

POLICIES = ("replicate", "row", "col")


@dataclass(frozen=True)
class Placement:
    """How a tensor spreads over ``cube_ids`` (default: every cube of the device) and, inside
    each, over ``pe_ids`` (default: every PE of the cube). ``cubes`` and ``pes`` are each
    ``replicate``, ``row`` or ``col``.

    ``pad`` gives each shard's rows a pitch of an odd number of HBM bursts (rows of at least a
    burst): a row-major matrix whose rows are a power-of-two number of bursts puts a column of
    them on one pseudo-channel (``(addr >> log2(burst)) & (channels - 1)``), so a tile's rows
    would queue on one channel; with an odd pitch consecutive rows go to consecutive channels.
    It costs less than a burst per row of HBM (the leading-dimension padding performance
    engineers use on power-of-two matrices)."""

    cubes: str = "replicate"
    pes: str = "replicate"
    cube_ids: tuple[int, ...] | None = None
    pe_ids: tuple[int, ...] | None = None
    pad: bool = False

    def __post_init__(self) -> None:
        for key in ("cubes", "pes"):
            if getattr(self, key) not in POLICIES:
                raise ConfigError(
                    f"placement.{key}",
                    f"unknown policy {getattr(self, key)!r}; use one of {', '.join(POLICIES)}",
                )
        for key in ("cube_ids", "pe_ids"):
            ids = getattr(self, key)
            if ids is None:
                continue
            ids = tuple(ids)
            # An empty list would place nothing (or divide by zero); a repeated id would put
            # two shards of one tensor in one slice.
            if not ids or len(set(ids)) != len(ids):
                raise ConfigError(
                    f"placement.{key}",
                    f"must list distinct ids, at least one, or be None (all), got {ids!r}",
                )
            object.__setattr__(self, key, ids)

    @classmethod
    def single(cls, cube: int = 0, pe: int = 0) -> "Placement":
        """The whole tensor in one HBM slice."""
        return cls(cube_ids=(cube,), pe_ids=(pe,))

    @classmethod
    def of(cls, value: "Placement | str | None") -> "Placement":
        """``None`` -> one slice (cube 0, PE 0); ``"row"``, ``"col"``, ``"replicate"`` -> that
        policy at both levels over every PE of the device."""
        if value is None:
            return cls.single()
        if isinstance(value, Placement):
            return value
        if value in POLICIES:
            return cls(value, value)
        raise ConfigError(
            "placement", f"expected a Placement or one of {', '.join(POLICIES)}, got {value!r}"
        )


def _chunks(n: int, parts: int) -> list[tuple[int, int]]:
    q, r = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        size = q + (1 if i < r else 0)
        out.append((start, start + size))
        start += size
    return out


@dataclass
class Shard:
    """Rows ``r0:r1`` and columns ``c0:c1`` of the matrix view, with one copy per listed PE
    (``copies`` maps (cube, pe) -> address of element (r0, c0))."""

    r0: int
    r1: int
    c0: int
    c1: int
    copies: dict[tuple[int, int], int]
    pitch: int = 0  # elements from a row to the next in memory; 0: the width (no padding)

    @property
    def elements(self) -> int:
        return (self.r1 - self.r0) * (self.c1 - self.c0)

    @property
    def width(self) -> int:
        return self.c1 - self.c0

    @property
    def row_stride(self) -> int:
        return self.pitch or self.width

    @property
    def span(self) -> int:
        """Elements the shard occupies in memory, padding included."""
        return (self.r1 - self.r0) * self.row_stride


def odd_pitch(width: int, itemsize: int, burst: int) -> int:
    """The row pitch (elements) of a padded shard: rows of at least a burst are rounded up to
    an odd number of bursts; narrower rows keep their width."""
    row = width * itemsize
    if row < burst or burst % itemsize:
        return width
    bursts = -(-row // burst)
    bursts += 1 - bursts % 2
    return bursts * burst // itemsize


class SliceAllocator:
    """First-fit allocation in one HBM slice, aligned to the HBM burst."""

    def __init__(self, name: str, capacity: int, align: int):
        self.name = name
        self.capacity = capacity
        self.align = align
        self.free: list[tuple[int, int]] = [(0, capacity)]  # (offset, size), sorted
        self.used = 0

    def alloc(self, nbytes: int, what: str) -> int:
        size = -(-nbytes // self.align) * self.align
        for i, (off, room) in enumerate(self.free):
            if room >= size:
                if room == size:
                    del self.free[i]
                else:
                    self.free[i] = (off + size, room - size)
                self.used += size
                return off
        raise AllocationError(
            f"{what} ({fmt_bytes(nbytes)}) does not fit the HBM slice {self.name}: "
            f"{fmt_bytes(self.capacity)} capacity, {fmt_bytes(self.capacity - self.used)} free "
            "(hw.hbm.slice_bytes)"
        )

    def release(self, offset: int, nbytes: int) -> None:
        size = -(-nbytes // self.align) * self.align
        self.used -= size
        self.free.append((offset, size))
        self.free.sort()
        merged: list[tuple[int, int]] = []
        for off, room in self.free:
            if merged and merged[-1][0] + merged[-1][1] == off:
                merged[-1] = (merged[-1][0], merged[-1][1] + room)
            else:
                merged.append((off, room))
        self.free = merged


class HbmAllocators:
    """One :class:`SliceAllocator` per HBM slice of a system, created on first use."""

    def __init__(self, topology: Topology):
        self.topology = topology
        self._slices: dict[tuple[int, int, int], SliceAllocator] = {}

    def slice(self, sip: int, cube: int, pe: int) -> SliceAllocator:
        key = (sip, cube, pe)
        alloc = self._slices.get(key)
        if alloc is None:
            hbm = self.topology.spec.hw.hbm
            alloc = self._slices[key] = SliceAllocator(
                f"sip{sip}.cube{cube}.pe{pe}", hbm.slice_bytes, hbm.burst_bytes
            )
        return alloc


class Tensor:
    """A tensor in device memory. Create it with a :class:`~kernbench.runtime.Device`."""

    def __init__(
        self,
        device: object,
        shape: tuple[int, ...],
        dtype: np.dtype,
        placement: Placement,
        name: str,
    ):
        self.device = device
        self.shape = shape
        self.dtype = dtype
        self.placement = placement
        self.name = name
        self.numel = prod(shape)
        self.rows = prod(shape[:-1]) if len(shape) > 1 else (shape[0] if shape else 1)
        self.cols = shape[-1] if len(shape) > 1 else 1
        self.shards: list[Shard] = []
        self._addr_cache: dict[tuple[int, int], np.ndarray] = {}
        self._row_starts = np.zeros(0, np.int64)
        self._col_starts = np.zeros(0, np.int64)
        self._grid = np.zeros((0, 0), np.int64)
        self.freed = False

    # -- like torch ------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def stride(self, dim: int | None = None) -> tuple[int, ...] | int:
        """Row-major strides in elements, as ``torch.Tensor.stride``."""
        strides = tuple(prod(self.shape[i + 1 :]) for i in range(len(self.shape)))
        return strides if dim is None else strides[dim]

    def numpy(self) -> np.ndarray:
        """Read the tensor back to the host (D2H through the simulated path)."""
        return self.device.read_tensor(self)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.shape))
        return f"Tensor({self.name!r}, {shape}, {self.dtype})"

    # -- layout ----------------------------------------------------------------------------
    def layout(
        self, sip: int, cube_ids: tuple[int, ...], pe_ids: tuple[int, ...], burst: int = 0
    ) -> None:
        """Cut the matrix view into shards for the placement (no memory is touched); with
        ``placement.pad``, rows get an odd pitch of ``burst``-byte bursts."""
        p = self.placement
        parts = [(0, self.rows, 0, self.cols, list(cube_ids))]
        cube_level: list[tuple[int, int, int, int, list[int]]] = []
        for r0, r1, c0, c1, cubes in parts:
            cube_level += self._split(p.cubes, "cubes", r0, r1, c0, c1, cubes)
        shards: dict[tuple[int, int, int, int], dict[tuple[int, int], int]] = {}
        for r0, r1, c0, c1, cubes in cube_level:
            for cube in cubes:
                for sr0, sr1, sc0, sc1, pes in self._split(
                    p.pes, "pes", r0, r1, c0, c1, list(pe_ids)
                ):
                    if sr1 > sr0 and sc1 > sc0:
                        copies = shards.setdefault((sr0, sr1, sc0, sc1), {})
                        for pe in pes:
                            copies[(cube, pe)] = -1
        self.shards = [Shard(*k, copies) for k, copies in sorted(shards.items())]
        if p.pad and burst:
            for shard in self.shards:
                shard.pitch = odd_pitch(shard.width, self.dtype.itemsize, burst)
        self._row_starts = np.array(sorted({s.r0 for s in self.shards}), np.int64)
        self._col_starts = np.array(sorted({s.c0 for s in self.shards}), np.int64)
        self._grid = np.full((len(self._row_starts), len(self._col_starts)), -1, np.int64)
        for i, s in enumerate(self.shards):
            self._grid[
                np.searchsorted(self._row_starts, s.r0), np.searchsorted(self._col_starts, s.c0)
            ] = i

    def _split(
        self, policy: str, level: str, r0: int, r1: int, c0: int, c1: int, owners: list[int]
    ) -> list[tuple[int, int, int, int, list[int]]]:
        if policy == "replicate":
            return [(r0, r1, c0, c1, owners)]
        if policy == "col" and len(self.shape) < 2:
            raise KernelError(
                f"placement.{level}=col needs a tensor of 2 or more dims; {self.name!r} is 1-D"
            )
        if policy == "row":
            rows = _chunks(r1 - r0, len(owners))
            return [(r0 + a, r0 + b, c0, c1, [o]) for o, (a, b) in zip(owners, rows, strict=True)]
        cols = _chunks(c1 - c0, len(owners))
        return [(r0, r1, c0 + a, c0 + b, [o]) for o, (a, b) in zip(owners, cols, strict=True)]

    def addresses(self, flat: np.ndarray, cube: int, pe: int) -> np.ndarray:
        """Physical addresses of elements ``flat`` (row-major indices, in bounds) as read by
        PE ``pe`` of ``cube`` (which picks among replicated copies)."""
        base = self._addr_cache.get((cube, pe))
        if base is None:
            base = self._addr_cache[(cube, pe)] = np.array(
                [self._copy_for(s, cube, pe) for s in self.shards], np.int64
            )
        r, c = np.divmod(flat, self.cols)
        ri = np.searchsorted(self._row_starts, r, side="right") - 1
        ci = np.searchsorted(self._col_starts, c, side="right") - 1
        shard = self._grid[ri, ci]
        r0 = self._row_starts[ri]
        c0 = self._col_starts[ci]
        width = self._widths[shard]
        return base[shard] + ((r - r0) * width + (c - c0)) * self.dtype.itemsize

    @property
    def _widths(self) -> np.ndarray:
        w = getattr(self, "_width_arr", None)
        if w is None:
            w = self._width_arr = np.array([s.row_stride for s in self.shards], np.int64)
        return w

    @staticmethod
    def _copy_for(shard: Shard, cube: int, pe: int) -> int:
        if (cube, pe) in shard.copies:
            return shard.copies[(cube, pe)]
        for (c, _p), addr in shard.copies.items():
            if c == cube:
                return addr
        return next(iter(shard.copies.values()))
