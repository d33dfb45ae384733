"""Kernel launch: the start barrier, the control-path cost, ordering of launches, the spread of a
grid over PEs, visibility of stores to later launches, and determinism."""

import numpy as np
import pytest

import kernbench.lang as tl
from kernbench.core.errors import KernelError
from kernbench.runtime import Device, Hub, Placement, System


@tl.jit
def idle():
    pass


@tl.jit
def spin(REPS: tl.constexpr):
    """Pure PE work: REPS elementwise operations on a 64-element block."""
    a = tl.zeros((64,), tl.float32)
    for _ in range(REPS):
        a = a + 1.0


@tl.jit
def spin_by_program(REPS: tl.constexpr):
    """Program k does (k + 1) * REPS elementwise operations."""
    a = tl.zeros((64,), tl.float32)
    for _ in range(REPS * (tl.program_id(0) + 1)):
        a = a + 1.0


def test_every_pe_of_a_multi_cube_launch_starts_together(topo2x2, new_device):
    dev = new_device(topo2x2)
    launch = dev.launch(idle, 32)
    dev.synchronize()
    assert len(launch.pes) == 32
    assert {p.name for p in launch.pes} == {
        f"sip0.cube{c}.pe{p}" for c in range(4) for p in range(8)
    }
    assert {p.start_ns for p in launch.pes} == {launch.start_ns}
    assert launch.issue_ns <= launch.start_ns < launch.end_ns


def test_an_idle_launch_costs_at_least_the_control_path_overheads(topo2x2, new_device):
    hw = topo2x2.spec.hw
    forward = (
        hw.io.pcie_ep_overhead_ns
        + hw.io.io_cpu_overhead_ns
        + hw.cube.m_cpu_overhead_ns
        + hw.pe.cpu_overhead_ns
    )
    back = hw.io.io_cpu_overhead_ns + hw.io.pcie_ep_overhead_ns  # completion to the host
    dev = new_device(topo2x2)
    launch = dev.launch(idle, 1, pes=[(0, 0)])
    dev.synchronize()
    (pe,) = launch.pes
    assert pe.end_ns == pe.start_ns == launch.start_ns  # the kernel itself takes no time
    assert launch.start_ns - launch.issue_ns >= forward
    assert launch.end_ns - pe.end_ns >= back
    assert launch.total_ns >= forward + back
    assert dev.now == launch.end_ns


def test_far_pes_arrive_later_but_start_together(topo2x2, new_device):
    """The barrier is the latest arrival: a PE next to the IO chiplet waits for a far one."""
    starts = {}
    for name, pes in [("near", [(0, 0)]), ("far", [(3, 7)]), ("both", [(0, 0), (3, 7)])]:
        dev = new_device(topo2x2)
        launch = dev.launch(idle, len(pes), pes=pes)
        dev.synchronize()
        assert {p.start_ns for p in launch.pes} == {launch.start_ns}
        starts[name] = launch.start_ns - launch.issue_ns
    assert starts["near"] < starts["far"] <= starts["both"]
    # both descriptors leave io_cpu together: the far one queues behind the near one for at
    # most one 64-byte message on the shared first edge
    assert starts["both"] - starts["far"] < 1.0


def test_launches_on_one_device_run_in_order(topo2x2, new_device):
    dev = new_device(topo2x2)
    pes = [(0, 0), (3, 7)]
    # program 0 runs on PE (0, 0), program 1 on PE (3, 7), which works twice as long
    first = dev.launch(spin_by_program, 2, pes=pes, REPS=50)
    second = dev.launch(idle, 2, pes=pes)
    third = dev.launch(spin, 1, pes=[(3, 7)], REPS=1)
    dev.synchronize()
    end_first = max(p.end_ns for p in first.pes)
    assert first.pes[0].end_ns < first.pes[1].end_ns  # launch.pes is in (cube, pe) order
    assert second.start_ns >= end_first
    assert second.start_ns == max(p.end_ns for p in first.pes)  # nothing else delays it here
    assert third.start_ns >= max(p.end_ns for p in second.pes)
    assert first.end_ns <= second.end_ns <= third.end_ns


@tl.jit
def record_ids(out_ptr):
    """Row k of ``out`` (k = the program's place in row-major order, axis 0 fastest) gets
    its program ids and the grid."""
    p0, p1, p2 = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    n0, n1, n2 = tl.num_programs(0), tl.num_programs(1), tl.num_programs(2)
    k = p0 + n0 * (p1 + n1 * p2)
    vals = tl.where(tl.arange(0, 8) == 0, p0, 0) + tl.where(tl.arange(0, 8) == 1, p1, 0)
    vals = vals + tl.where(tl.arange(0, 8) == 2, p2, 0) + tl.where(tl.arange(0, 8) == 3, n0, 0)
    vals = vals + tl.where(tl.arange(0, 8) == 4, n1, 0) + tl.where(tl.arange(0, 8) == 5, n2, 0)
    tl.store(out_ptr + k * 8 + tl.arange(0, 8), vals)


def test_a_3d_grid_is_spread_over_the_pes_in_waves(topo1x1, new_device):
    dev = new_device(topo1x1)
    grid = (3, 2, 2)  # 12 programs over 5 PEs: PEs 0 and 1 run three, the others two
    out = dev.zeros((12, 8), "int32")
    pes = [(0, 7), (0, 1), (0, 2), (0, 5), (0, 4)]
    launch = dev.launch(record_ids, grid, out, pes=pes)
    dev.synchronize()
    expected = np.zeros((12, 8), np.int32)
    for p2 in range(2):
        for p1 in range(2):
            for p0 in range(3):
                expected[p0 + 3 * (p1 + 2 * p2), :6] = [p0, p1, p2, 3, 2, 2]
    np.testing.assert_array_equal(out.numpy(), expected)
    programs = {p.name: p.programs for p in launch.pes}
    assert programs == {
        "sip0.cube0.pe1": 3,
        "sip0.cube0.pe2": 2,
        "sip0.cube0.pe4": 2,
        "sip0.cube0.pe5": 2,
        "sip0.cube0.pe7": 3,
    }


def test_pes_without_a_program_are_not_part_of_the_launch(topo2x2, new_device):
    dev = new_device(topo2x2)
    launch = dev.launch(idle, 3)  # the default PE list is cube-major
    dev.synchronize()
    assert [p.name for p in launch.pes] == [f"sip0.cube0.pe{i}" for i in range(3)]


def test_a_pe_runs_its_programs_one_after_another(topo1x1, new_device):
    pe = topo1x1.spec.hw.pe
    one = 2 * pe.dispatch_ns + 2 * 64 / (pe.math_tflops * 1e3)  # zeros + one add
    dev = new_device(topo1x1)
    launch = dev.launch(spin, 5, pes=[(0, 0), (0, 1)], REPS=1)
    dev.synchronize()
    busy = [p.end_ns - p.start_ns for p in launch.pes]
    assert busy == pytest.approx([3 * one, 2 * one], rel=1e-12)


# -- data between launches -----------------------------------------------------------------
@tl.jit
def fill(out_ptr, n, value, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.full((BLOCK,), value, tl.float32) + offs, mask=offs < n)


@tl.jit
def scale(src_ptr, dst_ptr, n, factor, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(src_ptr + offs, mask=offs < n)
    tl.store(dst_ptr + offs, x * factor, mask=offs < n)


def test_a_load_sees_stores_of_an_earlier_launch(topo2x2, new_device):
    n = 3000
    dev = new_device(topo2x2)
    a = dev.zeros(n, "fp32", placement=Placement(cubes="row", pes="row", cube_ids=(3,)))
    b = dev.zeros(n, "fp32", placement="row")
    dev.launch(fill, tl.cdiv(n, 256), a, n, 10.0, BLOCK=256, pes=[(3, 7), (3, 6)])
    dev.synchronize()
    # other PEs, other cubes: everything the first launch stored is committed
    dev.launch(scale, tl.cdiv(n, 256), a, b, n, 2.0, BLOCK=256, pes=[(0, 0), (1, 4), (2, 2)])
    dev.synchronize()
    expected = 10.0 + np.arange(n, dtype=np.float32)
    np.testing.assert_array_equal(a.numpy(), expected)
    np.testing.assert_array_equal(b.numpy(), 2 * expected)


def test_launches_on_the_same_pes_see_each_others_stores_without_synchronize(topo2x2, new_device):
    n = 1000
    dev = new_device(topo2x2)
    a = dev.zeros(n, "fp32", placement=Placement.single(2, 3))
    b = dev.zeros(n, "fp32", placement=Placement.single(0, 0))
    pes = [(1, 1), (3, 0)]
    dev.launch(fill, 4, a, n, 1.0, BLOCK=256, pes=pes)
    dev.launch(fill, 4, a, n, 5.0, BLOCK=256, pes=pes)  # overwrites: the last store wins
    dev.launch(scale, 4, a, b, n, -1.0, BLOCK=256, pes=pes)
    dev.synchronize()
    np.testing.assert_array_equal(b.numpy(), -(5.0 + np.arange(n, dtype=np.float32)))


def test_launches_are_stream_ordered_across_pes_and_reads_wait_for_them(topo2x2, new_device):
    """A consumer launch on other PEs, issued without synchronize, starts only after the producer
    has ended on every PE; ``numpy()`` without synchronize waits for both."""
    n = 2000
    dev = new_device(topo2x2)
    a = dev.zeros(n, "fp32", placement=Placement.single(3, 7))
    b = dev.zeros(n, "fp32", placement=Placement.single(0, 0))
    producer = dev.launch(fill, 8, a, n, 3.0, BLOCK=256, pes=[(3, 7), (3, 6)])
    consumer = dev.launch(scale, 8, a, b, n, 2.0, BLOCK=256, pes=[(0, 0), (1, 4)])
    np.testing.assert_array_equal(b.numpy(), 2 * (3.0 + np.arange(n, dtype=np.float32)))
    assert consumer.start_ns >= max(p.end_ns for p in producer.pes)
    assert producer.done.processed and consumer.done.processed


@tl.jit
def fails_on_pe1(out_ptr):
    if tl.program_id(0) == 1:
        tl.load(out_ptr + 10_000)  # out of bounds, no mask
    tl.store(out_ptr + tl.program_id(0), tl.full((), 1.0, tl.float32))


def test_a_device_stays_usable_after_a_kernel_error(topo1x1, new_device):
    dev = new_device(topo1x1)
    out = dev.zeros(4, "fp32", placement=Placement.single(0, 0))
    failed = dev.launch(fails_on_pe1, 2, out, pes=[(0, 0), (0, 1)])
    with pytest.raises(KernelError, match=r"kernel fails_on_pe1 on sip0.cube0.pe1"):
        dev.synchronize()
    assert failed.failed
    dev.launch(fill, 1, out, 4, 7.0, BLOCK=4, pes=[(0, 2)])
    np.testing.assert_array_equal(out.numpy(), 7.0 + np.arange(4, dtype=np.float32))


# -- determinism ---------------------------------------------------------------------------
@tl.jit
def tiled_matmul(
    a_ptr, b_ptr, c_ptr, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr
):
    pid = tl.program_id(0)
    pm, pn = pid // tl.cdiv(N, BN), pid % tl.cdiv(N, BN)
    rm = pm * BM + tl.arange(0, BM)
    rn = pn * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), tl.float32)
    for k in range(0, K, BK):
        a = tl.load(
            a_ptr + rm[:, None] * K + (k + rk)[None, :],
            mask=(rm[:, None] < M) & ((k + rk)[None, :] < K),
            other=0.0,
        )
        b = tl.load(
            b_ptr + (k + rk)[:, None] * N + rn[None, :],
            mask=((k + rk)[:, None] < K) & (rn[None, :] < N),
            other=0.0,
        )
        acc = tl.dot(a, b, acc)
    tl.store(c_ptr + rm[:, None] * N + rn[None, :], acc, mask=(rm[:, None] < M) & (rn[None, :] < N))


def run_gemm(topology):
    system = System(topology=topology)
    dev = Device(system, Hub(system.sim))
    rng = np.random.default_rng(11)
    M, N, K = 70, 90, 100
    a = dev.tensor(rng.standard_normal((M, K)).astype(np.float16), placement="row")
    b = dev.tensor(rng.standard_normal((K, N)).astype(np.float16), placement="col")
    c = dev.empty((M, N), "fp32", placement=Placement(cubes="col", pes="row"))
    grid = tl.cdiv(M, 32) * tl.cdiv(N, 32)
    launch = dev.launch(tiled_matmul, grid, a, b, c, M, N, K, BM=32, BN=32, BK=64)
    dev.synchronize()
    timings = (launch.issue_ns, launch.start_ns, launch.end_ns, tuple(launch.pes))
    return c.numpy(), timings, system.sim.events, system.now


def test_the_same_run_twice_is_bit_identical(topo2x2):
    out1, timing1, events1, now1 = run_gemm(topo2x2)
    out2, timing2, events2, now2 = run_gemm(topo2x2)
    assert out1.tobytes() == out2.tobytes()
    assert timing1 == timing2
    assert (events1, now1) == (events2, now2)
    assert len(timing1[3]) == 9  # 3 x 3 tiles on 9 PEs: the run really spread out
