"""qkv_gemm_multi_pe: the QKV projection ``X[M, K] @ W[K, N]`` sharded over every PE.

Sharding (docs/kernels.md, "Benches"), with C cubes of P PEs each:

- X: replicated over the cubes, split by rows over the PEs of each cube
  (``Placement(cubes="replicate", pes="row")``): PE p of every cube holds rows chunk p of M.
- W: split by columns over the cubes, then by rows (over K) inside each cube
  (``Placement(cubes="col", pes="row")``): cube c holds columns chunk c of N, its PE p the
  K-rows chunk p of those columns.
- Output: split by columns over the cubes, by rows over the PEs
  (``Placement(cubes="col", pes="row")``).

One program per PE (:func:`sharded_matmul_kernel`, grid C x P, program ``c * P + p`` on PE p
of cube c) computes the output rows of PE p times the columns of cube c, in tiles of BLOCK_M
x BLOCK_N stepping K by BLOCK_K: it reads X locally, W from the slices of its own cube (no
traffic crosses a cube boundary) and writes its output block locally.

The default, M, K, N = 512, 512, 1536 (512 tokens, model width 512, Q, K and V side by side)
in fp16 with tiles 64 x 512 x 96, gives each PE of the 4x4 default (128 PEs) one 64 x 96 output
block computed by a single ``tl.dot`` over all of K; a run takes about 10 s of wall time, most
of it deploying the 16 copies of X. Tiles need not be powers of two here (``tl.arange`` takes
any length), unlike Triton.
"""

from dataclasses import dataclass

from kernbench.bench import BenchContext, BenchResult, bench
from kernbench.runtime import Device, Placement

from .gemm_autotune import run_gemm_bench
from .gemm_common import GEMM_BETTER, GEMM_HEADLINE, GemmParams, Layout, sharded_tiles
from .matmul_kernels import sharded_matmul_kernel


@dataclass(frozen=True)
class QkvGemmMultiPeParams(GemmParams):
    m: int = 512
    k: int = 512
    n: int = 1536
    block_m: int = 64
    block_k: int = 512
    block_n: int = 96


def sharded_layout(p: GemmParams, dev: Device) -> Layout:
    return Layout(
        a=Placement(cubes="replicate", pes="row", pad=True),
        b=Placement(cubes="col", pes="row", pad=True),
        c=Placement(cubes="col", pes="row", pad=True),
        kernel=sharded_matmul_kernel,
        grid=dev.pe_count,
        pes=dev.all_pes(),
        tiles_of=lambda: sharded_tiles(p, dev.cubes, dev.pes_per_cube),
        meta={"CUBES": dev.cubes, "PES": dev.pes_per_cube},
        carries_tiles=True,
    )


@bench("qkv_gemm_multi_pe", params=QkvGemmMultiPeParams, better=GEMM_BETTER, headline=GEMM_HEADLINE)
def qkv_gemm_multi_pe(ctx: BenchContext, p: QkvGemmMultiPeParams) -> BenchResult:
    """QKV projection sharded over every PE of the device, against its roofline."""
    t = ctx.spec.topology
    what = f"qkv_gemm_multi_pe on {t.cubes} cubes x {ctx.spec.hw.cube.pes} PEs"
    return run_gemm_bench(ctx, p, sharded_layout, what)
