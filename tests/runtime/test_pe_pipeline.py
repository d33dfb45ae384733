"""The pipelined PE (MODEL.md §3b, docs/kernels.md "The PE pipeline"): asynchronous loads with
``num_stages`` buffers per load site, calls that issue before their operands are ready, DMA
channels with ``hw.pe.dma_outstanding`` requests in flight.

Expected times are closed forms written here from the PeSpec fields and the analytic latency of
one lone DMA (kernbench.runtime.analytic.formula, itself checked against both transfer models);
the simulator is never asked for an expected value.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import kernbench.lang as tl
from kernbench.core.errors import AllocationError
from kernbench.runtime import PeDmaMsg, Placement
from kernbench.runtime.analytic import formula


@tl.jit
def k_loop(a_ptr, b_ptr, c_ptr, STEPS: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr,
           BN: tl.constexpr):  # fmt: skip
    """K steps of (load A, load B, dot) on contiguous tiles, then one store."""
    a_ptrs = a_ptr + (tl.arange(0, BM)[:, None] * BK + tl.arange(0, BK)[None, :])
    b_ptrs = b_ptr + (tl.arange(0, BK)[:, None] * BN + tl.arange(0, BN)[None, :])
    c_ptrs = c_ptr + (tl.arange(0, BM)[:, None] * BN + tl.arange(0, BN)[None, :])
    acc = tl.zeros((BM, BN), tl.float32)
    for k in range(STEPS):
        a = tl.load(a_ptrs + k * BM * BK)
        b = tl.load(b_ptrs + k * BK * BN)
        acc = tl.dot(a, b, acc)
    tl.store(c_ptrs, acc)


def run_loop(topo, new_device, steps, bm, bk, bn, **launch):
    """(PE busy time, the launch, A, B, C) of ``k_loop`` on PE 0 of cube 0, data in its
    slice."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal((steps * bm, bk)).astype(np.float16)
    b = rng.standard_normal((steps * bk, bn)).astype(np.float16)
    dev = new_device(topo)
    here = Placement.single(0, 0)
    ta, tb = dev.tensor(a, placement=here), dev.tensor(b, placement=here)
    tc = dev.empty((bm, bn), "fp32", placement=here)
    launch = dev.launch(k_loop, 1, ta, tb, tc, STEPS=steps, BM=bm, BK=bk, BN=bn, pes=[(0, 0)],
                        **launch)  # fmt: skip
    dev.synchronize()
    (timing,) = launch.pes
    return timing.end_ns - timing.start_ns, launch, (a, b, tc.numpy())


def reference(a, b, steps, bm, bk):
    acc = np.zeros((bm, b.shape[1]), np.float32)
    for k in range(steps):
        acc += a[k * bm : (k + 1) * bm].astype(np.float32) @ b[k * bk : (k + 1) * bk].astype(
            np.float32
        )
    return acc


# (bm, bk, bn): a small dot that waits for its tiles, a large one the tiles wait for.
DMA_BOUND, COMPUTE_BOUND = (32, 64, 32), (128, 64, 128)


@pytest.mark.parametrize("shape", [DMA_BOUND, COMPUTE_BOUND], ids=["dma-bound", "compute-bound"])
@pytest.mark.parametrize("stages", [2, 3])
def test_a_pipelined_loop_takes_prologue_plus_steps_times_the_slower_step_plus_epilogue(
    make_topology, model, new_device, shape, stages
):
    """One idle PE, one DMA in flight per channel: the loop runs at max(dot step, DMA step).

    Dispatch d per call. Before the loop: three pointer blocks (arange, [:, None] free, *, arange,
    +, pointer +: 5 calls each) and tl.zeros: 16 d. Per step: a pointer + and a load for A, the
    same for B, one dot. The A load's DMA lands R_A after its pointer + ended (R = the analytic
    latency of a PeDmaMsg, which includes one dispatch); B's DMA waits for the channel, so it
    lands R_B - d after A's. The dot issues d after B landed. A step's DMA work is then
    R_A + R_B + d (B landed -> dot dispatched -> pointer + -> A issued ...), its dot G; the
    loads of step k+1 need no free buffer (num_stages >= 2), so steps repeat at
    P = max(G, R_A + R_B + d). After the last dot: the store reads the fp32 accumulator from
    TCM, then its write DMA (the analytic write latency less its dispatch) commits.
    """
    bm, bk, bn = shape
    steps = 6
    topo = make_topology(1, 1, model=model, num_stages=stages)
    pe = topo.spec.hw.pe
    d = pe.cpu_overhead_ns + pe.scheduler_overhead_ns
    operand = (bm * bk + bk * bn) * 2
    dot = max(2 * bm * bn * bk / (pe.gemm_tflops_fp16 * 1e3), operand / pe.tcm_read_bw_gbs)
    g = dot + pe.gemm_fill_drain_ns

    got, launch, (a, b, c) = run_loop(topo, new_device, steps, bm, bk, bn)
    np.testing.assert_allclose(c, reference(a, b, steps, bm, bk), rtol=1e-5, atol=1e-4)

    base = topo.address.hbm(0, 0, 0, 0)  # a tile's latency depends only on its size here
    r_a = formula(topo, PeDmaMsg(0, 0, 0, base, bm * bk * 2, op="read")).total_ns
    r_b = formula(topo, PeDmaMsg(0, 0, 0, base, bk * bn * 2, op="read")).total_ns
    write = formula(topo, PeDmaMsg(0, 0, 0, base, bm * bn * 4, op="write")).total_ns
    step = max(g, r_a + r_b + d)
    assert (step == g) == (shape == COMPUTE_BOUND)  # the two regimes really differ
    prologue = 16 * d + r_a + r_b + d  # to the first dot's start
    epilogue = bm * bn * 4 / pe.tcm_read_bw_gbs + write - d
    want = prologue + g + (steps - 1) * step + epilogue
    assert got == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("shape", [DMA_BOUND, COMPUTE_BOUND], ids=["dma-bound", "compute-bound"])
def test_pipelining_is_faster_than_blocking_and_a_launch_option_overrides_the_default(
    make_topology, new_device, shape
):
    """num_stages=1 (the launch option, on a system whose default pipelines) gives the blocking
    time of sim.num_stages=1; pipelining hides each step's shorter part."""
    piped = make_topology(1, 1, num_stages=3)
    blocking = make_topology(1, 1, num_stages=1)
    steps = 6
    t_piped, launch, _ = run_loop(piped, new_device, steps, *shape)
    t_block, _, _ = run_loop(blocking, new_device, steps, *shape)
    t_option, option_launch, _ = run_loop(piped, new_device, steps, *shape, num_stages=1)
    assert launch.num_stages == 3 and option_launch.num_stages == 1
    assert t_option == t_block
    assert t_piped < t_block


@tl.jit
def two_loads(x_ptr, N: tl.constexpr):
    offs = tl.arange(0, N)
    a = tl.load(x_ptr + offs)
    b = tl.load(x_ptr + N + offs)
    tl.store(x_ptr + 2 * N + offs, a + b)


@pytest.mark.parametrize("outstanding", [1, 2, 4])
def test_a_dma_channel_keeps_at_most_dma_outstanding_requests_in_flight(
    make_topology, new_device, outstanding
):
    """Loads issued back to back overlap on the read channel up to hw.pe.dma_outstanding, never
    more; with one, a DMA starts when the previous one completes."""
    from kernbench.sim.observer import Observer

    topo = make_topology(1, 1, num_stages=4, dma_outstanding=outstanding)
    n = 4096
    from kernbench.runtime import Device, Hub, System

    system = System(topology=topo, observer=Observer("full"))
    dev = Device(system, Hub(system.sim), 0)
    x = dev.tensor(np.arange(3 * n, dtype=np.float32), placement=Placement.single(0, 0))
    for _ in range(3):
        dev.launch(two_loads, 1, x, N=n, pes=[(0, 0)])
    dev.synchronize()
    np.testing.assert_array_equal(x.numpy()[2 * n :], np.arange(n) + np.arange(n, 2 * n))
    (read,) = [ch for ch in system.dma_channels if ch.name.endswith(".dma.read")]
    spans = sorted((s[1], s[2]) for s in read.spans)
    assert len(spans) == 6
    # the most DMAs in flight at one instant
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    depth = most = 0
    for _, step in events:
        depth += step
        most = max(most, depth)
    assert most == min(outstanding, 2)  # each launch has two loads in flight at once
    union = 0.0
    covered = 0.0
    for s, e in spans:
        union += max(0.0, e - max(s, covered))
        covered = max(covered, e)
    assert read.busy_ns == pytest.approx(union, rel=1e-12)


@tl.jit
def stage_loop(x_ptr, STEPS: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
               STAGES: tl.constexpr):  # fmt: skip
    offs = tl.arange(0, BM)[:, None] * BN + tl.arange(0, BN)[None, :]
    acc = tl.zeros((BM, BN), tl.float32)
    for k in tl.range(0, STEPS, num_stages=STAGES):
        acc += tl.load(x_ptr + k * BM * BN + offs)
    tl.store(x_ptr + offs, acc)


# new_device is a factory: each example makes its own device.
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    bm=st.sampled_from([8, 16, 32, 64]),
    bn=st.sampled_from([8, 16, 32, 64]),
    steps=st.integers(1, 5),
    stages=st.integers(2, 5),
    capacity_kib=st.integers(4, 96),
)
@example(bm=32, bn=32, steps=4, stages=3, capacity_kib=20)  # 3 + 2 tiles of 4 KiB: fits
@example(bm=32, bn=32, steps=4, stages=4, capacity_kib=20)  # 4 + 2 tiles: refused
def test_peak_tcm_never_exceeds_capacity_and_counts_a_buffer_per_stage(
    topo1x1, new_device, bm, bn, steps, stages, capacity_kib
):
    """A pipelined load site holds min(num_stages, loads) buffers; the accumulator loop holds
    the fp32 accumulator and the sum being made (2 blocks) — the need is computed here. Within
    capacity the run reports that peak and never more; beyond, the launch fails naming the
    kernel, the block and the TCM size."""
    import dataclasses

    from kernbench.topology import Topology

    hw = topo1x1.spec.hw
    spec = dataclasses.replace(
        topo1x1.spec,
        hw=dataclasses.replace(hw, pe=dataclasses.replace(hw.pe, tcm_bytes=capacity_kib * 1024)),
    )
    topo = Topology(spec)
    tile = bm * bn * 4  # fp32
    need = min(stages, steps) * tile + 2 * tile
    dev = new_device(topo)
    x = dev.tensor(np.ones(steps * bm * bn, np.float32), placement=Placement.single(0, 0))
    if need <= topo.spec.hw.pe.tcm_bytes:
        dev.launch(stage_loop, 1, x, STEPS=steps, BM=bm, BN=bn, STAGES=stages, pes=[(0, 0)])
        dev.synchronize()
        pe = dev.system.pe(0, 0, 0)
        assert pe.tcm_peak == need <= pe.spec.tcm_bytes
        assert pe.tcm_used == 0
        np.testing.assert_array_equal(x.numpy()[: bm * bn], np.full(bm * bn, steps, np.float32))
    else:
        with pytest.raises(AllocationError) as err:
            dev.launch(stage_loop, 1, x, STEPS=steps, BM=bm, BN=bn, STAGES=stages, pes=[(0, 0)])
            dev.synchronize()
        text = str(err.value)
        assert "kernel stage_loop on sip0.cube0.pe0" in text
        assert "hw.pe.tcm_bytes" in text and f"{capacity_kib}" in text
        assert f"{bm}x{bn}" in text


@tl.jit
def masked_loads(x_ptr, y_ptr, N: tl.constexpr, BLOCK: tl.constexpr):
    for start in tl.range(0, N, BLOCK, num_stages=3):
        offs = start + tl.arange(0, BLOCK)
        v = tl.load(x_ptr + offs, mask=offs < N, other=-1.0)
        bp = tl.make_block_ptr(x_ptr, (N,), (1,), (start,), (BLOCK,), (0,))
        w = tl.load(bp, boundary_check=(0,), padding_option="nan")
        tl.store(y_ptr + offs, tl.where(w != w, v, v + w), mask=offs < N)


def test_pending_loads_give_the_values_masks_other_and_padding_say(topo1x1, new_device):
    """Masked and boundary-checked loads in flight resolve to the same values as blocking
    ones: other where masked, NaN padding outside the block pointer's shape."""
    n, block = 100, 32
    x = np.arange(n, dtype=np.float32)
    dev = new_device(topo1x1)
    tx = dev.tensor(x, placement=Placement.single(0, 0))
    ty = dev.empty(n, "fp32", placement=Placement.single(0, 0))
    dev.launch(masked_loads, 1, tx, ty, N=n, BLOCK=block, pes=[(0, 0)])
    dev.synchronize()
    np.testing.assert_array_equal(ty.numpy(), 2 * x)


@tl.jit
def loads_then_out_of_bounds(x_ptr, N: tl.constexpr, STEPS: tl.constexpr):
    offs = tl.arange(0, N)
    acc = tl.zeros((N,), tl.float32)
    for k in range(STEPS):
        acc += tl.load(x_ptr + k * N + offs)
    tl.store(x_ptr + offs, acc)


def test_a_failed_pipelined_launch_gives_its_tcm_back(make_topology, new_device):
    """A launch that fails with buffers in flight leaves the PE's TCM empty, and the next
    launch on the PE runs."""
    from kernbench.core.errors import KernelError

    topo = make_topology(1, 1, num_stages=3)
    n = 64
    dev = new_device(topo)
    x = dev.tensor(np.ones(4 * n, np.float32), placement=Placement.single(0, 0))
    with pytest.raises(KernelError, match="out of bounds"):
        dev.launch(loads_then_out_of_bounds, 1, x, N=n, STEPS=5, pes=[(0, 0)])
        dev.synchronize()
    pe = dev.system.pe(0, 0, 0)
    assert pe.tcm_used == 0
    dev.launch(loads_then_out_of_bounds, 1, x, N=n, STEPS=4, pes=[(0, 0)])
    dev.synchronize()
    np.testing.assert_array_equal(x.numpy()[:n], np.full(n, 4, np.float32))
    assert pe.tcm_used == 0


def test_a_pipelined_run_is_deterministic(make_topology, new_device):
    """Same configuration, same result, bit for bit: timings, unit counters and data."""
    topo = make_topology(1, 1, model="fluid", num_stages=3, dma_outstanding=4)
    runs = []
    for _ in range(2):
        t, launch, (_a, _b, c) = run_loop(topo, new_device, 5, *COMPUTE_BOUND)
        pe = launch.system.pe(0, 0, 0)
        runs.append((t, launch.end_ns, pe.gemm.busy_ns, pe.tcm_peak, c.tobytes()))
    assert runs[0] == runs[1]
