"""IPCQ send/recv, ranks, all-reduce and tensor parallelism: numerics against numpy, timing
against the α-β model and closed-form orderings, faults as clear errors."""

import dataclasses

import numpy as np
import pytest

import kernbench.lang as tl
from kernbench.bench import BenchContext, get_bench
from kernbench.core.errors import KernelError, SimulationError
from kernbench.hw.ipcq import CclSpec
from kernbench.runtime import Device, Hub, Placement, System, dist, tp
from kernbench.runtime.collectives import (
    cube_ring,
    hierarchical_allreduce_kernel,
    ring_allreduce_kernel,
    snake,
)
from kernbench.runtime.ipcq import Ipcq
from kernbench.sim.spec import SimSpec
from kernbench.topology import SystemSpec, TopologySpec


def spec(mesh_w: int = 1, mesh_h: int = 1, sips: int = 1, buffer: str = "tcm", **ccl) -> SystemSpec:
    name = f"{sips}s{mesh_w}x{mesh_h}"
    return SystemSpec(
        topology=TopologySpec(name=name, sips=sips, mesh_w=mesh_w, mesh_h=mesh_h),
        sim=SimSpec(trace="off"),
        ccl=CclSpec(buffer=buffer, **ccl),
    )  # fmt: skip


def run_bench(name: str, s: SystemSpec, **params):
    info = get_bench(name)
    ctx = BenchContext.from_spec(s, devices=tuple(range(s.topology.sips)))
    return info.fn(ctx, info.params(**params))


def ints(rng, shape, dtype=np.float32):
    """Small integers: sums of a few hundred of them are exact in fp32."""
    return rng.integers(-8, 8, size=shape).astype(dtype)


# -- numerics ------------------------------------------------------------------------------
@pytest.mark.parametrize("buffer", ["tcm", "sram", "hbm"])
@pytest.mark.parametrize("n", [7, 1000, 5000])
def test_ring_allreduce_over_a_cube_equals_the_numpy_sum(buffer, n):
    ctx = BenchContext.from_spec(spec(buffer=buffer))
    members = [(0, p) for p in cube_ring(2, 4)]
    x = ints(np.random.default_rng(n), (8, n))

    def program(dev):
        place = Placement(pes="row", cube_ids=(0,), pe_ids=tuple(p for _, p in members))
        tx = dev.tensor(x, placement=place)
        out = dev.empty(x.shape, "fp32", placement=place)
        ring = tuple((0, c, p) for c, p in members)
        dev.launch(ring_allreduce_kernel, (8,), tx, out, n, ring, pes=members)
        dev.synchronize()
        return out.numpy()

    [(_, out)] = ctx.run_devices(program)
    np.testing.assert_array_equal(out, np.broadcast_to(x.sum(axis=0), x.shape))


@pytest.mark.parametrize("sips", [1, 2, 3])
def test_hierarchical_allreduce_over_sips_equals_the_numpy_sum(sips):
    s = spec(mesh_w=2, mesh_h=1, sips=sips)
    ctx = BenchContext.from_spec(s, devices=tuple(range(sips)))
    n = 257
    xs = {sip: ints(np.random.default_rng(sip), (16, n)) for sip in range(sips)}
    expected = sum(x.sum(axis=0) for x in xs.values())

    def program(dev):
        tx = dev.tensor(xs[dev.sip], placement="row")
        out = dev.empty((16, n), "fp32", placement="row")
        dev.launch(
            hierarchical_allreduce_kernel, (16,), tx, out, n, tuple(cube_ring(2, 4)),
            tuple(snake(1, 2)), sips,
        )  # fmt: skip
        dev.synchronize()
        return out.numpy()

    for _dev, out in ctx.run_devices(program):
        np.testing.assert_array_equal(out, np.broadcast_to(expected, out.shape))


@pytest.mark.parametrize("buffer", ["tcm", "hbm"])
def test_ccl_allreduce_bench_verifies_every_pe(buffer):
    r = run_bench("ccl_allreduce", spec(mesh_w=2, mesh_h=1, sips=2, buffer=buffer),
                  size_bytes=4096, verify="all")  # fmt: skip
    assert r.checks == {"verified": True}
    assert r.metrics["allreduce_ns"] > 0
    assert {"sip0/allreduce_ns", "sip1/allreduce_ns"} <= set(r.metrics)


def test_dist_all_reduce_sums_tensors_of_every_rank_larger_than_a_ring():
    # 3 ranks x 96 KiB: each ring step moves more than the 2 x 1 KiB ring holds, so the
    # posted sends must drain through credits without deadlocking.
    system = System(spec(sips=3, slots=2, slot_bytes=1024))
    data = {r: ints(np.random.default_rng(r), (96, 256)) for r in range(3)}

    def fn(rank):
        dist.init_process_group()
        assert (dist.get_rank(), dist.get_world_size()) == (rank, 3)
        t = dist.device().tensor(data[rank], placement="row")
        dist.all_reduce(t)
        dist.barrier()
        return t.numpy()

    for out in dist.spawn(fn, 3, system=system):
        np.testing.assert_array_equal(out, sum(data.values()))


def test_dist_all_reduce_runs_rings_in_parallel_and_stays_above_the_link_bound(monkeypatch):
    # 2 ranks x 64 KiB of fp16: 8 rings of 8 KiB (one per PE of cube 0) against one ring
    # of the whole tensor (ALLREDUCE_RING_BYTES larger than it)
    s = spec(sips=2)
    data = {r: ints(np.random.default_rng(r), (128, 256), np.float16) for r in range(2)}

    def timed() -> list:
        system = System(s)

        def fn(rank):
            dist.init_process_group()
            dev = dist.device()
            t = dev.tensor(data[rank], placement="row")
            dist.barrier()
            start = dev.now
            dist.all_reduce(t)
            launch = dev.launches[-1]
            return dev.now - start, launch.grid, t.numpy()

        return dist.spawn(fn, 2, system=system)

    parallel = timed()
    monkeypatch.setattr(dist, "ALLREDUCE_RING_BYTES", 1 << 30)
    single = timed()
    for runs in (parallel, single):
        for _t, _grid, out in runs:
            np.testing.assert_array_equal(out, data[0] + data[1])
    assert {grid for _t, grid, _out in parallel} == {(8, 1, 1)}
    assert {grid for _t, grid, _out in single} == {(1, 1, 1)}
    t_par, t_one = max(t for t, _g, _o in parallel), max(t for t, _g, _o in single)
    assert t_par < t_one
    # a ring of 2 sends half the tensor each way over each rank's switch port, twice
    # (reduce-scatter, all-gather): no faster than that at the port's bandwidth
    nbytes = data[0].nbytes
    assert t_par >= 2 * (nbytes / 2) / s.hw.switch.link_bw_gbs


def test_send_and_recv_move_blocks_between_neighbours_in_cube_cube_and_sip():
    s = spec(mesh_w=2, mesh_h=1, sips=2)
    system = System(s)
    ipcq = Ipcq.of(system)
    # Grid: cube 0 = columns 0-3, cube 1 = columns 4-7 of SIP 0; SIP 1 continues east.
    assert ipcq.neighbor((0, 0, 0), "E") == (0, 0, 1)
    assert ipcq.neighbor((0, 0, 0), "S") == (0, 0, 4)
    assert ipcq.neighbor((0, 0, 3), "E") == (0, 1, 0)
    assert ipcq.neighbor((0, 1, 7), "E") == (1, 0, 4)
    assert ipcq.neighbor((0, 0, 0), "W") is None
    assert ipcq.neighbor((0, 0, 0), "N") is None
    payload = np.arange(300, dtype=np.int32)

    @tl.jit
    def hop(out_ptr, src, dst):
        if tl.pe_id() == src:
            tl.send(tl.zeros((300,), tl.int32) + tl.arange(0, 300), "E")
        else:
            tl.store(out_ptr + tl.arange(0, 300), tl.recv(src))

    dev = Device(system, Hub(system.sim), 0)
    for src, dst in [((0, 0, 0), (0, 0, 1)), ((0, 0, 3), (0, 1, 0))]:
        out = dev.empty(300, "int32", placement=Placement.single(dst[1], dst[2]))
        dev.launch(hop, (2,), out, src, dst, pes=[src[1:], dst[1:]])
        dev.synchronize()
        np.testing.assert_array_equal(out.numpy(), payload)


# -- timing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("buffer", ["tcm", "hbm"])
@pytest.mark.parametrize(("scope", "mesh"), [("cube", (1, 1)), ("sip", (2, 2))])
def test_uncontended_ring_agrees_with_the_alpha_beta_model_within_15_percent(buffer, scope, mesh):
    r = run_bench("ipcq_allreduce", spec(*mesh, buffer=buffer), scope=scope, size_bytes=32768)
    assert r.checks == {"verified": True}
    assert 0.85 <= r.metrics["model_ratio"] <= 1.15
    # α and β are plausible for the path: α covers at least the dispatch and setup, β is at
    # most the PE's router link.
    assert r.metrics["alpha_ns"] > 3.0
    assert 0 < r.metrics["beta_gbs"] <= 256.0


@pytest.mark.parametrize(("scope", "mesh"), [("cube", (1, 1)), ("sip", (2, 2))])
def test_buffer_tiers_order_tcm_sram_hbm_for_the_same_payload(scope, mesh):
    times = {
        b: run_bench("ipcq_allreduce", spec(*mesh, buffer=b), scope=scope, size_bytes=8192).metrics[
            "allreduce_ns"
        ]
        for b in ("tcm", "sram", "hbm")
    }
    assert times["tcm"] < times["sram"] < times["hbm"]


def test_allreduce_time_grows_with_payload():
    times = [
        run_bench("ipcq_allreduce", spec(), size_bytes=s).metrics["allreduce_ns"]
        for s in (2048, 8192, 32768)
    ]
    assert times[0] < times[1] < times[2]


def test_allreduce_time_grows_with_world_size():
    times = [
        run_bench("ccl_allreduce", spec(mesh_w=2, mesh_h=1, sips=n), size_bytes=4096).metrics[
            "allreduce_ns"
        ]
        for n in (1, 2, 3)
    ]
    assert times[0] < times[1] < times[2]


def test_pe2pe_latency_grows_with_distance_and_size_and_ipcq_tracks_dma():
    r = run_bench("pe2pe", spec(mesh_w=2, mesh_h=1, sips=2), sizes=(128, 4096, 10240))
    m = r.metrics
    assert all(r.checks.values()) and len(r.checks) == 4
    for size in (128, 4096, 10240):
        ipcq = [m[f"{pair}/{size}B/ipcq_ns"] for pair in ("cube-h", "cross-cube", "cross-sip")]
        dma = [m[f"{pair}/{size}B/dma_ns"] for pair in ("cube-h", "cross-cube", "cross-sip")]
        assert ipcq[0] < ipcq[1] < ipcq[2]
        assert dma[0] < dma[1] < dma[2]
    for pair in ("cube-h", "cube-v", "cross-cube", "cross-sip"):
        assert m[f"{pair}/128B/dma_ns"] < m[f"{pair}/10240B/dma_ns"]


def test_credits_throttle_a_sender_that_runs_ahead_of_its_ring():
    """Eight 16 KiB messages, each sent faster (TCM read, 32 ns) than it moves (64 ns): with a
    one-slot ring every message after the first also waits for the credit of the previous one
    to come back, so the receiver finishes later than with a ring deep enough for all."""

    def receive_end(slots: int) -> float:
        system = System(spec(slots=slots, slot_bytes=16384))
        dev = Device(system, Hub(system.sim), 0)

        @tl.jit
        def burst(src, dst):
            if tl.pe_id() == src:
                for _ in range(8):
                    tl.send(tl.zeros((4096,), tl.float32), dst)
            else:
                for _ in range(8):
                    tl.recv(src)

        launch = dev.launch(burst, (2,), (0, 0, 0), (0, 0, 1), pes=[(0, 0), (0, 1)])
        dev.synchronize()
        return launch.pes[1].end_ns

    assert receive_end(1) > receive_end(8)


# -- tensor parallelism ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sips", "activation", "dtype"), [(1, "gelu", "fp16"), (2, "relu", "fp16"), (3, "gelu", "bf16")]
)
def test_tp_mlp_equals_the_unsharded_numpy_mlp(sips, activation, dtype):
    r = run_bench("tp_mlp", spec(sips=sips), tokens=24, hidden=40, ffn=48,
                  activation=activation, dtype=dtype)  # fmt: skip
    assert r.checks == {"verified": True}
    assert r.metrics["max_abs_err"] <= r.metrics["tolerance"]
    assert r.metrics["forward_ns"] > 0


def test_row_parallel_layer_alone_matches_numpy_for_several_world_sizes():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((24, 36)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    x = rng.standard_normal((10, 36)).astype(np.float16)
    for world in (1, 2, 3):
        system = System(spec(sips=world))

        def fn(rank, world=world):
            dist.init_process_group()
            tp.initialize_model_parallel()
            assert tp.get_tensor_model_parallel_world_size() == world
            assert tp.get_tensor_model_parallel_rank() == rank
            layer = tp.RowParallelLinear(36, 24, w, b)
            part = 36 // world
            xs = dist.device().tensor(
                x[:, rank * part : (rank + 1) * part], placement=tp.on_cube("replicate")
            )
            return layer(xs).numpy()

        ref = x.astype(np.float32) @ w.astype(np.float16).astype(np.float32).T + b
        for out in dist.spawn(fn, world, system=system):
            np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


# -- faults -----------------------------------------------------------------------------------
def test_a_rank_that_raises_stops_the_others_and_names_the_rank():
    reached = []

    def fn(rank):
        dist.init_process_group()
        if rank == 1:
            raise ValueError("bad shard")
        dist.barrier()
        reached.append(rank)

    with pytest.raises(dist.RankError, match=r"rank 1 raised ValueError: bad shard"):
        dist.spawn(fn, 2, system=System(spec(sips=2)))
    assert reached == []


def test_a_recv_with_no_matching_send_is_reported_as_a_deadlock():
    system = System(spec())
    dev = Device(system, Hub(system.sim), 0)

    @tl.jit
    def lonely(src):
        if tl.pe_id() != src:
            tl.recv(src)

    dev.launch(lonely, (2,), (0, 0, 0), pes=[(0, 0), (0, 1)])
    with pytest.raises(SimulationError) as err:
        dev.synchronize()
    text = str(err.value)
    assert "deadlock" in text
    assert "kernel lonely on sip0.cube0.pe1: tl.recv from sip0.cube0.pe0 (nothing sent)" in text


def test_a_world_size_the_topology_cannot_host_is_refused():
    with pytest.raises(KernelError, match=r"world size 3 needs as many SIPs; this topology has 2"):
        dist.spawn(lambda rank: None, 3, system=System(spec(sips=2)))
    with pytest.raises(Exception, match=r"bench.ranks: 4 ranks need 4 SIPs"):
        run_bench("tp_mlp", spec(sips=2), ranks=4)


def test_send_to_a_pe_that_does_not_exist_names_it():
    system = System(spec())
    dev = Device(system, Hub(system.sim), 0)

    @tl.jit
    def stray():
        tl.send(tl.zeros((4,), tl.float32), (0, 3, 0))

    dev.launch(stray, (1,), pes=[(0, 0)])
    with pytest.raises(KernelError, match=r"no PE sip0.cube3.pe0; this topology has 1 SIP"):
        dev.synchronize()


def test_collective_runs_are_deterministic():
    def once():
        return run_bench("ccl_allreduce", spec(mesh_w=2, mesh_h=1, sips=2), size_bytes=2048).metrics

    assert once() == once()


def test_ccl_spec_rejects_an_unknown_buffer_tier():
    with pytest.raises(Exception, match=r"ccl.buffer: must be one of tcm, sram, hbm, got 'l2'"):
        dataclasses.replace(CclSpec(), buffer="l2")
