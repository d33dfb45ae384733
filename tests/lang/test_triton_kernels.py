"""Triton tutorial kernels run unchanged (apart from the import) and match NumPy.

``add_kernel``, ``softmax_kernel``, ``matmul_kernel`` and ``_layer_norm_fwd_fused`` follow
Triton's tutorials 01 (vector add), 02 (fused softmax), 03 (matrix multiplication) and 05
(layer norm, forward) line by line; only ``import triton.language as tl`` / ``@triton.jit``
became ``import kernbench.lang as tl`` / ``@tl.jit`` (and, in 05, ``1 / tl.sqrt`` became
``tl.rsqrt``). Two variants of tutorial 02 use ``tl.softmax``, block pointers and ``tl.exp2``.
The other kernels cover the remaining dtypes and calls. Expected values come from NumPy, sizes
are not multiples of the blocks (so masks matter), and the same kernels run on one PE and
spread over several PEs and cubes with tensors in every kind of placement.
"""

import ml_dtypes
import numpy as np
import pytest

import kernbench.lang as tl
from kernbench.runtime import Placement


# -- tutorial 01: vector add ---------------------------------------------------------------
@tl.jit
def add_kernel(
    x_ptr,  # *Pointer* to first input vector.
    y_ptr,  # *Pointer* to second input vector.
    output_ptr,  # *Pointer* to output vector.
    n_elements,  # Size of the vector.
    BLOCK_SIZE: tl.constexpr,  # Number of elements each program should process.
):
    pid = tl.program_id(axis=0)
    block_start = pid * BLOCK_SIZE
    offsets = block_start + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    x = tl.load(x_ptr + offsets, mask=mask)
    y = tl.load(y_ptr + offsets, mask=mask)
    output = x + y
    tl.store(output_ptr + offsets, output, mask=mask)


@pytest.mark.parametrize(
    "in_placement, out_placement, pes",
    [
        (None, None, [(0, 0)]),
        ("row", "row", None),
        (
            Placement(cubes="row", pes="replicate"),
            Placement(cubes="row", pes="row", cube_ids=(2, 1)),
            [(0, 0), (3, 7)],
        ),
        (
            Placement(cubes="replicate", pes="row", cube_ids=(1, 2), pe_ids=(0, 5)),
            Placement(cubes="row", pes="row", cube_ids=(3,), pe_ids=(1, 2, 4)),
            [(c, p) for c in range(4) for p in (0, 6)],
        ),
    ],
    ids=["one-pe", "row-all-pes", "cube-row-two-pes", "two-level-subsets"],
)
def test_vector_add_matches_numpy(topo2x2, new_device, in_placement, out_placement, pes):
    rng = np.random.default_rng(1)
    n_elements = 1000  # not a multiple of BLOCK_SIZE: the last program is masked
    x = rng.standard_normal(n_elements).astype(np.float32)
    y = rng.standard_normal(n_elements).astype(np.float32)
    dev = new_device(topo2x2)
    tx = dev.tensor(x, placement=in_placement)
    ty = dev.tensor(y, placement=in_placement)
    output = dev.empty(n_elements, "fp32", placement=out_placement)
    grid = lambda meta: (tl.cdiv(n_elements, meta["BLOCK_SIZE"]),)  # noqa: E731 - as Triton
    dev.launch(add_kernel, grid, tx, ty, output, n_elements, BLOCK_SIZE=128, pes=pes)
    dev.synchronize()
    np.testing.assert_array_equal(output.numpy(), x + y)


def test_vector_add_masked_tail_leaves_neighbours_untouched(topo1x1, new_device):
    """The masked lanes of the last block must not write past ``n_elements``: the output
    tensor is longer than the vector and its tail keeps its sentinel value."""
    n, total = 777, 1024
    x = np.arange(n, dtype=np.float32)
    y = np.full(n, 0.5, np.float32)
    dev = new_device(topo1x1)
    tx, ty = dev.tensor(x), dev.tensor(y)
    out = dev.tensor(np.full(total, -7.0, np.float32))
    dev.launch(add_kernel, (tl.cdiv(n, 64),), tx, ty, out, n, BLOCK_SIZE=64)
    dev.synchronize()
    got = out.numpy()
    np.testing.assert_array_equal(got[:n], x + y)
    np.testing.assert_array_equal(got[n:], np.full(total - n, -7.0, np.float32))


# -- tutorial 02: fused softmax ------------------------------------------------------------
@tl.jit
def softmax_kernel(
    output_ptr,
    input_ptr,
    input_row_stride,
    output_row_stride,
    n_rows,
    n_cols,
    BLOCK_SIZE: tl.constexpr,
    num_stages: tl.constexpr,
):
    # starting row of the program
    row_start = tl.program_id(0)
    row_step = tl.num_programs(0)
    for row_idx in tl.range(row_start, n_rows, row_step, num_stages=num_stages):
        # The stride represents how much we need to increase the pointer to advance 1 row
        row_start_ptr = input_ptr + row_idx * input_row_stride
        # The block size is the next power of two greater than n_cols, so we can fit each
        # row in a single block
        col_offsets = tl.arange(0, BLOCK_SIZE)
        input_ptrs = row_start_ptr + col_offsets
        # Load the row into SRAM, using a mask since BLOCK_SIZE may be > than n_cols
        mask = col_offsets < n_cols
        row = tl.load(input_ptrs, mask=mask, other=-float("inf"))
        # Subtract maximum for numerical stability
        row_minus_max = row - tl.max(row, axis=0)
        # Note that exponentiation in Triton is fast but approximate (i.e., think __expf in CUDA)
        numerator = tl.exp(row_minus_max)
        denominator = tl.sum(numerator, axis=0)
        softmax_output = numerator / denominator
        # Write back output to DRAM
        output_row_start_ptr = output_ptr + row_idx * output_row_stride
        output_ptrs = output_row_start_ptr + col_offsets
        tl.store(output_ptrs, softmax_output, mask=mask)


def next_power_of_2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def numpy_softmax(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.float64) - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize(
    "n_rows, n_cols, num_programs, placement, pes",
    [
        (7, 100, 3, None, [(0, 0)]),  # one PE, each program loops over several rows
        (45, 37, 45, Placement(cubes="row", pes="row"), None),  # one row per program
        (20, 130, 6, Placement(cubes="row", pes="replicate", cube_ids=(0, 3)), [(1, 1), (2, 6)]),
    ],
    ids=["one-pe", "row-all-pes", "two-cubes"],
)
def test_fused_softmax_matches_numpy(
    topo2x2, new_device, n_rows, n_cols, num_programs, placement, pes
):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((n_rows, n_cols)) * 4).astype(np.float32)
    dev = new_device(topo2x2)
    tx = dev.tensor(x, placement=placement)
    out_placement = placement if placement is None or placement.pes != "replicate" else "row"
    y = dev.empty(x.shape, "fp32", placement=out_placement)
    BLOCK_SIZE = next_power_of_2(n_cols)
    assert n_cols != BLOCK_SIZE  # n_cols is not a power of two: the mask and -inf matter
    dev.launch(
        softmax_kernel,
        (num_programs, 1, 1),
        y,
        tx,
        tx.stride(0),
        y.stride(0),
        n_rows,
        n_cols,
        BLOCK_SIZE,
        2,
        pes=pes,
    )
    dev.synchronize()
    got = y.numpy()
    np.testing.assert_allclose(got, numpy_softmax(x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=1), np.ones(n_rows), rtol=1e-5)


# -- tutorial 02 with the rest of the language --------------------------------------------
@tl.jit
def softmax_kernel_tl(
    output_ptr, input_ptr, input_row_stride, output_row_stride, n_rows, n_cols,
    BLOCK_SIZE: tl.constexpr, num_stages: tl.constexpr,
):  # fmt: skip
    """Tutorial 02 with its body replaced by ``tl.softmax``."""
    row_start = tl.program_id(0)
    row_step = tl.num_programs(0)
    for row_idx in tl.range(row_start, n_rows, row_step, num_stages=num_stages):
        col_offsets = tl.arange(0, BLOCK_SIZE)
        mask = col_offsets < n_cols
        row = tl.load(input_ptr + row_idx * input_row_stride + col_offsets, mask=mask,
                      other=-float("inf"))  # fmt: skip
        tl.store(output_ptr + row_idx * output_row_stride + col_offsets, tl.softmax(row),
                 mask=mask)  # fmt: skip


@tl.jit
def softmax_rows_kernel(output_ptr, input_ptr, n_rows, n_cols, BLOCK_M: tl.constexpr,
                        BLOCK_N: tl.constexpr):  # fmt: skip
    """BLOCK_M rows per program through block pointers (ragged in both dimensions), the
    exponential as ``exp2`` of a log2(e)-scaled argument, as fast softmax kernels write it."""
    pid = tl.program_id(0)
    src = tl.make_block_ptr(
        base=input_ptr, shape=(n_rows, n_cols), strides=(n_cols, 1),
        offsets=(pid * BLOCK_M, 0), block_shape=(BLOCK_M, BLOCK_N), order=(1, 0),
    )  # fmt: skip
    x = tl.load(src, boundary_check=(0, 1), padding_option="zero")
    cols = tl.arange(0, BLOCK_N)
    x = tl.where(cols[None, :] < n_cols, x, -float("inf"))
    z = (x - tl.max(x, axis=1, keep_dims=True)) * 1.4426950408889634  # log2(e)
    num = tl.exp2(z)
    out = num / tl.sum(num, axis=1, keep_dims=True)
    dst = tl.make_block_ptr(output_ptr, (n_rows, n_cols), (n_cols, 1), (pid * BLOCK_M, 0),
                            (BLOCK_M, BLOCK_N), (1, 0))  # fmt: skip
    tl.store(dst, out, boundary_check=(0, 1))


@pytest.mark.parametrize("variant", ["tl.softmax", "block pointers + exp2"])
def test_softmax_variants_match_numpy(topo2x2, new_device, variant):
    rng = np.random.default_rng(21)
    n_rows, n_cols = 45, 37
    x = (rng.standard_normal((n_rows, n_cols)) * 4).astype(np.float32)
    dev = new_device(topo2x2)
    tx = dev.tensor(x, placement="row")
    y = dev.zeros(x.shape, "fp32", placement="row")
    if variant == "tl.softmax":
        dev.launch(softmax_kernel_tl, (8, 1, 1), y, tx, tx.stride(0), y.stride(0), n_rows,
                   n_cols, next_power_of_2(n_cols), 2)  # fmt: skip
    else:
        dev.launch(softmax_rows_kernel, (tl.cdiv(n_rows, 8),), y, tx, n_rows, n_cols,
                   BLOCK_M=8, BLOCK_N=next_power_of_2(n_cols))  # fmt: skip
    dev.synchronize()
    np.testing.assert_allclose(y.numpy(), numpy_softmax(x), rtol=1e-5, atol=1e-7)


# -- tutorial 05: layer norm (forward) -----------------------------------------------------
@tl.jit
def _layer_norm_fwd_fused(
    X,  # pointer to the input
    Y,  # pointer to the output
    W,  # pointer to the weights
    B,  # pointer to the biases
    Mean,  # pointer to the mean
    Rstd,  # pointer to the 1/std
    stride,  # how much to increase the pointer when moving by 1 row
    N,  # number of columns in X
    eps,  # epsilon to avoid division by zero
    BLOCK_SIZE: tl.constexpr,
):
    # Map the program id to the row of X and Y it should compute.
    row = tl.program_id(0)
    Y += row * stride
    X += row * stride
    # Compute mean
    mean = 0
    _mean = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    for off in range(0, N, BLOCK_SIZE):
        cols = off + tl.arange(0, BLOCK_SIZE)
        a = tl.load(X + cols, mask=cols < N, other=0.0).to(tl.float32)
        _mean += a
    mean = tl.sum(_mean, axis=0) / N
    # Compute variance
    _var = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    for off in range(0, N, BLOCK_SIZE):
        cols = off + tl.arange(0, BLOCK_SIZE)
        x = tl.load(X + cols, mask=cols < N, other=0.0).to(tl.float32)
        x = tl.where(cols < N, x - mean, 0.0)
        _var += x * x
    var = tl.sum(_var, axis=0) / N
    rstd = tl.rsqrt(var + eps)
    # Write mean / rstd
    tl.store(Mean + row, mean)
    tl.store(Rstd + row, rstd)
    # Normalize and apply linear transformation
    for off in range(0, N, BLOCK_SIZE):
        cols = off + tl.arange(0, BLOCK_SIZE)
        mask = cols < N
        w = tl.load(W + cols, mask=mask)
        b = tl.load(B + cols, mask=mask)
        x = tl.load(X + cols, mask=mask, other=0.0).to(tl.float32)
        x_hat = (x - mean) * rstd
        y = x_hat * w + b
        # Write output
        tl.store(Y + cols, y, mask=mask)


@pytest.mark.parametrize("placement, pes", [(None, [(0, 0)]), ("row", None)], ids=["one-pe", "row"])
def test_tutorial_layer_norm_forward_matches_numpy(topo2x2, new_device, placement, pes):
    """Tutorial 05's test: fp16 x, w and b, fp32 statistics; N is not a multiple of the block,
    so each row takes several masked blocks."""
    rng = np.random.default_rng(22)
    M, N, eps = 24, 300, 1e-5
    x = (-2.3 + 0.5 * rng.standard_normal((M, N))).astype(np.float16)
    w = rng.random(N).astype(np.float16)
    b = rng.random(N).astype(np.float16)
    dev = new_device(topo2x2)
    tx, tw, tb = dev.tensor(x, placement=placement), dev.tensor(w), dev.tensor(b)
    y = dev.empty((M, N), "fp16", placement=placement)
    mean = dev.empty(M, "fp32")
    rstd = dev.empty(M, "fp32")
    dev.launch(_layer_norm_fwd_fused, (M,), tx, y, tw, tb, mean, rstd, tx.stride(0), N, eps,
               BLOCK_SIZE=128, pes=pes)  # fmt: skip
    dev.synchronize()
    x64 = x.astype(np.float64)
    mu = x64.mean(axis=1)
    inv = 1 / np.sqrt(x64.var(axis=1) + eps)
    ref = (x64 - mu[:, None]) * inv[:, None] * w.astype(np.float64) + b.astype(np.float64)
    np.testing.assert_allclose(mean.numpy(), mu, rtol=1e-6)
    np.testing.assert_allclose(rstd.numpy(), inv, rtol=1e-5)
    # y is computed in fp32 (fp32 x_hat times fp16 w is fp32, as in Triton), then rounded
    # once to fp16: half an fp16 ulp
    got = y.numpy().astype(np.float64)
    assert (np.abs(got - ref) <= np.abs(ref) * 2.0**-11 * 1.01 + 1e-6).all()


# -- tutorial 03: matrix multiplication ----------------------------------------------------
@tl.jit
def matmul_kernel(
    # Pointers to matrices
    a_ptr,
    b_ptr,
    c_ptr,
    # Matrix dimensions
    M,
    N,
    K,
    # The stride variables represent how much to increase the ptr by when moving by 1
    # element in a particular dimension.
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    stride_cm,
    stride_cn,
    # Meta-parameters
    BLOCK_SIZE_M: tl.constexpr,
    BLOCK_SIZE_N: tl.constexpr,
    BLOCK_SIZE_K: tl.constexpr,
    GROUP_SIZE_M: tl.constexpr,
    ACTIVATION: tl.constexpr,
):
    """Kernel for computing the matmul C = A x B.
    A has shape (M, K), B has shape (K, N) and C has shape (M, N)
    """
    # Map program ids `pid` to the block of C it should compute, in grouped ordering.
    pid = tl.program_id(axis=0)
    num_pid_m = tl.cdiv(M, BLOCK_SIZE_M)
    num_pid_n = tl.cdiv(N, BLOCK_SIZE_N)
    num_pid_in_group = GROUP_SIZE_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_SIZE_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_SIZE_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    tl.assume(pid_m >= 0)
    tl.assume(pid_n >= 0)
    tl.assume(stride_am > 0)
    tl.assume(stride_ak > 0)
    tl.assume(stride_bn > 0)
    tl.assume(stride_bk > 0)
    tl.assume(stride_cm > 0)
    tl.assume(stride_cn > 0)

    # Create pointers for the first blocks of A and B.
    offs_am = (pid_m * BLOCK_SIZE_M + tl.arange(0, BLOCK_SIZE_M)) % M
    offs_bn = (pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)) % N
    offs_k = tl.arange(0, BLOCK_SIZE_K)
    a_ptrs = a_ptr + (offs_am[:, None] * stride_am + offs_k[None, :] * stride_ak)
    b_ptrs = b_ptr + (offs_k[:, None] * stride_bk + offs_bn[None, :] * stride_bn)

    # Iterate to compute a block of the C matrix, accumulating in fp32.
    accumulator = tl.zeros((BLOCK_SIZE_M, BLOCK_SIZE_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_SIZE_K)):
        # Load the next block of A and B, generate a mask by checking the K dimension.
        a = tl.load(a_ptrs, mask=offs_k[None, :] < K - k * BLOCK_SIZE_K, other=0.0)
        b = tl.load(b_ptrs, mask=offs_k[:, None] < K - k * BLOCK_SIZE_K, other=0.0)
        # We accumulate along the K dimension.
        accumulator = tl.dot(a, b, accumulator)
        # Advance the ptrs to the next K block.
        a_ptrs += BLOCK_SIZE_K * stride_ak
        b_ptrs += BLOCK_SIZE_K * stride_bk
    # You can fuse arbitrary activation functions here while the accumulator is still in FP32!
    if ACTIVATION == "leaky_relu":
        accumulator = leaky_relu(accumulator)
    c = accumulator.to(tl.float16)

    # Write back the block of the output matrix C with masks.
    offs_cm = pid_m * BLOCK_SIZE_M + tl.arange(0, BLOCK_SIZE_M)
    offs_cn = pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)
    c_ptrs = c_ptr + stride_cm * offs_cm[:, None] + stride_cn * offs_cn[None, :]
    c_mask = (offs_cm[:, None] < M) & (offs_cn[None, :] < N)
    tl.store(c_ptrs, c, mask=c_mask)


@tl.jit
def leaky_relu(x):
    return tl.where(x >= 0, x, 0.01 * x)


def matmul(dev, a, b, activation="", placements=(None, None, None), pes=None, blocks=(32, 32, 64)):
    """Tutorial 03's host wrapper, on a kernbench device."""
    assert a.shape[1] == b.shape[0], "Incompatible dimensions"
    M, K = a.shape
    K, N = b.shape
    ta = dev.tensor(a, placement=placements[0])
    tb = dev.tensor(b, placement=placements[1])
    c = dev.empty((M, N), "fp16", placement=placements[2])
    bm, bn, bk = blocks
    grid = lambda META: (tl.cdiv(M, META["BLOCK_SIZE_M"]) * tl.cdiv(N, META["BLOCK_SIZE_N"]),)  # noqa: E731
    dev.launch(
        matmul_kernel,
        grid,
        ta,
        tb,
        c,
        M,
        N,
        K,
        ta.stride(0),
        ta.stride(1),
        tb.stride(0),
        tb.stride(1),
        c.stride(0),
        c.stride(1),
        BLOCK_SIZE_M=bm,
        BLOCK_SIZE_N=bn,
        BLOCK_SIZE_K=bk,
        GROUP_SIZE_M=2,
        ACTIVATION=activation,
        pes=pes,
    )
    dev.synchronize()
    return c.numpy()


def fp16_reference(a, b, activation=""):
    """fp32 products and sums of the fp16 inputs (what the PE's fp32 accumulator computes)."""
    ref = a.astype(np.float32) @ b.astype(np.float32)
    if activation == "leaky_relu":
        ref = np.where(ref >= 0, ref, np.float32(0.01) * ref)
    return ref


def assert_fp16_close(got, ref):
    # The accumulator is fp32 (sum order may differ from NumPy's by a few fp32 ulps); the
    # result is then rounded once to fp16: half an fp16 ulp, 2**-11 relative.
    assert got.dtype == np.float16
    err = np.abs(got.astype(np.float32) - ref)
    bound = np.abs(ref) * 2.0**-11 * 1.01 + 1e-3
    assert (err <= bound).all(), f"max error {err.max()} (bound {bound.flat[err.argmax()]})"


@pytest.mark.parametrize(
    "M, N, K, placements, pes, activation",
    [
        (100, 70, 130, (None, None, None), [(0, 0)], ""),
        (100, 70, 130, ("row", "col", "row"), None, ""),
        (
            65,
            97,
            33,
            (
                Placement(cubes="row", pes="col"),
                Placement(cubes="replicate", pes="row", cube_ids=(2, 3)),
                Placement(cubes="col", pes="row", cube_ids=(0, 1)),
            ),
            [(0, 1), (1, 0), (2, 7), (3, 3)],
            "leaky_relu",
        ),
        (31, 17, 200, ("replicate", "replicate", "col"), [(3, 0), (3, 1)], ""),
    ],
    ids=["one-pe", "row-col-all-pes", "two-level-four-cubes", "replicated-inputs"],
)
def test_tutorial_matmul_fp16_matches_numpy(
    topo2x2, new_device, M, N, K, placements, pes, activation
):
    assert M % 32 and N % 32 and K % 64  # no dimension is a multiple of its block
    rng = np.random.default_rng(3)
    a = rng.standard_normal((M, K)).astype(np.float16)
    b = rng.standard_normal((K, N)).astype(np.float16)
    got = matmul(new_device(topo2x2), a, b, activation, placements, pes)
    assert_fp16_close(got, fp16_reference(a, b, activation))


def test_tutorial_matmul_error_is_visible_when_a_k_tile_is_lost(topo1x1, new_device):
    """The tolerance above is tight enough to fail: dropping the tail K tile (K=130 with
    BLOCK_SIZE_K=64 has three tiles) leaves errors far beyond it."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((40, 130)).astype(np.float16)
    b = rng.standard_normal((130, 40)).astype(np.float16)
    got = matmul(new_device(topo1x1), a, b)
    truncated = a[:, :128].astype(np.float32) @ b[:128].astype(np.float32)
    assert_fp16_close(got, fp16_reference(a, b))
    with pytest.raises(AssertionError):
        assert_fp16_close(got, truncated)


# -- the same GEMM for the other input dtypes ----------------------------------------------
@tl.jit
def matmul_any_kernel(
    a_ptr, b_ptr, c_ptr, M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
    BLOCK_SIZE_M: tl.constexpr, BLOCK_SIZE_N: tl.constexpr, BLOCK_SIZE_K: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """Tutorial 03 without grouping, with the accumulator dtype a parameter and the output
    cast to C's element type (int8 inputs need an int32 accumulator)."""
    pid = tl.program_id(axis=0)
    num_pid_n = tl.cdiv(N, BLOCK_SIZE_N)
    pid_m = pid // num_pid_n
    pid_n = pid % num_pid_n
    offs_m = pid_m * BLOCK_SIZE_M + tl.arange(0, BLOCK_SIZE_M)
    offs_n = pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)
    offs_k = tl.arange(0, BLOCK_SIZE_K)
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn
    acc = tl.zeros((BLOCK_SIZE_M, BLOCK_SIZE_N), dtype=ACC_DTYPE)
    for k in range(0, tl.cdiv(K, BLOCK_SIZE_K)):
        k_left = K - k * BLOCK_SIZE_K
        a = tl.load(a_ptrs, mask=(offs_m[:, None] < M) & (offs_k[None, :] < k_left), other=0)
        b = tl.load(b_ptrs, mask=(offs_k[:, None] < k_left) & (offs_n[None, :] < N), other=0)
        acc += tl.dot(a, b)
        a_ptrs += BLOCK_SIZE_K * stride_ak
        b_ptrs += BLOCK_SIZE_K * stride_bk
    c = acc.to(c_ptr.dtype.element_ty)
    c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    tl.store(c_ptrs, c, mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


def matmul_any(dev, a, b, out_dtype, acc_dtype, pes=None, placement=None, blocks=(16, 32, 32)):
    M, K = a.shape
    N = b.shape[1]
    ta, tb = dev.tensor(a, placement=placement), dev.tensor(b, placement=placement)
    c = dev.empty((M, N), out_dtype, placement=placement)
    bm, bn, bk = blocks
    dev.launch(
        matmul_any_kernel,
        (tl.cdiv(M, bm) * tl.cdiv(N, bn),),
        ta, tb, c, M, N, K, *ta.stride(), *tb.stride(), *c.stride(),
        BLOCK_SIZE_M=bm, BLOCK_SIZE_N=bn, BLOCK_SIZE_K=bk, ACC_DTYPE=acc_dtype, pes=pes,
    )  # fmt: skip
    dev.synchronize()
    return c.numpy()


@pytest.mark.parametrize("placement, pes", [(None, [(0, 0)]), ("row", None)], ids=["one-pe", "row"])
def test_matmul_fp32_inputs(topo2x2, new_device, placement, pes):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((45, 70)).astype(np.float32)
    b = rng.standard_normal((70, 50)).astype(np.float32)
    got = matmul_any(new_device(topo2x2), a, b, "fp32", tl.float32, pes, placement)
    assert got.dtype == np.float32
    # fp32 in, fp32 accumulate: only the summation order differs from NumPy
    np.testing.assert_allclose(got, a @ b, rtol=1e-5, atol=1e-5)


def test_matmul_bf16_inputs_accumulate_in_fp32(topo1x1, new_device):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((33, 100)).astype(ml_dtypes.bfloat16)
    b = rng.standard_normal((100, 20)).astype(ml_dtypes.bfloat16)
    dev = new_device(topo1x1)
    ref = a.astype(np.float32) @ b.astype(np.float32)
    got32 = matmul_any(dev, a, b, "fp32", tl.float32, placement="row")
    # the accumulator is fp32: a bf16 accumulator would be off by ~2**-8 relative
    np.testing.assert_allclose(got32, ref, rtol=1e-5, atol=1e-5)
    got16 = matmul_any(dev, a, b, "bf16", tl.float32, placement="row")
    assert got16.dtype == ml_dtypes.bfloat16
    # one rounding of the fp32 result to bf16: at most half a bf16 ulp (2**-9 relative);
    # 2**-8 leaves room for a different fp32 summation order
    np.testing.assert_allclose(got16.astype(np.float32), ref, rtol=2.0**-8, atol=1e-6)
    assert not np.allclose(got16.astype(np.float32), ref, rtol=2.0**-12, atol=0)  # it rounded


@pytest.mark.parametrize("pes", [[(0, 0)], None], ids=["one-pe", "all-pes"])
def test_int8_dot_is_exact_in_int32(topo2x2, new_device, pes):
    rng = np.random.default_rng(6)
    # extreme values: products up to 128*128 and sums far beyond int16 but within int32
    a = rng.integers(-128, 128, size=(37, 300)).astype(np.int8)
    b = rng.integers(-128, 128, size=(300, 29)).astype(np.int8)
    a[0, :] = -128
    b[:, 0] = -128
    got = matmul_any(new_device(topo2x2), a, b, "int32", tl.int32, pes, placement="row")
    ref = a.astype(np.int64) @ b.astype(np.int64)
    assert got.dtype == np.int32
    assert ref[0, 0] == 300 * 128 * 128  # beyond int16; exact in int32
    np.testing.assert_array_equal(got, ref)


# -- other calls on real data ----------------------------------------------------------------
@tl.jit
def misc_kernel(x_ptr, out_ptr, n_rows, n_cols, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_C)
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    x = tl.load(x_ptr + rows[:, None] * n_cols + cols[None, :], mask=mask, other=1.0)
    y = tl.sigmoid(x) + tl.sqrt(tl.abs(x)) - tl.log(tl.abs(x) + 1.0)
    y = tl.where(x > 0, tl.maximum(y, x), tl.minimum(y, -x))
    col_sum = tl.sum(tl.where(mask, y, 0.0), axis=0)  # BLOCK_C
    row_max = tl.max(y, axis=1, keep_dims=True)  # BLOCK_R x 1
    row_min = tl.min(y, axis=1)  # BLOCK_R
    z = y - row_max + col_sum[None, :] * 0.5 + row_min[:, None]
    zt = tl.trans(z)  # BLOCK_C x BLOCK_R
    tl.store(out_ptr + cols[:, None] * n_rows + rows[None, :], zt, mask=tl.trans(mask))


def test_elementwise_reductions_and_trans_match_numpy(topo1x1, new_device):
    rng = np.random.default_rng(7)
    n_rows, n_cols = 13, 21
    x = rng.standard_normal((n_rows, n_cols)).astype(np.float32)
    dev = new_device(topo1x1)
    tx = dev.tensor(x)
    out = dev.empty((n_cols, n_rows), "fp32")
    dev.launch(misc_kernel, 1, tx, out, n_rows, n_cols, BLOCK_R=16, BLOCK_C=32)
    dev.synchronize()
    y = 1 / (1 + np.exp(-x)) + np.sqrt(np.abs(x)) - np.log(np.abs(x) + 1)
    y = np.where(x > 0, np.maximum(y, x), np.minimum(y, -x))
    # padding lanes (loaded as 1.0) take part in row max/min over BLOCK_C, as in the kernel
    pad = np.float32(1 / (1 + np.exp(-1.0)) + 1 - np.log(2.0))
    pad = max(pad, 1.0)
    row_max = np.maximum(y.max(axis=1), pad)
    row_min = np.minimum(y.min(axis=1), pad)
    z = y - row_max[:, None] + y.sum(axis=0)[None, :] * 0.5 + row_min[:, None]
    np.testing.assert_allclose(out.numpy(), z.T, rtol=1e-5, atol=1e-5)


@tl.jit
def scalars(x_ptr, out_ptr):
    third = tl.load(x_ptr + 3)  # a scalar pointer
    total = tl.sum(tl.load(x_ptr + tl.arange(0, 8)))
    tl.store(out_ptr, total)
    tl.store(out_ptr + 1, third)
    tl.store(out_ptr + 2, tl.max(tl.load(tl.arange(0, 8) + x_ptr)))  # offsets + pointer


def test_scalar_pointers_and_offsets_plus_pointer(topo1x1, new_device):
    dev = new_device(topo1x1)
    x = dev.tensor(np.array([5, -1, 2, 9, 4, 0, 3, 1], np.float32))
    out = dev.zeros(4, "fp32")
    dev.launch(scalars, 1, x, out)
    dev.synchronize()
    np.testing.assert_array_equal(out.numpy(), np.array([23, 9, 9, 0], np.float32))


observed = {}


@tl.jit
def dtype_rules(x_ptr):
    i8 = tl.full((4, 8), 100, tl.int8)
    h = tl.full((4, 8), 1.5, tl.float16)
    observed["dot int8"] = tl.dot(i8, tl.trans(i8)).dtype
    observed["dot fp16"] = tl.dot(h, tl.trans(h)).dtype
    observed["dot bf16"] = tl.dot(h.to(tl.bfloat16), tl.trans(h).to(tl.bfloat16)).dtype
    observed["sum int8"] = tl.sum(i8).dtype
    observed["sum int8 value"] = int(tl.sum(i8))
    observed["sum fp16"] = tl.sum(h, axis=1).dtype
    observed["max keep_dims"] = tl.max(h, axis=1, keep_dims=True).shape
    observed["fp16 + python float"] = (h + 1.0).dtype
    observed["load dtype"] = tl.load(x_ptr + tl.arange(0, 2)).dtype


def test_result_dtypes_follow_triton(topo1x1, new_device):
    dev = new_device(topo1x1)
    dev.launch(dtype_rules, 1, dev.zeros(2, "bf16"))
    dev.synchronize()
    assert observed == {
        "dot int8": np.int32,
        "dot fp16": np.float32,
        "dot bf16": np.float32,
        "sum int8": np.int32,
        "sum int8 value": 3200,  # beyond int8: accumulated in int32
        "sum fp16": np.float16,
        "max keep_dims": (4, 1),
        "fp16 + python float": np.float16,
        "load dtype": ml_dtypes.bfloat16,
    }
