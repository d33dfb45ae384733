"""Observation under both transfer models (``sim.model=flit|fluid``): per-link bytes and busy
time are exact and the same under both, counted independently from the routes of what the
system asked the model to move; the trace lays concurrent fluid transfers out in lanes, leaves
flit traces as they were, and a fluid run writes its trace and every plot."""

import csv
import dataclasses
import gzip
import io
import json
import re
from collections import defaultdict

import pytest
from hydra import compose, initialize_config_dir
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib import image as mpimg
from rich.console import Console

from kernbench.bench import BenchContext, get_bench
from kernbench.cli import run
from kernbench.config import conf_dir
from kernbench.core import KIB
from kernbench.report.stats import link_rows
from kernbench.report.trace import COUNTER_BINS, build_trace
from kernbench.runtime import MemoryReadMsg, MemoryWriteMsg, PeDmaMsg
from kernbench.sim.spec import SimSpec
from kernbench.sim.transfer import TransferModel
from kernbench.topology import SystemSpec, TopologySpec

MODELS = ("flit", "fluid")
LANE = re.compile(r"^(.*) \[(\d+)\]$")
LINK_ARGS = {"system", "msg", "bytes", "rate_gbs", "flits", "busy_ns", "wait_ns", "arrive_ns"}


def spec_2x2(model: str, trace: str = "summary") -> SystemSpec:
    return SystemSpec(
        topology=TopologySpec(name="2x2", mesh_w=2, mesh_h=2),
        sim=dataclasses.replace(SimSpec(), model=model, trace=trace),
    )


@pytest.fixture
def moved(monkeypatch):
    """What every system asks its transfer model to move: (kind, source node id, destination
    node id, run sizes), recorded at the interface whichever model runs."""
    calls: list[tuple[str, int, int, tuple[int, ...]]] = []
    send, write, read = TransferModel.send, TransferModel.write, TransferModel.read

    def on_send(self, msg_id, route, size_bytes, at_ns, done):
        calls.append(("send", route.nodes[0], route.nodes[-1], (size_bytes,)))
        send(self, msg_id, route, size_bytes, at_ns, done)

    def on_write(self, msg_id, route, runs, memory, done):
        calls.append(("write", route.nodes[0], route.nodes[-1], tuple(n for _a, n in runs)))
        write(self, msg_id, route, runs, memory, done)

    def on_read(self, msg_id, request, response, runs, memory, done):
        calls.append(("read", request.nodes[0], request.nodes[-1], tuple(n for _a, n in runs)))
        read(self, msg_id, request, response, runs, memory, done)

    monkeypatch.setattr(TransferModel, "send", on_send)
    monkeypatch.setattr(TransferModel, "write", on_write)
    monkeypatch.setattr(TransferModel, "read", on_read)
    return calls


def expected_counts(ctx: BenchContext, calls: list) -> tuple[dict, dict, dict]:
    """Bytes and flits per edge name, and (bytes, bursts) per HBM controller, from the routes
    of the moves: a send or write crosses its route with its bytes; a read crosses its request
    route with one request flit per run and the response route with its bytes."""
    t = ctx.topology
    nodes, names = t.graph.nodes, [e.name for e in t.graph.edges]
    sim = ctx.spec.sim
    flit, request = sim.flit_bytes, sim.read_request_bytes
    nbytes: dict[str, int] = defaultdict(int)
    flits: dict[str, int] = defaultdict(int)
    hbm: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    def cross(route, size: int, count: int) -> None:
        for e in route.edges:
            nbytes[names[e]] += size
            flits[names[e]] += count

    for kind, a, b, runs in calls:
        src, dst = nodes[a], nodes[b]
        data_flits = sum(-(-n // flit) for n in runs)
        if kind == "read":
            cross(t.route(src, dst), len(runs) * request, len(runs))
            cross(t.route(dst, src, t.flow_key(src, dst)), sum(runs), data_flits)
        else:
            cross(t.route(src, dst), sum(runs), data_flits)
        if kind != "send":
            hbm[dst.name][0] += sum(runs)
            hbm[dst.name][1] += data_flits
    return dict(nbytes), dict(flits), {k: tuple(v) for k, v in hbm.items()}


def messages(ctx: BenchContext) -> None:
    """PE DMAs (local, across the cube, across cubes, reads and writes, odd sizes) and host
    writes and reads, all at once in one system."""
    a = ctx.topology.address
    msgs = [
        PeDmaMsg(0, 0, 0, a.hbm(0, 0, 0), 8 * KIB),
        PeDmaMsg(0, 0, 1, a.hbm(0, 0, 0, 64 * KIB), 3 * KIB + 5),
        PeDmaMsg(0, 0, 2, a.hbm(0, 3, 6), 6 * KIB, op="read"),
        PeDmaMsg(0, 1, 4, a.hbm(0, 0, 0, 128 * KIB), 5 * KIB, op="read"),
        PeDmaMsg(0, 2, 7, a.hbm(0, 1, 3), 2 * KIB + 100),
        MemoryWriteMsg(a.hbm(0, 3, 7), 5 * KIB + 3),
        MemoryWriteMsg(a.hbm(0, 0, 0, 256 * KIB), 4 * KIB),
        MemoryReadMsg(a.hbm(0, 2, 1), 4 * KIB),
    ]
    assert all(c.ok for c in ctx.new_system("messages").execute_all(msgs))


def qkv_gemm(ctx: BenchContext) -> None:
    info = get_bench("qkv_gemm")
    assert info.fn(ctx, info.params()).checks["verified"]


@pytest.mark.parametrize("workload", [messages, qkv_gemm], ids=["messages", "qkv_gemm"])
def test_link_bytes_and_busy_time_are_exact_and_the_same_under_both_models(moved, workload):
    tables = {}
    for model in MODELS:
        moved.clear()
        ctx = BenchContext.from_spec(spec_2x2(model))
        workload(ctx)
        want_bytes, want_flits, want_hbm = expected_counts(ctx, moved)
        rows = link_rows(ctx.observations())
        links = {r["name"]: r for r in rows if r["kind"] == "link"}
        assert len(links) == len(ctx.topology.graph.edges)
        assert {n: r["bytes"] for n, r in links.items() if r["bytes"]} == want_bytes
        assert {n: r["flits"] for n, r in links.items() if r["flits"]} == want_flits
        for r in links.values():
            assert r["busy_ns"] == pytest.approx(r["bytes"] / r["bw_gbs"], rel=1e-12)
        hbm = {r["name"]: r for r in rows if r["kind"] == "hbm"}
        assert {n: (r["bytes"], r["flits"]) for n, r in hbm.items()} == want_hbm
        ns_per_byte = ctx.spec.hw.hbm.ns_per_byte
        for r in hbm.values():
            assert r["busy_ns"] == pytest.approx(r["bytes"] * ns_per_byte, rel=1e-9)
        tables[model] = {
            r["name"]: (r["bytes"], r["flits"], r["busy_ns"]) for r in rows if r["kind"] != "dma"
        }
    # Links exactly; a controller's busy time is a float sum taken in a different order.
    assert tables["flit"].keys() == tables["fluid"].keys()
    for name, (nbytes, flits, busy) in tables["flit"].items():
        assert tables["fluid"][name][:2] == (nbytes, flits), name
        assert tables["fluid"][name][2] == pytest.approx(busy, rel=1e-12), name
    if workload is qkv_gemm:
        # A strided tile is one DMA of several runs: a read's request crosses once per run.
        assert any(kind == "read" and len(runs) > 1 for kind, _a, _b, runs in moved)


def x_events(trace: dict) -> list[dict]:
    return [ev for ev in trace["traceEvents"] if ev["ph"] == "X"]


def threads(trace: dict) -> dict[tuple[int, int], tuple[str, int]]:
    """(name, sort index) of every thread track."""
    names, sort = {}, {}
    for ev in trace["traceEvents"]:
        if ev["ph"] == "M" and ev["name"] == "thread_name":
            names[(ev["pid"], ev["tid"])] = ev["args"]["name"]
        elif ev["ph"] == "M" and ev["name"] == "thread_sort_index":
            sort[(ev["pid"], ev["tid"])] = ev["args"]["sort_index"]
    assert names.keys() == sort.keys()
    return {k: (names[k], sort[k]) for k in names}


def max_depth(spans: list[tuple[float, float]]) -> int:
    """The most spans in progress at once (one ending where the next starts do not overlap)."""
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    depth = best = 0
    for _t, step in points:
        depth += step
        best = max(best, depth)
    return best


def test_concurrent_fluid_writes_to_one_controller_share_it_in_lanes():
    """PE 0 and PE 1 of cube 0 each write 64 KiB into PE 2's HBM at once. Both cross the link
    into the controller (256 GB/s) and all eight of its channels; the channels (204.8 GB/s
    together) hold them back, so each gets about half and drains in about 640 ns instead of
    320 ns alone: each is about 320 ns late. Alone its bytes cross the link in 256 ns (no
    back-pressure: the channels queue what the link brings), so its slice there lasts about
    256 + 320 ns."""
    ctx = BenchContext.from_spec(spec_2x2("fluid", trace="full"))
    a = ctx.topology.address
    size = 64 * KIB
    msgs = [PeDmaMsg(0, 0, pe, a.hbm(0, 0, 2), size) for pe in (0, 1)]
    assert all(c.ok for c in ctx.new_system("incast").execute_all(msgs))
    obs = ctx.observations()
    trace = build_trace(obs)
    tracks = threads(trace)
    t = ctx.topology
    ctrl = t.hbm_ctrl(0, 0, 2)
    into = t.graph.edges[t.route(t.pe_dma(0, 0, 1), ctrl).edges[-1]].name
    on_link = sorted(
        (
            (tracks[(ev["pid"], ev["tid"])], ev)
            for ev in x_events(trace)
            if ev["cat"] == "link" and LANE.sub(r"\1", tracks[(ev["pid"], ev["tid"])][0]) == into
        ),
        key=lambda x: x[0],
    )
    # Two overlapping slices: the link's track and its second lane, sorted with it.
    sort = 1000 + t.graph.edge(into).id
    assert [track for track, _ in on_link] == [(into, sort), (f"{into} [2]", sort)]
    for _, ev in on_link:
        args = ev["args"]
        assert set(args) == LINK_ARGS
        assert args["bytes"] == size and args["flits"] == size // 256
        assert args["busy_ns"] == pytest.approx(size / 256)  # 256 GB/s
        assert args["rate_gbs"] == pytest.approx(size / (ev["dur"] * 1e3), rel=1e-9)
        assert args["rate_gbs"] == pytest.approx(size / (256 + 320), rel=0.01)
        # The channels held them back, not the link: no wait charged to it.
        assert args["wait_ns"] == 0.0
    # Each transfer puts 8 KiB (32 bursts) on each of the eight channels: two lanes each.
    hbm = [ev for ev in x_events(trace) if ev["cat"] == "hbm"]
    assert len(hbm) == 16
    by_channel = defaultdict(list)
    for ev in hbm:
        name, _sort = tracks[(ev["pid"], ev["tid"])]
        assert (ev["args"]["bytes"], ev["args"]["bursts"]) == (size // 8, size // 8 // 256)
        by_channel[LANE.sub(r"\1", name)].append(name)
    assert {n: sorted(v) for n, v in by_channel.items()} == {
        f"{ctrl.name} ch{c}": [f"{ctrl.name} ch{c}", f"{ctrl.name} ch{c} [2]"] for c in range(8)
    }
    unit = next(u for u in obs["systems"][0]["units"] if u["name"] == ctrl.name)
    assert unit["max_wait_ns"] == pytest.approx(320, rel=0.01)


def test_a_fluid_transfer_queued_at_its_source_shows_its_wait_on_its_first_link():
    """Two host writes leave at once: the second's bytes wait on the host link (64 GB/s)
    until the first's 4 KiB have left it, 64 ns."""
    ctx = BenchContext.from_spec(spec_2x2("fluid", trace="full"))
    a = ctx.topology.address
    msgs = [MemoryWriteMsg(a.hbm(0, 0, 1), 4 * KIB), MemoryWriteMsg(a.hbm(0, 3, 5), 4 * KIB)]
    assert all(c.ok for c in ctx.new_system().execute_all(msgs))
    t = ctx.topology
    host_link = t.route(t.node("host"), t.hbm_ctrl(0, 0, 1)).edges[0]
    first = sorted(
        (s for s in ctx.observations()["systems"][0]["link_spans"] if s[0] == host_link),
        key=lambda s: s[2],
    )
    assert [(s[7], s[2] - s[8]) for s in first] == [(0.0, 0.0), (64.0, 64.0)]
    assert first[1][2] == pytest.approx(first[0][2] + 64.0)
    rows = {r["name"]: r for r in link_rows(ctx.observations())}
    assert rows[t.graph.edges[host_link].name]["max_wait_ns"] == 64.0


@settings(max_examples=12, deadline=None)
@given(
    st.sampled_from(MODELS),
    st.lists(
        st.tuples(
            st.integers(0, 3), st.integers(0, 7), st.integers(0, 3), st.integers(0, 7),
            st.integers(1, 6000), st.booleans(),
        ),
        min_size=1,
        max_size=8,
    ),
)  # fmt: skip
def test_slices_of_a_track_take_as_few_lanes_as_they_need_and_never_overlap(model, flows):
    ctx = BenchContext.from_spec(spec_2x2(model, trace="full"))
    a = ctx.topology.address
    msgs = [
        PeDmaMsg(0, c, p, a.hbm(0, dc, dp, 4096 * i), n, op="read" if rd else "write")
        for i, (c, p, dc, dp, n, rd) in enumerate(flows)
    ]
    assert all(c.ok for c in ctx.new_system().execute_all(msgs))
    obs = ctx.observations()
    system = obs["systems"][0]
    trace = build_trace(obs)
    tracks = threads(trace)
    edges = [e.name for e in ctx.topology.graph.edges]
    raw = defaultdict(list)  # base track name -> spans as recorded
    for e, _m, start, end, *_ in system["link_spans"]:
        raw[edges[e]].append((start, end))
    for u in system["units"]:
        for span in u["spans"]:
            if u["kind"] == "hbm":
                raw[f"{u['name']} ch{span[0]}"].append((span[2], span[3]))
            else:
                raw[u["name"]].append((span[1], span[2]))
    per_tid = defaultdict(list)
    lanes = defaultdict(set)
    link_bytes = defaultdict(int)
    for ev in x_events(trace):
        if ev["cat"] == "system":
            continue
        per_tid[(ev["pid"], ev["tid"])].append((ev["ts"], ev["ts"] + ev["dur"]))
        name, sort = tracks[(ev["pid"], ev["tid"])]
        m = LANE.match(name)
        base, lane = (m[1], int(m[2])) if m else (name, 1)
        lanes[base].add((lane, sort))
        if ev["cat"] == "link":
            args = ev["args"]
            assert set(args) == LINK_ARGS
            assert args["rate_gbs"] == pytest.approx(args["bytes"] / (ev["dur"] * 1e3), rel=1e-9)
            link_bytes[ctx.topology.graph.edge(base).id] += args["bytes"]
    for spans in per_tid.values():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end - 1e-9
    assert lanes.keys() == raw.keys()
    for base, used in lanes.items():
        depth = max_depth(raw[base])
        sort = {s for _lane, s in used}
        assert sorted(lane for lane, _s in used) == list(range(1, depth + 1)), base
        assert len(sort) == 1, base  # every lane sorts with its track
    if model == "flit":  # flits of a link or an HBM channel never overlap; DMAs of a channel
        # may (hw.pe.dma_outstanding of them in flight)
        assert all(len(used) == 1 for base, used in lanes.items() if ".dma." not in base)
    assert dict(link_bytes) == {e: b for e, b in enumerate(system["links"]["bytes"]) if b}


def test_a_flit_trace_keeps_one_track_per_link_channel_and_dma_as_before():
    """No lanes under the flit model, and every track keeps its name and sort index: a link
    1000 + its edge id, an HBM channel 100 + its number, a DMA channel 10."""
    ctx = BenchContext.from_spec(spec_2x2("flit", trace="full"))
    messages(ctx)
    obs = ctx.observations()
    trace = build_trace(obs)
    tracks = threads(trace)
    g = ctx.topology.graph
    want = {("systems", 0)}
    system = obs["systems"][0]
    want |= {(g.edges[s[0]].name, 1000 + s[0]) for s in system["link_spans"]}
    for u in system["units"]:
        if u["kind"] == "hbm":
            want |= {(f"{u['name']} ch{s[0]}", 100 + s[0]) for s in u["spans"]}
        elif u["spans"]:
            want.add((u["name"], 10))
    assert sorted(tracks.values()) == sorted(want)
    for ev in x_events(trace):
        if ev["cat"] == "link":
            assert set(ev["args"]) == LINK_ARGS


@pytest.fixture(scope="module")
def fluid_probe(tmp_path_factory):
    """The probe on a 2x2 mesh under the fluid model with sim.trace=full."""
    tmp = tmp_path_factory.mktemp("fluid_probe")
    overrides = ["bench=probe", "topology=2x2", "sim.model=fluid", "sim.trace=full"]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*overrides, "tracking=off"])
    out = io.StringIO()
    outcome = run(cfg, tmp, console=Console(file=out), err_console=Console(file=out))
    assert (outcome.status, outcome.exit_code) == ("ok", 0), out.getvalue()
    return outcome, tmp


def test_a_fluid_run_writes_its_plots_and_a_trace_whose_tracks_nest(fluid_probe):
    outcome, out_dir = fluid_probe
    plots = {"probe_bandwidth.png", "probe_latency_breakdown.png", "link_heatmap.png"}
    plots.add("unit_busy.png")
    assert {p["file"] for p in outcome.summary["observe"]["plots"]} == plots
    for name in plots:
        assert (out_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert min(mpimg.imread(out_dir / name).shape[:2]) >= 300
    with gzip.open(out_dir / "trace.json.gz", "rt") as f:
        trace = json.load(f)
    tracks = threads(trace)
    per_tid = defaultdict(list)
    links = 0
    for ev in x_events(trace):
        assert ev["dur"] >= 0 and ev["ts"] >= 0
        per_tid[(ev["pid"], ev["tid"])].append((ev["ts"], ev["ts"] + ev["dur"]))
        if ev["cat"] == "link":
            links += 1
            args = ev["args"]
            assert args["bytes"] > 0 and args["busy_ns"] > 0
            assert args["rate_gbs"] == pytest.approx(args["bytes"] / (ev["dur"] * 1e3), rel=1e-6)
    assert links > 100
    for spans in per_tid.values():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end - 1e-9
    # Its congestion scenarios run transfers side by side: some tracks have lanes.
    assert any(LANE.match(name) for name, _ in tracks.values())
    # Flow arrows start on a slice of their message.
    starts = {(ev["pid"], ev["tid"], ev["ts"]) for ev in x_events(trace)}
    flows = [ev for ev in trace["traceEvents"] if ev["ph"] in "stf"]
    assert flows and all((ev["pid"], ev["tid"], ev["ts"]) in starts for ev in flows)


def test_fluid_busiest_link_counters_add_up_to_their_busy_time(fluid_probe):
    """``util <link>`` is a step function over each system's bins; its integral over the run
    is the link's busy time in links.csv."""
    _, out_dir = fluid_probe
    with gzip.open(out_dir / "trace.json.gz", "rt") as f:
        trace = json.load(f)
    with (out_dir / "links.csv").open() as f:
        busy = {r["name"]: float(r["busy_ns"]) for r in csv.DictReader(f) if r["kind"] == "link"}
    series = defaultdict(list)
    for ev in trace["traceEvents"]:
        if ev["ph"] == "C" and ev["name"].startswith("util "):
            series[ev["name"].removeprefix("util ")].append((ev["ts"], ev["args"]["value"]))
    assert len(series) == 16
    top = sorted(busy.values(), reverse=True)[:16]
    assert sorted((busy[n] for n in series), reverse=True) == top
    total_ns = json.loads((out_dir / "summary.json").read_text())["sim_time_ns"]
    for name, points in series.items():
        assert all(0.0 <= v <= 1.0 + 1e-6 for _, v in points), name
        area = sum(
            v * (t1 - t0) * 1e3 for (t0, v), (t1, _) in zip(points, points[1:], strict=False)
        )
        # values are rounded to 1e-6 per bin
        assert area == pytest.approx(busy[name], rel=1e-6, abs=total_ns / COUNTER_BINS * 1e-4)
