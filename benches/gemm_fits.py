"""What a GEMM must fit before anything runs: its tiles in TCM (with the pipeline's buffers),
its operands in the HBM slices its placements give them, its numpy data in this machine's
memory (docs/kernels.md, "Benches"; ADR 0017). A failing check names the bench key to change.
"""

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kernbench.core import BenchError
from kernbench.lang.dtypes import dtype_of
from kernbench.runtime import Tensor
from kernbench.topology import SystemSpec

from .gemm_common import OUT_DTYPE, GemmParams, Layout, stages_of


@dataclass(frozen=True)
class DeviceShape:
    """What a layout function reads of a :class:`Device`, without a system to run on."""

    sip: int
    cubes: int
    pes_per_cube: int

    @property
    def pe_count(self) -> int:
        return self.cubes * self.pes_per_cube

    def all_pes(self) -> list[tuple[int, int]]:
        return [(c, i) for c in range(self.cubes) for i in range(self.pes_per_cube)]


def tile_tcm_bytes(p: GemmParams, carries: bool = False, buffers: int = 1) -> dict[str, int]:
    """The TCM a PE running the matmul kernels holds at its peak, by part (``total``).

    Blocking (``buffers`` = 1): ``matmul_tile`` keeps the accumulator (fp32 / int32) and the
    last A and B tiles alive; ``tl.dot`` makes the new accumulator while the old one lives, and
    from the second K step on a new A (B) tile is loaded while the previous one lives: the peak
    is ``acc + a + b`` plus the largest of them (``acc`` with a single K step).

    Pipelined, each of the two loads holds ``buffers`` tiles (``num_stages``, or fewer when the
    PE loads fewer tiles than that: :func:`pipeline_buffers`) and ``tl.dot`` two accumulators:
    ``buffers * (a + b) + 2 acc``.

    A kernel that carries the previous tile's accumulator and output block
    (``Layout.carries_tiles``) holds those on top. Blocks are full ``BLOCK`` sizes even at
    ragged edges (masked loads).
    """
    size_in = dtype_of(p.dtype).itemsize
    acc_size = dtype_of("int32" if p.dtype == "int8" else "fp32").itemsize
    acc = p.block_m * p.block_n * acc_size
    a = p.block_m * p.block_k * size_in
    b = p.block_k * p.block_n * size_in
    steps = -(-p.k // p.block_k)
    if buffers > 1:
        parts = {"accumulators": 2 * acc, "A tiles": buffers * a, "B tiles": buffers * b}
    else:
        parts = {"accumulator": acc, "A tile": a, "B tile": b}
        parts["second copy"] = acc if steps == 1 else max(acc, a, b)
    if carries:
        out = p.block_m * p.block_n * dtype_of(OUT_DTYPE[p.dtype]).itemsize
        parts["previous tile"] = acc + out
    parts["total"] = sum(parts.values())
    return parts


def pipeline_buffers(p: GemmParams, stages: int, tiles_on_pe: int) -> int:
    """Tiles each load of the K loop holds on a PE that computes ``tiles_on_pe`` output tiles
    with ``stages`` (a load site's buffers last the whole launch): ``stages``, or every tile
    the PE loads if that is fewer; 1 when the PE runs blocking."""
    if stages <= 1:
        return 1
    return min(stages, -(-p.k // p.block_k) * tiles_on_pe)


def hbm_bytes_per_slice(
    p: GemmParams, layout: Layout, dev: DeviceShape, align: int
) -> dict[tuple[int, int], dict[str, int]]:
    """(cube, pe) -> bytes of A, B and C that slice holds under the layout, each shard rounded
    up to ``align`` as the slice allocator does."""
    out: dict[tuple[int, int], dict[str, int]] = {}
    shapes = {
        "A": ((p.m, p.k), p.dtype, layout.a),
        "B": ((p.k, p.n), p.dtype, layout.b),
        "C": ((p.m, p.n), OUT_DTYPE[p.dtype], layout.c),
    }
    for name, (shape, dtype, placement) in shapes.items():
        dt = dtype_of(dtype)
        tensor = Tensor(None, shape, dt, placement, name)
        cube_ids = placement.cube_ids or tuple(range(dev.cubes))
        pe_ids = placement.pe_ids or tuple(range(dev.pes_per_cube))
        tensor.layout(dev.sip, cube_ids, pe_ids, align)
        for shard in tensor.shards:
            nbytes = -(-shard.span * dt.itemsize // align) * align
            for where in shard.copies:
                held = out.setdefault(where, {"A": 0, "B": 0, "C": 0})
                held[name] += nbytes
    return out


def host_memory_bytes() -> int | None:
    """Physical memory of this machine, or ``None`` where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def host_bytes_needed(p: GemmParams, devices: int, hbm_bytes: int) -> int:
    """A lower bound on the host memory a run holds at once: per device its inputs, the bytes
    its HBM holds (the simulated memory is numpy pages) and C read back; then the numerical
    check's fp32 copies of A and B and its fp64 reference of C."""
    size_in = dtype_of(p.dtype).itemsize
    size_out = dtype_of(OUT_DTYPE[p.dtype]).itemsize
    inputs = (p.m * p.k + p.k * p.n) * size_in
    per_device = inputs + hbm_bytes + p.m * p.n * size_out
    return devices * per_device + (p.m * p.k + p.k * p.n) * 4 + p.m * p.n * 8


def check_gemm_fits(
    spec: SystemSpec,
    p: GemmParams,
    layout_of: Callable[[Any], Layout],
    devices: Sequence[int],
) -> None:
    """Refuse, naming the bench key to change, a GEMM whose tiles cannot fit a PE's TCM, whose
    operands cannot fit the HBM slices the layout puts them in, or whose numpy data cannot fit
    this machine's memory: before its data are made, deployed or simulated. Cheap checks come
    first; the tiles of a layout are listed only for a kernel that carries tiles."""
    hw = spec.hw
    stages = stages_of(spec, p)
    _check_tcm(p, tile_tcm_bytes(p, buffers=pipeline_buffers(p, stages, 1)), hw.pe.tcm_bytes)
    shape = f"{p.m}x{p.k} @ {p.k}x{p.n} {p.dtype} GEMM"
    dims_key = _largest(p, ("m", "k", "n"))
    smaller_dims = "use smaller bench.m, bench.k or bench.n"
    if hasattr(p, "pes"):
        smaller_dims += ", or spread them over more PEs (bench.pes)"
    layouts = []
    hbm_bytes = 0
    for sip in devices:
        dev = DeviceShape(sip, spec.topology.cubes, hw.cube.pes)
        layout = layout_of(dev)
        layouts.append(layout)
        slices = hbm_bytes_per_slice(p, layout, dev, hw.hbm.burst_bytes)
        for (cube, pe), held in sorted(slices.items()):
            need = sum(held.values())
            if need > hw.hbm.slice_bytes:
                parts = ", ".join(f"{k} {_size(v)}" for k, v in held.items() if v)
                raise BenchError(
                    f"bench.{dims_key}: the {shape} puts {_size(need)} ({parts}) in the HBM "
                    f"slice of sip{sip}.cube{cube}.pe{pe}, more than it holds "
                    f"(hw.hbm.slice_bytes = {_size(hw.hbm.slice_bytes)}); {smaller_dims}"
                )
        hbm_bytes = max(hbm_bytes, sum(sum(h.values()) for h in slices.values()))
    need = host_bytes_needed(p, len(devices), hbm_bytes)
    have = host_memory_bytes()
    if have is not None and need > have:
        raise BenchError(
            f"bench.{dims_key}: the {shape} needs at least {_size(need)} of host memory for "
            f"its numpy data (inputs, the simulated HBM's contents, the check against numpy), "
            f"more than this machine has ({_size(have)}); use smaller bench.m, bench.k or "
            "bench.n"
        )
    few_steps = stages > 1 and -(-p.k // p.block_k) < stages
    for layout in layouts:
        if layout.carries_tiles or few_steps:  # TCM that depends on the tiles per PE
            most = max(map(len, layout.tiles.values()))
            carries = layout.carries_tiles and most > 1
            buffers = pipeline_buffers(p, stages, most)
            _check_tcm(p, tile_tcm_bytes(p, carries, buffers), hw.pe.tcm_bytes)


def _check_tcm(p: GemmParams, tcm: dict[str, int], capacity: int) -> None:
    if tcm["total"] <= capacity:
        return
    parts = ", ".join(f"{k} {_size(v)}" for k, v in tcm.items() if k != "total")
    raise BenchError(
        f"bench.{_largest(p, ('block_m', 'block_n', 'block_k'))}: tiles of "
        f"{p.block_m}x{p.block_k}x{p.block_n} (block_m x block_k x block_n) hold "
        f"{_size(tcm['total'])} of TCM at once ({parts}), more than a PE has "
        f"(hw.pe.tcm_bytes = {_size(capacity)}); use smaller bench.block_m, bench.block_k or "
        "bench.block_n" + (", or fewer stages (bench.num_stages)" if "A tiles" in tcm else "")
    )


def _largest(p: Any, keys: Sequence[str]) -> str:
    """The key with the largest value (the first of equals): the one to name in an error."""
    return max(keys, key=lambda k: getattr(p, k))


def _size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
