"""The GEMM benches (benches/qkv_gemm.py, qkv_gemm_multi_pe.py, gemm.py): numerics against
numpy, the roofline as an analytic lower bound, the trend towards it, devices, bad input."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernbench.benches.gemm_common import check_output

from kernbench.bench import BenchContext, get_bench
from kernbench.core import BenchError
from kernbench.topology import SystemSpec, Topology, TopologySpec

FIXTURE_SCOPED = HealthCheck.function_scoped_fixture  # the fixtures are module-scoped
UNITS = ("gemm", "math", "cpu", "dma_read", "dma_write", "tcm_read", "tcm_write")
METRICS = (
    "latency_ns", "kernel_ns", "h2d_ns", "d2h_ns", "tflops", "roofline_ns",
    "roofline_compute_ns", "roofline_hbm_ns", "roofline_tcm_ns", "roofline_ratio", "pes_used",
    *(f"{u}_busy" for u in UNITS), "tcm_peak_bytes", "max_abs_err", "verified",
)  # fmt: skip


def topology(mesh_w: int, mesh_h: int, sips: int = 1) -> Topology:
    name = f"{sips}s{mesh_w}x{mesh_h}"
    spec = SystemSpec(topology=TopologySpec(name=name, sips=sips, mesh_w=mesh_w, mesh_h=mesh_h))
    return Topology(spec)


@pytest.fixture(scope="module")
def topo1x1() -> Topology:
    return topology(1, 1)


@pytest.fixture(scope="module")
def topo2x2() -> Topology:
    return topology(2, 2)


def run_bench(name: str, topo: Topology, devices: tuple[int, ...] = (0,), **params):
    info = get_bench(name)
    ctx = BenchContext(topo.spec, topo, devices=devices)
    return info.fn(ctx, info.params(**params))


def assert_sound(result) -> None:
    m = result.metrics
    assert result.checks == {"verified": True, "kernel_ge_roofline": True}
    assert set(METRICS) <= set(m)
    assert m["verified"] == 1.0
    assert m["kernel_ns"] >= m["roofline_ns"] > 0
    assert m["latency_ns"] > m["kernel_ns"]
    assert 0 < m["roofline_ratio"] <= 1
    assert m["roofline_ns"] == max(
        m["roofline_compute_ns"], m["roofline_hbm_ns"], m["roofline_tcm_ns"]
    )
    assert all(0 <= m[f"{u}_busy"] <= 1 for u in UNITS)
    assert m["gemm_busy"] > 0 and m["dma_read_busy"] > 0
    assert m["h2d_ns"] > 0 and m["d2h_ns"] > 0


def test_qkv_gemm_default_matches_numpy_and_its_roofline_by_hand(topo1x1):
    r = run_bench("qkv_gemm", topo1x1)
    assert_sound(r)
    m = r.metrics
    # 128x256 @ 256x128 fp16 on one PE: 2MNK / 8 TFLOP/s; A + B + C once at 204.8 GB/s;
    # TCM reads: per output tile (32 + 32) x 256 operand elements plus the 32x32 store, 16
    # tiles, 2 bytes each, at 512 GB/s.
    assert m["roofline_compute_ns"] == pytest.approx(2 * 128 * 128 * 256 / 8000)
    assert m["roofline_hbm_ns"] == pytest.approx((128 * 256 + 256 * 128 + 128 * 128) * 2 / 204.8)
    assert m["roofline_tcm_ns"] == pytest.approx(16 * ((32 + 32) * 256 + 32 * 32) * 2 / 512)
    assert m["pes_used"] == 1
    assert m["tflops"] == pytest.approx(2 * 128 * 128 * 256 / m["kernel_ns"] / 1e3)
    # operand streaming is the only TCM read: the unit is busy exactly the TCM bound
    assert m["tcm_read_busy"] * m["kernel_ns"] == pytest.approx(m["roofline_tcm_ns"])
    assert r.tables[0].title == (
        "qkv_gemm on sip*.cube0.pe0: 128x256 @ 256x128 fp16, tiles 32x64x32 (times in ns)"
    )
    assert [t.detail for t in r.tables] == [False, False, True]
    assert r.tables[2].rows[0][:2] == ["sip0.cube0.pe0", 16]


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("qkv_gemm", dict(m=50, k=70, n=33)),
        ("gemm", dict(m=45, k=37, n=77, block_m=16, block_k=32, block_n=16, pes=3)),
        ("gemm", dict(m=33, k=65, n=17, block_m=16, block_k=16, block_n=16, dtype="bf16")),
        ("gemm", dict(m=40, k=30, n=20, block_m=16, block_k=16, block_n=16, dtype="fp32")),
        ("gemm", dict(m=40, k=300, n=20, block_m=32, block_k=64, block_n=32, dtype="int8")),
    ],
)
def test_sizes_not_multiples_of_the_tiles_match_numpy(topo1x1, name, params):
    assert_sound(run_bench(name, topo1x1, **params))


def test_multi_pe_on_2x2_verifies_with_ragged_shards(topo2x2):
    # 70 rows over 8 PEs (9 or 8 each), 90 columns over 4 cubes (23 or 22): ragged shards and
    # tiles that overhang them on every side.
    r = run_bench("qkv_gemm_multi_pe", topo2x2, m=70, k=50, n=90, block_m=8, block_k=32, block_n=16)
    assert_sound(r)
    assert r.metrics["pes_used"] == 32
    assert len(r.tables[2].rows) == 32
    # X, W and the output are spread over all 32 slices
    assert r.metrics["roofline_hbm_ns"] == pytest.approx(
        (70 * 50 + 50 * 90 + 70 * 90) * 2 / (204.8 * 32)
    )


def test_multi_pe_with_fewer_rows_than_pes_leaves_pes_idle(topo1x1):
    r = run_bench("qkv_gemm_multi_pe", topo1x1, m=5, k=40, n=24, block_m=8, block_k=16,
                  block_n=8)  # fmt: skip
    assert r.checks["verified"]
    assert r.metrics["pes_used"] == 8  # one program per PE; three of them have no rows


@settings(max_examples=20, deadline=None, suppress_health_check=[FIXTURE_SCOPED])
@given(
    m=st.integers(1, 70),
    k=st.integers(1, 70),
    n=st.integers(1, 70),
    block_m=st.sampled_from([8, 16, 32]),
    block_k=st.sampled_from([8, 16, 64]),
    block_n=st.sampled_from([8, 16, 32]),
    pes=st.sampled_from([1, 2, 8]),
    dtype=st.sampled_from(["fp16", "bf16", "fp32", "int8"]),
)
def test_any_small_gemm_verifies_and_never_beats_its_roofline(
    topo1x1, m, k, n, block_m, block_k, block_n, pes, dtype
):
    r = run_bench("gemm", topo1x1, m=m, k=k, n=n, block_m=block_m, block_k=block_k,
                  block_n=block_n, pes=pes, dtype=dtype)  # fmt: skip
    assert r.checks == {"verified": True, "kernel_ge_roofline": True}
    assert r.metrics["kernel_ns"] >= r.metrics["roofline_ns"]


@settings(max_examples=8, deadline=None, suppress_health_check=[FIXTURE_SCOPED])
@given(
    m=st.integers(1, 40),
    k=st.integers(1, 40),
    n=st.integers(1, 40),
    block=st.sampled_from([(4, 8, 4), (8, 16, 8), (16, 64, 16)]),
)
def test_any_small_sharded_gemm_verifies_and_never_beats_its_roofline(topo1x1, m, k, n, block):
    block_m, block_k, block_n = block
    r = run_bench("qkv_gemm_multi_pe", topo1x1, m=m, k=k, n=n, block_m=block_m,
                  block_k=block_k, block_n=block_n)  # fmt: skip
    assert r.checks == {"verified": True, "kernel_ge_roofline": True}


def test_roofline_ratio_rises_as_the_gemm_grows(topo1x1):
    # Square GEMMs on one PE with half-size tiles (2x2 output tiles, 2 K steps: the same
    # schedule at every size). Measured ratios: 0.13, 0.26, 0.37. A K step costs two loads,
    # each a DMA round trip of ~100 ns plus bytes / HBM bandwidth, and one tl.dot (compute +
    # 8 ns fill/drain); the fixed costs stay while the tile's work grows as b^3 and its bytes
    # as b^2, so the kernel creeps towards the compute bound. The trend is not universal:
    # n=256 with 128-tiles (0.37) trails n=192 with 96-tiles (0.41) because the tile rows
    # start every 512 B and a pseudo-channel is (addr >> 8) & 7, so each load uses only the
    # even half of the HBM slice's channels.
    ratios = []
    for n in (64, 128, 256):
        r = run_bench("gemm", topo1x1, m=n, k=n, n=n, block_m=n // 2, block_k=n // 2,
                      block_n=n // 2)  # fmt: skip
        assert r.checks["verified"]
        ratios.append(r.metrics["roofline_ratio"])
    assert ratios == sorted(ratios)
    assert ratios[-1] > 2 * ratios[0]


def test_every_device_reports_prefixed_and_aggregated_metrics():
    topo = topology(1, 1, sips=2)
    r = run_bench("qkv_gemm", topo, devices=(0, 1), m=40, k=64, n=48)
    m = r.metrics
    for sip in (0, 1):
        assert {f"sip{sip}/{k}" for k in METRICS} <= set(m)
        assert m[f"sip{sip}/verified"] == 1.0
        assert m[f"sip{sip}/kernel_ns"] >= m[f"sip{sip}/roofline_ns"]
    assert set(METRICS) <= set(m)
    assert m["latency_ns"] == max(m["sip0/latency_ns"], m["sip1/latency_ns"])
    assert m["kernel_ns"] == max(m["sip0/kernel_ns"], m["sip1/kernel_ns"])
    assert m["pes_used"] == 2
    # all FLOPs over the span of both kernels: at most the sum, at least the best device
    assert max(m["sip0/tflops"], m["sip1/tflops"]) <= m["tflops"]
    assert m["tflops"] <= m["sip0/tflops"] + m["sip1/tflops"] + 1e-9
    assert m["verified"] == 1.0
    assert r.checks == {
        "sip0/verified": True, "sip1/verified": True, "verified": True,
        "kernel_ge_roofline": True,
    }  # fmt: skip
    assert [row[0] for row in r.tables[0].rows] == ["sip0", "sip1"]
    assert [row[0] for row in r.tables[2].rows] == ["sip0.cube0.pe0", "sip1.cube0.pe0"]


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("qkv_gemm", dict(m=0), "bench.m: must be a positive integer, got 0"),
        ("qkv_gemm", dict(k=-3), "bench.k: must be a positive integer, got -3"),
        ("qkv_gemm_multi_pe", dict(block_n=0), "bench.block_n: must be a positive integer, got 0"),
        ("gemm", dict(block_k=True), "bench.block_k: must be a positive integer, got True"),
        ("gemm", dict(pes=0), "bench.pes: must be a positive integer, got 0"),
        (
            "gemm",
            dict(dtype="fp8"),
            "bench.dtype: must be one of fp16, bf16, fp32, int8, got 'fp8'",
        ),
    ],
)
def test_bad_params_name_their_key(name, params, message):
    with pytest.raises(BenchError) as info:
        get_bench(name).params(**params)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("pes", "message"),
    [
        (9, "bench.pes: 9 PEs asked, this device has 8; use 1..8"),
        (64, "bench.pes: 64 PEs asked, this device has 8; use 1..8"),
    ],
)
def test_more_pes_than_the_device_has_is_an_error(topo1x1, pes, message):
    with pytest.raises(BenchError) as info:
        run_bench("gemm", topo1x1, pes=pes)
    assert str(info.value) == message


def test_pes_across_cubes_must_fill_them(topo2x2):
    with pytest.raises(BenchError) as info:
        run_bench("gemm", topo2x2, pes=12)
    assert str(info.value) == (
        "bench.pes: 12 PEs span several cubes, so they must fill them (8 PEs per cube); "
        "use 1..8 or a multiple of 8 up to 32"
    )


def test_tiles_too_big_for_tcm_are_refused_before_the_kernel_runs(topo1x1):
    # the 2048x2048 fp32 accumulator alone fills the 16 MiB TCM (tests/benches/test_gemm_fits.py)
    with pytest.raises(BenchError, match=r"bench\.block_m: tiles of 2048x16x2048 .* more than "
                       r"a PE has \(hw\.pe\.tcm_bytes = 16\.0 MiB\)"):  # fmt: skip
        run_bench("qkv_gemm", topo1x1, m=64, k=64, n=64, block_m=2048, block_k=16, block_n=2048)


def test_the_check_catches_a_wrong_element_and_accepts_fp16_rounding():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((16, 300)).astype(np.float16)
    b = rng.standard_normal((300, 8)).astype(np.float16)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    c = exact.astype(np.float16)  # the best an fp16 output can be
    err, ok = check_output(a, b, c, "fp16")
    assert ok and err > 0
    c[3, 4] += np.float16(0.25)
    assert check_output(a, b, c, "fp16")[1] is False


@pytest.mark.slow
def test_default_multi_pe_run_on_4x4(topo4x4):
    r = run_bench("qkv_gemm_multi_pe", topo4x4)
    assert_sound(r)
    assert r.metrics["pes_used"] == 128
    assert r.metrics["roofline_ratio"] > 0.3  # measured 0.41
