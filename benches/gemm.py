"""gemm: a plain tiled GEMM ``C[M, N] = A[M, K] @ B[K, N]`` on ``pes`` PEs, for sweeps.

The kernel is Triton's tutorial matmul (:func:`matmul_kernel`): one program per
``BLOCK_M x BLOCK_N`` output tile, program ``pid`` on tile column ``pid % tiles_n`` and tile
row ``(pid // tiles_n + pid % tiles_n) % tiles_m`` (a diagonal order), stepping K by
``BLOCK_K``.

PEs: the first ``pes`` PEs of the device in cube-major order — PEs 0..pes-1 of cube 0 when
``pes`` is at most a cube's PEs, else every PE of cubes 0..pes/P-1 (``pes`` must then be a
multiple of the PEs per cube, P). Program ``pid`` runs on the ``pid % pes``-th of them (the
launch's round-robin; a PE runs its programs one after the other). The diagonal order makes
the programs that run at once read different row blocks of A, so they spread over the HBM
slices instead of all reading the slice of one row block.

Over several cubes the bench uses the layout and kernel of qkv_gemm_multi_pe on the cubes it
runs on (:func:`cube_blocks_layout`): each cube computes a column block of C from its own
slices. Within one cube:

Data: spread over the HBM slices of the same PEs so every used slice holds an equal share —
A and C split by rows (``Placement(cubes="row", pes="row")``), B split by columns
(``Placement(cubes="col", pes="col")``); with one PE everything is in its slice. Rows are
padded to an odd number of HBM bursts (``Placement.pad``) so a tile's rows spread over the
pseudo-channels. A program reads its A rows and B columns from whichever slices hold them,
local or remote, and writes its C tile likewise.
"""

from dataclasses import dataclass

from kernbench.bench import BenchContext, BenchResult, bench
from kernbench.core import BenchError
from kernbench.runtime import Device, Placement

from .gemm_autotune import run_gemm_bench
from .gemm_common import (
    GEMM_BETTER,
    GEMM_HEADLINE,
    GemmParams,
    Layout,
    grid_size,
    grid_tiles,
    sharded_tiles,
)
from .gemm_fits import DeviceShape
from .matmul_kernels import matmul_kernel, sharded_matmul_kernel


@dataclass(frozen=True)
class GemmBenchParams(GemmParams):
    m: int = 256
    k: int = 256
    n: int = 256
    block_m: int = 64
    block_k: int = 64
    block_n: int = 64
    pes: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.pes, bool) or not isinstance(self.pes, int) or self.pes <= 0:
            raise BenchError(f"bench.pes: must be a positive integer, got {self.pes!r}")


def pe_set(pes: int, cubes: int, per_cube: int) -> list[tuple[int, int]]:
    """The first ``pes`` PEs, cube-major; a clear error naming ``bench.pes`` if the device
    cannot give them."""
    total = cubes * per_cube
    valid = f"1..{per_cube}" + (f" or a multiple of {per_cube} up to {total}" if cubes > 1 else "")
    if pes > total:
        raise BenchError(f"bench.pes: {pes} PEs asked, this device has {total}; use {valid}")
    if pes > per_cube and pes % per_cube:
        raise BenchError(
            f"bench.pes: {pes} PEs span several cubes, so they must fill them ({per_cube} "
            f"PEs per cube); use {valid}"
        )
    if pes <= per_cube:
        return [(0, i) for i in range(pes)]
    return [(c, i) for c in range(pes // per_cube) for i in range(per_cube)]


def gemm_layout(p: GemmBenchParams, dev: Device | DeviceShape) -> Layout:
    pes = pe_set(p.pes, dev.cubes, dev.pes_per_cube)
    cube_ids = tuple(sorted({c for c, _ in pes}))
    pe_ids = tuple(sorted({i for _, i in pes}))
    if len(cube_ids) > 1:
        return cube_blocks_layout(p, cube_ids, dev.pes_per_cube, pes)
    rows = Placement(cubes="row", pes="row", cube_ids=cube_ids, pe_ids=pe_ids, pad=True)
    cols = Placement(cubes="col", pes="col", cube_ids=cube_ids, pe_ids=pe_ids, pad=True)
    return Layout(rows, cols, rows, matmul_kernel, grid_size(p), pes, lambda: grid_tiles(p, pes))


def cube_blocks_layout(
    p: GemmBenchParams, cube_ids: tuple[int, ...], per_cube: int, pes: list[tuple[int, int]]
) -> Layout:
    """Over several cubes: cube c computes column block c of C, so no byte crosses a cube
    boundary during the kernel — A replicated over the cubes and split by rows over each
    cube's PEs, B and C split by columns over the cubes and by rows inside each (the layout of
    qkv_gemm_multi_pe, on the first cubes)."""
    ids = {"cube_ids": cube_ids, "pe_ids": tuple(range(per_cube)), "pad": True}
    return Layout(
        a=Placement(cubes="replicate", pes="row", **ids),
        b=Placement(cubes="col", pes="row", **ids),
        c=Placement(cubes="col", pes="row", **ids),
        kernel=sharded_matmul_kernel,
        grid=len(pes),
        pes=pes,
        tiles_of=lambda: sharded_tiles(p, len(cube_ids), per_cube),
        meta={"CUBES": len(cube_ids), "PES": per_cube},
        carries_tiles=True,
    )


@bench("gemm", params=GemmBenchParams, better=GEMM_BETTER, headline=GEMM_HEADLINE)
def gemm(ctx: BenchContext, p: GemmBenchParams) -> BenchResult:
    """A tiled GEMM of any shape, tile and dtype on 1..all PEs, against its roofline."""
    pe_set(p.pes, ctx.spec.topology.cubes, ctx.spec.hw.cube.pes)  # fail before any run
    return run_gemm_bench(ctx, p, gemm_layout, f"gemm on {p.pes} PE(s)")
