"""What each kernel-language call costs on its PE, against closed forms.

Expected times are written out from the PeSpec fields (the contract in kernbench/hw/pe.py and
docs/kernels.md), never taken from PeSpec.gemm_ns or math_ns. A PE's busy time is
``PeTiming.end_ns - start_ns``: for a kernel without stores it is exactly the sum of its calls.
"""

import dataclasses

import ml_dtypes
import numpy as np
import pytest

import kernbench.lang as tl
from kernbench.hw import HwSpec, PeSpec
from kernbench.runtime import PeDmaMsg, Placement
from kernbench.runtime.analytic import formula
from kernbench.sim.spec import SimSpec
from kernbench.topology import SystemSpec, Topology, TopologySpec

# Every field differs from its default, so a formula that reads a default would fail.
ODD_PE = PeSpec(
    cpu_overhead_ns=3.5,
    scheduler_overhead_ns=0.75,
    tcm_read_bw_gbs=100.0,
    tcm_write_bw_gbs=300.0,
    gemm_tflops_fp16=3.0,
    gemm_fill_drain_ns=5.0,
    math_tflops=0.25,
    dma_outstanding=1,
)


def one_cube(pe: PeSpec) -> Topology:
    """One cube whose kernels run blocking (num_stages=1, one DMA in flight per channel): the
    mode these closed forms describe."""
    hw = dataclasses.replace(HwSpec(), pe=pe)
    return Topology(
        SystemSpec(
            topology=TopologySpec(name="1x1", mesh_w=1, mesh_h=1),
            hw=hw,
            sim=SimSpec(num_stages=1),
        )
    )


@pytest.fixture(scope="module", params=["default", "odd"])
def topo(request):
    return one_cube(PeSpec(dma_outstanding=1) if request.param == "default" else ODD_PE)


def busy(dev, kernel, *args, pe=(0, 0), **meta) -> float:
    launch = dev.launch(kernel, 1, *args, pes=[pe], **meta)
    dev.synchronize()
    (timing,) = launch.pes
    assert timing.start_ns == launch.start_ns
    return timing.end_ns - timing.start_ns


@tl.jit
def zeros_then_dot(x_ptr, M: tl.constexpr, N: tl.constexpr, K: tl.constexpr, DT: tl.constexpr):
    a = tl.zeros((M, K), DT)
    b = tl.zeros((K, N), DT)
    tl.dot(a, b)


@pytest.mark.parametrize(
    "m, n, k, dtype, bound",
    [
        (64, 64, 128, tl.float16, "compute"),
        (8, 8, 512, tl.float16, "stream"),
        (48, 40, 72, tl.bfloat16, "compute"),
        (64, 64, 64, tl.float32, "compute"),
        (4, 4, 256, tl.float32, "stream"),
        (32, 64, 128, tl.int8, "compute"),
    ],
)
def test_dot_costs_dispatch_plus_max_of_compute_and_tcm_stream_plus_fill_drain(
    topo, new_device, m, n, k, dtype, bound
):
    pe = topo.spec.hw.pe
    dispatch = pe.cpu_overhead_ns + pe.scheduler_overhead_ns
    peak_flop_per_ns = pe.gemm_tflops_fp16 * 1e3 * (0.5 if dtype == tl.float32 else 1.0)
    compute_ns = 2 * m * n * k / peak_flop_per_ns
    operand_bytes = (m * k + k * n) * np.dtype(dtype).itemsize
    stream_ns = operand_bytes / pe.tcm_read_bw_gbs
    assert (compute_ns > stream_ns) == (bound == "compute") or topo.spec.hw.pe == ODD_PE
    dot_ns = dispatch + max(compute_ns, stream_ns) + pe.gemm_fill_drain_ns
    zeros_ns = 2 * dispatch + (m * k + k * n) / (pe.math_tflops * 1e3)

    dev = new_device(topo)
    got = busy(dev, zeros_then_dot, dev.empty(1, "fp32"), M=m, N=n, K=k, DT=dtype)
    assert got == pytest.approx(zeros_ns + dot_ns, rel=1e-12)
    unit = dev.system.pe(0, 0, 0)
    assert unit.gemm.ops == 1
    assert unit.gemm.busy_ns == pytest.approx(dot_ns - dispatch, rel=1e-12)
    assert unit.gemm.bytes == 2 * m * n * k  # flops
    assert unit.tcm_read.bytes == operand_bytes


def test_fp32_dot_takes_twice_the_fp16_compute_time(new_device):
    topo = one_cube(PeSpec(gemm_fill_drain_ns=0.0))
    times = {}
    for dt in (tl.float16, tl.float32):
        dev = new_device(topo)
        times[dt] = busy(dev, zeros_then_dot, dev.empty(1, "fp32"), M=128, N=128, K=128, DT=dt)
        times[dt] -= 2 * (3.0 + 128 * 128 / 1e3)  # the two zeros blocks
    assert times[tl.float32] - 3.0 == pytest.approx(2 * (times[tl.float16] - 3.0), rel=1e-12)


@tl.jit
def elementwise(x_ptr, M: tl.constexpr, N: tl.constexpr, OP: tl.constexpr):
    a = tl.zeros((M, N), tl.float32)
    if OP == "add":
        a + 1.0
    elif OP == "exp":
        tl.exp(a)
    elif OP == "where":
        tl.where(a > 0, a, 2.0)  # a comparison, then the select
    elif OP == "sum_rows":
        tl.sum(a, axis=1)  # a reduction costs its input elements
    elif OP == "cast":
        a.to(tl.float16)
    elif OP == "index_math":
        tl.arange(0, M) * 2  # arange, then a multiply: address generation, dispatch only
    elif OP == "view":
        a[:, None]  # indexing is free
        tl.reshape(a, (N, M))
        tl.expand_dims(a, (0, 2))  # a view too
    elif OP == "rsqrt":
        tl.rsqrt(a)  # transcendental functions cost what + costs
    elif OP == "erf":
        tl.erf(a)
    elif OP == "fma":
        tl.fma(a, a, 1.0)
    elif OP == "cumsum":
        tl.cumsum(a, axis=1)  # a scan costs its input elements
    elif OP == "argmax":
        tl.argmax(a, axis=0)  # a reduction: input elements, not the M outputs
    elif OP == "max_with_indices":
        tl.max(a, axis=1, return_indices=True)  # one reduction for both results
    elif OP == "softmax":
        tl.softmax(a, dim=1, keep_dims=True)  # max, subtract, exp, sum, divide
    elif OP == "zeros_like":
        tl.zeros_like(a)
    elif OP == "block_ptr":
        p = tl.make_block_ptr(x_ptr, (M, N), (N, 1), (0, 0), (M, N), (1, 0))  # address generation
        tl.advance(p, (1, 1))


@pytest.mark.parametrize(
    "op, ops",
    [
        ("add", [1]),
        ("exp", [1]),
        ("where", [1, 1]),
        ("sum_rows", [1]),
        ("cast", [1]),
        ("index_math", ["dispatch", "dispatch"]),
        ("view", []),
        ("rsqrt", [1]),
        ("erf", [1]),
        ("fma", [1]),
        ("cumsum", [1]),
        ("argmax", [1]),
        ("max_with_indices", [1]),
        ("softmax", [1, 1, 1, 1, 1]),
        ("zeros_like", [1]),
        ("block_ptr", ["dispatch", "dispatch"]),
    ],
)
def test_elementwise_costs_dispatch_plus_elements_over_math_rate(topo, new_device, op, ops):
    m, n = 48, 40
    pe = topo.spec.hw.pe
    dispatch = pe.cpu_overhead_ns + pe.scheduler_overhead_ns
    per_ns = pe.math_tflops * 1e3
    expected = dispatch + m * n / per_ns  # the zeros block
    for size in ops:
        expected += dispatch + (0 if size == "dispatch" else m * n) / per_ns
    dev = new_device(topo)
    got = busy(dev, elementwise, dev.empty(1, "fp32"), M=m, N=n, OP=op)
    assert got == pytest.approx(expected, rel=1e-12)


@tl.jit
def nothing(x_ptr):
    tl.program_id(0)
    tl.num_programs(0)
    tl.cdiv(10, 3)


def test_program_id_and_cdiv_on_ints_are_free(topo1x1, new_device):
    dev = new_device(topo1x1)
    assert busy(dev, nothing, dev.empty(1, "fp32")) == 0.0


@tl.jit
def load_all(x_ptr, N: tl.constexpr):
    tl.load(x_ptr + tl.arange(0, N))


@tl.jit
def store_all(x_ptr, N: tl.constexpr):
    offs = tl.arange(0, N)
    tl.store(x_ptr + offs, offs)


@pytest.mark.parametrize("n", [64, 1000, 16384])
@pytest.mark.parametrize("pe", [(0, 0), (0, 3), (3, 7)], ids=["own-slice", "same-cube", "far-cube"])
def test_contiguous_load_and_store_match_the_analytic_dma(make_topology, model, new_device, n, pe):
    """One contiguous run: a load is one DMA read (the analytic latency of a PeDmaMsg, which
    includes the dispatch) or the TCM write, whichever ends later; a store reads TCM, then its
    posted write DMA commits before the PE reports done. Under both transfer models."""
    topo2x2 = make_topology(2, 2, model=model)
    spec = topo2x2.spec.hw.pe
    dispatch = spec.cpu_overhead_ns + spec.scheduler_overhead_ns
    index_ns = 2 * dispatch  # arange, pointer + offsets: address generation, dispatch only
    nbytes = 4 * n

    dev = new_device(topo2x2)
    x = dev.tensor(np.arange(n, dtype=np.float32), placement=Placement.single(0, 0))
    addr = x.shards[0].copies[(0, 0)]
    read = formula(topo2x2, PeDmaMsg(0, *pe, addr, nbytes, op="read")).total_ns
    write = formula(topo2x2, PeDmaMsg(0, *pe, addr, nbytes, op="write")).total_ns

    got_load = busy(dev, load_all, x, N=n, pe=pe)
    assert got_load == pytest.approx(
        index_ns + max(read, dispatch + nbytes / spec.tcm_write_bw_gbs), rel=1e-9
    )
    got_store = busy(dev, store_all, x, N=n, pe=pe)
    assert got_store == pytest.approx(index_ns + nbytes / spec.tcm_read_bw_gbs + write, rel=1e-9)
    np.testing.assert_array_equal(x.numpy(), np.arange(n, dtype=np.float32))


def test_remote_loads_take_longer_than_local_ones(topo2x2, new_device):
    times = []
    for pe in [(0, 0), (0, 3), (1, 0), (3, 7)]:
        dev = new_device(topo2x2)
        x = dev.tensor(np.zeros(4096, ml_dtypes.bfloat16), placement=Placement.single(0, 0))
        times.append(busy(dev, load_all, x, N=4096, pe=pe))
    assert times == sorted(times) and times[0] < times[-1]


def test_a_load_ends_no_earlier_than_its_tcm_write(new_device):
    """With a slow TCM write channel the load is bound by bytes / tcm_write_bw from the DMA's
    start, not by the fabric."""
    pe = PeSpec(tcm_write_bw_gbs=8.0)
    topo = one_cube(pe)
    n = 8192
    dispatch = pe.cpu_overhead_ns + pe.scheduler_overhead_ns
    index_ns = 2 * dispatch  # arange, pointer + offsets: dispatch only
    dev = new_device(topo)
    x = dev.tensor(np.zeros(n, np.float32), placement=Placement.single(0, 0))
    read = formula(topo, PeDmaMsg(0, 0, 0, x.shards[0].copies[(0, 0)], 4 * n, op="read"))
    tcm_bound = dispatch + 4 * n / pe.tcm_write_bw_gbs
    assert tcm_bound > read.total_ns
    assert busy(dev, load_all, x, N=n) == pytest.approx(index_ns + tcm_bound, rel=1e-12)


@tl.jit
def atomic_all(x_ptr, N: tl.constexpr):
    tl.atomic_add(x_ptr + tl.arange(0, N), 1.0)


@pytest.mark.parametrize("n", [64, 1000])
@pytest.mark.parametrize("pe", [(0, 0), (3, 7)], ids=["own-slice", "far-cube"])
def test_an_atomic_is_a_dma_read_then_a_dma_write(make_topology, model, new_device, n, pe):
    """One contiguous run: the read DMA (as a load, the analytic PeDmaMsg read including the
    dispatch), the operand read from TCM, then the write DMA (as a store, without a second
    dispatch); the call returns when the write has committed. Under both transfer models."""
    topo = make_topology(2, 2, model=model)
    spec = topo.spec.hw.pe
    dispatch = spec.cpu_overhead_ns + spec.scheduler_overhead_ns
    index_ns = 2 * dispatch  # arange, pointer + offsets
    nbytes = 4 * n
    dev = new_device(topo)
    x = dev.tensor(np.arange(n, dtype=np.float32), placement=Placement.single(0, 0))
    addr = x.shards[0].copies[(0, 0)]
    read = formula(topo, PeDmaMsg(0, *pe, addr, nbytes, op="read")).total_ns
    write = formula(topo, PeDmaMsg(0, *pe, addr, nbytes, op="write")).total_ns
    got = busy(dev, atomic_all, x, N=n, pe=pe)
    expected = index_ns + read + nbytes / spec.tcm_read_bw_gbs + (write - dispatch)
    assert expected > index_ns + dispatch + nbytes / spec.tcm_write_bw_gbs  # not TCM-bound
    assert got == pytest.approx(expected, rel=1e-9)
    np.testing.assert_array_equal(x.numpy(), np.arange(n, dtype=np.float32) + 1)
    dma = {c.name.rsplit(".", 1)[1]: c for c in dev.system.dma_channels}
    assert dma["read"].bytes == nbytes and dma["write"].bytes == nbytes
