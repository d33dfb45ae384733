"""A node's overhead holds a transfer's head alone (MODEL.md §3): the fluid model's holds.

Under the flit model a forwarding node delays only the head flit by its overhead; the flits
behind it queue there and leave together once it goes on. The fluid model keeps that: the bytes
that reach a node while it holds the head arrive at the next resource at once, with the head
(``kernbench.sim.fluid_fifo``, ADR 0035). The closed forms behind both
(``kernbench.sim.pipeline``) are checked here against a flit-by-flit loop written from the
contract, and the queues against a schedule worked out by hand.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernbench.runtime import PeDmaMsg, System
from kernbench.sim.context import Sim
from kernbench.sim.fluid_fifo import Flowing, Network
from kernbench.sim.pipeline import Chain, Passage, memory_fifo, through

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None)

# -- the closed forms against a flit-by-flit loop ---------------------------------------------


def by_flit(chain: Chain, arrive: list[float], sizes: list[float]) -> tuple[list, Passage]:
    """MODEL.md §3 one flit at a time: every edge a FIFO server, a node's overhead on the head
    (the others pass in order behind it), a store-and-forward node releasing all at once."""
    passage = Passage([arrive[0]], [], [])
    for h, per_byte in enumerate(chain.ns_per_byte):
        free, done = -np.inf, []
        for t, size in zip(arrive, sizes, strict=True):
            start = max(t, free)
            free = start + size * per_byte
            done.append(free)
        passage.first_start.append(done[0] - sizes[0] * per_byte)
        passage.last_end.append(done[-1])
        arrive = [t + chain.wire_ns[h] for t in done]
        passage.heads.append(arrive[0])
        over = chain.overhead_ns[h]
        if chain.store_forward[h]:
            arrive = [arrive[-1] + over] * len(arrive)
        elif over:
            held = arrive[0] + over
            arrive = [held] + [max(t, held) for t in arrive[1:]]
    return arrive, passage


chains = st.lists(
    st.tuples(
        st.sampled_from([64.0, 128.0, 204.8, 256.0, 512.0]),
        st.sampled_from([0.0, 0.005, 0.2]),
        st.sampled_from([0.0, 0.0, 5.0, 8.0]),
        st.integers(0, 9).map(lambda k: k == 0),  # store-and-forward, now and then
    ),
    min_size=1,
    max_size=10,
).map(
    lambda hops: Chain(
        tuple(1.0 / bw for bw, _w, _o, _s in hops),
        tuple(w for _b, w, _o, _s in hops),
        tuple(o for _b, _w, o, _s in hops),
        tuple(s for _b, _w, _o, s in hops),
    )
)


@given(
    chain=chains,
    n=st.integers(1, 40),
    last=st.sampled_from([256, 255, 100, 1]),
    at=st.sampled_from([0.0, 3.0]),
    spread=st.booleans(),
)
@PROPERTY
def test_through_matches_the_flit_by_flit_contract(chain, n, last, at, spread):
    """A message of n flits (all 256 B but the last), all ready at once or arriving spread
    out (then the per-flit pass); ``through`` and its passage as the loop gives them."""
    sizes = [256.0] * (n - 1) + [float(last)]
    arrive = [at + (1.7 * j if spread else 0.0) for j in range(n)]
    want, want_passage = by_flit(chain, arrive, sizes)
    passage = Passage([], [], [])
    got = through(chain, np.array(arrive), np.array(sizes), passage)
    assert got.tolist() == pytest.approx(want, rel=1e-12, abs=1e-9)
    for name in ("heads", "first_start", "last_end"):
        assert getattr(passage, name) == pytest.approx(getattr(want_passage, name), abs=1e-9)


@given(
    n=st.integers(1, 70),
    channels=st.sampled_from([1, 2, 4, 8, 16]),
    first=st.integers(0, 15),
    pattern=st.sampled_from(["round-robin", "random"]),
    spread=st.booleans(),
    seed=st.integers(0, 1000),
)
@PROPERTY
def test_memory_fifo_serves_each_channel_first_come_first_served(
    n, channels, first, pattern, spread, seed
):
    rng = np.random.default_rng(seed)
    if pattern == "round-robin":
        chan = (first + np.arange(n)) % channels
    else:
        chan = rng.integers(0, channels, n)
    arrive = np.sort(rng.random(n) * 50.0) if spread else np.full(n, 3.0)
    sizes = np.full(n, 256.0)
    sizes[-1] = 17.0
    per_byte = 1.0 / 25.6
    want = np.empty(n)
    for c in range(channels):
        free = -np.inf
        for j in np.flatnonzero(chan == c):
            free = max(arrive[j], free) + sizes[j] * per_byte
            want[j] = free
    got = memory_fifo(arrive, chan, sizes, per_byte)
    assert got.tolist() == pytest.approx(want.tolist(), rel=1e-12)


# -- the queues: a held head brings its bytes along -------------------------------------------


def two_flows(hold: float) -> dict[str, float]:
    """A (2 KiB from its source at 256 B/ns) crosses a fast queue (512 B/ns), then, 10 ns after
    its head left it, a slow one (128 B/ns); a node between holds its head ``hold`` ns of
    that. B (2 KiB at 256 B/ns) enters the slow queue directly at t = 10.5."""
    sim = Sim()
    net = Network(sim.call_at, sim.call_late, lambda: sim.now, False)
    fast, slow = net.queue(0, 512.0), net.queue(1, 128.0)
    ends: dict[str, float] = {}
    a = Flowing([10.0], set(), lambda: ends.setdefault("A", sim.now), [hold])
    a.stage([(fast, 1.0)])
    a.stage([(slow, 1.0)])
    b = Flowing([], set(), lambda: ends.setdefault("B", sim.now))
    b.stage([(slow, 1.0)])
    net.start(a, 256.0, 2048.0, 0.0)
    sim.call_at(10.5, net.start, b, 256.0, 2048.0, 10.5)
    sim.env.run()
    return ends


def test_bytes_a_node_held_behind_the_head_reach_the_next_queue_with_it():
    """Held 8 ns, all of A (8 ns of its source) reaches the slow queue at once at t = 10,
    ahead of B: the queue, busy from then on, finishes A at 10 + 2048 / 128 and B at
    10 + 4096 / 128. Without the hold A's bytes trickle in at 256 B/ns and share the queue
    with B's from t = 10.5, so A finishes later."""
    held = two_flows(8.0)
    assert held["A"] == pytest.approx(10.0 + 2048 / 128, rel=1e-12)
    assert held["B"] == pytest.approx(10.0 + 4096 / 128, rel=1e-12)
    trickled = two_flows(0.0)
    assert trickled["A"] > held["A"] + 1.0
    assert trickled["B"] == pytest.approx(held["B"], rel=1e-12)  # the queue never idles


def test_two_flows_meeting_at_a_ucie_connection_finish_as_under_flit(make_topology):
    """Cube 14's PEs 7 and 3 (4x4 mesh) write east through the same UCIe connection; PE 7's
    head reaches it one router hop before PE 3's. The port node holds each head 8 ns
    (``port_overhead_ns``), so under flit PE 7's first half arrives at once and goes first.
    Without holds the fluid model had PE 7 finish 30 % late; with them both models agree."""
    ends = {}
    for model in ("flit", "fluid"):
        topo = make_topology(4, 4, model=model)
        a = topo.address
        msgs = [
            PeDmaMsg(0, 14, 3, a.hbm(0, 15, 7), 4096),
            PeDmaMsg(0, 14, 7, a.hbm(0, 7, 3), 4096),
        ]
        ends[model] = [c.end_ns for c in System(topology=topo).execute_all(msgs)]
    assert ends["fluid"] == pytest.approx(ends["flit"], rel=1e-3)


@pytest.mark.parametrize("b_at", [29.999, 30.0, 30.001])
def test_a_lump_that_comes_as_the_head_segment_empties_is_not_lost(b_at):
    """One queue of 100 B/ns. A offers 200 B/ns for 10 ns, then 50 B/ns until t = 40: its
    backlog (1,000 B at t = 10) empties at t = 30. B (1,000 B at 50 B/ns, its head held 16 ns:
    800 B come at once) arrives then. From t = 0 the queue is never idle for longer than an
    instant, so the last of the 4,500 B leaves at 45 ns, whichever of the two comes first
    at t = 30."""
    sim = Sim()
    net = Network(sim.call_at, sim.call_late, lambda: sim.now, False)
    q = net.queue(0, 100.0)
    ends: dict[str, float] = {}
    a = Flowing([], set(), lambda: ends.setdefault("A", sim.now))
    a.stage([(q, 1.0)])
    b = Flowing([], set(), lambda: ends.setdefault("B", sim.now))
    b.stage([(q, 1.0)])
    sim.call_at(b_at, net.start, b, 50.0, 1000.0, b_at, 16.0)
    sim.call_at(0.0, net._feed, a, 0, 200.0, False, 0.0)
    sim.call_at(10.0, net._feed, a, 0, 50.0, False, 10.0)
    sim.call_at(40.0, net._feed, a, 0, 0.0, True, 40.0)
    sim.env.run()
    assert set(ends) == {"A", "B"}
    assert max(ends.values()) == pytest.approx(45.0, abs=2e-3)


def test_a_flow_ending_as_its_hold_ends_arrives_whole_with_its_head():
    """A's bytes (100 B/ns for exactly its hold h) all leave the first queue while the node
    holds its head: they reach the second queue (1,000 B/ns) at once, d after the head left,
    and are through size / 1,000 later; nothing stays offered there. The times are chosen so
    that rounding puts the last rate change's delivery a hair before the head's."""
    g0, d, h = 7.069620828248913, 36.13978535126173, 2.3522644437662223
    sim = Sim()
    net = Network(sim.call_at, sim.call_late, lambda: sim.now, False)
    first, second = net.queue(0, 1000.0), net.queue(1, 1000.0)
    ends: dict[str, float] = {}
    a = Flowing([d], set(), lambda: ends.setdefault("A", sim.now), [h])
    a.stage([(first, 1.0)])
    a.stage([(second, 1.0)])
    size = ((g0 + h) - g0) * 100.0
    sim.call_at(g0, net.start, a, 100.0, size, g0)
    sim.env.run()
    assert ends["A"] == pytest.approx(g0 + d + size / 1000.0, rel=1e-12)
    assert second.inp == {} and second.segs == []
