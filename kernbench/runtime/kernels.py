"""Device functions shared by kernels (plain functions called from inside a kernel)."""

from typing import Any

import kernbench.lang as tl


def matmul_tile(
    a_ptr: Any,
    b_ptr: Any,
    offs_m: Any,
    offs_n: Any,
    mask_m: Any,
    mask_n: Any,
    K: int,
    stride_am: int,
    stride_ak: int,
    stride_bk: int,
    stride_bn: int,
    BLOCK_K: int,
    acc_dtype: Any = tl.float32,
    k_first: int = 0,
) -> Any:
    """``A[offs_m, :] @ B[:, offs_n]`` accumulated in ``acc_dtype``, walking ``K`` in steps of
    ``BLOCK_K`` as Triton's matmul tutorial does: masked loads (``mask_m`` of shape
    ``(BLOCK_M, 1)``, ``mask_n`` of shape ``(1, BLOCK_N)``), so ragged edges load zeros.

    The walk starts at step ``k_first`` and wraps around, so programs that run at once can
    read different parts of K (different HBM slices when K is split over them)."""
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + (offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak)
    b_ptrs = b_ptr + (offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn)
    acc = tl.zeros((offs_m.shape[0], offs_n.shape[0]), dtype=acc_dtype)
    steps = tl.cdiv(K, BLOCK_K)
    for i in range(0, steps):
        k = (k_first + i) % steps
        k_left = K - k * BLOCK_K
        a = tl.load(a_ptrs + k * BLOCK_K * stride_ak, mask=mask_m & (offs_k[None, :] < k_left),
                    other=0)  # fmt: skip
        b = tl.load(b_ptrs + k * BLOCK_K * stride_bk, mask=(offs_k[:, None] < k_left) & mask_n,
                    other=0)  # fmt: skip
        acc = tl.dot(a, b, acc)
    return acc
