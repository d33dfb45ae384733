"""Properties of both transfer models (``sim.model=flit|fluid``, MODEL.md §3a): agreement with
the independent analytic model on an idle system, the same per-hop trace and the same DMA
times under both models for a lone transfer, byte conservation under concurrency, real data,
determinism.

Every test that takes a topology fixture of this module runs once per model."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernbench.runtime import MemoryReadMsg, MemoryWriteMsg, PeDmaMsg, System
from kernbench.runtime.analytic import formula
from kernbench.topology import Topology

AGREE_REL = 1e-6
MODELS = ("flit", "fluid")
FLIT = 256
READ_REQ = 64
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None)

sips_, cubes_, pes_ = st.integers(0, 1), st.integers(0, 3), st.integers(0, 7)
places = st.tuples(sips_, cubes_, pes_)


@pytest.fixture(scope="module")
def topo2sip(make_topology, model) -> Topology:
    """Two SIPs of a 2x2 mesh each, under ``model``."""
    return make_topology(2, 2, sips=2, model=model)


@pytest.fixture(scope="module")
def topo2x2(make_topology, model) -> Topology:
    """One SIP, a 2x2 mesh, under ``model``."""
    return make_topology(2, 2, model=model)


@pytest.fixture(scope="module")
def pair2sip(make_topology) -> dict[str, Topology]:
    """The two-SIP 2x2 topology under each model, to compare them."""
    return {m: make_topology(2, 2, sips=2, model=m) for m in MODELS}


def message(topo: Topology, kind: str, src, dst, size: int, offset: int):
    addr = topo.address.hbm(*dst, offset)
    if kind == "h2d":
        return MemoryWriteMsg(addr, size)
    if kind == "d2h":
        return MemoryReadMsg(addr, size)
    return PeDmaMsg(*src, addr, size, op="write" if kind == "pe-write" else "read")


def assert_agrees(topo: Topology, msg) -> None:
    done = System(topology=topo).execute(msg)
    assert done.ok, done.error_message
    assert done.total_ns == pytest.approx(formula(topo, msg).total_ns, rel=AGREE_REL, abs=0)


# -- engine == analytic on an idle system ---------------------------------------------------

PE_PATHS = {
    "local": ((0, 0, 0), (0, 0, 0)),
    "same-cube": ((0, 1, 0), (0, 1, 7)),
    "cross-cube": ((0, 0, 2), (0, 1, 5)),
    "far-cube": ((1, 3, 7), (1, 0, 0)),
    "cross-sip": ((0, 3, 6), (1, 2, 1)),
}
HOST_PLACES = {"sip0-cube0": (0, 0, 0), "sip0-cube3": (0, 3, 7), "sip1-cube2": (1, 2, 4)}
SIZES = [1, FLIT, 1000, 64 * 1024 + 17]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["pe-write", "pe-read"])
@pytest.mark.parametrize("path", PE_PATHS)
def test_pe_dma_matches_analytic(topo2sip, path, kind, size):
    src, dst = PE_PATHS[path]
    assert_agrees(topo2sip, message(topo2sip, kind, src, dst, size, 0x340))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["h2d", "d2h"])
@pytest.mark.parametrize("place", HOST_PLACES)
def test_host_messages_match_analytic(topo2sip, place, kind, size):
    assert_agrees(topo2sip, message(topo2sip, kind, None, HOST_PLACES[place], size, 0x1000))


def test_single_sip_host_paths_match_analytic(topo2x2):
    a = topo2x2.address
    for cube in range(4):
        for msg in (MemoryWriteMsg(a.hbm(0, cube, 3), 5000), MemoryReadMsg(a.hbm(0, cube, 6), 777)):
            assert_agrees(topo2x2, msg)


@pytest.mark.parametrize("kind", ["h2d", "d2h", "pe-write", "pe-read"])
@given(
    src=places,
    dst=places,
    size=st.one_of(st.integers(1, 4096), st.integers(4097, 300_000)),
    offset=st.integers(0, 1 << 22),
)
@settings(max_examples=15, deadline=None, derandomize=True, database=None)
def test_random_messages_match_analytic(topo2sip, kind, src, dst, size, offset):
    assert_agrees(topo2sip, message(topo2sip, kind, src, dst, size, offset))


def _spread_cases(n: int = 24):
    """Seeded cases with log-uniform sizes, so large messages on long paths are certain."""
    rng = np.random.default_rng(1234)
    kinds = ["h2d", "d2h", "pe-write", "pe-read"]
    for i in range(n):
        src = tuple(int(v) for v in (rng.integers(2), rng.integers(4), rng.integers(8)))
        dst = tuple(int(v) for v in (rng.integers(2), rng.integers(4), rng.integers(8)))
        size = int(np.exp(rng.uniform(0, np.log(300_000))))
        yield kinds[i % 4], src, dst, size, int(rng.integers(0, 1 << 22))


@pytest.mark.parametrize(("kind", "src", "dst", "size", "offset"), list(_spread_cases()))
def test_spread_of_messages_match_analytic(topo2sip, kind, src, dst, size, offset):
    assert_agrees(topo2sip, message(topo2sip, kind, src, dst, size, offset))


# -- a lone transfer is the same under both models ------------------------------------------


def _lone_cases():
    for path, (src, dst) in PE_PATHS.items():
        for kind in ("pe-write", "pe-read"):
            yield pytest.param(kind, src, dst, id=f"{path}-{kind}")
    for place, dst in HOST_PLACES.items():
        for kind in ("h2d", "d2h"):
            yield pytest.param(kind, None, dst, id=f"{place}-{kind}")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("kind", "src", "dst"), list(_lone_cases()))
def test_lone_transfer_has_the_same_hop_trace_under_both_models(pair2sip, kind, src, dst, size):
    msg = message(pair2sip["flit"], kind, src, dst, size, 0x340)
    flit, fluid = (System(topology=pair2sip[m]).execute(msg) for m in MODELS)
    assert flit.ok and fluid.ok
    assert [h.node for h in fluid.trace] == [h.node for h in flit.trace]
    # The first hops are at 0 ns: a relative tolerance alone would demand exact zeros.
    assert [h.ns for h in fluid.trace] == pytest.approx(
        [h.ns for h in flit.trace], rel=AGREE_REL, abs=1e-9
    )


def lone_dma(topo: Topology, src, op: str, runs) -> float:
    """When a DMA of ``runs`` (``System.dma``) issued by PE ``src`` at t = 0 on an idle system
    is done; every run's completion says the same."""
    sys_ = System(topology=topo)
    ev = sys_.dma(topo.pe_dma(*src), op, runs, 0.0)
    sys_.run_until(ev)
    grant, done = ev.value
    assert grant == 0.0
    assert {c.end_ns for c in done} == {sys_.now}
    return sys_.now


def dma_runs(topo: Topology, dst, op: str, count: int, size: int, stride: int, offset=0x340):
    """``count`` runs of ``size`` bytes, ``stride`` bytes apart, in the HBM slice ``dst``."""
    runs = []
    for k in range(count):
        data = np.full(size, k, np.uint8) if op == "write" else None
        runs.append((topo.address.hbm(*dst, offset + k * stride), size, data))
    return runs


# A PE's DMA of several address runs of one HBM slice (a strided tile): run count, bytes, stride.
RUN_PATTERNS = {
    "rows": (64, 128, 512),
    "strided": (16, 1000, 4096),
    "blocks": (4, 20_000, 65_536),
    "one-channel": (32, FLIT, 8 * FLIT),  # every run on the same pseudo-channel
}
DMA_PATHS = {
    "local": ((0, 0, 0), (0, 0, 0)),
    "same-cube": ((0, 1, 2), (0, 1, 6)),
    "remote-cube": ((0, 0, 2), (0, 3, 5)),
    "far-cube": ((1, 3, 7), (1, 0, 0)),
}


@pytest.mark.parametrize("op", ["write", "read"])
@pytest.mark.parametrize("pattern", RUN_PATTERNS)
@pytest.mark.parametrize("path", DMA_PATHS)
def test_lone_multi_run_dma_takes_the_same_time_under_both_models(pair2sip, path, pattern, op):
    src, dst = DMA_PATHS[path]
    runs = dma_runs(pair2sip["flit"], dst, op, *RUN_PATTERNS[pattern])
    flit, fluid = (lone_dma(pair2sip[m], src, op, runs) for m in MODELS)
    assert fluid == pytest.approx(flit, rel=AGREE_REL, abs=0)


@pytest.mark.parametrize("op", ["write", "read"])
@pytest.mark.parametrize("pattern", RUN_PATTERNS)
def test_multi_run_dma_across_sips_stays_close_under_both_models(pair2sip, pattern, op):
    """Across SIPs a DMA's runs pass store-and-forward pcie_eps, which forward each run once
    that run is in; the fluid model then sends each run as a transfer of its own (one flow
    for all runs would wait for the last one at every pcie_ep), so the runs share the links
    with each other as flows do instead of following each other flit by flit: close to the
    flit model, not equal to it."""
    src, dst = PE_PATHS["cross-sip"]
    runs = dma_runs(pair2sip["flit"], dst, op, *RUN_PATTERNS[pattern])
    flit, fluid = (lone_dma(pair2sip[m], src, op, runs) for m in MODELS)
    assert fluid == pytest.approx(flit, rel=0.10, abs=0)


@given(
    sip=sips_,
    src=st.tuples(cubes_, pes_),
    dst=st.tuples(cubes_, pes_),
    op=st.sampled_from(["write", "read"]),
    first=st.integers(0, 1 << 16),
    runs=st.lists(st.tuples(st.integers(1, 5000), st.integers(0, 3000)), min_size=1, max_size=12),
)
@settings(max_examples=30, deadline=None, derandomize=True, database=None)
def test_random_lone_dmas_within_a_sip_take_the_same_time_under_both_models(
    pair2sip, sip, src, dst, op, first, runs
):
    a, spans, pos = pair2sip["flit"].address, [], first
    for size, gap in runs:
        data = np.zeros(size, np.uint8) if op == "write" else None
        spans.append((a.hbm(sip, *dst, pos), size, data))
        pos += size + gap
    flit, fluid = (lone_dma(pair2sip[m], (sip, *src), op, spans) for m in MODELS)
    assert fluid == pytest.approx(flit, rel=AGREE_REL, abs=0)


# -- byte conservation under concurrency ----------------------------------------------------

transfers = st.lists(
    st.tuples(
        st.sampled_from(["h2d", "d2h", "pe-write", "pe-read"]),
        places,
        places,
        st.integers(1, 20_000),
        st.integers(0, 1 << 16),
    ),
    min_size=1,
    max_size=6,
)


@given(batch=transfers)
@PROPERTY
def test_every_edge_carries_exactly_the_bytes_routed_over_it(topo2sip, batch):
    msgs = [message(topo2sip, *t) for t in batch]
    sys_ = System(topology=topo2sip)
    done = sys_.execute_all(msgs)
    assert all(c.ok for c in done)

    n_edges = len(topo2sip.graph.edges)
    want_bytes = np.zeros(n_edges, dtype=np.int64)
    want_flits = np.zeros(n_edges, dtype=np.int64)
    written: dict[str, int] = {}
    read: dict[str, int] = {}
    for (kind, src_place, _dst, size, _off), msg in zip(batch, msgs, strict=True):
        src = topo2sip.node("host") if kind in ("h2d", "d2h") else topo2sip.pe_dma(*src_place)
        loc = topo2sip.address.decode_hbm(msg.addr, size)
        ctrl = topo2sip.hbm_ctrl(loc.sip, loc.cube, loc.pe)
        forward = list(topo2sip.route(src, ctrl).edges)
        flits = -(-size // FLIT)
        if kind in ("h2d", "pe-write"):
            want_bytes[forward] += size
            want_flits[forward] += flits
            written[ctrl.name] = written.get(ctrl.name, 0) + size
        else:
            # A read: one request flit out, the data back on the reverse route, which takes the
            # request's UCIe key (docs/floorplan.md).
            back = list(topo2sip.route(ctrl, src, topo2sip.flow_key(src, ctrl)).edges)
            want_bytes[forward] += READ_REQ
            want_flits[forward] += 1
            want_bytes[back] += size
            want_flits[back] += flits
            read[ctrl.name] = read.get(ctrl.name, 0) + size

    assert sys_.transfers.stats.bytes == want_bytes.tolist()
    assert sys_.transfers.stats.flits == want_flits.tolist()
    for name, nbytes in written.items():
        assert sys_.hbm_controller(topo2sip.node(name)).bytes_written == nbytes
    for name, nbytes in read.items():
        assert sys_.hbm_controller(topo2sip.node(name)).bytes_read == nbytes
    assert sys_.in_flight == {}


# -- real data ------------------------------------------------------------------------------


def test_h2d_then_d2h_and_remote_pe_read_return_the_bytes(topo2sip):
    rng = np.random.default_rng(20240601)
    data = rng.integers(0, 256, size=70_001, dtype=np.uint8)
    addr = topo2sip.address.hbm(1, 2, 5, 777)
    sys_ = System(topology=topo2sip)
    assert sys_.execute(MemoryWriteMsg(addr, data.size, data=data)).ok
    back = sys_.execute(MemoryReadMsg(addr, data.size))
    np.testing.assert_array_equal(back.data, data)
    remote = sys_.execute(PeDmaMsg(0, 1, 3, addr, data.size, op="read"))
    np.testing.assert_array_equal(remote.data, data)
    part = sys_.execute(PeDmaMsg(1, 2, 5, addr + 1000, 333, op="read"))
    np.testing.assert_array_equal(part.data, data[1000:1333])


def test_pe_write_with_data_and_fill_are_read_back(topo2x2):
    rng = np.random.default_rng(7)
    words = rng.standard_normal(1000).astype(np.float32)
    a = topo2x2.address
    sys_ = System(topology=topo2x2)
    assert sys_.execute(PeDmaMsg(0, 3, 7, a.hbm(0, 0, 2, 64), words.nbytes, data=words)).ok
    got = sys_.execute(MemoryReadMsg(a.hbm(0, 0, 2, 64), words.nbytes)).data
    np.testing.assert_array_equal(got.view(np.float32), words)
    assert sys_.execute(MemoryWriteMsg(a.hbm(0, 1, 1, 5), 300, fill=0xAB)).ok
    got = sys_.execute(PeDmaMsg(0, 1, 1, a.hbm(0, 1, 1, 0), 310, op="read")).data
    np.testing.assert_array_equal(got, np.r_[np.zeros(5), np.full(300, 0xAB), np.zeros(5)])


def test_a_read_sees_the_bytes_present_when_it_completes(topo2x2):
    a = topo2x2.address
    addr = a.hbm(0, 0, 0, 0)
    new = np.arange(64 * 1024, dtype=np.uint32).view(np.uint8)[: 64 * 1024]
    sys_ = System(topology=topo2x2)
    # The host write (~1.5 us through pcie_ep) is still in flight when the local PE's short
    # read completes; a second read issued later completes after the commit.
    write_ev = sys_.submit(MemoryWriteMsg(addr, new.size, data=new))
    early = sys_.execute(PeDmaMsg(0, 0, 0, addr, FLIT, op="read"))
    sys_.run_until(write_ev)
    late = sys_.execute(PeDmaMsg(0, 0, 0, addr, FLIT, op="read"))
    assert early.end_ns < write_ev.value.end_ns <= late.end_ns
    np.testing.assert_array_equal(early.data, np.zeros(FLIT, dtype=np.uint8))
    np.testing.assert_array_equal(late.data, new[:FLIT])


@given(
    dst=places,
    reader=places,
    size=st.integers(1, 20_000),
    offset=st.integers(0, 1 << 20),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=25, deadline=None, derandomize=True, database=None)
def test_written_bytes_read_back_from_anywhere(topo2sip, dst, reader, size, offset, seed):
    data = np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8)
    addr = topo2sip.address.hbm(*dst, offset)
    sys_ = System(topology=topo2sip)
    assert sys_.execute(MemoryWriteMsg(addr, size, data=data)).ok
    np.testing.assert_array_equal(sys_.execute(MemoryReadMsg(addr, size)).data, data)
    np.testing.assert_array_equal(sys_.execute(PeDmaMsg(*reader, addr, size, op="read")).data, data)


# -- determinism ----------------------------------------------------------------------------


def _scenario(topo: Topology):
    a = topo.address
    msgs = [
        MemoryWriteMsg(a.hbm(1, 3, 2, 100), 40_000, fill=3),
        PeDmaMsg(0, 0, 0, a.hbm(0, 1, 0), 64 * 1024),
        PeDmaMsg(0, 0, 4, a.hbm(0, 1, 1), 64 * 1024),
        PeDmaMsg(0, 0, 0, a.hbm(1, 0, 0), 10_000, op="read"),
        MemoryReadMsg(a.hbm(0, 3, 7), 30_000),
        PeDmaMsg(1, 2, 5, a.hbm(1, 3, 2, 100), 5000, op="read"),
        PeDmaMsg(0, 0, 0, a.hbm(0, 0, 0), 3000),
    ]
    sys_ = System(topology=topo)
    done = sys_.execute_all(msgs)
    return done, sys_


def test_same_scenario_twice_is_bit_identical(make_topology, model):
    first, s1 = _scenario(make_topology(2, 2, sips=2, model=model))
    second, s2 = _scenario(make_topology(2, 2, sips=2, model=model))
    assert all(c.ok for c in first)
    for x, y in zip(first, second, strict=True):
        assert (x.msg_id, x.start_ns, x.end_ns, x.trace) == (
            y.msg_id,
            y.start_ns,
            y.end_ns,
            y.trace,
        )
        assert (x.data is None) == (y.data is None)
        if x.data is not None:
            assert x.data.tobytes() == y.data.tobytes()
    assert s1.now == s2.now
    assert s1.sim.events == s2.sim.events
    assert s1.transfers.stats.bytes == s2.transfers.stats.bytes
    assert s1.transfers.stats.busy_ns == s2.transfers.stats.busy_ns
    assert s1.transfers.stats.max_wait_ns == s2.transfers.stats.max_wait_ns
