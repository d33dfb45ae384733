"""What benches/llm_layer.py and benches/llm.py report from their ranks' runs: MFU and MBU,
each op's time against its roofline bound as metrics and a table, the all-reduce's share, the
ranks' errors and the checks (metric names in docs/metrics.md)."""

from collections.abc import Mapping, Sequence
from typing import Any

from kernbench.bench import BenchResult, ModelSpec, Table
from kernbench.hw import HwSpec
from kernbench.runtime.energy import Energy

from .llm_ops import Cost
from .llm_program import op_times


def slowest(runs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The run that took longest: the ranks run at once, so it is the time of the whole."""
    return max(runs, key=lambda r: r["end"] - r["start"])


def window_energy(runs: Sequence[Mapping[str, Any]]) -> Energy:
    """The energy the system spent from the first run's start to the last run's end (its
    ``e_start`` and ``e_end`` snapshots): every rank's share of the step, or every independent
    device's run of it."""
    first = min(runs, key=lambda r: r["start"])
    last = max(runs, key=lambda r: r["end"])
    return last["e_end"] - first["e_start"]


def devices(runs: Sequence[Any], p: Any) -> int:
    """Independent devices that each ran the whole step: every run with one rank, else one
    (the ranks share it)."""
    return len(runs) if p.tp == 1 else 1


def llm_result(
    p: Any,
    model: ModelSpec,
    hw: HwSpec,
    runs: Sequence[Mapping[str, Any]],
    costs: Mapping[str, Cost],
    errs: Sequence[float],
    tol: float,
    title: str,
    first: Mapping[str, float],
    span_metric: str,
) -> BenchResult:
    """The result of ``runs`` (one per rank: ``start``, ``end``, ``launches`` by op, ``slices``)
    whose ops cost ``costs`` on one rank; ``errs`` are the ranks' largest errors against the
    reference, ``tol`` the tolerance; ``first`` the bench's own metrics, listed first;
    ``span_metric`` names each rank's time (``rank<r>/<span_metric>``).

    The time of the whole is the slowest rank's; its op times partition that rank's timeline.
    MFU and MBU count every rank's work over the peak of every rank's PEs and slices."""
    result = BenchResult()
    run = slowest(runs)
    span = run["end"] - run["start"]
    times = op_times(run["start"], run["launches"])
    m = result.metrics
    m.update(first)
    flops = p.tp * sum(c.flops for c in costs.values())
    nbytes = p.tp * sum(c.bytes for c in costs.values())
    peak = hw.pe.gemm_tflops_fp16 * 1e3 * p.pes * p.tp  # FLOP per ns
    bw = hw.hbm.effective_bw_gbs * run["slices"] * p.tp  # bytes per ns
    m["mfu"] = flops / span / peak
    m["mbu"] = nbytes / span / bw
    table = Table(
        title,
        ["op", "time", "share", "GFLOP", "MB", "compute bound", "hbm bound", "bound", "ratio"],
    )
    for op, c in costs.items():
        t = times.get(op, 0.0)
        roof = c.roofline_ns
        m[f"op/{op}_ns"] = t
        m[f"op/{op}_roofline_ns"] = roof
        m[f"op/{op}_roofline_ratio"] = roof / t if t else 0.0
        table.rows.append([
            op, round(t, 1), f"{t / span:.1%}", round(c.flops / 1e9, 4),
            round(c.bytes / 1e6, 4), round(c.compute_ns, 1), round(c.hbm_ns, 1), c.bound,
            round(roof / t, 3) if t else 0.0,
        ])  # fmt: skip
    if p.tp > 1:
        m["all_reduce_share"] = times["all_reduce"] / span
        for rank, (r, e) in enumerate(zip(runs, errs, strict=True)):
            m[f"rank{rank}/{span_metric}"] = r["end"] - r["start"]
            m[f"rank{rank}/max_abs_err"] = e
    m["max_abs_err"] = max(errs)
    m["tolerance"] = tol
    result.checks["verified"] = m["max_abs_err"] <= tol
    result.checks["mfu_at_most_1"] = m["mfu"] <= 1.0
    result.checks["mbu_at_most_1"] = m["mbu"] <= 1.0
    m["verified"] = float(result.checks["verified"])
    result.tables.append(table)
    return result


def shape_title(bench: str, model: ModelSpec, p: Any) -> str:
    """``<bench>: <model> <phase>, batch B, N tokens | context C, P PEs [on each of T ranks]``."""
    return (
        f"{bench}: {model.name} {p.phase}, batch {p.batch}, "
        + (f"{p.seq_len} tokens" if p.phase == "prefill" else f"context {p.context}")
        + f", {p.pes} PEs"
        + (f" on each of {p.tp} tensor-parallel ranks (one per SIP)" if p.tp > 1 else "")
    )


# The directions of the LLM benches' metrics that their unit suffix does not give.
BETTER = {
    "ttft_ns*": "lower",  # also ..._extrapolated, which its unit suffix no longer names
    "tpot_ns*": "lower",
    "*tokens_per_s": "higher",
    "*mfu": "higher",
    "*mbu": "higher",
    "*max_abs_err": "lower",
    "*verified": "higher",
    "*roofline*": None,
    "*tolerance": None,
    "all_reduce_share": None,
}
