"""The probe bench: cases, analytic agreement, sweep trends, congestion bounds, errors.

The analytic agreement and the probe's own invariant checks hold under both transfer models
(``sim.model``); the other figures are the flit model's."""

import pytest

from kernbench.bench import BenchContext, get_bench
from kernbench.core import KIB, BenchError
from kernbench.hw import HbmSpec
from kernbench.sim.spec import SimSpec
from kernbench.topology import SystemSpec, TopologySpec

PROBE = get_bench("probe")
TOPO_2SIP = TopologySpec(name="2x2_2sip", sips=2, mesh_w=2, mesh_h=2)


def run_probe(topology: TopologySpec, model: str = "flit", **params):
    ctx = BenchContext.from_spec(SystemSpec(topology=topology, sim=SimSpec(model=model)))
    return PROBE.fn(ctx, PROBE.params(**params))


@pytest.fixture(scope="module")
def probes():
    """``probes(topology, model)``: the full probe's result, run once per module."""
    done = {}

    def get(topology: TopologySpec, model: str):
        key = (topology, model)
        if key not in done:
            done[key] = run_probe(topology, model)
        return done[key]

    return get


@pytest.fixture(scope="module")
def probe_2sip(probes):
    return probes(TOPO_2SIP, "flit")


@pytest.fixture(scope="module")
def probe_4x4(probes):
    return probes(TopologySpec(), "flit")


def test_every_case_and_size_matches_the_analytic_value(probes, model):
    result = probes(TOPO_2SIP, model)
    agree = {k: v for k, v in result.checks.items() if k.endswith("formula_agrees")}
    # 10 cases, each at the main size and five sweep sizes
    assert len(agree) == 10 * 6
    assert all(agree.values())
    # The reported figures themselves, not only the probe's check of them, agree to 1e-6.
    m = result.metrics
    for case in {k.split("/")[0] for k in agree}:
        assert m[f"{case}/latency_ns"] == pytest.approx(m[f"{case}/formula_ns"], rel=1e-6, abs=0)


def test_all_invariant_checks_pass_on_the_default_topology(probes, model):
    result = probes(TopologySpec(), model)
    assert result.checks, "the probe reported no checks"
    assert [k for k, ok in result.checks.items() if not ok] == []
    assert "pe-cross-sip/latency_ns" not in result.metrics
    assert any("pe-cross-sip" in n for n in result.notes)


@pytest.mark.parametrize(
    "case", ["h2d-far-cube", "d2h-local-cube", "pe-cross-sip", "pe-same-cube-far"]
)
def test_breakdown_parts_sum_to_the_formula(probes, model, case):
    m = probes(TOPO_2SIP, model).metrics
    parts = sum(
        m[f"{case}/{p}"] for p in ("overhead_ns", "wire_ns", "serialization_ns", "drain_ns")
    )
    assert parts == pytest.approx(m[f"{case}/formula_ns"], rel=1e-12)
    assert m[f"{case}/queueing_ns"] == pytest.approx(0.0, abs=1e-6)


def test_cross_sip_is_the_slowest_pe_path(probe_2sip):
    m = probe_2sip.metrics
    assert m["pe-cross-sip/latency_ns"] > m["pe-cross-cube-far/latency_ns"]
    # it crosses two store-and-forward pcie_ep and the switch
    assert m["pe-cross-sip/overhead_ns"] >= 2 * 5 + 5


def test_sweep_utilization_rises_with_size_and_local_hbm_saturates(probe_4x4):
    m = probe_4x4.metrics
    sizes = ("4KiB", "16KiB", "64KiB", "256KiB", "1MiB")
    for case in ("pe-local-hbm", "pe-cross-cube-near", "h2d-far-cube", "d2h-far-cube"):
        util = [m[f"{case}/sweep/{s}/utilization"] for s in sizes]
        assert util == sorted(util), case
        assert all(0 < u <= 1 for u in util)
    # a PE reads/writes its own slice at the full effective HBM bandwidth for large transfers
    effective = HbmSpec().effective_bw_gbs
    assert effective == pytest.approx(204.8)
    assert m["pe-local-hbm/sweep/1MiB/effective_bw_gbs"] >= 0.99 * effective
    # one 128 GB/s UCIe connection bounds a single cross-cube stream
    assert m["pe-cross-cube-near/bottleneck_bw_gbs"] == 128
    assert m["pe-cross-cube-near/sweep/1MiB/effective_bw_gbs"] <= 128


def test_utilization_passes_90_percent_by_64_kib_on_pe_paths(probe_4x4):
    m = probe_4x4.metrics
    for case in ("pe-local-hbm", "pe-same-cube-near", "pe-cross-cube-near"):
        assert m[f"{case}/sweep/64KiB/utilization"] > 0.9, case


def test_congestion_respects_lower_bounds_and_fair_share(probes, model):
    m = probes(TopologySpec(), model).metrics
    size = 32 * KIB
    effective = HbmSpec().effective_bw_gbs
    for n in (1, 2, 3, 8):
        p = f"congestion/hbm-incast-{n}"
        # n flows into one controller cannot beat its effective bandwidth
        assert m[f"{p}/makespan_ns"] >= n * size / effective
        assert m[f"{p}/fair_share_gbs"] == pytest.approx(effective)
        assert m[f"{p}/aggregate_bw_gbs"] <= m[f"{p}/fair_share_gbs"]
    assert m["congestion/hbm-incast-8/makespan_ns"] > m["congestion/hbm-incast-1/makespan_ns"]
    # every PE of the SIP to its own slice: no sharing at all
    assert m["congestion/sip-all-local/fair_share_gbs"] == pytest.approx(128 * effective)
    assert m["congestion/sip-all-local/makespan_ns"] == pytest.approx(m["pe-local-hbm/latency_ns"])
    # eight PEs through one UCIe port cannot beat its four 128 GB/s connections
    assert m["congestion/ucie-port/aggregate_bw_gbs"] <= 4 * 128
    assert m["congestion/ucie-port/aggregate_bw_gbs"] <= m["congestion/ucie-port/fair_share_gbs"]


def test_congestion_makespans_agree_between_the_models_within_5_percent(probes):
    """The probe's congestion scenarios (issue 14): the fluid model's makespan within 5 % of
    the flit model's (docs/fluid-model.md publishes the figures)."""
    flit, fluid = (probes(TopologySpec(), m).metrics for m in ("flit", "fluid"))
    spans = [k for k in flit if k.startswith("congestion/") and k.endswith("/makespan_ns")]
    assert len(spans) == 6  # incast 1, 2, 3, 8; ucie-port; sip-all-local
    for key in spans:
        assert fluid[key] == pytest.approx(flit[key], rel=0.05), key


def test_single_case_runs_only_that_case_with_its_route():
    r = run_probe(
        TopologySpec(name="2x2", mesh_w=2, mesh_h=2),
        case="pe-cross-cube-near",
        size_bytes=1000,
        sweep=False,
    )
    cases = {k.split("/")[0] for k in r.metrics}
    assert cases == {"pe-cross-cube-near"}
    route = [t for t in r.tables if t.title.startswith("Route of")]
    assert len(route) == 1 and route[0].detail
    nodes = [row[1] for row in route[0].rows]
    assert nodes[0] == "sip0.cube0.pe0.cpu"
    assert "sip0.cube0.ucie.E" in nodes and "sip0.cube1.ucie.W" in nodes
    times = [row[2] for row in route[0].rows]
    assert times == sorted(times)
    assert times[-1] == pytest.approx(r.metrics["pe-cross-cube-near/latency_ns"])
    assert any("bottleneck" in row[4] for row in route[0].rows)


def test_unknown_case_lists_the_valid_ones():
    with pytest.raises(BenchError, match=r"bench.case: unknown case 'nope'.*pe-local-hbm"):
        run_probe(TopologySpec(name="2x2", mesh_w=2, mesh_h=2), case="nope")


def test_cross_sip_case_on_one_sip_says_what_is_needed():
    with pytest.raises(BenchError, match=r"pe-cross-sip.*topology.sips >= 2"):
        run_probe(TopologySpec(name="2x2", mesh_w=2, mesh_h=2), case="pe-cross-sip")


def test_size_must_be_positive():
    with pytest.raises(BenchError, match="bench.size_bytes"):
        PROBE.params(size_bytes=0)


def test_probe_is_deterministic():
    topo = TopologySpec(name="2x2", mesh_w=2, mesh_h=2)
    a = run_probe(topo, size_bytes=100_003, sweep=False)
    b = run_probe(topo, size_bytes=100_003, sweep=False)
    assert a.metrics == b.metrics
    assert a.sim_events == b.sim_events
