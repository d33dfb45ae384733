"""model_check: the fluid transfer model against the flit model, scenario by scenario.

Every scenario runs twice on fresh systems, once per model (``sim.model`` is ignored), and
reports the error of the fluid model: of the makespan, and of each transfer's completion time
(p50, p95, max), taking the flit model as the reference. A transfer is one call of the transfer
interface (a message, a DMA run, an IPCQ chunk or credit, a kernel-launch notice); the two runs'
transfers are paired by kind, endpoints, address and size, in order of start (then end).
Completion times are counted from the scenario's start, so the error of a transfer is
``|end_fluid - end_flit| / end_flit``. ``docs/fluid-model.md`` publishes the table.

Scenarios (each transfer ``bench.size_bytes`` unless said otherwise, all issued at t = 0):

- ``link-k2``, ``link-k3``, ``link-k8``: k PEs from different cubes write to k different HBM
  slices; all k routes cross one UCIe connection (the south port of the last cube of row 0),
  the bottleneck they share;
- ``parking-lot``: one flow along row 0 from cube 0 to the last cube of the row, and one short
  flow on each of its UCIe connections;
- ``incast-1``, ``-2``, ``-3``, ``-8``, ``-128``: n PEs write into one HBM controller;
- ``ucie-port``: the PEs of cube 0 write through its east port into cube 1;
- ``all-local``: every PE of SIP 0 writes into its own HBM slice;
- ``all-to-one``: every other PE of SIP 0 pushes into the TCM of PE 0;
- ``perm-4KiB``, ``perm-64KiB``, ``perm-1MiB``: every PE of SIP 0 writes into the slice of
  another, by a seeded random permutation without fixed points;
- ``ring-cube``, ``ring-sip``: ``bench=ipcq_allreduce`` over a cube and over a SIP (whole
  bench, including its α-β calibration rings);
- ``gemm-512``: ``bench=gemm`` with m = n = k = 512 on 8 PEs.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from kernbench.bench import BenchContext, BenchResult, Table, bench, get_bench
from kernbench.core import KIB, MIB, BenchError, fmt_bytes
from kernbench.runtime import Message, PeDmaMsg, System
from kernbench.sim.spec import MODELS
from kernbench.topology import Topology

MAKESPAN_TOL = 0.05
P95_TOL = 0.10
PERM_SIZES = (4 * KIB, 64 * KIB, 1 * MIB)


@dataclass(frozen=True)
class ModelCheckParams:
    scenarios: str = "all"
    size_bytes: int = 64 * KIB
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.size_bytes, int) or self.size_bytes <= 0:
            raise BenchError(f"bench.size_bytes: must be a positive integer, got {self.size_bytes}")


Run = Callable[[BenchContext], None]
Pe = tuple[int, int, int]


def _writes(pairs: list[tuple[Pe, Pe]], size: int, t: Topology, spread: bool = False) -> Run:
    """Each source PE writes ``size`` bytes into its destination's slice (at ``i * size`` in
    it when ``spread``, so writers into one slice use different addresses)."""
    a = t.address
    msgs: list[Message] = [
        PeDmaMsg(*src, a.hbm(*dst, i * size if spread else 0), size)
        for i, (src, dst) in enumerate(pairs)
    ]

    def run(ctx: BenchContext) -> None:
        failed = [c for c in ctx.new_system().execute_all(msgs) if not c.ok]
        if failed:
            raise BenchError(f"model_check: {failed[0].error_message}")

    return run


def _pushes(srcs: list[Pe], dst: Pe, size: int, t: Topology) -> Run:
    def run(ctx: BenchContext) -> None:
        system = ctx.new_system()
        to = t.pe_dma(*dst)
        events = [system.push(t.pe_dma(*s), to, size, 0.0) for s in srcs]
        system.run_until(system.sim.env.all_of(events))

    return run


def _bench(name: str, **params: Any) -> Run:
    def run(ctx: BenchContext) -> None:
        info = get_bench(name)
        result = info.fn(ctx, info.params(**params))
        if not result.passed:
            bad = [k for k, ok in result.checks.items() if not ok]
            raise BenchError(f"model_check: bench {name} failed its checks: {', '.join(bad)}")

    return run


def scenarios(t: Topology, p: ModelCheckParams) -> tuple[dict[str, Run], dict[str, str]]:
    """The scenarios this topology can run, and why each other one cannot."""
    spec = t.spec
    w, h = spec.topology.mesh_w, spec.topology.mesh_h
    pes, cubes, conns = spec.hw.cube.pes, spec.topology.cubes, spec.hw.ucie.connections
    size = p.size_bytes
    sip = [(0, c, i) for c in range(cubes) for i in range(pes)]
    out: dict[str, Run] = {}
    missing: dict[str, str] = {}
    # Sources whose routes all take connection 0 of the last row-0 cube's south port.
    key0 = [(0, c, i) for c in range(w - 1, -1, -1) for i in range(0, pes, conns)]
    for k in (2, 3, 8):
        name = f"link-k{k}"
        if h < 2 or k > len(key0) or k > pes:
            missing[name] = f"needs a mesh of 2+ rows and {k} sources on one connection"
            continue
        below = w - 1 + w
        out[name] = _writes([(key0[j], (0, below, j)) for j in range(k)], size, t)
    if w >= 3 and pes > conns:
        long = [((0, 0, 0), (0, w - 1, 0))]
        short = [((0, c, conns), (0, c + 1, 1 + c)) for c in range(w - 1)]
        out["parking-lot"] = _writes(long + short, size, t)
    else:
        missing["parking-lot"] = "needs a row of 3+ cubes with more PEs than UCIe connections"
    for n in (1, 2, 3, 8, 128):
        name = f"incast-{n}"
        if n > len(sip):
            missing[name] = f"SIP 0 has only {len(sip)} PEs"
            continue
        out[name] = _writes([(s, (0, 0, 0)) for s in sip[:n]], size, t, spread=True)
    if cubes >= 2:
        out["ucie-port"] = _writes([((0, 0, i), (0, 1, i)) for i in range(pes)], size, t)
    else:
        missing["ucie-port"] = "needs 2+ cubes"
    out["all-local"] = _writes([(s, s) for s in sip], size, t)
    out["all-to-one"] = _pushes(sip[1:], sip[0], size, t)
    rng = np.random.default_rng(p.seed)
    n = len(sip)
    perm = rng.permutation(n)
    while n > 1 and (perm == np.arange(n)).any():
        perm = rng.permutation(n)
    for psize in PERM_SIZES:
        pairs = [(sip[i], sip[int(perm[i])]) for i in range(n)]
        out[f"perm-{fmt_bytes(psize).replace(' ', '')}"] = _writes(pairs, psize, t)
    out["ring-cube"] = _bench("ipcq_allreduce", scope="cube")
    if cubes >= 2:
        out["ring-sip"] = _bench("ipcq_allreduce", scope="sip")
    else:
        missing["ring-sip"] = "needs 2+ cubes"
    if pes >= 8:
        out["gemm-512"] = _bench("gemm", m=512, n=512, k=512, pes=8)
    else:
        missing["gemm-512"] = "needs 8 PEs per cube"
    return out, missing


def select(t: Topology, p: ModelCheckParams) -> dict[str, Run]:
    runs, missing = scenarios(t, p)
    if p.scenarios == "all":
        return runs
    wanted = [s.strip() for s in p.scenarios.split(",") if s.strip()]
    for name in wanted:
        if name in missing:
            raise BenchError(f"bench.scenarios: {name!r} {missing[name]}")
        if name not in runs:
            raise BenchError(
                f"bench.scenarios: unknown scenario {name!r}; valid on this topology: all, "
                f"{', '.join(runs)}"
            )
    return {name: runs[name] for name in wanted}


@dataclass
class Outcome:
    makespan_ns: float
    ends: dict[tuple, list[float]]
    transfers: int
    events: int
    wall_s: float
    counters: dict[str, int]


def _outcome(systems: list[System], wall_s: float) -> Outcome:
    ends: dict[tuple, list[tuple[float, float]]] = {}
    counters: dict[str, int] = {}
    for system in systems:
        assert system.transfers.log is not None
        for kind, src, dst, addr, size, start, end in system.transfers.log:
            ends.setdefault((kind, src, dst, addr, size), []).append((start, end))
        for k, v in system.transfers.counters().items():
            counters[k] = counters.get(k, 0) + v
    return Outcome(
        makespan_ns=max(s.now for s in systems),
        ends={k: [e for _, e in sorted(v)] for k, v in ends.items()},
        transfers=sum(len(v) for v in ends.values()),
        events=sum(s.sim.events for s in systems),
        wall_s=wall_s,
        counters=counters,
    )


def compare(ref: Outcome, fluid: Outcome) -> dict[str, float]:
    """Errors of ``fluid`` against ``ref``; raises if the two did not move the same things."""
    if ref.ends.keys() != fluid.ends.keys() or any(
        len(ref.ends[k]) != len(fluid.ends[k]) for k in ref.ends
    ):
        raise BenchError("model_check: the two models did not run the same transfers")
    errs = np.array(
        [
            abs(f - r) / r if r > 0 else 0.0
            for k in ref.ends
            for r, f in zip(ref.ends[k], fluid.ends[k], strict=True)
        ]
    )
    return {
        "makespan_err": (fluid.makespan_ns - ref.makespan_ns) / ref.makespan_ns,
        "p50_err": float(np.percentile(errs, 50)),
        "p95_err": float(np.percentile(errs, 95)),
        "max_err": float(errs.max()),
    }


def run_model(ctx: BenchContext, model: str, run: Run, label: str) -> Outcome:
    spec = replace(ctx.spec, sim=replace(ctx.spec.sim, model=model))
    sub = BenchContext(spec, _topology(ctx, spec), observer=ctx.observer, log_transfers=True)
    t0 = time.process_time()
    run(sub)
    wall = time.process_time() - t0
    ctx.systems += sub.systems
    ctx.labels += [f"{label} ({model})"] * len(sub.systems)
    return _outcome(sub.systems, wall)


def _topology(ctx: BenchContext, spec: Any) -> Topology:
    if spec == ctx.spec:
        return ctx.topology
    return Topology(spec)


@bench(
    "model_check",
    params=ModelCheckParams,
    better={
        "*/makespan_err": None,  # signed: fluid minus flit
        "*/*_err": "lower",
        "*/cpu_speedup": "higher",
        "*/*_per_transfer": "lower",
    },
    headline=("*/makespan_err", "*/p95_err"),
)
def model_check(ctx: BenchContext, p: ModelCheckParams) -> BenchResult:
    """The fluid transfer model against the flit reference on contention scenarios."""
    chosen = select(ctx.topology, p)
    result = BenchResult()
    _, missing = scenarios(ctx.topology, p)
    if p.scenarios == "all":
        result.notes += [f"scenario {s} not run: {why}" for s, why in missing.items()]
    table = Table(
        "Fluid against flit, per scenario (errors relative to flit; completion times from "
        "the scenario's start)",
        [
            "scenario", "transfers", "flit_ns", "fluid_ns", "makespan_err", "p50_err",
            "p95_err", "max_err", "events/transfer flit", "events/transfer fluid",
            "changes/transfer", "cpu_s flit", "cpu_s fluid",
        ],
    )  # fmt: skip
    for done, (name, run) in enumerate(chosen.items()):
        outcomes = {m: run_model(ctx, m, run, name) for m in MODELS}
        ref, fl = outcomes["flit"], outcomes["fluid"]
        errs = compare(ref, fl)
        per = max(fl.transfers, 1)
        changes = fl.counters.get("changes", 0) / per
        for key, value in errs.items():
            result.metrics[f"{name}/{key}"] = value
        result.metrics[f"{name}/flit_makespan_ns"] = ref.makespan_ns
        result.metrics[f"{name}/fluid_makespan_ns"] = fl.makespan_ns
        result.metrics[f"{name}/transfers"] = float(fl.transfers)
        result.metrics[f"{name}/flit_events_per_transfer"] = ref.events / per
        result.metrics[f"{name}/fluid_events_per_transfer"] = fl.events / per
        result.metrics[f"{name}/changes_per_transfer"] = changes
        result.metrics[f"{name}/passed_per_transfer"] = fl.counters.get("passed", 0) / per
        result.metrics[f"{name}/cpu_speedup"] = ref.wall_s / fl.wall_s if fl.wall_s else 0.0
        result.checks[f"{name}/makespan_within_5pct"] = abs(errs["makespan_err"]) <= MAKESPAN_TOL
        result.checks[f"{name}/p95_within_10pct"] = errs["p95_err"] <= P95_TOL
        table.rows.append(
            [
                name, fl.transfers, round(ref.makespan_ns, 1), round(fl.makespan_ns, 1),
                f"{errs['makespan_err']:+.2%}", f"{errs['p50_err']:.2%}",
                f"{errs['p95_err']:.2%}", f"{errs['max_err']:.2%}",
                round(ref.events / per, 1), round(fl.events / per, 1), round(changes, 2),
                round(ref.wall_s, 2), round(fl.wall_s, 2),
            ]
        )  # fmt: skip
        ctx.progress(done + 1, len(chosen), name)
    result.tables.append(table)
    result.notes.append(
        f"checks: |makespan_err| <= {MAKESPAN_TOL:.0%} and p95_err <= {P95_TOL:.0%} per scenario"
    )
    result.sim_events = ctx.sim_events
    result.sim_time_ns = ctx.sim_time_ns
    return result
