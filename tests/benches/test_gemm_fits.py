"""What a GEMM bench checks before any data moves (benches/gemm_fits.py: check_gemm_fits):
its tiles against TCM, its operands against the HBM slices its placement gives them, its numpy
data against host memory. Each check is held to what a run really uses: the TCM peak and the
HBM allocations a run reports, and a run at exactly the limit still goes through."""

import dataclasses

import pytest
from kernbench.benches import gemm_fits
from kernbench.benches.gemm import gemm_layout
from kernbench.benches.gemm_fits import (
    DeviceShape,
    hbm_bytes_per_slice,
    pipeline_buffers,
    tile_tcm_bytes,
)
from kernbench.benches.qkv_gemm import single_pe_layout
from kernbench.benches.qkv_gemm_multi_pe import sharded_layout

from kernbench.bench import BenchContext, get_bench
from kernbench.core import BenchError
from kernbench.hw import HwSpec
from kernbench.topology import SystemSpec, Topology, TopologySpec


def topology(mesh_w: int = 1, mesh_h: int = 1, **hw_changes: dict) -> Topology:
    hw = HwSpec()
    for part, values in hw_changes.items():
        hw = dataclasses.replace(hw, **{part: dataclasses.replace(getattr(hw, part), **values)})
    name = f"{mesh_w}x{mesh_h}"
    return Topology(
        SystemSpec(topology=TopologySpec(name=name, mesh_w=mesh_w, mesh_h=mesh_h), hw=hw)
    )


@pytest.fixture(scope="module")
def topo1x1() -> Topology:
    return topology()


def run(bench: str, topo: Topology, **params):
    """The bench's result and its context (``ctx.systems`` lists the systems it started)."""
    info = get_bench(bench)
    ctx = BenchContext(topo.spec, topo)
    return info.fn(ctx, info.params(**params)), ctx


def refused(bench: str, topo: Topology, **params) -> str:
    """The error of a bench refused before it started any system."""
    info = get_bench(bench)
    ctx = BenchContext(topo.spec, topo)
    with pytest.raises(BenchError) as err:
        info.fn(ctx, info.params(**params))
    assert ctx.systems == []  # nothing was deployed or simulated
    return str(err.value)


# -- TCM ------------------------------------------------------------------------------------
SINGLE_PE = [
    dict(m=64, k=256, n=64, block_m=64, block_k=128, block_n=16),  # A tile the largest
    dict(m=64, k=256, n=64, block_m=16, block_k=128, block_n=64),  # B tile the largest
    dict(m=64, k=256, n=64, block_m=64, block_k=16, block_n=64),  # accumulator the largest
    dict(m=64, k=128, n=64, block_m=64, block_k=128, block_n=64),  # a single K step
    dict(m=40, k=100, n=24, block_m=32, block_k=64, block_n=32),  # ragged edges
    dict(m=64, k=128, n=64, block_m=32, block_k=64, block_n=16, dtype="int8"),
    dict(m=32, k=128, n=32, block_m=32, block_k=64, block_n=16, dtype="fp32"),
]
SHARDED = [  # qkv_gemm_multi_pe on one cube: each PE walks several tiles in one program
    dict(m=128, k=128, n=64, block_m=8, block_k=64, block_n=16),
    dict(m=64, k=64, n=64, block_m=8, block_k=64, block_n=32),
]
CASES = [("qkv_gemm", p) for p in SINGLE_PE] + [("qkv_gemm_multi_pe", p) for p in SHARDED]


@pytest.mark.parametrize(("bench", "params"), CASES)
def test_the_predicted_tcm_peak_is_the_peak_a_run_reports(topo1x1, bench, params):
    result, _ = run(bench, topo1x1, **params)
    assert result.checks["verified"]
    p = get_bench(bench).params(**params)
    if bench == "qkv_gemm":
        layout = single_pe_layout(p)
    else:
        layout = sharded_layout(p, DeviceShape(0, 1, topo1x1.spec.hw.cube.pes))
    most = max(map(len, layout.tiles.values()))
    carries = bench == "qkv_gemm_multi_pe" and most > 1
    buffers = pipeline_buffers(p, topo1x1.spec.sim.num_stages, most)
    assert result.metrics["tcm_peak_bytes"] == tile_tcm_bytes(p, carries, buffers)["total"]


@pytest.mark.parametrize(("bench", "params"), [CASES[0], CASES[-1]])
def test_tcm_of_exactly_the_peak_runs_and_a_byte_less_is_refused(topo1x1, bench, params):
    peak = int(run(bench, topo1x1, **params)[0].metrics["tcm_peak_bytes"])
    result, _ = run(bench, topology(pe={"tcm_bytes": peak}), **params)
    assert result.checks["verified"]
    message = refused(bench, topology(pe={"tcm_bytes": peak - 1}), **params)
    assert message.startswith("bench.block_")
    assert "more than a PE has (hw.pe.tcm_bytes = " in message


def test_tiles_bigger_than_tcm_name_the_largest_block(topo1x1):
    message = refused("qkv_gemm", topo1x1, m=64, k=64, n=64, block_m=2048, block_k=16, block_n=1024)
    assert message.startswith("bench.block_m: tiles of 2048x16x1024 (block_m x block_k x ")
    assert "hw.pe.tcm_bytes = 16.0 MiB" in message


def test_a_sharded_program_of_one_tile_carries_nothing(topo1x1):
    """The carried tile counts only when a PE walks two or more tiles."""
    params = dict(m=64, k=64, n=32, block_m=8, block_k=64, block_n=32)  # 8 rows per PE
    p = get_bench("qkv_gemm_multi_pe").params(**params)
    alone = tile_tcm_bytes(p)["total"]
    result, _ = run("qkv_gemm_multi_pe", topology(pe={"tcm_bytes": alone}), **params)
    assert result.metrics["tcm_peak_bytes"] == alone


# -- HBM ------------------------------------------------------------------------------------
def aligned(nbytes: int, burst: int = 256) -> int:
    return -(-nbytes // burst) * burst


def test_hbm_of_exactly_the_operands_runs_and_a_burst_less_is_refused():
    m, k, n = 64, 96, 40  # fp16: A, B and C all in the slice of cube 0, PE 0
    need = aligned(m * k * 2) + aligned(k * n * 2) + aligned(m * n * 2)
    result, _ = run("qkv_gemm", topology(hbm={"slice_bytes": need}), m=m, k=k, n=n)
    assert result.checks["verified"]
    message = refused("qkv_gemm", topology(hbm={"slice_bytes": need - 256}), m=m, k=k, n=n)
    assert message.startswith(f"bench.k: the {m}x{k} @ {k}x{n} fp16 GEMM puts ")
    assert "in the HBM slice of sip0.cube0.pe0, more than it holds (hw.hbm.slice_bytes" in message


def test_the_check_counts_what_the_slice_allocators_hold(topo1x1):
    """Rows of A and C and columns of B spread unevenly over 8 slices."""
    params = dict(m=100, k=48, n=72, pes=8, block_m=16, block_k=16, block_n=16)
    _, ctx = run("gemm", topo1x1, **params)
    allocators = ctx.systems[-1].hbm_allocators
    p = get_bench("gemm").params(**params)
    dev = DeviceShape(0, 1, topo1x1.spec.hw.cube.pes)
    predicted = hbm_bytes_per_slice(p, gemm_layout(p, dev), dev, 256)
    assert len({sum(h.values()) for h in predicted.values()}) > 1  # uneven
    for (cube, pe), held in predicted.items():
        assert allocators.slice(0, cube, pe).used == sum(held.values())


def test_operands_too_big_for_one_slice_suggest_more_pes(topo1x1):
    message = refused("gemm", topo1x1, m=100_000, k=100_000, n=100_000)
    assert message.startswith("bench.m: the 100000x100000 @ 100000x100000 fp16 GEMM puts ")
    assert message.endswith("or spread them over more PEs (bench.pes)")


# -- host memory ----------------------------------------------------------------------------
def test_numpy_data_beyond_host_memory_are_refused(topo1x1, monkeypatch):
    p = get_bench("qkv_gemm").params()
    inputs = (p.m * p.k + p.k * p.n) * 2
    monkeypatch.setattr(gemm_fits, "host_memory_bytes", lambda: inputs)
    message = refused("qkv_gemm", topo1x1)
    assert message.startswith("bench.k: the 128x256 @ 256x128 fp16 GEMM needs at least ")
    assert "of host memory" in message and "(128.0 KiB)" in message
