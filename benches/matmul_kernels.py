"""Tiled matrix-multiply kernels in Triton's style, shared by the GEMM benches.

Both compute ``C = A @ B`` with ``A`` of ``M x K`` and ``B`` of ``K x N``, one
``BLOCK_M x BLOCK_N`` output tile at a time: the tile's fp32 (int32 for int8) accumulator
lives in TCM while the kernel walks ``K`` in steps of ``BLOCK_K``, loading a ``BLOCK_M x
BLOCK_K`` tile of ``A`` and a ``BLOCK_K x BLOCK_N`` tile of ``B`` and adding their ``tl.dot``;
the tile is then cast to ``C``'s dtype and stored. Loads and stores are masked, so sizes that
are not multiples of the tiles work (masked-off elements load as 0 and move no bytes).

- :func:`matmul_kernel` is the kernel of Triton's matmul tutorial with a diagonal order in
  place of its ``GROUP_M`` swizzle: program ``pid`` computes the output tile in column
  ``pid_n = pid % cdiv(N, BLOCK_N)`` and row ``(pid // cdiv(N, BLOCK_N) + pid_n) % cdiv(M,
  BLOCK_M)``; the grid is ``cdiv(M, BLOCK_M) * cdiv(N, BLOCK_N)``. Programs that run at the
  same time on neighbouring PEs (consecutive ``pid``) then read different row blocks of A:
  with A split by rows over HBM slices they read different slices (the swizzle serves a GPU's
  L2 cache, which the PEs do not have).
- :func:`sharded_matmul_kernel` is for a launch of one program per PE (``pes`` = every PE of
  the device, cube-major, so program ``cube * PES + pe`` runs on PE ``pe`` of ``cube``). The
  program computes the output rows its PE holds under a row split over ``PES`` PEs times the
  output columns its cube holds under a column split over ``CUBES`` cubes (the chunking of
  :class:`~kernbench.runtime.Placement`: ``numpy.array_split`` sizes), tiled as above. PE
  ``pe`` starts its walk over K at step ``pe * steps // PES`` and wraps around: with B split
  by K rows over a cube's PEs, the PEs then read different slices at any moment instead of
  all reading the slice of the same K chunk.
"""

from typing import Any

import kernbench.lang as tl
from kernbench.runtime.kernels import matmul_tile


@tl.jit
def matmul_kernel(
    a_ptr: Any,
    b_ptr: Any,
    c_ptr: Any,
    M: int,
    N: int,
    K: int,
    stride_am: int,
    stride_ak: int,
    stride_bk: int,
    stride_bn: int,
    stride_cm: int,
    stride_cn: int,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
) -> None:
    pid = tl.program_id(axis=0)
    num_pid_m, num_pid_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    pid_n = pid % num_pid_n
    pid_m = (pid // num_pid_n + pid_n) % num_pid_m  # diagonal: see the module's docstring
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m, mask_n = offs_m[:, None] < M, offs_n[None, :] < N
    acc = matmul_tile(
        a_ptr, b_ptr, offs_m, offs_n, mask_m, mask_n, K,
        stride_am, stride_ak, stride_bk, stride_bn, BLOCK_K, acc_type(a_ptr),
    )  # fmt: skip
    c_ptrs = c_ptr + stride_cm * offs_m[:, None] + stride_cn * offs_n[None, :]
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=mask_m & mask_n)


def acc_type(a_ptr: Any) -> Any:
    """int32 accumulation for int8 inputs, fp32 for the rest."""
    return tl.int32 if a_ptr.dtype.element_ty == tl.int8 else tl.float32


def chunk(n: int, parts: int, i: int) -> tuple[int, int]:
    """``[start, stop)`` of chunk ``i`` when ``n`` is split in ``parts`` (array_split sizes)."""
    q, r = divmod(n, parts)
    start = i * q + min(i, r)
    return start, start + q + (1 if i < r else 0)


@tl.jit
def sharded_matmul_kernel(
    a_ptr: Any,
    b_ptr: Any,
    c_ptr: Any,
    M: int,
    N: int,
    K: int,
    stride_am: int,
    stride_ak: int,
    stride_bk: int,
    stride_bn: int,
    stride_cm: int,
    stride_cn: int,
    CUBES: tl.constexpr,
    PES: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
) -> None:
    pid = tl.program_id(axis=0)
    cube, pe = pid // PES, pid % PES
    row_lo, row_hi = chunk(M, PES, pe)
    col_lo, col_hi = chunk(N, CUBES, cube)
    k_first = pe * tl.cdiv(K, BLOCK_K) // PES  # the PEs of a cube start on different K chunks
    for m0 in range(row_lo, row_hi, BLOCK_M):
        for n0 in range(col_lo, col_hi, BLOCK_N):
            offs_m = m0 + tl.arange(0, BLOCK_M)
            offs_n = n0 + tl.arange(0, BLOCK_N)
            mask_m = offs_m[:, None] < row_hi
            mask_n = offs_n[None, :] < col_hi
            acc = matmul_tile(
                a_ptr, b_ptr, offs_m, offs_n, mask_m, mask_n, K,
                stride_am, stride_ak, stride_bk, stride_bn, BLOCK_K, acc_type(a_ptr), k_first,
            )  # fmt: skip
            c = acc.to(c_ptr.dtype.element_ty)
            c_ptrs = c_ptr + stride_cm * offs_m[:, None] + stride_cn * offs_n[None, :]
            tl.store(c_ptrs, c, mask=mask_m & mask_n)
