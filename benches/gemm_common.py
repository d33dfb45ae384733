"""What the GEMM benches share: parameters, running one GEMM per device, the roofline bound,
the numerical check and the reporting (metrics, tables). Metric names: docs/metrics.md.

A bench describes its GEMM with a :class:`Layout` per device (where A, B and C live, which
kernel runs on which PEs and which output tiles each PE computes); :func:`gemm_program` deploys
random inputs, launches and reads C back; :func:`report_gemm` turns what happened into a
:class:`BenchResult`. What must fit before a run: gemm_fits.py.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from kernbench.bench import HIGHER, LOWER, BenchContext, BenchResult, Table
from kernbench.core import BenchError
from kernbench.lang.dtypes import dtype_of
from kernbench.runtime import Device, Launch, Placement, System, Tensor
from kernbench.topology import SystemSpec

from .matmul_kernels import chunk

DTYPES = ("fp16", "bf16", "fp32", "int8")
# C's dtype: the input's for floats (accumulated in fp32, cast on store); int32 for int8.
OUT_DTYPE = {"fp16": "fp16", "bf16": "bf16", "fp32": "fp32", "int8": "int32"}
# Unit roundoff of round-to-nearest (half an ulp, relative) and half the smallest subnormal
# (the absolute rounding error near zero) of each output dtype.
UNIT_ROUNDOFF = {"fp16": 2.0**-11, "bf16": 2.0**-8, "fp32": 2.0**-24}
HALF_TINY = {"fp16": 2.0**-25, "bf16": 2.0**-134, "fp32": 2.0**-150}
FP32_ROUNDOFF = 2.0**-24
UNITS = ("gemm", "math", "cpu", "dma_read", "dma_write", "tcm_read", "tcm_write")
# What the GEMM benches' metrics mean for a comparison (docs/metrics.md), ``sip<N>/`` prefixed
# or not; times (_ns) not named here are better lower by their unit. The roofline terms are
# analytic bounds and the busy fractions describe the schedule: neither is better either way.
GEMM_BETTER = {
    "*tflops": HIGHER,
    "*roofline_ratio": HIGHER,
    "*roofline*_ns": None,
    "*_busy": None,
    "*pes_used": None,
    "*tcm_peak_bytes": None,
    "*max_abs_err": LOWER,
    "*verified": HIGHER,
    "*best/*": None,  # bench.autotune: the config chosen, and how many were tried
    "*configs_tried": None,
}
GEMM_HEADLINE = ("latency_ns", "kernel_ns", "tflops", "roofline_ratio", "verified")


def _positive(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BenchError(f"bench.{key}: must be a positive integer, got {value!r}")


def check_gemm_params(p: Any) -> None:
    """Shape, tiles and dtype of any GEMM bench's parameters (``__post_init__``)."""
    for key in ("m", "k", "n", "block_m", "block_k", "block_n"):
        _positive(key, getattr(p, key))
    if p.num_stages is not None:
        _positive("num_stages", p.num_stages)
    if not isinstance(p.autotune, bool):
        raise BenchError(f"bench.autotune: must be true or false, got {p.autotune!r}")
    if p.dtype not in DTYPES:
        raise BenchError(f"bench.dtype: must be one of {', '.join(DTYPES)}, got {p.dtype!r}")


@dataclass(frozen=True)
class GemmParams:
    """C[m, n] = A[m, k] @ B[k, n] in tiles of block_m x block_n, stepping k by block_k."""

    m: int = 128
    k: int = 256
    n: int = 128
    dtype: str = "fp16"
    block_m: int = 32
    block_k: int = 64
    block_n: int = 32
    seed: int = 0
    # Loads in flight per load of the K loop (Triton's num_stages); None: sim.num_stages.
    num_stages: int | None = None
    # Try the candidate tiles and depths with tl.autotune and run the best (benches/
    # gemm_autotune.py); block_m, block_k, block_n and num_stages are then not used.
    autotune: bool = False

    def __post_init__(self) -> None:
        check_gemm_params(self)

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.n * self.k


@dataclass
class Layout:
    """One device's GEMM: placements of A, B and C, the kernel, its grid, the PEs it runs on
    (``pes``, as for ``Device.launch``), extra keyword arguments (``meta``) and the output
    tiles each of those PEs computes, as ``(rows, cols)`` of each tile (for the TCM bound).

    ``tiles_of`` makes the tiles when they are first asked for (:attr:`tiles`): a grid of
    millions of tiles takes seconds to list, and the checks before a run need none of them."""

    a: Placement
    b: Placement
    c: Placement
    kernel: Callable[..., Any]
    grid: int
    pes: list[tuple[int, int]]
    tiles_of: Callable[[], dict[tuple[int, int], list[tuple[int, int]]]]
    meta: dict[str, Any] = field(default_factory=dict)
    # The kernel walks several tiles in one program and keeps the last tile's accumulator and
    # output block alive while it computes the next (sharded_matmul_kernel): more TCM.
    carries_tiles: bool = False

    @cached_property
    def tiles(self) -> dict[tuple[int, int], list[tuple[int, int]]]:
        return self.tiles_of()


def stages_of(spec: SystemSpec, p: GemmParams) -> int:
    """The pipelining depth the GEMM's launch runs with."""
    return spec.sim.num_stages if p.num_stages is None else p.num_stages


def grid_size(p: GemmParams) -> int:
    """Programs in :func:`matmul_kernel`'s grid: one per output tile."""
    return -(-p.m // p.block_m) * -(-p.n // p.block_n)


def grid_tiles(
    p: GemmParams, pes: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """Tiles per PE of :func:`matmul_kernel`'s grid: program ``pid`` computes the tile in
    column ``pid % tiles_n`` and row ``(pid // tiles_n + pid % tiles_n) % tiles_m``, and runs
    on ``pes[pid % len(pes)]``."""
    tiles_m, tiles_n = -(-p.m // p.block_m), -(-p.n // p.block_n)
    out: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for pid in range(tiles_m * tiles_n):
        pn = pid % tiles_n
        pm = (pid // tiles_n + pn) % tiles_m
        rows = min(p.block_m, p.m - pm * p.block_m)
        cols = min(p.block_n, p.n - pn * p.block_n)
        out.setdefault(pes[pid % len(pes)], []).append((rows, cols))
    return out


def sharded_tiles(
    p: GemmParams, cubes: int, pes: int
) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """The output tiles ``(rows, cols)`` that PE p of cube c computes."""
    out = {}
    for c in range(cubes):
        c0, c1 = chunk(p.n, cubes, c)
        for pe in range(pes):
            r0, r1 = chunk(p.m, pes, pe)
            out[(c, pe)] = [
                (min(p.block_m, r1 - m0), min(p.block_n, c1 - n0))
                for m0 in range(r0, r1, p.block_m)
                for n0 in range(c0, c1, p.block_n)
            ]
    return out


# -- inputs and the numerical check --------------------------------------------------------
def make_inputs(p: GemmParams, sip: int) -> tuple[np.ndarray, np.ndarray]:
    """Random A and B in ``p.dtype``: standard normal floats, integers in [-8, 8] for int8.
    Each device gets its own seed (``p.seed + sip``)."""
    rng = np.random.default_rng(p.seed + sip)
    if p.dtype == "int8":
        return (
            rng.integers(-8, 9, size=(p.m, p.k)).astype(np.int8),
            rng.integers(-8, 9, size=(p.k, p.n)).astype(np.int8),
        )
    dt = dtype_of(p.dtype, "bench.dtype")
    return (
        rng.standard_normal((p.m, p.k)).astype(dt),
        rng.standard_normal((p.k, p.n)).astype(dt),
    )


def check_output(a: np.ndarray, b: np.ndarray, c: np.ndarray, dtype: str) -> tuple[float, bool]:
    """``(max_abs_err, verified)`` of C against numpy's fp32 product (exact int64 for int8).

    The tolerance is a worst-case bound, elementwise: with ``g = 2 γ_K (|A| @ |B|)`` (γ_K =
    K·u / (1 − K·u), u = 2^-24), the kernel's fp32 accumulation in any order and the fp32
    reference each lie within ``γ_K (|A| @ |B|)`` of the exact product (products of fp16 /
    bf16 values are exact in fp32; fp32 products add one rounding, covered by γ_K), and the
    cast of the accumulator to C's dtype adds at most ``u_out (|ref| + g)`` (half an ulp,
    relative) plus half the smallest subnormal. int8 accumulates exactly in int32: tolerance 0.
    """
    if dtype == "int8":
        ref = a.astype(np.int64) @ b.astype(np.int64)
        err = np.abs(c.astype(np.int64) - ref)
        return float(err.max()), bool((err == 0).all())
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    ref = (a32 @ b32).astype(np.float64)
    k = a.shape[1]
    gamma = k * FP32_ROUNDOFF / (1 - k * FP32_ROUNDOFF)
    g = 2 * gamma * (np.abs(a32).astype(np.float64) @ np.abs(b32).astype(np.float64))
    tol = UNIT_ROUNDOFF[dtype] * (np.abs(ref) + g) + g + HALF_TINY[dtype]
    err = np.abs(c.astype(np.float64) - ref)
    return float(err.max()), bool((err <= tol).all())


# -- the roofline --------------------------------------------------------------------------
@dataclass(frozen=True)
class Roofline:
    compute_ns: float
    hbm_ns: float
    tcm_ns: float

    @property
    def bound_ns(self) -> float:
        return max(self.compute_ns, self.hbm_ns, self.tcm_ns)

    @property
    def bound(self) -> str:
        parts = {"compute": self.compute_ns, "hbm": self.hbm_ns, "tcm": self.tcm_ns}
        return max(parts, key=lambda k: parts[k])


def roofline(
    system: System,
    p: GemmParams,
    pes_used: int,
    slices_used: int,
    tiles: dict[tuple[int, int], list[tuple[int, int]]],
) -> Roofline:
    """Lower bounds on the kernel's time (docs/kernels.md, "Benches"):

    - compute: ``2MNK`` at the pe_gemm peak of every PE used (fp32 at half rate);
    - HBM: A and B read once and C written once, at the effective bandwidth of every HBM slice
      that holds a part of them;
    - TCM: for the PE with the most, the bytes its tiles must pass through TCM — every loaded
      element of A and B is written once and read once by ``tl.dot``, every element of C read
      once for its store — at the TCM read / write bandwidth (independent channels).
    """
    hw = system.spec.hw
    peak = hw.pe.gemm_tflops_fp16 * 1e3 * (0.5 if p.dtype == "fp32" else 1.0)
    size_in = dtype_of(p.dtype).itemsize
    size_out = dtype_of(OUT_DTYPE[p.dtype]).itemsize
    total_bytes = (p.m * p.k + p.k * p.n) * size_in + p.m * p.n * size_out
    tcm = 0.0
    for pe_tiles in tiles.values():
        loaded = sum((r + c) * p.k for r, c in pe_tiles) * size_in
        stored = sum(r * c for r, c in pe_tiles) * size_out
        tcm = max(
            tcm,
            (loaded + stored) / hw.pe.tcm_read_bw_gbs,
            loaded / hw.pe.tcm_write_bw_gbs,
        )
    return Roofline(
        compute_ns=p.flops / (peak * pes_used),
        hbm_ns=total_bytes / (hw.hbm.effective_bw_gbs * slices_used),
        tcm_ns=tcm,
    )


def slices_of(*tensors: Tensor) -> set[tuple[int, int]]:
    """The HBM slices (cube, pe) holding any part of the tensors."""
    return {where for t in tensors for shard in t.shards for where in shard.copies}


# -- one device's run ----------------------------------------------------------------------
@dataclass
class DeviceRun:
    sip: int
    launch: Launch
    layout: Layout
    slices: set[tuple[int, int]]
    h2d_ns: float
    d2h_ns: float
    max_abs_err: float
    verified: bool
    # The GEMM that ran, if not the bench's own parameters (an autotuned config), and the
    # unit counters from before its launch, if the PEs ran other launches first.
    params: GemmParams | None = None
    busy_since: dict[str, dict[str, float]] | None = None

    @property
    def kernel_start_ns(self) -> float:
        return self.launch.start_ns

    @property
    def kernel_end_ns(self) -> float:
        return max(t.end_ns for t in self.launch.pes)

    @property
    def kernel_ns(self) -> float:
        """Barrier start to the last PE's end (its stores committed)."""
        return self.kernel_end_ns - self.kernel_start_ns


def gemm_program(p: GemmParams, layout_of: Callable[[Device], Layout]) -> Callable[[Device], Any]:
    """The host program: deploy A and B (H2D), launch, read C back (D2H), check it."""

    def program(dev: Device) -> DeviceRun:
        layout = layout_of(dev)
        ops = deploy(dev, p, layout)
        ta, tb, tc = ops.ta, ops.tb, ops.tc
        launch = dev.launch(
            layout.kernel, (layout.grid,), ta, tb, tc, p.m, p.n, p.k,
            *ta.stride(), *tb.stride(), *tc.stride(),
            pes=layout.pes, BLOCK_M=p.block_m, BLOCK_N=p.block_n, BLOCK_K=p.block_k,
            num_stages=stages_of(dev.system.spec, p), **layout.meta,
        )  # fmt: skip
        d2h, err, ok = read_back(dev, p, ops)
        return DeviceRun(dev.sip, launch, layout, slices_of(ta, tb, tc), ops.h2d, d2h, err, ok)

    return program


@dataclass
class Operands:
    """A GEMM's inputs on the host and its tensors on the device, and the H2D time."""

    a: np.ndarray
    b: np.ndarray
    ta: Tensor
    tb: Tensor
    tc: Tensor
    h2d: float


def deploy(dev: Device, p: GemmParams, layout: Layout) -> Operands:
    """Random A and B deployed H2D where ``layout`` puts them, and an empty C."""
    a, b = make_inputs(p, dev.sip)
    t0 = dev.now
    ta = dev.tensor(a, placement=layout.a, name="A")
    tb = dev.tensor(b, placement=layout.b, name="B")
    h2d = dev.now - t0
    tc = dev.empty((p.m, p.n), OUT_DTYPE[p.dtype], placement=layout.c, name="C")
    return Operands(a, b, ta, tb, tc, h2d)


def read_back(dev: Device, p: GemmParams, ops: Operands) -> tuple[float, float, bool]:
    """After the device's launches: C read back (D2H), and ``(d2h_ns, max_abs_err,
    verified)``."""
    dev.synchronize()
    t1 = dev.now
    c = ops.tc.numpy()
    d2h = dev.now - t1
    err, ok = check_output(ops.a, ops.b, c, p.dtype)
    return d2h, err, ok


# -- reporting -----------------------------------------------------------------------------
def unit_counters(system: System) -> dict[str, dict[str, float]]:
    """Busy time (ns) of each unit of every PE the system has used so far, by PE name."""
    dma = {ch.name: ch for ch in system.dma_channels}
    out = {}
    for pe in system.pes:
        read, write = dma.get(f"{pe.name}.dma.read"), dma.get(f"{pe.name}.dma.write")
        out[pe.name] = {
            "gemm": pe.gemm.busy_ns,
            "math": pe.math.busy_ns,
            "cpu": pe.cpu.busy_ns,
            "dma_read": read.busy_ns if read else 0.0,
            "dma_write": write.busy_ns if write else 0.0,
            "tcm_read": pe.tcm_read.busy_ns,
            "tcm_write": pe.tcm_write.busy_ns,
        }
    return out


def unit_busy(
    system: System,
    launch: Launch,
    kernel_ns: float,
    since: dict[str, dict[str, float]] | None = None,
) -> list[dict[str, float]]:
    """Per PE of the launch: each unit's busy time as a fraction of ``kernel_ns``, its
    programs and its TCM peak. The system must have run only this launch on those PEs, or
    ``since`` holds the :func:`unit_counters` from before it."""
    pes = {pe.name: pe for pe in system.pes}
    now = unit_counters(system)
    rows = []
    for t in launch.pes:
        pe = pes[t.name]
        before = (since or {}).get(t.name, {})
        busy = {u: v - before.get(u, 0.0) for u, v in now[t.name].items()}
        row: dict[str, Any] = {"pe": t.name, "programs": t.programs, "end_ns": t.end_ns}
        row.update({u: v / kernel_ns for u, v in busy.items()})
        row["tcm_peak_bytes"] = pe.tcm_peak
        rows.append(row)
    return rows


def device_metrics(
    run: DeviceRun, p: GemmParams, roof: Roofline, busy: list[dict[str, Any]]
) -> dict[str, float]:
    kernel = run.kernel_ns
    m = {
        "latency_ns": run.launch.total_ns,
        "kernel_ns": kernel,
        "h2d_ns": run.h2d_ns,
        "d2h_ns": run.d2h_ns,
        "tflops": p.flops / kernel / 1e3,
        "roofline_ns": roof.bound_ns,
        "roofline_compute_ns": roof.compute_ns,
        "roofline_hbm_ns": roof.hbm_ns,
        "roofline_tcm_ns": roof.tcm_ns,
        "roofline_ratio": roof.bound_ns / kernel,
        "pes_used": float(len(run.launch.pes)),
    }
    for unit in UNITS:
        m[f"{unit}_busy"] = float(np.mean([row[unit] for row in busy]))
    m["tcm_peak_bytes"] = float(max(row["tcm_peak_bytes"] for row in busy))
    m["max_abs_err"] = run.max_abs_err
    m["verified"] = float(run.verified)
    return m


def aggregate(runs: list[DeviceRun], per: list[dict[str, float]], p: GemmParams) -> dict:
    """Unprefixed metrics over all devices: the worst of each time, of the roofline and of the
    error; all FLOPs over the span from the first kernel start to the last kernel end; PEs
    summed; busy fractions averaged; verified only if every device verified."""
    span = max(r.kernel_end_ns for r in runs) - min(r.kernel_start_ns for r in runs)
    out: dict[str, float] = {}
    for key in per[0]:
        values = [m[key] for m in per]
        if key == "tflops":
            out[key] = p.flops * len(runs) / span / 1e3
        elif key == "pes_used":
            out[key] = sum(values)
        elif key.endswith("_busy"):
            out[key] = float(np.mean(values))
        elif key == "verified":
            out[key] = float(all(r.verified for r in runs))
        else:
            out[key] = max(values)
    out["roofline_ratio"] = out["roofline_ns"] / out["kernel_ns"]
    return out


def report_gemm(ctx: BenchContext, p: GemmParams, runs: list[DeviceRun], what: str) -> BenchResult:
    """The result of the devices' runs: metrics, checks, tables (a run's own ``params`` when it
    has them)."""
    system = ctx.systems[-1]
    result = BenchResult()
    per: list[dict[str, float]] = []
    busy_rows: list[tuple[int, list[dict[str, Any]]]] = []
    roofs: list[Roofline] = []
    for run in runs:
        q = run.params or p
        roof = roofline(system, q, len(run.launch.pes), len(run.slices), run.layout.tiles)
        busy = unit_busy(system, run.launch, run.kernel_ns, run.busy_since)
        per.append(device_metrics(run, q, roof, busy))
        busy_rows.append((run.sip, busy))
        roofs.append(roof)
    several = len(runs) > 1
    if several:
        for run, metrics in zip(runs, per, strict=True):
            for key, value in metrics.items():
                result.metrics[f"sip{run.sip}/{key}"] = value
            result.checks[f"sip{run.sip}/verified"] = run.verified
        result.metrics.update(aggregate(runs, per, p))
    else:
        result.metrics.update(per[0])
    result.checks["verified"] = all(r.verified for r in runs)
    result.checks["kernel_ge_roofline"] = all(m["kernel_ns"] >= m["roofline_ns"] for m in per)
    result.tables += _tables(runs[0].params or p, what, runs, per, roofs, busy_rows)
    result.notes.append(
        "kernel_ns runs from the launch barrier to the last PE's end (stores committed); "
        "latency_ns from the host's launch call to the completion at the host"
    )
    result.sim_events = ctx.sim_events
    result.sim_time_ns = ctx.sim_time_ns
    return result


def _tables(
    p: GemmParams,
    what: str,
    runs: list[DeviceRun],
    per: list[dict[str, float]],
    roofs: list[Roofline],
    busy_rows: list[tuple[int, list[dict[str, Any]]]],
) -> list[Table]:
    shape = f"{p.m}x{p.k} @ {p.k}x{p.n} {p.dtype}, tiles {p.block_m}x{p.block_k}x{p.block_n}"
    summary = Table(
        f"{what}: {shape} (times in ns)",
        ["device", "pes", "latency", "kernel", "roofline", "bound", "ratio", "TFLOP/s",
         "h2d", "d2h", "max_abs_err", "verified"],
    )  # fmt: skip
    units = Table(
        "Roofline components (ns) and unit busy fractions (of kernel time, mean over PEs)",
        ["device", "compute", "hbm", "tcm", *UNITS, "tcm_peak"],
    )
    for run, m, roof in zip(runs, per, roofs, strict=True):
        summary.rows.append(
            [f"sip{run.sip}", int(m["pes_used"]), round(m["latency_ns"], 1),
             round(m["kernel_ns"], 1), round(m["roofline_ns"], 1), roof.bound,
             round(m["roofline_ratio"], 3), round(m["tflops"], 3), round(m["h2d_ns"], 1),
             round(m["d2h_ns"], 1), f"{m['max_abs_err']:.3g}", "yes" if run.verified else "NO"]
        )  # fmt: skip
        units.rows.append(
            [f"sip{run.sip}", round(roof.compute_ns, 1), round(roof.hbm_ns, 1),
             round(roof.tcm_ns, 1), *(f"{m[f'{u}_busy']:.1%}" for u in UNITS),
             int(m["tcm_peak_bytes"])]
        )  # fmt: skip
    detail = Table(
        "Per PE: programs, end (ns after the barrier) and unit busy fractions of kernel time",
        ["pe", "programs", "end", *UNITS, "tcm_peak"],
        detail=True,
        section="Per PE",
    )
    for run, (_sip, rows) in zip(runs, busy_rows, strict=True):
        for row in rows:
            detail.rows.append(
                [row["pe"], row["programs"], round(row["end_ns"] - run.kernel_start_ns, 1),
                 *(f"{row[u]:.1%}" for u in UNITS), row["tcm_peak_bytes"]]
            )  # fmt: skip
    return [summary, units, detail]
