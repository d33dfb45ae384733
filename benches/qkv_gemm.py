"""qkv_gemm: the QKV projection ``X[M, K] @ W[K, N]`` on one PE (cube 0, PE 0).

The default is the original design's case: M, K, N = 128, 256, 128 in fp16, tiles BLOCK_M x
BLOCK_K x BLOCK_N = 32 x 64 x 32, fp32 accumulation, fp16 output. X, W and the output live in
the HBM slice of cube 0, PE 0, and every program of :func:`matmul_kernel`'s grid (one per
output tile) runs on that PE, one after the other. Reported as described in
docs/kernels.md ("Benches"); metric names in docs/metrics.md.
"""

from dataclasses import dataclass

from kernbench.bench import BenchContext, BenchResult, bench
from kernbench.runtime import Device, Placement

from .gemm_autotune import run_gemm_bench
from .gemm_common import (
    GEMM_BETTER,
    GEMM_HEADLINE,
    GemmParams,
    Layout,
    grid_size,
    grid_tiles,
)
from .matmul_kernels import matmul_kernel


@dataclass(frozen=True)
class QkvGemmParams(GemmParams):
    """The defaults of :class:`GemmParams` are this bench's: 128 x 256 @ 256 x 128 fp16."""


def single_pe_layout(p: GemmParams, cube: int = 0, pe: int = 0) -> Layout:
    """Everything on one PE: A, B and C in its HBM slice (rows padded: ``Placement.pad``), the
    whole grid on it."""
    here = Placement(cube_ids=(cube,), pe_ids=(pe,), pad=True)
    pes = [(cube, pe)]
    return Layout(here, here, here, matmul_kernel, grid_size(p), pes, lambda: grid_tiles(p, pes))


@bench("qkv_gemm", params=QkvGemmParams, better=GEMM_BETTER, headline=GEMM_HEADLINE)
def qkv_gemm(ctx: BenchContext, p: QkvGemmParams) -> BenchResult:
    """QKV projection GEMM on one PE against its roofline, checked against numpy."""

    def layout(q: GemmParams, _dev: Device) -> Layout:
        return single_pe_layout(q)

    return run_gemm_bench(ctx, p, layout, "qkv_gemm on sip*.cube0.pe0")
