"""The energy model (kernbench.runtime.energy, docs/energy.md) against closed forms computed here
from routes, message sizes and the EnergySpec fields, never from the module's own helpers; and
its invariants: energy grows with bytes and FLOPs, static energy with simulated time."""

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kernbench.lang as tl
from kernbench.core import KIB
from kernbench.hw import HwSpec, PeSpec
from kernbench.hw.energy import EnergySpec
from kernbench.runtime import Device, Hub, MemoryReadMsg, MemoryWriteMsg, PeDmaMsg, System
from kernbench.runtime.energy import COMPONENTS, system_energy, total_energy
from kernbench.sim.spec import SimSpec
from kernbench.topology import SystemSpec, Topology, TopologySpec

# Every price differs from the others and from its default, so a term charged at the wrong
# price, or twice, or not at all, moves the total.
PRICES = EnergySpec(
    noc_pj_per_bit=0.3,
    noc_wire_pj_per_bit_mm=0.07,
    ucie_pj_per_bit=1.1,
    pcie_pj_per_bit=5.3,
    switch_pj_per_bit=13.0,
    hbm_read_pj_per_bit=4.1,
    hbm_write_pj_per_bit=3.3,
    tcm_read_pj_per_bit=0.13,
    tcm_write_pj_per_bit=0.17,
    sram_read_pj_per_bit=0.43,
    sram_write_pj_per_bit=0.47,
    gemm_fp16_pj_per_flop=0.21,
    gemm_bf16_pj_per_flop=0.19,
    gemm_fp32_pj_per_flop=0.61,
    gemm_int8_pj_per_op=0.037,
    math_pj_per_op=0.53,
    pe_static_w=0.35,
    cube_static_w=2.5,
    io_static_w=6.5,
)
ZERO_STATIC = dataclasses.replace(PRICES, pe_static_w=0.0, cube_static_w=0.0, io_static_w=0.0)


def topology(energy: EnergySpec, model: str = "fluid", w: int = 2, h: int = 1, sips: int = 1):
    hw = HwSpec(energy=energy, pe=PeSpec(dma_outstanding=1))
    return Topology(
        SystemSpec(
            topology=TopologySpec(name=f"{sips}s{w}x{h}", sips=sips, mesh_w=w, mesh_h=h),
            hw=hw,
            sim=SimSpec(model=model, num_stages=1),
        )
    )


def static_w(t: Topology) -> float:
    """The topology's static power written out: per SIP an IO chiplet and its cubes' PEs."""
    e, s = t.spec.hw.energy, t.spec.topology
    return s.sips * (e.io_static_w + s.mesh_w * s.mesh_h * (e.cube_static_w + 8 * e.pe_static_w))


def price_per_bit(t: Topology, edge_id: int) -> float:
    """An edge's price from its endpoints' names: UCIe crossings are the ``.conn`` edges,
    the host's link is PCIe, the switch's links to the SIPs are switch links, the rest NOC."""
    g, e = t.graph, t.graph.edges[edge_id]
    p = t.spec.hw.energy
    ends = {g.nodes[e.src].name, g.nodes[e.dst].name}
    if "host" in ends:
        return p.pcie_pj_per_bit
    if "switch" in ends:
        return p.switch_pj_per_bit
    if ".conn" in e.name:
        return p.ucie_pj_per_bit
    return p.noc_pj_per_bit + p.noc_wire_pj_per_bit_mm * e.length_mm


def route_pj(t: Topology, edges, nbytes: int) -> float:
    return sum(nbytes * 8 * price_per_bit(t, e) for e in edges)


# -- closed forms: one uncontended transfer, one GEMM ----------------------------------------


@pytest.mark.parametrize("model", ["flit", "fluid"])
def test_one_pe_write_across_a_ucie_crossing_costs_route_bits_hbm_bits_and_static(model):
    t = topology(PRICES, model)
    size = 24 * KIB + 40
    system = System(topology=t)
    msg = PeDmaMsg(0, 0, 3, t.address.hbm(0, 1, 6), size)
    assert system.execute(msg).ok
    route = t.route(t.pe_dma(0, 0, 3), t.hbm_ctrl(0, 1, 6))
    assert any(".conn" in t.graph.edges[e].name for e in route.edges)  # it crosses UCIe
    expected = (
        route_pj(t, route.edges, size)
        + size * 8 * PRICES.hbm_write_pj_per_bit
        + static_w(t) * system.now * 1e3
    )
    got = system_energy(system)
    assert got.total_pj == pytest.approx(expected, rel=1e-12)
    assert got.components_pj["ucie"] == pytest.approx(size * 8 * PRICES.ucie_pj_per_bit)
    assert got.components_pj["hbm"] == pytest.approx(size * 8 * PRICES.hbm_write_pj_per_bit)


@pytest.mark.parametrize("model", ["flit", "fluid"])
def test_a_host_read_pays_the_request_one_way_and_the_data_the_other(model):
    t = topology(ZERO_STATIC, model)
    size = 16 * KIB
    system = System(topology=t)
    assert system.execute(MemoryReadMsg(t.address.hbm(0, 1, 2), size)).ok
    host, ctrl = t.node("host"), t.hbm_ctrl(0, 1, 2)
    request = t.route(host, ctrl).edges
    response = t.route(ctrl, host, t.flow_key(host, ctrl)).edges
    req_bytes = t.spec.sim.read_request_bytes
    expected = (
        route_pj(t, request, req_bytes)
        + route_pj(t, response, size)
        + size * 8 * PRICES.hbm_read_pj_per_bit
    )
    got = system_energy(system)
    assert got.total_pj == pytest.approx(expected, rel=1e-12)
    assert got.components_pj["pcie"] > 0 and got.components_pj["static"] == 0


def test_the_switch_and_host_links_of_two_sips_are_priced_as_switch_and_pcie():
    t = topology(ZERO_STATIC, "fluid", w=1, h=1, sips=2)
    size = 8 * KIB
    system = System(topology=t)
    assert system.execute(MemoryWriteMsg(t.address.hbm(1, 0, 0), size)).ok
    got = system_energy(system).components_pj
    assert got["pcie"] == pytest.approx(size * 8 * PRICES.pcie_pj_per_bit)  # host -> switch
    assert got["switch"] == pytest.approx(size * 8 * PRICES.switch_pj_per_bit)  # -> SIP 1


@tl.jit
def zeros_then_dot(x_ptr, M: tl.constexpr, N: tl.constexpr, K: tl.constexpr, DT: tl.constexpr):
    a = tl.zeros((M, K), DT)
    b = tl.zeros((K, N), DT)
    tl.dot(a, b)


GEMM_PRICE = {
    "float16": PRICES.gemm_fp16_pj_per_flop,
    "bfloat16": PRICES.gemm_bf16_pj_per_flop,
    "float32": PRICES.gemm_fp32_pj_per_flop,
    "int8": PRICES.gemm_int8_pj_per_op,
}
NO_MOVES = dataclasses.replace(
    PRICES,
    noc_pj_per_bit=0.0,
    noc_wire_pj_per_bit_mm=0.0,
    ucie_pj_per_bit=0.0,
    pcie_pj_per_bit=0.0,
)


@pytest.mark.parametrize(
    "m, n, k, dtype, itemsize",
    [
        (64, 32, 128, tl.float16, 2),
        (48, 40, 72, tl.bfloat16, 2),
        (32, 32, 64, tl.float32, 4),
        (32, 64, 128, tl.int8, 1),
    ],
)
def test_one_dot_costs_2mnk_at_its_dtype_price_plus_operands_plus_static(m, n, k, dtype, itemsize):
    """Links are free here (the launch's control messages would cost), so the energy is the
    dot's FLOPs, the two ``tl.zeros`` on pe_math (one op per element), the dot's operands read
    from TCM, and static power over the run."""
    t = topology(NO_MOVES)
    system = System(topology=t)
    dev = Device(system, Hub(system.sim), 0)
    dev.launch(zeros_then_dot, 1, 0, M=m, N=n, K=k, DT=dtype, pes=[(1, 4)])
    dev.synchronize()
    operands = (m * k + k * n) * itemsize
    expected = (
        2 * m * n * k * GEMM_PRICE[dtype.name]
        + (m * k + k * n) * PRICES.math_pj_per_op
        + operands * 8 * PRICES.tcm_read_pj_per_bit
        + static_w(t) * system.now * 1e3
    )
    got = system_energy(system)
    assert got.total_pj == pytest.approx(expected, rel=1e-9)
    assert got.gemm_flops == 2 * m * n * k
    assert got.components_pj["gemm"] == pytest.approx(2 * m * n * k * GEMM_PRICE[dtype.name])
    assert got.metrics()["tflops_per_w"] == pytest.approx(2 * m * n * k / expected)


# -- invariants -------------------------------------------------------------------------------

SMALL = settings(max_examples=15, deadline=None)
T_WRITE = topology(ZERO_STATIC)


@SMALL
@given(
    size=st.integers(1, 64 * KIB),
    extra=st.integers(1, 64 * KIB),
    cube=st.integers(0, 1),
    pe=st.integers(0, 7),
)
def test_dynamic_energy_grows_with_the_bytes_moved(size, extra, cube, pe):
    def energy(nbytes: int) -> float:
        system = System(topology=T_WRITE)
        assert system.execute(PeDmaMsg(0, 0, 0, T_WRITE.address.hbm(0, cube, pe), nbytes)).ok
        return system_energy(system).total_pj

    small, large = energy(size), energy(size + extra)
    assert 0 < small < large
    # a write's dynamic energy is its bytes times the price of one byte along its path
    assert large / small == pytest.approx((size + extra) / size, rel=1e-9)


T_DOT = topology(PRICES)


@SMALL
@given(k=st.sampled_from([16, 32, 64, 128]), more=st.sampled_from([16, 32, 64]))
def test_energy_grows_with_flops(k, more):
    def run(kk: int):
        system = System(topology=T_DOT)
        dev = Device(system, Hub(system.sim), 0)
        dev.launch(zeros_then_dot, 1, 0, M=32, N=32, K=kk, DT=tl.float16, pes=[(0, 0)])
        dev.synchronize()
        return system_energy(system)

    a, b = run(k), run(k + more)
    assert a.gemm_flops < b.gemm_flops
    assert a.components_pj["gemm"] < b.components_pj["gemm"]
    assert a.total_pj < b.total_pj


T_IDLE = topology(PRICES, w=2, h=2)


@SMALL
@given(t1=st.floats(1.0, 1e6), factor=st.floats(1.5, 100.0))
def test_static_energy_is_static_power_times_simulated_time(t1, factor):
    def idle(until: float):
        system = System(topology=T_IDLE)
        system.sim.env.run(until=until)
        return system_energy(system)

    a, b = idle(t1), idle(t1 * factor)
    assert a.components_pj["static"] == pytest.approx(static_w(T_IDLE) * t1 * 1e3, rel=1e-12)
    assert b.components_pj["static"] / a.components_pj["static"] == pytest.approx(factor)
    assert a.total_pj == a.components_pj["static"]  # nothing moved, nothing computed
    assert a.metrics()["avg_power_w"] == pytest.approx(static_w(T_IDLE))


def test_energies_of_several_systems_add_up_and_split_into_the_documented_components():
    t = topology(PRICES)
    systems = []
    for size in (4 * KIB, 12 * KIB):
        s = System(topology=t)
        assert s.execute(MemoryWriteMsg(t.address.hbm(0, 1, 1), size)).ok
        systems.append(s)
    both = total_energy(systems)
    each = [system_energy(s) for s in systems]
    assert tuple(both.components_pj) == COMPONENTS
    assert both.total_pj == pytest.approx(sum(e.total_pj for e in each))
    assert both.duration_ns == pytest.approx(sum(s.now for s in systems))
    assert both.to_dict()["total_uj"] == pytest.approx(both.total_pj * 1e-6)
