"""probe: latency, bandwidth and congestion of the system's data paths.

For every case the probe sends one message on an otherwise idle system and reports the
simulated latency beside the analytic value of MODEL.md §3 (``formula_ns``), its breakdown,
effective and bottleneck bandwidth, utilization and the head flit's per-hop route. A sweep
repeats each case over 4 KiB ... 1 MiB. Congestion scenarios start many transfers at once and
compare their aggregate bandwidth with the max-min fair-share peak of the same flows.
Metric names are listed in docs/metrics.md.
"""

from collections.abc import Callable
from dataclasses import dataclass

from kernbench.bench import HIGHER, BenchContext, BenchResult, Table, bench
from kernbench.core import KIB, MIB, BenchError, fmt_bytes
from kernbench.runtime import Completion, MemoryReadMsg, MemoryWriteMsg, Message, PeDmaMsg
from kernbench.runtime.analytic import Formula, formula
from kernbench.topology import SystemSpec, Topology
from kernbench.topology.fairshare import max_min_fair

SWEEP_SIZES = (4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, 1 * MIB)
# PEs writing into one HBM slice in the incast scenarios of congestion_scenarios (those the
# cube has): ProbeParams.check_spec bounds size_bytes with it.
INCAST_PES = (1, 2, 3, 8)
AGREEMENT_REL = 1e-6
CASE_ORDER = (
    "h2d-local-cube",
    "h2d-far-cube",
    "d2h-local-cube",
    "d2h-far-cube",
    "pe-local-hbm",
    "pe-same-cube-near",
    "pe-same-cube-far",
    "pe-cross-cube-near",
    "pe-cross-cube-far",
    "pe-cross-sip",
)


@dataclass(frozen=True)
class ProbeParams:
    case: str = "all"
    size_bytes: int = 32 * KIB
    sweep: bool = True
    congestion: bool = True

    def __post_init__(self) -> None:
        if self.size_bytes <= 0:
            raise BenchError(f"bench.size_bytes: must be > 0, got {self.size_bytes}")

    def check_spec(self, spec: SystemSpec) -> None:
        """Before the system is built: every message goes to one HBM slice, the incast
        scenarios put up to 8 of them side by side in PE 0's slice, and the sweep sends up to
        ``max(SWEEP_SIZES)``."""
        slice_bytes = spec.hw.hbm.slice_bytes
        incast = max(n for n in INCAST_PES if n <= spec.hw.cube.pes)
        side_by_side = incast if self.congestion and self.case == "all" else 1
        if self.size_bytes * side_by_side > slice_bytes:
            limit = f"at most {slice_bytes // side_by_side} bytes"
            if side_by_side > 1:
                limit += (
                    f" ({incast} messages share one slice in the congestion scenarios; with "
                    f"bench.congestion=false up to {slice_bytes})"
                )
            raise BenchError(
                f"bench.size_bytes: {self.size_bytes} bytes do not fit the HBM slice a probe "
                f"writes to (hw.hbm.slice_bytes = {fmt_bytes(slice_bytes)}); use {limit}"
            )
        if self.sweep and max(SWEEP_SIZES) > slice_bytes:
            raise BenchError(
                f"bench.sweep: the sweep's sizes up to {fmt_bytes(max(SWEEP_SIZES))} do not fit "
                f"an HBM slice (hw.hbm.slice_bytes = {fmt_bytes(slice_bytes)}); use "
                "bench.sweep=false or larger slices"
            )


CaseFn = Callable[[int], Message]


def available_cases(t: Topology) -> tuple[dict[str, CaseFn], dict[str, str]]:
    """The cases this topology can run, and why each other case cannot."""
    a = t.address
    cubes, pes, sips = t.spec.topology.cubes, t.spec.hw.cube.pes, t.spec.topology.sips
    far_cube, far_pe = cubes - 1, pes - 1
    near_cube = 1 if t.spec.topology.mesh_w > 1 else t.spec.topology.mesh_w
    cases: dict[str, CaseFn] = {
        "h2d-local-cube": lambda n: MemoryWriteMsg(a.hbm(0, 0, 0), n),
        "h2d-far-cube": lambda n: MemoryWriteMsg(a.hbm(0, far_cube, far_pe), n),
        "d2h-local-cube": lambda n: MemoryReadMsg(a.hbm(0, 0, 0), n),
        "d2h-far-cube": lambda n: MemoryReadMsg(a.hbm(0, far_cube, far_pe), n),
        "pe-local-hbm": lambda n: PeDmaMsg(0, 0, 0, a.hbm(0, 0, 0), n),
    }
    missing: dict[str, str] = {}
    if pes >= 2:
        cases["pe-same-cube-near"] = lambda n: PeDmaMsg(0, 0, 0, a.hbm(0, 0, 1), n)
    else:
        missing["pe-same-cube-near"] = "needs hw.cube.pes >= 2"
    if pes >= 3:
        cases["pe-same-cube-far"] = lambda n: PeDmaMsg(0, 0, 0, a.hbm(0, 0, far_pe), n)
    else:
        missing["pe-same-cube-far"] = "needs hw.cube.pes >= 3"
    if cubes >= 2:
        cases["pe-cross-cube-near"] = lambda n: PeDmaMsg(0, 0, 0, a.hbm(0, near_cube, 0), n)
    else:
        missing["pe-cross-cube-near"] = "needs a mesh of 2 or more cubes"
    if cubes >= 3:
        cases["pe-cross-cube-far"] = lambda n: PeDmaMsg(0, 0, 0, a.hbm(0, far_cube, far_pe), n)
    else:
        missing["pe-cross-cube-far"] = "needs a mesh of 3 or more cubes"
    if sips >= 2:
        cases["pe-cross-sip"] = lambda n: PeDmaMsg(0, 0, 0, a.hbm(1, far_cube, far_pe), n)
    else:
        missing["pe-cross-sip"] = "needs topology.sips >= 2 (e.g. topology=4x4_2sip)"
    return cases, missing


def select_cases(t: Topology, case: str) -> dict[str, CaseFn]:
    cases, missing = available_cases(t)
    if case == "all":
        return cases
    wanted = [c.strip() for c in case.split(",") if c.strip()]
    for name in wanted:
        if name in missing:
            raise BenchError(
                f"bench.case: {name!r} {missing[name]}; valid on this topology: "
                f"all, {', '.join(cases)}"
            )
        if name not in cases:
            raise BenchError(
                f"bench.case: unknown case {name!r}; valid on this topology: "
                f"all, {', '.join(cases)}"
            )
    return {name: cases[name] for name in wanted}


@dataclass(frozen=True)
class Measurement:
    msg: Message
    completion: Completion
    formula: Formula

    @property
    def latency_ns(self) -> float:
        return self.completion.total_ns

    @property
    def effective_bw_gbs(self) -> float:
        return self.msg.size_bytes / self.completion.total_ns

    @property
    def utilization(self) -> float:
        return self.effective_bw_gbs / self.formula.bottleneck_gbs


def measure(ctx: BenchContext, msg: Message, label: str | None = None) -> Measurement:
    """One message on a fresh, idle system (``label`` names the system in traces)."""
    done = ctx.new_system(label).execute(msg)
    if not done.ok:
        raise BenchError(f"probe message {msg!r} failed: {done.error_code}: {done.error_message}")
    return Measurement(msg, done, formula(ctx.topology, msg))


def _endpoints(t: Topology, msg: Message) -> str:
    """A short path label, e.g. ``c0.pe0 -> c15.hbm7`` (SIP prefix only with several SIPs)."""
    loc = t.address.decode_hbm(msg.addr)
    multi = t.spec.topology.sips > 1
    dst = f"{f's{loc.sip}.' if multi else ''}c{loc.cube}.hbm{loc.pe}"
    if isinstance(msg, PeDmaMsg):
        src = f"{f's{msg.sip}.' if multi else ''}c{msg.cube}.pe{msg.pe}"
        return f"{src} -> {dst}" if msg.op == "write" else f"{dst} -> {src}"
    return f"host -> {dst}" if isinstance(msg, MemoryWriteMsg) else f"{dst} -> host"


def _route_table(case: str, m: Measurement) -> Table:
    rows, prev = [], 0.0
    for i, hop in enumerate(m.completion.trace):
        rows.append([i, hop.node, round(hop.ns, 3), round(hop.ns - prev, 3)])
        prev = hop.ns
    f = m.formula
    # The data path ends the trace, so the bottleneck is marked where its node last appears.
    marked = max((i for i, row in enumerate(rows) if row[1] == f.bottleneck_at), default=None)
    for i, row in enumerate(rows):
        note = f"after bottleneck {f.bottleneck} ({f.bottleneck_gbs:g} GB/s)" if i == marked else ""
        row.append(note)
    return Table(
        f"Route of {case} ({fmt_bytes(m.msg.size_bytes)}), head flit",
        ["hop", "node", "cumulative_ns", "delta_ns", "note"],
        rows,
        detail=True,
        section="Route traces",
        emphasis="note",
    )


def _case_metrics(result: BenchResult, case: str, m: Measurement) -> None:
    f = m.formula
    metrics = {
        "latency_ns": m.latency_ns,
        "formula_ns": f.total_ns,
        "overhead_ns": f.overhead_ns,
        "wire_ns": f.wire_ns,
        "serialization_ns": f.serialization_ns,
        "drain_ns": f.drain_ns,
        "queueing_ns": m.latency_ns - f.total_ns,
        "effective_bw_gbs": m.effective_bw_gbs,
        "bottleneck_bw_gbs": f.bottleneck_gbs,
        "utilization": m.utilization,
        "hops": float(len(m.completion.trace) - 1),
    }
    for key, value in metrics.items():
        result.metrics[f"{case}/{key}"] = float(value)
    result.checks[f"{case}/formula_agrees"] = (
        abs(m.latency_ns - f.total_ns) <= AGREEMENT_REL * f.total_ns
    )


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    msgs: list[Message]


def congestion_scenarios(t: Topology, size_bytes: int) -> tuple[list[Scenario], list[str]]:
    a = t.address
    spec = t.spec
    pes, cubes, w = spec.hw.cube.pes, spec.topology.cubes, spec.topology.mesh_w
    out, skipped = [], []
    for n in (1, 2, 3, 8):
        if n > pes:
            skipped.append(f"hbm-incast-{n}: the cube has only {pes} PEs")
            continue
        msgs: list[Message] = [
            PeDmaMsg(0, 0, i, a.hbm(0, 0, 0, i * size_bytes), size_bytes) for i in range(n)
        ]
        out.append(Scenario(f"hbm-incast-{n}", f"{n} PE(s) of cube 0 into PE 0's HBM", msgs))
    if cubes >= 2:
        peer = 1 if w > 1 else w
        port = "E" if w > 1 else "S"
        msgs = [PeDmaMsg(0, 0, i, a.hbm(0, peer, i), size_bytes) for i in range(pes)]
        out.append(
            Scenario(
                "ucie-port", f"{pes} PEs of cube 0 through its {port} port to cube {peer}", msgs
            )
        )
    else:
        skipped.append("ucie-port: the mesh has a single cube")
    msgs = [PeDmaMsg(0, c, i, a.hbm(0, c, i), size_bytes) for c in range(cubes) for i in range(pes)]
    out.append(Scenario("sip-all-local", f"all {len(msgs)} PEs of SIP 0 to their own HBM", msgs))
    return out, skipped


def fair_share_peak_gbs(t: Topology, msgs: list[Message]) -> float:
    """Sum of the max-min fair rates of the messages' flows (writes from PEs or the host)."""
    flows, capacity = [], {}
    for msg in msgs:
        loc = t.address.decode_hbm(msg.addr)
        ctrl = t.hbm_ctrl(loc.sip, loc.cube, loc.pe)
        src = t.pe_dma(msg.sip, msg.cube, msg.pe) if isinstance(msg, PeDmaMsg) else t.node("host")
        if getattr(msg, "op", "write") == "write":
            route = t.route(src, ctrl)
        else:
            route = t.route(ctrl, src, t.flow_key(src, ctrl))
        resources = [("edge", e) for e in route.edges] + [("hbm", ctrl.id)]
        for e in route.edges:
            capacity[("edge", e)] = t.graph.edges[e].bw_gbs
        capacity[("hbm", ctrl.id)] = t.spec.hw.hbm.effective_bw_gbs
        flows.append(resources)
    return sum(max_min_fair(flows, capacity))


# Times (_ns) are better lower and bandwidths (_gbs) higher by their unit; the rest:
PROBE_BETTER = {"*/utilization": HIGHER, "*/hops": None}
PROBE_HEADLINE = (*(f"{case}/latency_ns" for case in CASE_ORDER), "congestion/*/makespan_ns")


@bench("probe", params=ProbeParams, better=PROBE_BETTER, headline=PROBE_HEADLINE)
def probe(ctx: BenchContext, p: ProbeParams) -> BenchResult:
    """Latency breakdown, bandwidth sweep, congestion and route traces of the data paths."""
    t = ctx.topology
    cases = select_cases(t, p.case)
    scenarios, skipped = (
        congestion_scenarios(t, p.size_bytes) if p.congestion and p.case == "all" else ([], [])
    )
    sweep = SWEEP_SIZES if p.sweep else ()
    total = len(cases) * (1 + len(sweep)) + len(scenarios)
    done = 0
    result = BenchResult()
    result.notes += [f"skipped congestion scenario {s}" for s in skipped]
    _, missing = available_cases(t)
    if p.case == "all":
        result.notes += [f"case {c} not run: {why}" for c, why in missing.items()]

    main = Table(
        f"Latency by case ({fmt_bytes(p.size_bytes)}, one message on an idle system; times in ns)",
        [
            "case",
            "path",
            "hops",
            "latency",
            "formula",
            "overhead",
            "wire",
            "serialize",
            "drain",
            "queueing",
            "eff GB/s",
            "bneck GB/s",
            "util",
        ],
    )
    routes: list[Table] = []
    measured: dict[str, Measurement] = {}
    for case, make in cases.items():
        m = measure(ctx, make(p.size_bytes), f"{case} {fmt_bytes(p.size_bytes)}")
        measured[case] = m
        _case_metrics(result, case, m)
        f = m.formula
        main.rows.append(
            [
                case,
                _endpoints(t, m.msg),
                len(m.completion.trace) - 1,
                round(m.latency_ns, 3),
                round(f.total_ns, 3),
                round(f.overhead_ns, 3),
                round(f.wire_ns, 3),
                round(f.serialization_ns, 3),
                round(f.drain_ns, 3),
                round(m.latency_ns - f.total_ns, 3),
                round(m.effective_bw_gbs, 2),
                f.bottleneck_gbs,
                f"{m.utilization:.1%}",
            ]
        )
        routes.append(_route_table(case, m))
        done += 1
        ctx.progress(done, total, case)
    result.tables.append(main)
    ctx.plot("probe_latency_breakdown", dict(result.metrics))  # drawn meanwhile, if it can be

    if sweep:
        bw = Table(
            "Bandwidth saturation sweep: effective GB/s (utilization of the bottleneck)",
            ["case", "bottleneck_gbs"] + [fmt_bytes(s) for s in sweep],
        )
        for case, make in cases.items():
            row: list = [case, ""]
            for size in sweep:
                m = measure(ctx, make(size), f"{case} {fmt_bytes(size)} (sweep)")
                label = fmt_bytes(size).replace(" ", "")
                prefix = f"{case}/sweep/{label}"
                result.metrics[f"{prefix}/latency_ns"] = m.latency_ns
                result.metrics[f"{prefix}/effective_bw_gbs"] = m.effective_bw_gbs
                result.metrics[f"{prefix}/utilization"] = m.utilization
                result.checks[f"{prefix}/formula_agrees"] = (
                    abs(m.latency_ns - m.formula.total_ns) <= AGREEMENT_REL * m.formula.total_ns
                )
                row[1] = m.formula.bottleneck_gbs
                row.append(f"{m.effective_bw_gbs:.1f} ({m.utilization:.0%})")
                done += 1
                ctx.progress(done, total, f"{case} {fmt_bytes(size)}")
            bw.rows.append(row)
        result.tables.append(bw)
        ctx.plot("probe_bandwidth", dict(result.metrics))

    if scenarios:
        cong = Table(
            f"Congestion ({fmt_bytes(p.size_bytes)} per flow, all issued at t = 0)",
            [
                "scenario",
                "flows",
                "makespan_ns",
                "aggregate_bw_gbs",
                "fair_share_gbs",
                "utilization",
                "fastest_ns",
                "slowest_ns",
            ],
        )
        for sc in scenarios:
            completions = ctx.new_system(f"congestion {sc.name}").execute_all(sc.msgs)
            failed = [c for c in completions if not c.ok]
            if failed:
                raise BenchError(f"congestion {sc.name}: {failed[0].error_message}")
            makespan = max(c.end_ns for c in completions) - min(c.start_ns for c in completions)
            agg = sum(c.size_bytes for c in completions) / makespan
            peak = fair_share_peak_gbs(t, sc.msgs)
            prefix = f"congestion/{sc.name}"
            result.metrics[f"{prefix}/makespan_ns"] = makespan
            result.metrics[f"{prefix}/aggregate_bw_gbs"] = agg
            result.metrics[f"{prefix}/fair_share_gbs"] = peak
            result.metrics[f"{prefix}/utilization"] = agg / peak
            lat = [c.total_ns for c in completions]
            cong.rows.append(
                [
                    sc.name,
                    len(sc.msgs),
                    round(makespan, 3),
                    round(agg, 2),
                    round(peak, 2),
                    f"{agg / peak:.1%}",
                    round(min(lat), 3),
                    round(max(lat), 3),
                ]
            )
            done += 1
            ctx.progress(done, total, sc.name)
        result.tables.append(cong)
        result.notes += [f"{sc.name}: {sc.what}" for sc in scenarios]

    _invariant_checks(result, measured)
    result.tables += routes
    result.sim_events = ctx.sim_events
    result.sim_time_ns = ctx.sim_time_ns
    return result


def _invariant_checks(result: BenchResult, m: dict[str, Measurement]) -> None:
    def lat(case: str) -> float | None:
        return m[case].latency_ns if case in m else None

    def check(name: str, *cases: str) -> None:
        values = [lat(c) for c in cases]
        if all(v is not None for v in values):
            result.checks[name] = all(a < b for a, b in zip(values, values[1:], strict=False))

    check(
        "distance/pe_latency_grows",
        "pe-local-hbm",
        "pe-same-cube-near",
        "pe-same-cube-far",
        "pe-cross-cube-near",
        "pe-cross-cube-far",
    )
    check("distance/h2d_local_lt_far", "h2d-local-cube", "h2d-far-cube")
    check("distance/d2h_local_lt_far", "d2h-local-cube", "d2h-far-cube")
    for where in ("local", "far"):
        h2d, d2h = lat(f"h2d-{where}-cube"), lat(f"d2h-{where}-cube")
        if h2d is not None and d2h is not None:
            result.checks[f"d2h_ge_h2d/{where}"] = d2h >= h2d
