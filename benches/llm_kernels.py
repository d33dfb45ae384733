"""Kernels of a Llama-style decoder layer besides attention, in Triton's style: RMSNorm, rotary
embedding (RoPE), the SwiGLU gate and the residual add.

Activations are row-major matrices ``[tokens, width]`` with ``tokens = batch * seq`` (token
``t`` of sequence ``b`` on row ``b * seq + t``), fp16 in HBM; every kernel computes in fp32 and
rounds once when it stores. The GEMMs of the layer (Q, K, V, O, gate, up, down projections)
are not here: they run :func:`kernbench.benches.matmul_kernels.matmul_kernel`.

- :func:`rmsnorm_kernel`: ``y = x / sqrt(mean(x**2, axis=-1) + eps) * w``; one program per
  ``BLOCK_M`` rows (grid ``cdiv(M, BLOCK_M)``), walking the hidden dim in ``BLOCK_N`` columns.
- :func:`rope_kernel`: rotary embedding of Q and K, Llama's "rotate half" pairing; one program
  per ``BLOCK_T`` tokens and head (grid ``(cdiv(T, BLOCK_T), N_HEADS + N_KV_HEADS)``).
- :func:`swiglu_kernel`: ``silu(gate) * up`` elementwise; grid ``cdiv(n, BLOCK)``.
- :func:`residual_add_kernel`: ``x + residual`` elementwise; grid ``cdiv(n, BLOCK)``.

The ``launch_*`` functions beside each kernel compute its grid and strides from the tensors
and launch it: what a bench calls.
"""

import math
from typing import Any

import kernbench.lang as tl


@tl.jit
def rmsnorm_kernel(
    x_ptr: Any,
    w_ptr: Any,
    y_ptr: Any,
    M: int,
    N: int,
    stride_xm: int,
    stride_ym: int,
    x_off: int,
    eps: float,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
) -> None:
    """RMSNorm of ``BLOCK_M`` rows of ``x [M, N]`` into ``y [M, N]`` with the weight ``w [N]``;
    row ``i`` of ``x`` starts at element ``x_off + i * stride_xm``.

    Program ``pid`` owns rows ``pid * BLOCK_M ...``. The first pass accumulates ``x**2`` in
    fp32 over the row in ``BLOCK_N`` columns at a time (one reduction at the end, as Triton's
    layer-norm tutorial); the second normalises, scales by ``w`` and stores. When a row fits in
    one block the first pass's block is reused instead of read again."""
    pid = tl.program_id(axis=0)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    row_mask = rows[:, None] < M
    x_rows = x_ptr + x_off + rows[:, None] * stride_xm
    y_rows = y_ptr + rows[:, None] * stride_ym
    sum_sq = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    x = None
    for off in range(0, N, BLOCK_N):
        mask = row_mask & (off + cols[None, :] < N)
        x = tl.load(x_rows + off + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        sum_sq += x * x
    rstd = tl.rsqrt(tl.sum(sum_sq, axis=1) / N + eps)
    for off in range(0, N, BLOCK_N):
        col_mask = off + cols < N
        mask = row_mask & col_mask[None, :]
        if N > BLOCK_N:  # else the row is still in x
            x = tl.load(x_rows + off + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + off + cols, mask=col_mask, other=0.0)
        y = x * rstd[:, None] * w[None, :]
        tl.store(y_rows + off + cols[None, :], y.to(y_ptr.dtype.element_ty), mask=mask)


def launch_rmsnorm(dev, x, w, y, eps=1e-5, block_m=4, block_n=256, pes=None, last_of=None):
    """RMSNorm of the rows of ``x`` into ``y`` (both ``[M, N]``) on ``pes``; with ``last_of =
    t``, of the last row of every ``t`` rows of ``x`` (each sequence's last token) into ``y
    [M / t, N]``."""
    t = last_of or 1
    m, n = x.shape[0] // t, x.shape[1]
    grid = (tl.cdiv(m, block_m),)
    return dev.launch(rmsnorm_kernel, grid, x, w, y, m, n, t * x.stride(0), y.stride(0),
                      (t - 1) * x.stride(0), eps, BLOCK_M=block_m, BLOCK_N=block_n,
                      pes=pes)  # fmt: skip


@tl.jit
def rope_kernel(
    q_ptr: Any,
    k_ptr: Any,
    q_out_ptr: Any,
    k_out_ptr: Any,
    T: int,
    seq_len: int,
    pos0: int,
    theta: float,
    stride_q: int,
    stride_k: int,
    stride_qo: int,
    stride_ko: int,
    N_HEADS: tl.constexpr,
    N_KV_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_T: tl.constexpr,
) -> None:
    """Rotary embedding of one head of ``BLOCK_T`` tokens of Q ``[T, N_HEADS * HEAD_DIM]`` or
    K ``[T, N_KV_HEADS * HEAD_DIM]`` (head ``h`` in columns ``h * HEAD_DIM ...``).

    Program ``(pid_t, head)``: heads ``0 .. N_HEADS - 1`` are Q's, the next ``N_KV_HEADS`` K's,
    so one launch rotates both. Token row ``r`` is at position ``pos0 + r % seq_len`` (``pos0``
    is 0 in prefill, the context length in decode). With ``half = HEAD_DIM / 2``, element ``i <
    half`` pairs with ``i + half`` (Llama's "rotate half"): ``out_i = x_i cos - x_{i+half}
    sin``, ``out_{i+half} = x_{i+half} cos + x_i sin``, the angle ``pos * theta**(-2i /
    HEAD_DIM)``. cos and sin are computed here rather than read from a table: no table to hold
    in HBM or to load (a DMA per program), any ``pos0`` is free, and the three elementwise
    operations per pair (angle, cos, sin: 0.003 ns at the default 1 TFLOP/s of pe_math) cost
    a tenth of what the table's 8 fp32 bytes per pair would take from a 204.8 GB/s HBM slice
    (0.04 ns), bandwidth the loads of Q and K need. The outputs may be the inputs (in
    place)."""
    pid_t = tl.program_id(axis=0)
    head = tl.program_id(axis=1)
    if head < N_HEADS:
        x_ptr, o_ptr, stride_x, stride_o, h = q_ptr, q_out_ptr, stride_q, stride_qo, head
    else:
        x_ptr, o_ptr, stride_x, stride_o = k_ptr, k_out_ptr, stride_k, stride_ko
        h = head - N_HEADS
    half = HEAD_DIM // 2
    rows = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    dims = tl.arange(0, half)
    mask = rows[:, None] < T
    pos = (pos0 + rows % seq_len).to(tl.float32)
    inv_freq = tl.exp2(dims.to(tl.float32) * (-2.0 * math.log2(theta) / HEAD_DIM))
    angle = pos[:, None] * inv_freq[None, :]
    cos, sin = tl.cos(angle), tl.sin(angle)
    x1_ptrs = x_ptr + rows[:, None] * stride_x + h * HEAD_DIM + dims[None, :]
    x1 = tl.load(x1_ptrs, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x1_ptrs + half, mask=mask, other=0.0).to(tl.float32)
    o1_ptrs = o_ptr + rows[:, None] * stride_o + h * HEAD_DIM + dims[None, :]
    out_ty = o_ptr.dtype.element_ty
    tl.store(o1_ptrs, (x1 * cos - x2 * sin).to(out_ty), mask=mask)
    tl.store(o1_ptrs + half, (x2 * cos + x1 * sin).to(out_ty), mask=mask)


def launch_rope(dev, q, k, seq_len, n_heads, n_kv_heads, pos0=0, theta=10000.0, q_out=None,
                k_out=None, block_t=16, pes=None):  # fmt: skip
    """RoPE of ``q [T, n_heads * hd]`` and ``k [T, n_kv_heads * hd]`` into ``q_out``/``k_out``
    (default: in place); ``T = batch * seq_len``, token positions from ``pos0``."""
    q_out = q if q_out is None else q_out
    k_out = k if k_out is None else k_out
    t = q.shape[0]
    head_dim = q.shape[1] // n_heads
    grid = (tl.cdiv(t, block_t), n_heads + n_kv_heads)
    return dev.launch(
        rope_kernel, grid, q, k, q_out, k_out, t, seq_len, pos0, theta,
        q.stride(0), k.stride(0), q_out.stride(0), k_out.stride(0),
        N_HEADS=n_heads, N_KV_HEADS=n_kv_heads, HEAD_DIM=head_dim, BLOCK_T=block_t, pes=pes,
    )  # fmt: skip


@tl.jit
def swiglu_kernel(
    gate_ptr: Any, up_ptr: Any, out_ptr: Any, n_elements: int, BLOCK: tl.constexpr
) -> None:
    """``out = silu(gate) * up = gate * sigmoid(gate) * up`` over ``n_elements`` (any shape,
    row-major, the three alike: ``[tokens, ffn]``), ``BLOCK`` per program."""
    offs = tl.program_id(axis=0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    gate = tl.load(gate_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(up_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    out = gate * tl.sigmoid(gate) * up
    tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


def launch_swiglu(dev, gate, up, out, block=1024, pes=None):
    n = gate.numel
    return dev.launch(swiglu_kernel, (tl.cdiv(n, block),), gate, up, out, n, BLOCK=block,
                      pes=pes)  # fmt: skip


@tl.jit
def residual_add_kernel(
    x_ptr: Any, res_ptr: Any, out_ptr: Any, n_elements: int, BLOCK: tl.constexpr
) -> None:
    """``out = x + residual`` over ``n_elements`` (``[tokens, hidden]``), added in fp32;
    ``out`` may be ``res`` (the residual stream updated in place)."""
    offs = tl.program_id(axis=0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    res = tl.load(res_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs, (x + res).to(out_ptr.dtype.element_ty), mask=mask)


def launch_residual_add(dev, x, res, out, block=1024, pes=None):
    n = x.numel
    return dev.launch(residual_add_kernel, (tl.cdiv(n, block),), x, res, out, n, BLOCK=block,
                      pes=pes)  # fmt: skip
