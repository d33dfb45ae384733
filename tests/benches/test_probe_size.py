"""The probe's size limit (benches/probe.py: ProbeParams.check_spec) is where a run would fail:
a size at the limit runs, one byte more is refused naming ``bench.size_bytes`` and the limit,
and the run the check prevents would indeed have failed."""

import dataclasses

import pytest

from kernbench.bench import BenchContext, get_bench
from kernbench.core import KIB, BenchError, KernbenchError
from kernbench.hw import HwSpec
from kernbench.topology import SystemSpec, Topology, TopologySpec

SLICE = 64 * KIB
INCAST = 8  # PEs of cube 0 writing into PE 0's slice in the congestion scenarios


@pytest.fixture(scope="module")
def topo() -> Topology:
    hw = HwSpec()
    hw = dataclasses.replace(hw, hbm=dataclasses.replace(hw.hbm, slice_bytes=SLICE))
    return Topology(SystemSpec(topology=TopologySpec(name="2x2", mesh_w=2, mesh_h=2), hw=hw))


def probe(topo: Topology, **params):
    info = get_bench("probe")
    p = info.params(sweep=False, **params)
    return p, lambda: info.fn(BenchContext(topo.spec, topo), p)


@pytest.mark.parametrize(
    ("congestion", "limit"), [(True, SLICE // INCAST), (False, SLICE)], ids=["congestion", "not"]
)
def test_a_size_at_the_limit_runs_and_a_byte_more_is_refused(topo, congestion, limit):
    p, go = probe(topo, size_bytes=limit, congestion=congestion)
    p.check_spec(topo.spec)
    assert all(go().checks.values())
    p, go = probe(topo, size_bytes=limit + 1, congestion=congestion)
    with pytest.raises(BenchError) as err:
        p.check_spec(topo.spec)
    assert str(err.value).startswith(
        f"bench.size_bytes: {limit + 1} bytes do not fit the HBM slice a probe writes to "
        f"(hw.hbm.slice_bytes = 64 KiB); use at most {limit} bytes"
    )
    with pytest.raises(KernbenchError, match="slice"):  # the run the check spares
        go()


def test_a_single_case_may_use_the_whole_slice(topo):
    p, _ = probe(topo, size_bytes=SLICE, case="pe-local-hbm")
    p.check_spec(topo.spec)


def test_a_sweep_beyond_the_slice_is_refused_naming_bench_sweep(topo):
    p = get_bench("probe").params(sweep=True, size_bytes=4 * KIB)
    with pytest.raises(BenchError, match=r"^bench\.sweep: the sweep's sizes up to 1 MiB"):
        p.check_spec(topo.spec)
