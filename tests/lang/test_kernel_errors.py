"""Bad kernels fail with a KernbenchError that names the kernel, the PE and the sizes involved;
none of them hangs the simulation."""

import dataclasses
import re

import numpy as np
import pytest

import kernbench.lang as tl
from kernbench.core.errors import AllocationError, KernelError
from kernbench.hw import HwSpec, PeSpec
from kernbench.runtime import Placement
from kernbench.topology import SystemSpec, Topology, TopologySpec

MIB = 1 << 20


def run(dev, kernel, *args, grid=1, pes=((0, 0),), **meta):
    dev.launch(kernel, grid, *args, pes=list(pes), **meta)
    dev.synchronize()


# -- TCM -----------------------------------------------------------------------------------
@tl.jit
def huge_zeros(x_ptr):
    acc = tl.zeros((4096, 4096), tl.float32)
    tl.store(x_ptr, tl.sum(acc))


def test_block_larger_than_tcm(topo1x1, new_device):
    dev = new_device(topo1x1)
    x = dev.empty(1, "fp32")
    with pytest.raises(AllocationError) as err:
        run(dev, huge_zeros, x, pes=[(0, 3)])
    msg = str(err.value)
    for part in ("huge_zeros", "sip0.cube0.pe3", "4096x4096", "float32", "64 MiB", "16 MiB"):
        assert part in msg
    assert "hw.pe.tcm_bytes" in msg


@tl.jit
def huge_full(x_ptr):
    tl.full((1 << 16, 1 << 16), 1.0, tl.float32)  # 16 GiB: refused before NumPy fills it


def test_huge_full_is_refused_before_allocation(topo1x1, new_device):
    dev = new_device(topo1x1)
    with pytest.raises(AllocationError, match=r"65536x65536 float32 block \(16 GiB\)"):
        run(dev, huge_full, dev.empty(1, "fp32"))


@tl.jit
def live_blocks(x_ptr, MB: tl.constexpr, KEEP: tl.constexpr):
    n = MB * (1 << 20) // 4
    kept = []
    for _ in range(3):
        block = tl.full((n,), 1.0, tl.float32)
        if KEEP:
            kept.append(block)
    tl.store(x_ptr, tl.sum(block))


def test_tcm_counts_live_blocks_and_frees_dropped_ones(topo1x1, new_device):
    dev = new_device(topo1x1)
    x = dev.empty(1, "fp32")
    # dropped blocks are freed: at most two 6 MiB blocks are alive at once (the old one is
    # still bound while the new one is made)
    run(dev, live_blocks, x, MB=6, KEEP=False)
    pe = dev.system.pe(0, 0, 0)
    assert pe.tcm_peak == 2 * 6 * MIB
    assert pe.tcm_used == 0
    # kept blocks stay: the third 6 MiB block finds 12 MiB held
    with pytest.raises(AllocationError) as err:
        run(dev, live_blocks, x, MB=6, KEEP=True)
    assert "6 MiB" in str(err.value) and "12 MiB held by live blocks" in str(err.value)


@tl.jit
def tile_gemm(a_ptr, b_ptr, c_ptr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    rm, rn, rk = tl.arange(0, BM), tl.arange(0, BN), tl.arange(0, BK)
    a = tl.load(a_ptr + rm[:, None] * BK + rk[None, :])
    b = tl.load(b_ptr + rk[:, None] * BN + rn[None, :])
    tl.store(c_ptr + rm[:, None] * BN + rn[None, :], tl.dot(a, b))


def test_gemm_tiles_that_do_not_fit_a_small_tcm(new_device):
    """With hw.pe.tcm_bytes = 48 KiB, two 16 KiB fp16 operand tiles fit but their 64x128 fp32
    product (32 KiB) does not."""
    hw = dataclasses.replace(HwSpec(), pe=PeSpec(tcm_bytes=48 * 1024))
    topo = Topology(SystemSpec(topology=TopologySpec(name="1x1", mesh_w=1, mesh_h=1), hw=hw))
    dev = new_device(topo)
    a = dev.tensor(np.ones((64, 128), np.float16))
    b = dev.tensor(np.ones((128, 128), np.float16))
    c = dev.empty((64, 128), "fp32")
    with pytest.raises(AllocationError) as err:
        run(dev, tile_gemm, a, b, c, BM=64, BN=128, BK=128)
    msg = str(err.value)
    assert "tl.dot" in msg and "64x128 float32" in msg and "32 KiB" in msg
    assert "48 KiB capacity (hw.pe.tcm_bytes)" in msg and "tile_gemm" in msg


# -- memory bounds -------------------------------------------------------------------------
@tl.jit
def unmasked_copy(src_ptr, dst_ptr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(dst_ptr + offs, tl.load(src_ptr + offs))


def test_load_out_of_bounds_without_mask(topo1x1, new_device):
    dev = new_device(topo1x1)
    src = dev.tensor(np.zeros((10, 10), np.float32), placement="row", name="activations")
    dst = dev.empty(128, "fp32", placement="row")
    with pytest.raises(KernelError) as err:
        run(dev, unmasked_copy, src, dst, BLOCK=128)
    msg = str(err.value)
    assert "unmasked_copy" in msg and "sip0.cube0.pe0" in msg and "tl.load" in msg
    assert "'activations'" in msg and "10x10" in msg and "100 elements" in msg
    assert "offset 100" in msg and "block index (100,)" in msg


def test_store_out_of_bounds_without_mask_names_the_program(topo1x1, new_device):
    dev = new_device(topo1x1)
    src = dev.tensor(np.zeros(256, np.float32))
    dst = dev.empty(200, "fp32", name="result")
    with pytest.raises(KernelError) as err:  # program 1 stores offsets 128..255
        run(dev, unmasked_copy, src, dst, BLOCK=128, grid=2, pes=[(0, 0), (0, 6)])
    msg = str(err.value)
    assert "sip0.cube0.pe6" in msg and "tl.store" in msg and "'result'" in msg
    assert "offset 200" in msg and "block index (72,)" in msg


@tl.jit
def negative_offset(src_ptr):
    tl.load(src_ptr + tl.arange(0, 4) - 2)


def test_negative_offset_is_out_of_bounds(topo1x1, new_device):
    dev = new_device(topo1x1)
    src = dev.tensor(np.zeros(8, np.float32))
    with pytest.raises(KernelError, match=r"offset -2 at block index \(0,\)"):
        run(dev, negative_offset, src)


@tl.jit
def bad_mask(src_ptr):
    offs = tl.arange(0, 8)
    tl.load(src_ptr + offs, mask=tl.arange(0, 4) < 2)


def test_mask_that_does_not_fit_the_pointer_block(topo1x1, new_device):
    dev = new_device(topo1x1)
    src = dev.tensor(np.zeros(8, np.float32))
    with pytest.raises(
        KernelError, match=r"mask of shape 4 does not broadcast to the pointer block 8"
    ):
        run(dev, bad_mask, src)


@tl.jit
def store_too_big(dst_ptr):
    tl.store(dst_ptr + tl.arange(0, 4), tl.zeros((8,), tl.float32))


def test_store_value_that_does_not_fit_the_pointer_block(topo1x1, new_device):
    dev = new_device(topo1x1)
    dst = dev.empty(8, "fp32")
    with pytest.raises(KernelError) as err:
        run(dev, store_too_big, dst)
    msg = str(err.value)
    assert "store_too_big" in msg and "value of shape 8" in msg and "pointer block 4" in msg


@tl.jit
def store_ones(dst_ptr):
    tl.store(dst_ptr + tl.arange(0, 4), tl.full((4,), 1.0, tl.float32))


def test_store_into_a_replicated_tensor(topo1x1, new_device):
    dev = new_device(topo1x1)
    dst = dev.zeros(4, "fp32", placement=Placement(pe_ids=(0, 1)), name="weights")
    with pytest.raises(KernelError, match=r"tl.store into tensor 'weights', which is replicated"):
        run(dev, store_ones, dst)
    np.testing.assert_array_equal(dst.numpy(), np.zeros(4, np.float32))


# -- shapes and dtypes ---------------------------------------------------------------------
@tl.jit
def dot_of(
    x_ptr, SHAPE_A: tl.constexpr, SHAPE_B: tl.constexpr, DT_A: tl.constexpr, DT_B: tl.constexpr
):
    tl.dot(tl.zeros(SHAPE_A, DT_A), tl.zeros(SHAPE_B, DT_B))


@pytest.mark.parametrize(
    "shape_a, shape_b, dt_a, dt_b, expected",
    [
        (
            (16, 32),
            (16, 32),
            tl.float16,
            tl.float16,
            "inner dimensions differ: a is 16x32, b is 16x32",
        ),
        ((16, 32), (32, 8), tl.float16, tl.float32, "operand dtypes differ: float16 and float32"),
        ((16, 32), (32, 8), tl.int8, tl.float16, "operand dtypes differ: int8 and float16"),
        ((32,), (32, 8), tl.float16, tl.float16, "needs 2-D blocks, got 32 and 32x8"),
        ((16, 32), (32, 8), tl.int32, tl.int32, "unsupported dtype int32"),
    ],
    ids=["inner-dims", "fp16-fp32", "int8-fp16", "1-d", "int32"],
)
def test_dot_mismatches(topo1x1, new_device, shape_a, shape_b, dt_a, dt_b, expected):
    dev = new_device(topo1x1)
    with pytest.raises(KernelError) as err:
        run(
            dev,
            dot_of,
            dev.empty(1, "fp32"),
            SHAPE_A=shape_a,
            SHAPE_B=shape_b,
            DT_A=dt_a,
            DT_B=dt_b,
        )
    assert expected in str(err.value)
    assert "kernel dot_of on sip0.cube0.pe0" in str(err.value)


@tl.jit
def dot_acc(x_ptr):
    tl.dot(tl.zeros((16, 32), tl.float16), tl.zeros((32, 8), tl.float16), tl.zeros((8, 16)))


def test_dot_accumulator_of_the_wrong_shape(topo1x1, new_device):
    dev = new_device(topo1x1)
    with pytest.raises(KernelError, match="acc must be a 16x8 block, got 8x16"):
        run(dev, dot_acc, dev.empty(1, "fp32"))


@tl.jit
def no_broadcast(x_ptr, OP: tl.constexpr):
    a = tl.zeros((4, 8), tl.float32)
    b = tl.zeros((3,), tl.float32)
    if OP == "add":
        a + b
    elif OP == "where":
        tl.where(a > 0, a, b)
    else:
        tl.maximum(a, tl.zeros((4, 3), tl.float32))


@pytest.mark.parametrize(
    "op, expected",
    [
        ("add", "operator +: block shapes 4x8, 3 do not broadcast"),
        ("where", "tl.where: block shapes 4x8, 4x8, 3 do not broadcast"),
        ("maximum", "tl.maximum: block shapes 4x8, 4x3 do not broadcast"),
    ],
)
def test_elementwise_shapes_that_do_not_broadcast(topo1x1, new_device, op, expected):
    dev = new_device(topo1x1)
    with pytest.raises(KernelError) as err:
        run(dev, no_broadcast, dev.empty(1, "fp32"), OP=op)
    assert expected in str(err.value) and "no_broadcast" in str(err.value)


@tl.jit
def block_truth(x_ptr):
    offs = tl.arange(0, 4)
    if offs < 2:
        pass


def test_a_block_has_no_truth_value(topo1x1, new_device):
    dev = new_device(topo1x1)
    with pytest.raises(KernelError, match="a 4 block has no single truth value"):
        run(dev, block_truth, dev.empty(1, "fp32"))


# -- outside a kernel, and Python errors inside one ----------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        lambda: tl.program_id(0),
        lambda: tl.num_programs(0),
        lambda: tl.arange(0, 16),
        lambda: tl.zeros((4, 4), tl.float32),
        lambda: tl.full((4,), 1.0, tl.float16),
    ],
    ids=["program_id", "num_programs", "arange", "zeros", "full"],
)
def test_tl_calls_outside_a_kernel(call):
    with pytest.raises(KernelError, match=re.escape("tl.* calls run only inside a kernel")):
        call()


@tl.jit
def raises_on_program(x_ptr, BAD: tl.constexpr):
    if tl.program_id(0) == BAD:
        {}["no such key"]
    tl.store(x_ptr + tl.program_id(0), 1.0)


def test_python_exception_names_kernel_pe_and_program(topo1x1, new_device):
    dev = new_device(topo1x1)
    x = dev.empty(16, "fp32", placement="row")
    with pytest.raises(KernelError) as err:
        run(dev, raises_on_program, x, BAD=13, grid=16, pes=dev.all_pes())
    # program 13 of 16 over 8 PEs runs on PE 13 % 8 = 5
    msg = str(err.value)
    assert "kernel raises_on_program on sip0.cube0.pe5, program (13, 0, 0)" in msg
    assert "KeyError" in msg and "no such key" in msg
    assert isinstance(err.value.__cause__, KeyError)
