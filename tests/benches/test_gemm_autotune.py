"""bench.autotune=true on the GEMM benches (benches/gemm_autotune.py): the candidates tried,
the best among them, and headline figures that are the final launch's alone (a plain run with
the best config gives the same)."""

import dataclasses

import pytest
from kernbench.benches.gemm_autotune import CANDIDATES

from kernbench.bench import BenchContext, get_bench
from kernbench.core import BenchError
from kernbench.hw import HwSpec, PeSpec
from kernbench.topology import SystemSpec, Topology, TopologySpec

BEST = ("block_m", "block_n", "block_k", "num_stages")
SAME = ("kernel_ns", "latency_ns", "tflops", "roofline_ns", "roofline_ratio", "pes_used",
        "gemm_busy", "dma_read_busy", "cpu_busy", "tcm_write_busy", "tcm_peak_bytes")  # fmt: skip


def one_cube(**pe) -> Topology:
    hw = dataclasses.replace(HwSpec(), pe=PeSpec(**pe))
    return Topology(SystemSpec(topology=TopologySpec(name="1x1", mesh_w=1, mesh_h=1), hw=hw))


@pytest.fixture(scope="module")
def topo() -> Topology:
    return one_cube()


def run_bench(name: str, topo: Topology, **params):
    info = get_bench(name)
    return info.fn(BenchContext(topo.spec, topo, devices=(0,)), info.params(**params))


def tried(result) -> list[tuple[tuple[int, int, int, int], float | str]]:
    (table,) = [t for t in result.tables if t.title.startswith("Autotuning")]
    return [(tuple(row[1:5]), row[5]) for row in table.rows]


@pytest.fixture(scope="module")
def tuned(topo):
    return run_bench("gemm", topo, m=128, n=200, k=128, pes=2, autotune=True)


def test_the_table_lists_the_candidates_that_are_not_mostly_padding(tuned):
    # 128 x 200 x 128 in tiles: a block over a dimension by 64 or more is pruned (blocks are
    # 64, 128 or 256; 256 - 200 < 64: block_m, block_k <= 128 and any block_n are kept)
    expected = [c for c in CANDIDATES if c[0] <= 128 and c[1] <= 256 and c[2] <= 128]
    assert expected and len(expected) < len(CANDIDATES)
    assert [c for c, _ in tried(tuned)] == expected
    assert tuned.metrics["configs_tried"] == len(expected)
    assert any("pruned before simulating" in note for note in tuned.notes)


def test_the_best_is_the_fastest_candidate_and_reported_as_such(tuned):
    rows = tried(tuned)
    best = tuple(int(tuned.metrics[f"best/{k}"]) for k in BEST)
    times = {c: t for c, t in rows}
    assert best in times and times[best] == min(times.values())
    assert tuned.checks == {"verified": True, "kernel_ge_roofline": True}
    assert tuned.metrics["kernel_ns"] == pytest.approx(times[best], abs=0.05)  # table: 0.1 ns
    # every trial took at least its kernel time, one after the other, before the final launch
    assert tuned.metrics["tune_ns"] > sum(times.values())


def test_the_headline_is_the_final_launch_alone(topo, tuned):
    best = {k: int(tuned.metrics[f"best/{k}"]) for k in BEST}
    plain = run_bench("gemm", topo, m=128, n=200, k=128, pes=2, **best)
    for key in SAME:
        assert tuned.metrics[key] == pytest.approx(plain.metrics[key], rel=1e-9), key
    assert tuned.sim_time_ns > plain.sim_time_ns + tuned.metrics["tune_ns"] / 2


def test_qkv_benches_tune_too(topo):
    one_pe = run_bench("qkv_gemm", topo, m=64, n=128, k=128, autotune=True)
    sharded = run_bench("qkv_gemm_multi_pe", topo, m=64, n=96, k=128, autotune=True)
    for result in (one_pe, sharded):
        assert result.checks == {"verified": True, "kernel_ge_roofline": True}
        rows = tried(result)
        best = tuple(int(result.metrics[f"best/{k}"]) for k in BEST)
        assert len(rows) > 1 and dict(rows)[best] == min(t for _, t in rows)
    # the sharded bench's PEs own 8 of the 64 rows each: only 64-row blocks are kept
    assert {c[0] for c, _ in tried(sharded)} == {64}


def test_a_single_candidate_left_runs_without_trials(topo):
    result = run_bench("qkv_gemm", topo, m=64, n=64, k=64, autotune=True)
    assert tried(result) == [
        ((64, 64, 64, 3), pytest.approx(result.metrics["kernel_ns"], abs=0.05))
    ]
    assert result.metrics["configs_tried"] == 0 and result.metrics["tune_ns"] == 0
    assert result.checks["verified"]


def test_a_tcm_too_small_for_every_candidate_is_refused_before_simulating():
    small = one_cube(tcm_bytes=32 * 1024)  # below the smallest candidate's 80 KiB
    with pytest.raises(BenchError, match=r"bench.autotune: no candidate config fits: .*TCM"):
        run_bench("gemm", small, m=128, n=128, k=128, autotune=True)


def test_autotune_must_be_a_bool():
    with pytest.raises(BenchError, match="bench.autotune: must be true or false, got 'yes'"):
        get_bench("gemm").params(autotune="yes")
