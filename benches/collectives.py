"""ipcq_allreduce and ccl_allreduce: all-reduce as kernels over IPCQ send/recv.

``ipcq_allreduce`` runs a ring all-reduce over the PEs of cube 0 (``scope=cube``) or over PE 0 of
every cube of the SIP (``scope=sip``), each member holding ``size_bytes``. The communication
time is the ring kernel's time minus the same kernel without its steps (load + store only). It
is compared with the alpha-beta model ``2(p-1)·α + 2(p-1)/p · S/β``, with α and β measured on
one ring step: a two-member ring between the first two members at two chunk sizes (a
two-member all-reduce is exactly two steps).

``ccl_allreduce`` runs the hierarchical all-reduce of kernbench.runtime.collectives over every
PE of every SIP: one rank per SIP (``spawn``), each PE contributing ``size_bytes``. Each PE
makes its contribution in TCM (small integers, so sums are exact in fp32: no H2D of the
inputs, which would dwarf the collective) and all-reduces it; ``allreduce_ns`` runs from the
first PE's ``tl.timestamp("start")`` to the last PE's ``tl.timestamp("end")`` over all SIPs.
The PEs to verify store their result to HBM, which is read back and compared with numpy: a
sample (``verify=sample``: the first and last PE of every SIP) or all (``verify=all``).

Metric names are listed in docs/metrics.md; the collectives in docs/collectives.md.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import kernbench.lang as tl
from kernbench.bench import HIGHER, LOWER, BenchContext, BenchResult, Table, bench
from kernbench.core import KIB, BenchError
from kernbench.lang.dtypes import dtype_of
from kernbench.runtime import Device, Launch, Placement, dist
from kernbench.runtime.collectives import (
    chunk_bounds,
    cube_ring,
    hierarchical_allreduce,
    ring_allreduce_kernel,
)
from kernbench.runtime.hub import Hub

SCOPES = ("cube", "sip")


def kernel_ns(launch: Launch) -> float:
    """Barrier start to the last PE's end."""
    return max(p.end_ns for p in launch.pes) - launch.start_ns


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value <= 0:
        raise BenchError(f"bench.{name}: must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class IpcqAllreduceParams:
    scope: str = "cube"
    size_bytes: int = 96 * KIB
    dtype: str = "fp32"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise BenchError(f"bench.scope: must be one of {', '.join(SCOPES)}, got {self.scope!r}")
        _positive("size_bytes", self.size_bytes)
        dt = dtype_of(self.dtype, "bench.dtype")
        if self.size_bytes % dt.itemsize:
            raise BenchError(
                f"bench.size_bytes: {self.size_bytes} is not a multiple of the {self.dtype} size"
            )


def ring_members(dev: Device, scope: str) -> list[tuple[int, int]]:
    """The ring as (cube, pe): the PEs of cube 0, or PE 0 of every cube; neighbour hops."""
    t = dev.system.spec
    if scope == "cube":
        return [(0, p) for p in cube_ring(t.hw.cube.router_rows, t.hw.cube.router_cols)]
    return [(c, 0) for c in cube_ring(t.topology.mesh_h, t.topology.mesh_w)]


def _rows_on(members: list[tuple[int, int]], scope: str) -> Placement:
    """Row ``i`` of a [members, n] tensor on member ``i``."""
    if scope == "cube":
        return Placement(pes="row", cube_ids=(0,), pe_ids=tuple(p for _, p in members))
    return Placement(cubes="row", cube_ids=tuple(c for c, _ in members), pe_ids=(0,))


def ring_comm_ns(
    dev: Device, members: list[tuple[int, int]], scope: str, x: np.ndarray
) -> tuple[float, np.ndarray]:
    """Communication time of a ring all-reduce of the rows of ``x`` and its result."""
    place = _rows_on(members, scope)
    tx = dev.tensor(x, placement=place)
    out = dev.empty(x.shape, x.dtype, placement=place)
    ring = tuple((dev.sip, c, p) for c, p in members)
    times = {}
    for steps in (False, True):
        launch = dev.launch(
            ring_allreduce_kernel, (len(members),), tx, out, x.shape[1], ring,
            pes=members, STEPS=steps,
        )  # fmt: skip
        dev.synchronize()
        times[steps] = kernel_ns(launch)
    result = out.numpy()
    dev.free(tx)
    dev.free(out)
    return times[True] - times[False], result


def alpha_beta(dev: Device, members: list, scope: str, chunk_bytes: int, dt: np.dtype) -> tuple:
    """α (ns) and β (GB/s) of one ring step between the first two members."""
    pair = members[:2]
    small = max(dt.itemsize, min(1 * KIB, chunk_bytes // 4))
    sizes = (small, chunk_bytes) if chunk_bytes > small else (chunk_bytes, 4 * chunk_bytes)
    steps = []
    for c in sizes:
        n = 2 * c // dt.itemsize
        comm, _ = ring_comm_ns(dev, pair, scope, np.ones((2, n), dt))
        steps.append(comm / 2)  # a two-member all-reduce is exactly two ring steps
    beta = (sizes[1] - sizes[0]) / (steps[1] - steps[0])
    alpha = steps[0] - sizes[0] / beta
    return alpha, beta


def per_device(result: BenchResult, rows: list[tuple[int, dict[str, float]]]) -> None:
    """Each device's metrics (prefixed ``sip<N>/`` when there are several)."""
    for sip, metrics in rows:
        prefix = f"sip{sip}/" if len(rows) > 1 else ""
        for k, v in metrics.items():
            result.metrics[prefix + k] = v


# Times (_ns) are better lower and bandwidths (_gbs) higher by their unit; the rest:
COLLECTIVE_BETTER = {
    "*model_ns": None,  # the alpha-beta model's prediction, not a measurement
    "*model_ratio": LOWER,  # measured over modelled: 1 on an uncontended ring
    "*members": None,
    "*ranks": None,
    "*max_abs_err": LOWER,
    "*verified": HIGHER,
}


@bench(
    "ipcq_allreduce",
    params=IpcqAllreduceParams,
    better=COLLECTIVE_BETTER,
    headline=("*allreduce_ns", "*busbw_gbs", "*model_ratio", "*verified"),
)
def ipcq_allreduce(ctx: BenchContext, p: IpcqAllreduceParams) -> BenchResult:
    """Ring all-reduce over the PEs of a cube or the cubes of a SIP, against the α-β model."""
    dt = dtype_of(p.dtype, "bench.dtype")
    buffer = ctx.spec.ccl.buffer

    def program(dev: Device) -> dict[str, Any]:
        members = ring_members(dev, p.scope)
        if len(members) < 2:
            raise BenchError(
                f"bench.scope={p.scope}: the ring needs 2 or more members; this topology has "
                f"{len(members)}"
            )
        n = p.size_bytes // dt.itemsize
        rng = np.random.default_rng(p.seed + dev.sip)
        x = rng.integers(-8, 8, size=(len(members), n)).astype(dt)
        comm, out = ring_comm_ns(dev, members, p.scope, x)
        expected = x.astype(np.float64).sum(axis=0)
        err = float(np.abs(out.astype(np.float64) - expected).max())
        pn = len(members)
        alpha, beta = alpha_beta(dev, members, p.scope, p.size_bytes // pn, dt)
        model = 2 * (pn - 1) * alpha + 2 * (pn - 1) / pn * p.size_bytes / beta
        return {
            "members": pn,
            "allreduce_ns": comm,
            "alpha_ns": alpha,
            "beta_gbs": beta,
            "model_ns": model,
            "model_ratio": comm / model,
            "algbw_gbs": p.size_bytes / comm,
            "busbw_gbs": 2 * (pn - 1) / pn * p.size_bytes / comm,
            "max_abs_err": err,
        }

    ran = ctx.run_devices(program, label=f"ipcq_allreduce {p.scope}")
    result = BenchResult()
    per_device(result, [(dev.sip, m) for dev, m in ran])
    table = Table(
        f"Ring all-reduce over {p.scope} ({buffer} buffers, {p.size_bytes} B per member)",
        ["device", "members", "allreduce_ns", "model_ns", "ratio", "alpha_ns", "beta_gbs",
         "busbw_gbs"],
    )  # fmt: skip
    for dev, m in ran:
        table.rows.append(
            [dev.name, m["members"], round(m["allreduce_ns"], 1), round(m["model_ns"], 1),
             round(m["model_ratio"], 3), round(m["alpha_ns"], 1), round(m["beta_gbs"], 1),
             round(m["busbw_gbs"], 1)]
        )  # fmt: skip
    result.tables.append(table)
    result.checks["verified"] = all(m["max_abs_err"] == 0.0 for _, m in ran)
    result.metrics["verified"] = float(result.checks["verified"])
    result.notes.append(
        "allreduce_ns is the ring kernel's time minus the same kernel without its steps; "
        "α and β come from a two-member ring between the first two members"
    )
    result.sim_events = ctx.sim_events
    result.sim_time_ns = ctx.sim_time_ns
    return result


# -- hierarchical, multi-SIP ---------------------------------------------------------------
VERIFY = ("sample", "all")


@dataclass(frozen=True)
class CclAllreduceParams:
    size_bytes: int = 96 * KIB
    verify: str = "sample"

    def __post_init__(self) -> None:
        _positive("size_bytes", self.size_bytes)
        if self.size_bytes % 4:
            raise BenchError(
                f"bench.size_bytes: must be a multiple of 4 (fp32), got {self.size_bytes}"
            )
        if self.verify not in VERIFY:
            raise BenchError(
                f"bench.verify: must be one of {', '.join(VERIFY)}, got {self.verify!r}"
            )


def reference_row(global_row: int, n: int) -> np.ndarray:
    return (((np.arange(n) + 7 * global_row) % 13) - 6).astype(np.float32)


@tl.jit
def ccl_kernel(
    out_ptr: Any, n: int, pe_ring: tuple, cube_chain: tuple, sips: int, store_rows: tuple
) -> None:
    """Each PE makes its contribution ``reference_row(g)`` in TCM (``g``: its global row),
    all-reduces it hierarchically between the timestamps ``start`` and ``end``, and stores the
    result to its row of ``out`` if that row is one to verify."""
    sip, cube, pe = tl.pe_id()
    pes = len(pe_ring)
    row = cube * pes + pe
    g = sip * pes * len(cube_chain) + row
    i = tl.arange(0, n)
    data = ((i + 7 * g) % 13 - 6).to(tl.float32) + tl.zeros((n,), tl.float32)
    chunks = [data[lo:hi] for lo, hi in chunk_bounds(n, pes)]
    tl.timestamp("start")
    hierarchical_allreduce(chunks, pe_ring, cube_chain, sips)
    tl.timestamp("end")
    if row in store_rows:
        for (lo, hi), c in zip(chunk_bounds(n, pes), chunks, strict=True):
            if hi > lo:
                tl.store(out_ptr + row * n + lo + tl.arange(0, hi - lo), c)


def _hier_rank(rank: int, p: CclAllreduceParams, report: Callable[[int, dict], None]) -> None:
    dist.init_process_group()
    dev = dist.device()
    spec = dev.system.spec
    n = p.size_bytes // 4
    pes, cubes, world = spec.hw.cube.pes, spec.topology.cubes, dist.get_world_size()
    rows = cubes * pes
    out = dev.empty((rows, n), "fp32", placement="row", name="out")
    pe_ring = tuple(cube_ring(spec.hw.cube.router_rows, spec.hw.cube.router_cols))
    chain = tuple(cube_ring(spec.topology.mesh_h, spec.topology.mesh_w))
    check = tuple(range(rows)) if p.verify == "all" else tuple(sorted({0, rows - 1}))
    launch = dev.launch(ccl_kernel, (rows,), out, n, pe_ring, chain, world, check)
    dev.synchronize()
    total = sum(reference_row(g, n).astype(np.float64) for g in range(world * rows))
    err = 0.0
    for r in check:
        got = dev.read_rows(out, r, r + 1)[0]
        err = max(err, float(np.abs(got.astype(np.float64) - total).max()))
    report(rank, {
        "start_ns": min(t.marks["start"] for t in launch.pes),
        "end_ns": max(t.marks["end"] for t in launch.pes),
        "kernel_ns": kernel_ns(launch),
        "max_abs_err": err,
        "rows_checked": float(len(check)),
    })  # fmt: skip


@bench(
    "ccl_allreduce",
    params=CclAllreduceParams,
    better=COLLECTIVE_BETTER,
    headline=("allreduce_ns", "busbw_gbs", "verified"),
)
def ccl_allreduce(ctx: BenchContext, p: CclAllreduceParams) -> BenchResult:
    """Hierarchical all-reduce over every PE of every SIP (one rank per SIP)."""
    world = ctx.spec.topology.sips
    system = ctx.new_system("ccl_allreduce")
    got: dict[int, dict] = {}
    dist.spawn(_hier_rank, world, (p, got.__setitem__), system=system, hub=Hub(system.sim))
    result = BenchResult()
    for m in got.values():
        m["allreduce_ns"] = m["end_ns"] - m["start_ns"]
    pes = ctx.spec.topology.cubes * ctx.spec.hw.cube.pes
    t = max(m["end_ns"] for m in got.values()) - min(m["start_ns"] for m in got.values())
    per_device(
        result,
        [(r, {k: m[k] for k in ("allreduce_ns", "kernel_ns", "max_abs_err")}) for r, m in
         sorted(got.items())] if world > 1 else [],
    )  # fmt: skip
    result.metrics["allreduce_ns"] = t
    result.metrics["ranks"] = float(world)
    result.metrics["algbw_gbs"] = p.size_bytes / t
    total_pes = world * pes
    result.metrics["busbw_gbs"] = 2 * (total_pes - 1) / total_pes * p.size_bytes / t
    result.checks["verified"] = all(m["max_abs_err"] == 0.0 for m in got.values())
    result.metrics["verified"] = float(result.checks["verified"])
    table = Table(
        f"Hierarchical all-reduce: {world} SIP(s) x {pes} PEs, {p.size_bytes} B per PE "
        f"({ctx.spec.ccl.buffer} buffers)",
        ["rank", "allreduce_ns", "kernel_ns", "rows_checked", "max_abs_err"],
    )
    for rank, m in sorted(got.items()):
        table.rows.append(
            [rank, round(m["allreduce_ns"], 1), round(m["kernel_ns"], 1),
             int(m["rows_checked"]), m["max_abs_err"]]
        )  # fmt: skip
    result.tables.append(table)
    result.sim_events = ctx.sim_events
    result.sim_time_ns = ctx.sim_time_ns
    return result
