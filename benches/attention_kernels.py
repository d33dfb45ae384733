"""Attention kernels of a Llama-style decoder layer in Triton's style: causal flash attention
for prefill, split-context flash decoding over a KV cache, and the kernel that writes K and V
into the cache.

Layouts (row-major, fp16; ``head_dim`` columns per head, head ``h`` in columns ``h * head_dim
...``; grouped-query attention: query head ``h`` reads KV head ``h // (n_heads / n_kv_heads)``):

- Q and the attention output O: ``[tokens, n_heads * head_dim]``, ``tokens = batch * seq``,
  token ``t`` of sequence ``b`` on row ``b * seq + t`` (decode: ``seq = 1``, row ``b``).
- K and V as the projections make them: ``[tokens, n_kv_heads * head_dim]``.
- The KV cache: two tensors (K and V) of ``[batch, max_ctx, n_kv_heads * head_dim]``, position
  ``p`` of sequence ``b`` on row ``b * max_ctx + p``. A cache row is then exactly a row of the
  projection's K (or V), so filling it is a copy of whole rows, and a decode program reads
  its KV head's ``head_dim`` columns of consecutive positions as one strided DMA. Every
  sequence of a batch has the same length (static batching).

The kernels take a batch stride and a row stride (in elements) for each operand, so the
prefill kernel reads K and V from the projection's tensors (batch stride ``seq * width``) or
from the cache (``max_ctx * width``) alike.

- :func:`kv_cache_write_kernel`: copies ``seq`` rows per sequence of K and V into the caches
  at positions ``pos0 ...``; prefill writes the prompt (``pos0 = 0``), decode appends the new
  token (``seq = 1``, ``pos0`` = the context before it). A kernel, not a host copy, so the
  layer's cache traffic is on the device's timeline. Grid ``(cdiv(seq, BLOCK_T), batch)``.
- :func:`flash_attn_prefill_kernel`: causal attention, one program per query block, head and
  sequence: grid ``(cdiv(seq, BLOCK_M), n_heads, batch)``; online softmax in fp32.
- :func:`flash_decode_split_kernel` and :func:`flash_decode_combine_kernel`: decode attention
  of one new token per sequence over ``ctx_len`` cached positions, split along the context
  (flash decoding). Phase 1, grid ``(SPLITS, n_kv_heads, batch)``: a program takes a context
  split of a KV head and computes, for the query heads of its group together (the rows of its
  ``tl.dot``, so each split of K and V is read once per group, not once per query head), the
  unnormalised partial output, running max and sum. Phase 2, grid ``(n_heads, batch)``:
  rescales the splits to their common max and normalises.

Softmax runs in base 2 as in Triton's fused-attention tutorial: scores are scaled by
``sm_scale * log2(e)`` and exponentiated with ``tl.exp2`` (the same values as ``exp`` of the
scaled scores); the partial maxima of the decode phase 1 are in those units.
"""

import math
from typing import Any

import kernbench.lang as tl

LOG2E = 1.0 / math.log(2.0)


@tl.jit
def kv_cache_write_kernel(
    k_ptr: Any,
    v_ptr: Any,
    k_cache_ptr: Any,
    v_cache_ptr: Any,
    seq_len: int,
    pos0: int,
    max_ctx: int,
    stride_kt: int,
    stride_vt: int,
    stride_cb: int,
    stride_cm: int,
    WIDTH: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_C: tl.constexpr,
) -> None:
    """Copy rows ``b * seq_len + t`` of K and V (``WIDTH = n_kv_heads * head_dim`` columns) to
    position ``pos0 + t`` of sequence ``b`` in the caches, ``BLOCK_T`` rows of ``BLOCK_C``
    columns at a time. Program ``(pid_t, b)``."""
    last = pos0 + seq_len - 1
    tl.static_assert(last < max_ctx, f"positions {pos0}..{last} exceed the cache's {max_ctx}")
    pid_t, b = tl.program_id(axis=0), tl.program_id(axis=1)
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.arange(0, BLOCK_C)
    row_mask = t[:, None] < seq_len
    src = (b * seq_len + t)[:, None]
    dst = b * stride_cb + (pos0 + t)[:, None] * stride_cm
    for c0 in range(0, WIDTH, BLOCK_C):
        c = c0 + cols[None, :]
        mask = row_mask & (c < WIDTH)
        k = tl.load(k_ptr + src * stride_kt + c, mask=mask)
        v = tl.load(v_ptr + src * stride_vt + c, mask=mask)
        tl.store(k_cache_ptr + dst + c, k, mask=mask)
        tl.store(v_cache_ptr + dst + c, v, mask=mask)


def launch_kv_cache_write(dev, k, v, k_cache, v_cache, seq_len, pos0=0, block_t=16,
                          block_c=256, pes=None):  # fmt: skip
    """Write ``k``/``v [batch * seq_len, width]`` at positions ``pos0 ...`` of the caches."""
    batch, max_ctx, width = k_cache.shape
    grid = (tl.cdiv(seq_len, block_t), batch)
    return dev.launch(
        kv_cache_write_kernel, grid, k, v, k_cache, v_cache, seq_len, pos0, max_ctx,
        k.stride(0), v.stride(0), k_cache.stride(0), k_cache.stride(1),
        WIDTH=width, BLOCK_T=block_t, BLOCK_C=min(block_c, width), pes=pes,
    )  # fmt: skip


@tl.jit
def flash_attn_prefill_kernel(
    q_ptr: Any,
    k_ptr: Any,
    v_ptr: Any,
    o_ptr: Any,
    seq_len: int,
    sm_scale: float,
    stride_qb: int,
    stride_qm: int,
    stride_kb: int,
    stride_km: int,
    stride_vb: int,
    stride_vm: int,
    stride_ob: int,
    stride_om: int,
    N_HEADS: tl.constexpr,
    N_KV_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
) -> None:
    """Causal ``softmax(Q K^T * sm_scale) V`` of ``BLOCK_M`` queries of one head of one
    sequence. Program ``(start_m, head, b)``.

    Walks the keys ``0 .. min(seq_len, (start_m + 1) * BLOCK_M)`` in ``BLOCK_N`` blocks: K is
    loaded as ``[HEAD_DIM, BLOCK_N]`` (its transpose, by the pointers), ``qk = tl.dot(q, kT)``
    in fp32; the causal and length masks are applied only to the blocks that cross the
    diagonal or the end; the running max ``m_i`` and sum ``l_i`` rescale the fp32 accumulator
    by ``exp2(m_old - m_new)`` before ``tl.dot(p, v)`` adds the block; O is ``acc / l_i``."""
    start_m, head, b = tl.program_id(axis=0), tl.program_id(axis=1), tl.program_id(axis=2)
    kv_head = head // (N_HEADS // N_KV_HEADS)
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q_mask = offs_m[:, None] < seq_len
    q_ptrs = q_ptr + b * stride_qb + offs_m[:, None] * stride_qm + head * HEAD_DIM + offs_d[None, :]
    q = tl.load(q_ptrs, mask=q_mask, other=0.0)
    kt_ptrs = (
        k_ptr + b * stride_kb + kv_head * HEAD_DIM + offs_d[:, None] + offs_n[None, :] * stride_km
    )
    v_ptrs = (
        v_ptr + b * stride_vb + kv_head * HEAD_DIM + offs_n[:, None] * stride_vm + offs_d[None, :]
    )
    qk_scale = sm_scale * LOG2E
    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, HEAD_DIM), dtype=tl.float32)
    hi = min(seq_len, (start_m + 1) * BLOCK_M)
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n
        edge = start_n + BLOCK_N > start_m * BLOCK_M + 1 or start_n + BLOCK_N > seq_len
        kt = tl.load(kt_ptrs + start_n * stride_km, mask=cols[None, :] < seq_len, other=0.0)
        qk = tl.dot(q, kt) * qk_scale
        if edge:  # the block crosses the diagonal or the end of the sequence
            keep = (offs_m[:, None] >= cols[None, :]) & (cols[None, :] < seq_len)
            qk = tl.where(keep, qk, float("-inf"))
        m_ij = tl.maximum(m_i, tl.max(qk, axis=1))
        p = tl.exp2(qk - m_ij[:, None])
        alpha = tl.exp2(m_i - m_ij)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(v_ptrs + start_n * stride_vm, mask=cols[:, None] < seq_len, other=0.0)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
        m_i = m_ij
    out = acc / l_i[:, None]
    o_ptrs = o_ptr + b * stride_ob + offs_m[:, None] * stride_om + head * HEAD_DIM + offs_d[None, :]
    tl.store(o_ptrs, out.to(o_ptr.dtype.element_ty), mask=q_mask)


def launch_flash_attn_prefill(dev, q, k, v, o, batch, seq_len, n_heads, n_kv_heads,
                              kv_rows=None, block_m=16, block_n=16, pes=None):  # fmt: skip
    """Causal attention of ``q [batch * seq_len, n_heads * hd]`` into ``o`` (same layout).
    ``k``/``v`` are ``[batch * seq_len, n_kv_heads * hd]`` (``kv_rows`` None) or caches with
    ``kv_rows = max_ctx`` rows per sequence."""
    head_dim = q.shape[1] // n_heads
    kv_rows = seq_len if kv_rows is None else kv_rows
    grid = (tl.cdiv(seq_len, block_m), n_heads, batch)
    q_rs, kv_rs, o_rs = q.shape[1], k.shape[-1], o.shape[1]
    return dev.launch(
        flash_attn_prefill_kernel, grid, q, k, v, o, seq_len, 1.0 / math.sqrt(head_dim),
        seq_len * q_rs, q_rs, kv_rows * kv_rs, kv_rs, kv_rows * kv_rs, kv_rs, seq_len * o_rs,
        o_rs, N_HEADS=n_heads, N_KV_HEADS=n_kv_heads, HEAD_DIM=head_dim, BLOCK_M=block_m,
        BLOCK_N=block_n, pes=pes,
    )  # fmt: skip


@tl.jit
def flash_decode_split_kernel(
    q_ptr: Any,
    k_cache_ptr: Any,
    v_cache_ptr: Any,
    acc_ptr: Any,
    m_ptr: Any,
    l_ptr: Any,
    ctx_len: int,
    sm_scale: float,
    stride_qb: int,
    stride_kb: int,
    stride_km: int,
    stride_vb: int,
    stride_vm: int,
    N_HEADS: tl.constexpr,
    N_KV_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    SPLITS: tl.constexpr,
    BLOCK_N: tl.constexpr,
) -> None:
    """Phase 1 of decode attention: program ``(split, kv_head, b)`` attends the ``GROUP =
    N_HEADS / N_KV_HEADS`` query heads of ``kv_head`` (a ``[GROUP, HEAD_DIM]`` block of Q's
    row ``b``) to positions ``[split * L, min((split + 1) * L, ctx_len))`` of the cache, ``L =
    cdiv(ctx_len, SPLITS)``, in ``BLOCK_N`` blocks, with the online softmax of the prefill.

    It stores, for each query head ``h`` of the group, at row ``(b * N_HEADS + h) * SPLITS +
    split``: the unnormalised accumulator to ``acc [batch * N_HEADS * SPLITS, HEAD_DIM]`` and
    the running max (base-2 units) and sum to ``m``/``l [batch * N_HEADS * SPLITS]``, all
    fp32. An empty split (when ``ctx_len`` is small) stores ``-inf``, 0 and zeros, which the
    combine weighs by 0."""
    split, kv_head, b = tl.program_id(axis=0), tl.program_id(axis=1), tl.program_id(axis=2)
    group = N_HEADS // N_KV_HEADS
    heads = kv_head * group + tl.arange(0, group)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_ptr + b * stride_qb + heads[:, None] * HEAD_DIM + offs_d[None, :])
    k_head = k_cache_ptr + b * stride_kb + kv_head * HEAD_DIM  # the KV head's first column
    v_head = v_cache_ptr + b * stride_vb + kv_head * HEAD_DIM
    kt_ptrs = k_head + offs_d[:, None] + offs_n[None, :] * stride_km
    v_ptrs = v_head + offs_n[:, None] * stride_vm + offs_d[None, :]
    qk_scale = sm_scale * LOG2E
    m_i = tl.full((group,), float("-inf"), tl.float32)
    l_i = tl.zeros((group,), dtype=tl.float32)
    acc = tl.zeros((group, HEAD_DIM), dtype=tl.float32)
    split_len = tl.cdiv(ctx_len, SPLITS)
    lo = split * split_len
    hi = min(lo + split_len, ctx_len)
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        in_split = cols < hi
        kt = tl.load(kt_ptrs + start_n * stride_km, mask=in_split[None, :], other=0.0)
        qk = tl.dot(q, kt) * qk_scale
        if start_n + BLOCK_N > hi:
            qk = tl.where(in_split[None, :], qk, float("-inf"))
        m_ij = tl.maximum(m_i, tl.max(qk, axis=1))
        p = tl.exp2(qk - m_ij[:, None])
        alpha = tl.exp2(m_i - m_ij)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(v_ptrs + start_n * stride_vm, mask=in_split[:, None], other=0.0)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
        m_i = m_ij
    rows = (b * N_HEADS + heads) * SPLITS + split
    tl.store(acc_ptr + rows[:, None] * HEAD_DIM + offs_d[None, :], acc)
    tl.store(m_ptr + rows, m_i)
    tl.store(l_ptr + rows, l_i)


@tl.jit
def flash_decode_combine_kernel(
    acc_ptr: Any,
    m_ptr: Any,
    l_ptr: Any,
    o_ptr: Any,
    stride_ob: int,
    N_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    SPLITS: tl.constexpr,
) -> None:
    """Phase 2 of decode attention: program ``(head, b)`` loads the ``SPLITS`` partials of its
    row, weighs each by ``w_s = exp2(m_s - max_s m_s)`` and stores ``sum_s w_s acc_s / sum_s
    w_s l_s`` to O's row ``b``, columns ``head * HEAD_DIM ...``."""
    head, b = tl.program_id(axis=0), tl.program_id(axis=1)
    offs_s = tl.arange(0, SPLITS)
    offs_d = tl.arange(0, HEAD_DIM)
    rows = (b * N_HEADS + head) * SPLITS + offs_s
    m = tl.load(m_ptr + rows)
    l_s = tl.load(l_ptr + rows)
    acc = tl.load(acc_ptr + rows[:, None] * HEAD_DIM + offs_d[None, :])
    w = tl.exp2(m - tl.max(m, axis=0))
    out = tl.sum(acc * w[:, None], axis=0) / tl.sum(l_s * w, axis=0)
    tl.store(o_ptr + b * stride_ob + head * HEAD_DIM + offs_d, out.to(o_ptr.dtype.element_ty))


def decode_partials(dev, batch, n_heads, head_dim, splits, placement=None):
    """The fp32 buffers phase 1 writes and phase 2 reads: (acc, m, l)."""
    rows = batch * n_heads * splits
    return (dev.empty((rows, head_dim), "fp32", placement=placement),
            dev.empty((rows,), "fp32", placement=placement),
            dev.empty((rows,), "fp32", placement=placement))  # fmt: skip


def launch_flash_decode(dev, q, k_cache, v_cache, o, ctx_len, n_heads, n_kv_heads, partials,
                        splits, block_n=16, pes=None):  # fmt: skip
    """Decode attention of ``q [batch, n_heads * hd]`` over the first ``ctx_len`` positions of
    the caches into ``o [batch, n_heads * hd]``: the two launches, in order."""
    batch, _, width = k_cache.shape
    head_dim = width // n_kv_heads
    acc, m, l_s = partials
    first = dev.launch(
        flash_decode_split_kernel, (splits, n_kv_heads, batch), q, k_cache, v_cache, acc, m,
        l_s, ctx_len, 1.0 / math.sqrt(head_dim), q.stride(0), k_cache.stride(0),
        k_cache.stride(1), v_cache.stride(0), v_cache.stride(1), N_HEADS=n_heads,
        N_KV_HEADS=n_kv_heads, HEAD_DIM=head_dim, SPLITS=splits, BLOCK_N=block_n, pes=pes,
    )  # fmt: skip
    second = dev.launch(flash_decode_combine_kernel, (n_heads, batch), acc, m, l_s, o,
                        o.stride(0), N_HEADS=n_heads, HEAD_DIM=head_dim, SPLITS=splits,
                        pes=pes)  # fmt: skip
    return first, second
