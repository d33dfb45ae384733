"""The observer, the statistics table and the Chrome trace, checked against each other and
against bytes computed independently from routes and message sizes, under both transfer
models."""

import csv
import dataclasses
import gzip
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from kernbench.bench import BenchContext
from kernbench.config import sweep_trace_default
from kernbench.core import KIB
from kernbench.report import render_report, write_observation
from kernbench.report.stats import link_rows
from kernbench.report.trace import build_trace
from kernbench.runtime import MemoryReadMsg, MemoryWriteMsg, PeDmaMsg
from kernbench.sim.spec import SimSpec
from kernbench.topology import SystemSpec, TopologySpec

PHASES = {"X", "M", "C", "s", "t", "f", "i"}
TOL_US = 1e-9  # float rounding of ns -> us timestamps
LANE = re.compile(r" \[\d+\]$")


def spec_2x2(**sim: object) -> SystemSpec:
    return SystemSpec(
        topology=TopologySpec(name="2x2", mesh_w=2, mesh_h=2),
        sim=dataclasses.replace(SimSpec(), **sim),
    )


def workload(ctx: BenchContext) -> list[list]:
    """Three systems: a congested UCIe port, host reads and writes, PE DMA reads."""
    a = ctx.topology.address
    batches = [
        [PeDmaMsg(0, 0, i, a.hbm(0, 1, i), 8 * KIB) for i in range(8)],
        [MemoryWriteMsg(a.hbm(0, 3, 7), 5 * KIB + 3), MemoryReadMsg(a.hbm(0, 0, 1), 4 * KIB)],
        [
            PeDmaMsg(0, 0, 0, a.hbm(0, 2, 5), 6 * KIB, op="read"),
            PeDmaMsg(0, 0, 0, a.hbm(0, 0, 0), 3 * KIB, op="read"),
            PeDmaMsg(0, 1, 2, a.hbm(0, 1, 2), 2 * KIB),
        ],
    ]
    for i, msgs in enumerate(batches):
        done = ctx.new_system(f"batch {i}").execute_all(msgs)
        assert all(c.ok for c in done)
    return batches


def expected_link_bytes(ctx: BenchContext, batches: list[list]) -> dict[str, int]:
    """Bytes per edge name from each message's routes and sizes, without the event engine."""
    t = ctx.topology
    names = [e.name for e in t.graph.edges]
    out: dict[str, int] = defaultdict(int)
    for msgs in batches:
        for msg in msgs:
            loc = t.address.decode_hbm(msg.addr)
            ctrl = t.hbm_ctrl(loc.sip, loc.cube, loc.pe)
            src = (
                t.pe_dma(msg.sip, msg.cube, msg.pe) if isinstance(msg, PeDmaMsg) else t.node("host")
            )
            read = isinstance(msg, MemoryReadMsg) or getattr(msg, "op", "write") == "read"
            if read:
                for e in t.route(src, ctrl).edges:
                    out[names[e]] += ctx.spec.sim.read_request_bytes
                for e in t.route(ctrl, src, t.flow_key(src, ctrl)).edges:
                    out[names[e]] += msg.size_bytes
            else:
                for e in t.route(src, ctrl).edges:
                    out[names[e]] += msg.size_bytes
    return out


@pytest.fixture(scope="module", params=["flit", "fluid"])
def full_run(request):
    ctx = BenchContext.from_spec(spec_2x2(trace="full", model=request.param))
    batches = workload(ctx)
    obs = ctx.observations()
    return ctx, batches, obs, build_trace(obs), link_rows(obs)


def x_events(trace: dict) -> list[dict]:
    return [ev for ev in trace["traceEvents"] if ev["ph"] == "X"]


def track_names(trace: dict, lanes: bool = False) -> dict[tuple[int, int], str]:
    """Thread track names; without ``lanes`` a further lane's name (``<track> [n]``) is its
    track's."""
    return {
        (ev["pid"], ev["tid"]): ev["args"]["name"] if lanes else LANE.sub("", ev["args"]["name"])
        for ev in trace["traceEvents"]
        if ev["ph"] == "M" and ev["name"] == "thread_name"
    }


def test_trace_file_is_gzipped_chrome_trace_event_json(full_run, tmp_path):
    ctx, _, obs, _, _ = full_run
    summary: dict = {"metrics": {}}
    write_observation(tmp_path, summary, obs)
    with gzip.open(tmp_path / "trace.json.gz", "rt") as f:
        trace = json.load(f)
    assert trace["displayTimeUnit"] == "ns"
    events = trace["traceEvents"]
    assert {ev["ph"] for ev in events} == PHASES - {"i"}
    for ev in events:
        assert ev["ph"] in PHASES
        assert isinstance(ev["pid"], int)
        if ev["ph"] == "M":
            assert ev["name"] in {
                "process_name",
                "thread_name",
                "thread_sort_index",
                "process_sort_index",
            }
            continue
        assert isinstance(ev["ts"], float) and ev["ts"] >= 0
        if ev["ph"] == "X":
            assert ev["dur"] >= 0 and isinstance(ev["tid"], int) and ev["name"]
        elif ev["ph"] == "C":
            assert all(isinstance(v, float) for v in ev["args"].values())
        else:
            assert isinstance(ev["id"], int)
    processes = {
        ev["args"]["name"] for ev in events if ev["ph"] == "M" and ev["name"] == "process_name"
    }
    assert {"kernbench", "host", "sip0.io", "sip0.cube0", "sip0.cube3"} <= processes
    systems = [ev["name"] for ev in events if ev["ph"] == "X" and ev["cat"] == "system"]
    assert systems == ["batch 0", "batch 1", "batch 2"]


def test_complete_events_on_one_track_never_overlap(full_run):
    _, _, _, trace, _ = full_run
    by_track = defaultdict(list)
    for ev in x_events(trace):
        by_track[(ev["pid"], ev["tid"])].append((ev["ts"], ev["ts"] + ev["dur"]))
    assert len(by_track) > 20
    for spans in by_track.values():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end - TOL_US


def test_flows_follow_each_transfer_hop_to_hop_in_time_order(full_run):
    ctx, batches, _, trace, _ = full_run
    names = track_names(trace)
    slices = defaultdict(list)
    for ev in x_events(trace):
        slices[(ev["pid"], ev["tid"])].append(ev)
    flows = defaultdict(list)
    for ev in trace["traceEvents"]:
        if ev["ph"] in "stf":
            flows[ev["id"]].append(ev)
    # One flow per message of every batch (each crosses at least two edges).
    assert len(flows) == sum(len(b) for b in batches)
    t = ctx.topology
    edge_names = [e.name for e in t.graph.edges]
    for chain in flows.values():
        assert [ev["ph"] for ev in chain] == ["s"] + ["t"] * (len(chain) - 2) + ["f"]
        times = [ev["ts"] for ev in chain]
        assert times == sorted(times) and len(set(times)) == len(times)
        msgs = set()
        for ev in chain:
            # Each flow point sits at the start of a slice of the same message on its track.
            owner = [s for s in slices[(ev["pid"], ev["tid"])] if abs(s["ts"] - ev["ts"]) < TOL_US]
            assert len(owner) == 1 and owner[0]["name"] == ev["name"]
            msgs.add((owner[0]["args"]["system"], owner[0]["args"]["msg"]))
        assert len(msgs) == 1
    # The first batch's writes: each flow visits exactly its route's edges, in route order.
    batch0_end_us = ctx.systems[0].now * 1e-3
    got = sorted(
        [names[(ev["pid"], ev["tid"])] for ev in chain]
        for chain in flows.values()
        if chain[0]["ts"] < batch0_end_us
    )
    want = sorted(
        [edge_names[e] for e in t.route(t.pe_dma(0, 0, i), t.hbm_ctrl(0, 1, i)).edges]
        for i in range(8)
    )
    assert got == want


def test_busy_time_per_link_in_the_trace_equals_the_statistics(full_run):
    _, _, _, trace, rows = full_run
    names = track_names(trace)
    busy, nbytes = defaultdict(float), defaultdict(int)
    for ev in x_events(trace):
        if ev["cat"] == "link":
            name = names[(ev["pid"], ev["tid"])]
            busy[name] += ev["args"]["busy_ns"]
            nbytes[name] += ev["args"]["bytes"]
            assert ev["args"]["busy_ns"] <= ev["dur"] * 1e3 * (1 + 1e-9)
    table = {r["name"]: r for r in rows if r["kind"] == "link"}
    for name, row in table.items():
        assert busy.get(name, 0.0) == pytest.approx(row["busy_ns"], rel=1e-9, abs=1e-9), name
        assert nbytes.get(name, 0) == row["bytes"], name
    assert set(busy) <= set(table)


def test_unit_busy_time_in_the_trace_equals_the_statistics(full_run):
    _, _, _, trace, rows = full_run
    names = track_names(trace)
    busy = defaultdict(float)
    for ev in x_events(trace):
        if ev["cat"] in ("hbm", "dma"):
            unit = names[(ev["pid"], ev["tid"])].split(" ch")[0]
            busy[unit] += ev["args"]["busy_ns"]
            assert ev["args"]["busy_ns"] <= ev["dur"] * 1e3 * (1 + 1e-9)
    units = {r["name"]: r for r in rows if r["kind"] != "link"}
    assert {r["kind"] for r in units.values()} == {"hbm", "dma"}
    for name, row in units.items():
        assert busy[name] == pytest.approx(row["busy_ns"], rel=1e-6), name


def test_links_csv_bytes_are_the_bytes_the_transfers_moved(full_run, tmp_path):
    ctx, batches, obs, _, _ = full_run
    write_observation(tmp_path, {"metrics": {}}, obs)
    with (tmp_path / "links.csv").open() as f:
        rows = list(csv.DictReader(f))
    links = {r["name"]: r for r in rows if r["kind"] == "link"}
    assert len(links) == len(ctx.topology.graph.edges)
    want = expected_link_bytes(ctx, batches)
    assert {n: int(r["bytes"]) for n, r in links.items() if int(r["bytes"])} == dict(want)
    total_ns = sum(s.now for s in ctx.systems)
    for r in links.values():
        busy = int(r["bytes"]) / float(r["bw_gbs"])
        assert float(r["busy_ns"]) == pytest.approx(busy, rel=1e-9)
        assert float(r["utilization"]) == pytest.approx(busy / total_ns, rel=1e-9)
        assert float(r["max_wait_ns"]) >= 0
    # The congested UCIe connection waited; the bytes of all eight flows crossed the port.
    port = ctx.topology.graph.edge("sip0.cube0.ucie.E.conn0")
    assert float(links[port.name]["max_wait_ns"]) > 0
    hbm = {r["name"]: r for r in rows if r["kind"] == "hbm"}
    assert int(hbm["sip0.cube1.hbm_ctrl.pe3"]["bytes"]) == 8 * KIB


def test_event_cap_drops_spans_and_says_so(tmp_path):
    ctx = BenchContext.from_spec(spec_2x2(trace="full", trace_max_events=5))
    workload(ctx)
    obs = ctx.observations()
    assert (obs["events"], obs["dropped"] > 0) == (5, True)
    trace = build_trace(obs)
    assert len([ev for ev in x_events(trace) if ev["cat"] != "system"]) == 5
    assert "cap of 5 spans" in trace["otherData"]["note"]
    assert any(ev["ph"] == "i" and "trace incomplete" in ev["name"] for ev in trace["traceEvents"])
    summary: dict = {"status": "ok", "bench": "x", "metrics": {}}
    write_observation(tmp_path, summary, obs)
    report = render_report(summary)
    assert "> **Warning**: trace incomplete: the cap of 5 spans" in report
    assert any("sim.trace_max_events" in n for n in summary["notes"])


def test_summary_keeps_statistics_but_no_spans_and_off_keeps_only_link_bytes(tmp_path):
    summary_ctx = BenchContext.from_spec(spec_2x2(trace="summary"))
    batches = workload(summary_ctx)
    obs = summary_ctx.observations()
    assert obs["events"] == 0
    assert all(not s["link_spans"] for s in obs["systems"])
    assert all(not u["spans"] for s in obs["systems"] for u in s["units"])
    rows = {r["name"]: r["bytes"] for r in link_rows(obs) if r["kind"] == "link" and r["bytes"]}
    assert rows == dict(expected_link_bytes(summary_ctx, batches))

    off = BenchContext.from_spec(spec_2x2(trace="off"))
    batches = workload(off)
    assert off.observations() == {}
    # the energy model's byte counters are kept at every level (ADR 0030), nothing else
    names = [e.name for e in off.topology.graph.edges]
    moved: dict[str, int] = defaultdict(int)
    for s in off.systems:
        for e, n in enumerate(s.transfers.stats.bytes):
            if n:
                moved[names[e]] += n
    assert moved == dict(expected_link_bytes(off, batches))
    assert all(not any(s.transfers.stats.max_wait_ns) for s in off.systems)
    summary: dict = {"metrics": {}}
    write_observation(tmp_path, summary, {})
    assert "observe" not in summary and not list(tmp_path.iterdir())


def test_trace_level_does_not_change_timing():
    ends = []
    for level in ("off", "summary", "full"):
        ctx = BenchContext.from_spec(spec_2x2(trace=level))
        workload(ctx)
        ends.append([s.now for s in ctx.systems])
    assert ends[0] == ends[1] == ends[2]


@settings(max_examples=15, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3), st.integers(0, 7), st.integers(0, 3), st.integers(0, 7),
            st.integers(1, 6000), st.booleans(),
        ),
        min_size=1,
        max_size=6,
    )
)  # fmt: skip
def test_spans_never_overlap_and_sum_to_the_statistics(flows):
    """The flit model's spans of one link never overlap (a fluid transfer's may: the trace
    lays those out in lanes, tested in test_observe_models.py)."""
    ctx = BenchContext.from_spec(spec_2x2(trace="full", model="flit"))
    a = ctx.topology.address
    msgs = [
        PeDmaMsg(0, c, p, a.hbm(0, dc, dp, 4096 * i), n, op="read" if rd else "write")
        for i, (c, p, dc, dp, n, rd) in enumerate(flows)
    ]
    assert all(c.ok for c in ctx.new_system().execute_all(msgs))
    system = ctx.observations()["systems"][0]
    per_edge = defaultdict(list)
    for e, _m, start, end, nbytes, _f, busy, wait, arrive in system["link_spans"]:
        assert start <= end and arrive <= start and wait >= 0
        per_edge[e].append((start, end, nbytes, busy))
    for e, spans in per_edge.items():
        spans.sort()
        for prev, nxt in zip(spans, spans[1:], strict=False):
            assert nxt[0] >= prev[1]
        assert sum(s[2] for s in spans) == system["links"]["bytes"][e]
        assert sum(s[3] for s in spans) == pytest.approx(system["links"]["busy_ns"][e], rel=1e-9)
    for unit in system["units"]:
        if unit["kind"] == "hbm":
            by_channel = defaultdict(list)
            for ch, _m, start, end, _b, _n, busy in unit["spans"]:
                assert busy <= end - start + 1e-9
                by_channel[ch].append((start, end))
            for spans in by_channel.values():
                spans.sort()
                assert all(b[0] >= a_[1] for a_, b in zip(spans, spans[1:], strict=False))


@pytest.mark.parametrize(
    ("multirun", "overrides", "want"),
    [
        (False, [], "summary"),
        (True, [], "off"),
        (True, ["topology=2x2", "sim.trace=full"], "full"),
        (True, ["++sim.trace=summary"], "summary"),
    ],
)
def test_a_sweep_runs_without_trace_unless_sim_trace_is_given(multirun, overrides, want):
    cfg = OmegaConf.create({"sim": {"trace": "summary"}})
    for o in overrides:
        key, _, value = o.lstrip("+").partition("=")
        if key == "sim.trace":
            cfg.sim.trace = value
    out = sweep_trace_default(cfg, multirun=multirun, overrides=overrides)
    assert out.sim.trace == want
    assert cfg.sim.trace == ("summary" if "sim.trace" not in str(overrides) else want)


def test_a_sweep_job_writes_no_observation_artifacts(tmp_path):
    tests_dir = Path(__file__).resolve().parent
    fixture = tests_dir / "benches_fixture" / "conf"
    proc = subprocess.run(
        [
            sys.executable, "-m", "kernbench", "-m", f"hydra.searchpath=[file://{fixture}]",
            "bench=tiny", "topology=2x2", "tracking=off", f"hydra.sweep.dir={tmp_path / 'sweep'}",
            "sim.flit_bytes=256",
        ],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tests_dir)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    job = tmp_path / "sweep" / "0"
    assert (job / "summary.json").exists()
    assert not (job / "links.csv").exists() and not list(job.glob("*.png"))
    assert "trace: 'off'" in (job / "config.yaml").read_text()
    assert json.loads((job / "summary.json").read_text())["params"]["sim.trace"] == "off"
