"""Engine timing against closed forms worked out by hand from MODEL.md §2-3 and
docs/floorplan.md, plus contention invariants and error paths.

Every expected time below is derived in the test from the spec numbers, never read back from
the simulator. Default floorplan: a cube is 20 x 10 mm with a 2 x 4 router grid (5 mm pitch),
PE i and its HBM controller hang off router i by 0.5 mm links; the W port sits on r0c0 and
the E port on r1c3, each 2.5 mm from its router.

Every test runs under both transfer models (``sim.model``): a lone transfer takes its closed
form under both, and the contention bounds hold under both; the one flit-level ordering
(bursts of one pseudo-channel served one after another) is the flit model's alone.
"""

import numpy as np
import pytest

from kernbench.core.errors import SimulationError
from kernbench.runtime import MemoryReadMsg, MemoryWriteMsg, PeDmaMsg, System
from kernbench.topology import Topology

REL = 1e-9
MIB = 1 << 20
KIB = 1 << 10

NS_PER_MM = 0.01
FLIT = 256
PE_PRE_NS = 2.0 + 1.0  # pe_cpu + pe_scheduler
EP_BW, EP_WIRE = 256.0, 0.5 * NS_PER_MM  # PE / HBM controller <-> router
NOC_BW, NOC_WIRE = 256.0, 5.0 * NS_PER_MM  # router <-> router, 5 mm pitch
PORT_OVH = 8.0
PORT_BW, PORT_WIRE = 512.0, 2.5 * NS_PER_MM  # UCIe port <-> its edge router
CONN_BW, CONN_WIRE = 128.0, 2.0 * NS_PER_MM  # one UCIe connection
PC_COUNT = 8
BURST_NS = 256 / (32.0 * 0.8)  # one 256 B burst on one pseudo-channel: 10 ns
HBM_EFF_GBS = PC_COUNT * 32.0 * 0.8  # 204.8
HOST_BW, HOST_WIRE = 64.0, 100 * NS_PER_MM
PCIE_EP_OVH = 5.0
IO_NOC_BW, IO_NOC_WIRE = 512.0, 5.0 * NS_PER_MM
IO_UCIE_OVH = 8.0
READ_REQ = 64


@pytest.fixture(scope="module")
def topo2x2(make_topology, model) -> Topology:
    return make_topology(2, 2, model=model)


@pytest.fixture(scope="module")
def topo4x4(make_topology, model) -> Topology:
    return make_topology(4, 4, model=model)


@pytest.fixture(scope="module")
def topo2sip(make_topology, model) -> Topology:
    return make_topology(2, 2, sips=2, model=model)


def close(a: float, b: float, rel: float = REL) -> bool:
    return a == pytest.approx(b, rel=rel, abs=0)


def channel(addr: int) -> int:
    return (addr >> 8) & (PC_COUNT - 1)


@pytest.fixture
def system(topo2x2) -> System:
    return System(topology=topo2x2)


def run(topo: Topology, *msgs):
    """Run ``msgs`` submitted together on a fresh idle system; return completions and system."""
    sys_ = System(topology=topo)
    done = sys_.execute_all(msgs)
    assert all(c.ok for c in done), [c.error_message for c in done]
    return done, sys_


# -- PE DMA to its own HBM slice ------------------------------------------------------------


@pytest.mark.parametrize(("cube", "pe"), [(0, 0), (1, 5), (3, 7)])
def test_single_flit_local_write(topo2x2, cube, pe):
    c = System(topology=topo2x2).execute(
        PeDmaMsg(0, cube, pe, topo2x2.address.hbm(0, cube, pe, 0), FLIT)
    )
    link = FLIT / EP_BW + EP_WIRE
    expect = PE_PRE_NS + link + link + BURST_NS
    assert close(c.total_ns, expect)
    assert close(expect, 15.01)
    p = f"sip0.cube{cube}"
    router = f"{p}.r{pe // 4}c{pe % 4}"
    hops = [(h.node, h.ns) for h in c.trace]
    assert [n for n, _ in hops] == [
        f"{p}.pe{pe}.cpu",
        f"{p}.pe{pe}.sched",
        f"{p}.pe{pe}.dma",
        router,
        f"{p}.hbm_ctrl.pe{pe}",
        f"{p}.hbm_ctrl.pe{pe} (committed)",
    ]
    for (_, got), want in zip(
        hops, [0.0, 2.0, PE_PRE_NS, PE_PRE_NS + link, PE_PRE_NS + 2 * link, expect], strict=True
    ):
        assert close(got, want)


def test_single_flit_local_read(system, topo2x2):
    c = system.execute(PeDmaMsg(0, 0, 0, topo2x2.address.hbm(0, 0, 0, 0), FLIT, op="read"))
    request = 2 * (READ_REQ / EP_BW + EP_WIRE)
    response = 2 * (FLIT / EP_BW + EP_WIRE)
    assert close(c.total_ns, PE_PRE_NS + request + BURST_NS + response)
    assert c.trace[-1].node == "sip0.cube0.pe0.dma (last byte)"


@pytest.mark.parametrize("size", [1, 64, 100, 255])
def test_partial_single_flit_local_write(system, topo2x2, size):
    # docs/adr/0004: a short flit holds links and its pseudo-channel for its own bytes.
    c = system.execute(PeDmaMsg(0, 0, 2, topo2x2.address.hbm(0, 0, 2, 0x1000), size))
    expect = PE_PRE_NS + 2 * (size / EP_BW + EP_WIRE) + size / (32.0 * 0.8)
    assert close(c.total_ns, expect)


def test_short_last_flit_that_finishes_last(system, topo2x2):
    # 7 full flits on channels 0..6, then 255 B alone on channel 7. Full flit j leaves the
    # router link at 3 + 0.005 + (j + 2) (both links pace at 1 ns), so channel 6 ends at
    # 6 + 5.01 + 10 = 21.01. The short flit reaches the router at 3 + 7 + 255/256 + 0.005,
    # waits for flit 6 to clear the router link (at 3 + 0.005 + 8), then takes 255/256 +
    # wire there and 255/25.6 on its channel: 11.01 + 11 * 255/256 > 21.01.
    tail = 255
    c = system.execute(PeDmaMsg(0, 0, 0, topo2x2.address.hbm(0, 0, 0, 0), 7 * FLIT + tail))
    at_router = PE_PRE_NS + 7 + tail / EP_BW + EP_WIRE
    router_link_free = PE_PRE_NS + EP_WIRE + 1 + 7  # flit 6 ends its router->ctrl service
    at_ctrl = max(at_router, router_link_free) + tail / EP_BW + EP_WIRE
    short_done = at_ctrl + tail / (32.0 * 0.8)
    full_done = 6 + PE_PRE_NS + 2 * (1 + EP_WIRE) + BURST_NS
    assert short_done > full_done
    assert close(c.total_ns, short_done)


def _local_write_closed_form(n_flits: int, offset: int) -> float:
    """n full flits from PE to its own slice: flit j reaches the controller at
    3 + 2*(1 + 0.005) + j (the links pace flits at 1 ns); a pseudo-channel receives its flits
    every >= 8 ns but needs 10 ns each, so once busy it stays busy: it ends at the arrival of
    its first flit + 10 ns per flit it serves."""
    first, count = {}, {}
    for j in range(n_flits):
        ch = channel(offset + j * FLIT)
        first.setdefault(ch, j)
        count[ch] = count.get(ch, 0) + 1
    head = PE_PRE_NS + 2 * (FLIT / EP_BW + EP_WIRE)
    return max(head + first[ch] + BURST_NS * count[ch] for ch in first)


@pytest.mark.parametrize("n_flits", [2, 8, 9, 100, 1024])
@pytest.mark.parametrize("offset", [0, 3 * FLIT, 7 * FLIT + 128])
def test_n_flit_local_write(topo2x2, n_flits, offset):
    addr = topo2x2.address.hbm(0, 2, 4, offset)
    c = System(topology=topo2x2).execute(PeDmaMsg(0, 2, 4, addr, n_flits * FLIT))
    assert close(c.total_ns, _local_write_closed_form(n_flits, offset))


def test_large_local_write_reaches_effective_hbm_bandwidth(system, topo2x2):
    size = 4 * MIB
    n = size // FLIT
    c = system.execute(PeDmaMsg(0, 0, 3, topo2x2.address.hbm(0, 0, 3, 0), size))
    # Channel 7 gets its first flit 7 ns after channel 0 and then serves n/8 bursts.
    fixed = PE_PRE_NS + 2 * (FLIT / EP_BW + EP_WIRE)
    assert close(c.total_ns, fixed + (PC_COUNT - 1) + BURST_NS * n / PC_COUNT)
    eff_gbs = size / (c.total_ns - fixed)
    assert eff_gbs == pytest.approx(HBM_EFF_GBS, rel=0.005)


def _local_read_closed_form(n_flits: int) -> float:
    """The request (64 B) arrives at 3 + 2*(0.25 + 0.005); every channel then serves its
    bursts back to back, so flits 8k..8k+7 are ready together at +10(k+1); they leave in
    order over the 1 ns controller link (8 ns < 10 ns: no carry-over between groups), and the
    last one then crosses router->dma."""
    request = PE_PRE_NS + 2 * (READ_REQ / EP_BW + EP_WIRE)
    k, p = divmod(n_flits - 1, PC_COUNT)
    return request + BURST_NS * (k + 1) + (p + 1) * FLIT / EP_BW + EP_WIRE + FLIT / EP_BW + EP_WIRE


@pytest.mark.parametrize("n_flits", [1, 5, 8, 13, 64, 16384])
def test_n_flit_local_read(topo2x2, n_flits):
    size = n_flits * FLIT
    c = System(topology=topo2x2).execute(
        PeDmaMsg(0, 1, 6, topo2x2.address.hbm(0, 1, 6, 0), size, op="read")
    )
    assert close(c.total_ns, _local_read_closed_form(n_flits))
    if size == 4 * MIB:
        fixed = PE_PRE_NS + 2 * (READ_REQ / EP_BW + EP_WIRE) + 2 * (FLIT / EP_BW + EP_WIRE)
        assert size / (c.total_ns - fixed) == pytest.approx(HBM_EFF_GBS, rel=0.005)


# -- across one UCIe crossing ---------------------------------------------------------------


def _one_crossing_write(n_flits: int) -> float:
    """cube0.pe0 -> cube1.hbm_ctrl.pe0: dma -r0c0-r0c1-r0c2-r0c3-r1c3- E port =conn= W port
    (on r0c0 of cube 1) - r0c0 - ctrl. The head reaches the crossing after the PE overheads,
    five 1 ns links, the 0.5 ns port link and the E port's 8 ns; then the 128 GB/s connection
    is the bottleneck (2 ns per flit). The W port's 8 ns delays the head only: the flits
    behind it catch up on the faster links, so the last flit only pays the downstream links
    and its 10 ns burst (its channel gets a flit every 16 ns, idle)."""
    to_conn = (
        PE_PRE_NS
        + (FLIT / EP_BW + EP_WIRE)
        + 4 * (FLIT / NOC_BW + NOC_WIRE)
        + (FLIT / PORT_BW + PORT_WIRE)
        + PORT_OVH
    )
    after = CONN_WIRE + (FLIT / PORT_BW + PORT_WIRE) + (FLIT / EP_BW + EP_WIRE) + BURST_NS
    return to_conn + n_flits * FLIT / CONN_BW + after


@pytest.mark.parametrize("size", [64 * KIB, 1 * MIB])
def test_write_across_one_ucie_crossing(topo2x2, size):
    c = System(topology=topo2x2).execute(PeDmaMsg(0, 0, 0, topo2x2.address.hbm(0, 1, 0, 0), size))
    drain = size / CONN_BW
    assert drain <= c.total_ns <= drain + 88
    assert close(c.total_ns, _one_crossing_write(size // FLIT))
    names = [h.node for h in c.trace]
    assert names.index("sip0.cube0.ucie.E") + 1 == names.index("sip0.cube1.ucie.W")


def test_64k_crossing_is_drain_dominated(topo2x2):
    c = System(topology=topo2x2).execute(
        PeDmaMsg(0, 0, 0, topo2x2.address.hbm(0, 1, 0, 0), 64 * KIB)
    )
    assert 512 <= c.total_ns <= 600


# -- host paths -----------------------------------------------------------------------------


def test_single_flit_host_write(system, topo2x2):
    # host =PCIe= pcie_ep (store-and-forward) - io_noc - io_ucie0 =conn= cube0 W port - r0c0 -
    # ctrl.pe0: every stage charges the head once.
    expect = (
        (FLIT / HOST_BW + HOST_WIRE)
        + PCIE_EP_OVH
        + 2 * (FLIT / IO_NOC_BW + IO_NOC_WIRE)
        + IO_UCIE_OVH
        + (FLIT / CONN_BW + CONN_WIRE)
        + PORT_OVH
        + (FLIT / PORT_BW + PORT_WIRE)
        + (FLIT / EP_BW + EP_WIRE)
        + BURST_NS
    )
    c = system.execute(MemoryWriteMsg(topo2x2.address.hbm(0, 0, 0, 0), FLIT))
    assert close(c.total_ns, expect)


def test_large_host_write_is_store_and_forward(system, topo2x2):
    # pcie_ep holds the whole message (n flits at 4 ns) before sending it on; then the
    # 128 GB/s connection drains it at 2 ns a flit (time ~ size/64 + size/128). PE 1's
    # controller is one router east of the W port's r0c0.
    n = 256
    tail_at_ep = n * FLIT / HOST_BW + HOST_WIRE
    head_at_conn = tail_at_ep + PCIE_EP_OVH + 2 * (FLIT / IO_NOC_BW + IO_NOC_WIRE) + IO_UCIE_OVH
    expect = (
        head_at_conn
        + n * FLIT / CONN_BW
        + CONN_WIRE
        + (FLIT / PORT_BW + PORT_WIRE)
        + (FLIT / NOC_BW + NOC_WIRE)
        + (FLIT / EP_BW + EP_WIRE)
        + BURST_NS
    )
    c = system.execute(MemoryWriteMsg(topo2x2.address.hbm(0, 0, 1, 0), n * FLIT))
    assert close(c.total_ns, expect)


# -- invariants -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [FLIT, 64 * KIB])
def test_pe_dma_latency_grows_with_distance(topo4x4, size):
    a = topo4x4.address

    def t(cube: int, pe: int) -> float:
        return (
            System(topology=topo4x4).execute(PeDmaMsg(0, 0, 0, a.hbm(0, cube, pe), size)).total_ns
        )

    own, same_cube, near, far = t(0, 0), t(0, 7), t(1, 0), t(15, 7)
    assert own <= same_cube < near < far


@pytest.mark.parametrize("size", [FLIT, 64 * KIB])
def test_h2d_latency_grows_with_distance(topo4x4, size):
    a = topo4x4.address

    def t(cube: int, pe: int) -> float:
        return System(topology=topo4x4).execute(MemoryWriteMsg(a.hbm(0, cube, pe), size)).total_ns

    assert t(0, 0) < t(3, 0) < t(15, 7)


@pytest.mark.parametrize("size", [1, FLIT, 4096, 64 * KIB + 3])
@pytest.mark.parametrize("place", [(0, 0, 0), (0, 3, 7), (1, 2, 5)])
def test_d2h_is_not_faster_than_h2d(topo2sip, size, place):
    addr = topo2sip.address.hbm(*place, 512)
    h2d = System(topology=topo2sip).execute(MemoryWriteMsg(addr, size))
    d2h = System(topology=topo2sip).execute(MemoryReadMsg(addr, size))
    assert d2h.ok and h2d.ok
    assert d2h.total_ns >= h2d.total_ns


def _conn_edges(topo: Topology, port: str) -> list[int]:
    return [topo.graph.edge(f"{port}.conn{k}").id for k in range(4)]


def test_streams_sharing_one_ucie_connection_add_their_drains(topo2x2):
    a = topo2x2.address
    size = 64 * KIB
    # Source PEs 0 and 4 both map to connection 0 of cube 0's E port (key = source PE % 4);
    # they write to different controllers of cube 1.
    (c0, c4), sys_ = run(
        topo2x2,
        PeDmaMsg(0, 0, 0, a.hbm(0, 1, 0), size),
        PeDmaMsg(0, 0, 4, a.hbm(0, 1, 1), size),
    )
    conns = _conn_edges(topo2x2, "sip0.cube0.ucie.E")
    assert [sys_.transfers.stats.bytes[e] for e in conns] == [2 * size, 0, 0, 0]
    drains = 2 * size / CONN_BW  # every byte of both holds connection 0
    # No flit crosses before a PE's 3 ns and the E port's 8 ns head overhead.
    assert max(c0.end_ns, c4.end_ns) >= drains + PE_PRE_NS + PORT_OVH
    assert sys_.transfers.stats.busy_ns[conns[0]] == pytest.approx(drains, rel=REL)


def test_streams_on_different_connections_overlap(topo2x2):
    a = topo2x2.address
    size = 64 * KIB
    (c0, c1), sys_ = run(
        topo2x2,
        PeDmaMsg(0, 0, 0, a.hbm(0, 1, 0), size),
        PeDmaMsg(0, 0, 1, a.hbm(0, 1, 1), size),
    )
    conns = _conn_edges(topo2x2, "sip0.cube0.ucie.E")
    assert [sys_.transfers.stats.bytes[e] for e in conns] == [size, size, 0, 0]
    assert max(c0.end_ns, c1.end_ns) < 0.75 * (2 * size / CONN_BW)


def test_two_host_writes_share_the_pcie_link(topo2x2):
    a = topo2x2.address
    size = 64 * KIB
    done, sys_ = run(
        topo2x2, MemoryWriteMsg(a.hbm(0, 0, 0), size), MemoryWriteMsg(a.hbm(0, 1, 5), size)
    )
    host_link = topo2x2.graph.edge("host->sip0.io.pcie_ep").id
    assert sys_.transfers.stats.bytes[host_link] == 2 * size
    assert max(c.end_ns for c in done) >= 2 * size / HOST_BW + HOST_WIRE


def test_same_pseudo_channel_bursts_serialize(make_topology):
    # Flit-level FIFO order: under the fluid model the eight flows share the channel's rate
    # instead, and finish close together (MODEL.md §3a).
    topo2x2 = make_topology(2, 2, model="flit")
    a = topo2x2.address
    same = [a.hbm(0, 0, 0, k * PC_COUNT * FLIT) for k in range(8)]
    spread = [a.hbm(0, 0, 0, k * FLIT) for k in range(8)]
    assert {channel(x) for x in same} == {0}
    assert sorted(channel(x) for x in spread) == list(range(8))
    same_done, _ = run(topo2x2, *[PeDmaMsg(0, 0, pe, same[pe], FLIT) for pe in range(8)])
    spread_done, _ = run(topo2x2, *[PeDmaMsg(0, 0, pe, spread[pe], FLIT) for pe in range(8)])
    same_span = max(c.end_ns for c in same_done)
    spread_span = max(c.end_ns for c in spread_done)
    # Nothing reaches the controller before the local PE's 3 + 2 * 1.005 ns; then one channel
    # serves eight 10 ns bursts one after another.
    assert same_span >= (PE_PRE_NS + 2 * (1 + EP_WIRE) + 8 * BURST_NS) * (1 - REL)
    assert sorted(c.end_ns for c in same_done)[1:] == pytest.approx(
        [e + BURST_NS for e in sorted(c.end_ns for c in same_done)[:-1]], rel=REL
    )
    assert spread_span < 0.5 * same_span


def test_dma_write_channel_runs_one_dma_at_a_time(topo2x2):
    a = topo2x2.address
    size = 64 * KIB
    first_msg = PeDmaMsg(0, 0, 0, a.hbm(0, 0, 0, 0), size)
    second_msg = PeDmaMsg(0, 0, 0, a.hbm(0, 0, 0, MIB), size)
    alone = System(topology=topo2x2).execute(second_msg).total_ns
    (first, second), _ = run(topo2x2, first_msg, second_msg)
    drain = size / HBM_EFF_GBS
    assert second.end_ns > first.end_ns
    # pe_cpu and pe_scheduler prepare the second DMA while the first runs; then the channel is
    # held from grant to completion, and the system is idle after the first.
    assert close(second.end_ns, first.end_ns + alone - PE_PRE_NS)
    # Both were issued at t = 0: the second's latency includes its wait for the channel.
    assert second.total_ns >= 2 * drain, (second.start_ns, second.end_ns)


def test_dma_read_and_write_channels_are_independent(topo2x2):
    a = topo2x2.address
    size = 64 * KIB
    # The read is issued first so that its 64 B request is not queued behind the write's
    # 256 flits on the PE's one link to its router (that link is FIFO, MODEL.md §3).
    r = PeDmaMsg(0, 0, 0, a.hbm(0, 0, 1), size, op="read")
    w = PeDmaMsg(0, 0, 0, a.hbm(0, 0, 0), size)
    r_alone = System(topology=topo2x2).execute(r).total_ns
    w_alone = System(topology=topo2x2).execute(w).total_ns
    (cr, cw), _ = run(topo2x2, r, w)
    # One shared channel would finish the second no earlier than the sum of both.
    assert cr.end_ns < 1.01 * r_alone
    assert cw.end_ns < 1.01 * w_alone
    assert max(cw.end_ns, cr.end_ns) < 0.6 * (w_alone + r_alone)


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda a: MemoryWriteMsg(a.encode(0, 16, 0), FLIT),
        lambda a: MemoryReadMsg(a.encode(0, 4, 0), FLIT),
        lambda a: MemoryReadMsg(a.encode(1, 0, 0), FLIT),
        lambda a: PeDmaMsg(0, 0, 0, a.encode(0, 0, 8 * 6 * (1 << 30)), FLIT),
        lambda a: PeDmaMsg(0, 0, 0, a.hbm(0, 0, 0, 6 * (1 << 30) - 8), 16, op="read"),
    ],
    ids=["io-die", "die-beyond-mesh", "sip-beyond", "beyond-slices", "crosses-slice"],
)
def test_address_outside_every_window_fails_the_message(system, topo2x2, make):
    msg = make(topo2x2.address)
    c = system.execute(msg)
    assert not c.ok
    assert c.error_code == "ADDRESS"
    assert f"{msg.addr:#x}" in c.error_message
    assert c.total_ns == 0.0


def test_pe_that_does_not_exist_is_an_address_error(system, topo2x2):
    c = system.execute(PeDmaMsg(0, 9, 0, topo2x2.address.hbm(0, 0, 0), FLIT))
    assert (c.ok, c.error_code) == (False, "ADDRESS")


def test_run_until_an_event_that_never_fires_is_a_deadlock(system):
    never = system.sim.event()
    with pytest.raises(SimulationError, match="deadlock"):
        system.run_until(never)


def test_deadlock_after_traffic_drains(system, topo2x2):
    done = system.submit(PeDmaMsg(0, 0, 0, topo2x2.address.hbm(0, 3, 7), 4 * KIB))
    with pytest.raises(SimulationError, match="deadlock"):
        system.run_until(system.sim.event())
    assert done.triggered and done.value.ok


def test_a_dma_write_without_data_writes_zeros(make_topology, model):
    """``System.dma`` runs may carry no bytes (``None``), as a message may have no data: the
    run is written as zeros, under both models."""
    topo = make_topology(2, 2, model=model)
    sys_ = System(topology=topo)
    addr = topo.address.hbm(0, 1, 3, 4096)
    sys_.memory.write(addr, np.full(300, 7, np.uint8))
    ev = sys_.dma(topo.pe_dma(0, 0, 0), "write", [(addr, 100, None), (addr + 200, 100, None)], 0)
    sys_.run_until(ev)
    got = sys_.memory.read(addr, 300)
    assert (got[:100] == 0).all() and (got[100:200] == 7).all() and (got[200:] == 0).all()
