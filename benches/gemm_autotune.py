"""``bench.autotune=true`` for the GEMM benches: their kernel under ``tl.autotune`` over a fixed
set of tiles and pipeline depths (docs/kernels.md, "Autotuning"; metrics in docs/metrics.md).

Before anything is simulated, candidates whose tiles would be mostly padding (a block that
exceeds what any tile needs along its dimension by a whole smallest block) or would not fit a
PE's TCM (the bench's own checks) are pruned. Each device's host program deploys A and B,
launches the tuned kernel (``key=["M", "N", "K"]``; C is zeroed before every trial and before
the final launch, so the check sees only the final launch's output), which runs every
remaining candidate and then the best, and reads C back. The usual metrics are the final
launch's; the unit counters and the TCM peak are taken from after the trials.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import kernbench.lang as tl
from kernbench.bench import BenchContext, BenchResult, Table
from kernbench.core import BenchError
from kernbench.runtime import Device

from .gemm_common import (
    DeviceRun,
    GemmParams,
    Layout,
    deploy,
    gemm_program,
    read_back,
    report_gemm,
    roofline,
    slices_of,
    unit_counters,
)
from .gemm_fits import DeviceShape, check_gemm_fits

# (block_m, block_n, block_k, num_stages), docs/kernels.md "Autotuning". Tiles from 64 x 64 to
# 256 x 256: on an 8 TFLOP/s PE a K step of a b x b x b tile computes 2b^3 / 8000 ns against
# 4b^2 / 512 ns of fp16 operands written into TCM (2.0x at b = 64, 4.1x at 128, 8.2x at 256), so
# larger tiles amortise a step's fixed costs (dispatch, DMA round trips, tl.dot fill and drain)
# but leave PEs idle when the output has fewer tiles than PEs; a longer block_k halves the steps
# of a tile; 64 x 128 suits a PE that owns few rows (qkv_gemm_multi_pe). Three stages (the
# default) keep a step's loads in flight behind the previous tl.dot; the largest tile, whose
# K steps are the longest, also with two. Even 256 x 256 x 256 with three stages
# holds 1.3 MiB of TCM in fp16, so the 16 MiB TCM prunes none of them by default.
CANDIDATES: tuple[tuple[int, int, int, int], ...] = (
    (64, 64, 64, 3),
    (64, 64, 128, 3),
    (64, 128, 256, 3),
    (128, 128, 64, 3),
    (128, 128, 128, 3),
    (128, 128, 256, 3),
    (128, 256, 128, 3),
    (256, 256, 128, 3),
    (256, 256, 256, 2),
    (256, 256, 256, 3),
)
BEST = ("block_m", "block_n", "block_k", "num_stages")

LayoutFor = Callable[[GemmParams, Any], Layout]


def run_gemm_bench(ctx: BenchContext, p: GemmParams, layout_for: LayoutFor, what: str) -> Any:
    """The GEMM benches' entry: the plain run, or with ``bench.autotune`` the tuned one."""
    if not p.autotune:
        return run_gemm(ctx, p, lambda dev: layout_for(p, dev), what)
    return run_autotuned(ctx, p, layout_for, what)


def candidate(p: GemmParams, c: tuple[int, int, int, int]) -> GemmParams:
    bm, bn, bk, stages = c
    return dataclasses.replace(
        p, block_m=bm, block_n=bn, block_k=bk, num_stages=stages, autotune=False
    )


def padding(q: GemmParams, layout: Layout) -> str | None:
    """Why the candidate's tiles are mostly padding, or None: a block longer than every tile
    needs along its dimension by at least the smallest candidate block."""
    tiles = [t for ts in layout.tiles.values() for t in ts]
    need = {
        "block_m": max(r for r, _ in tiles),
        "block_n": max(c for _, c in tiles),
        "block_k": q.k,
    }
    smallest = {
        "block_m": min(c[0] for c in CANDIDATES),
        "block_n": min(c[1] for c in CANDIDATES),
        "block_k": min(c[2] for c in CANDIDATES),
    }
    for key, most in need.items():
        if getattr(q, key) - most >= smallest[key]:
            return f"{key}={getattr(q, key)} pads tiles of at most {most}"
    return None


def prune(
    ctx: BenchContext, p: GemmParams, layout_for: LayoutFor
) -> tuple[list[GemmParams], list[tuple[GemmParams, str]]]:
    """The candidates to try, and those pruned with the reason. All pruned: the first one's
    error, which names the bench key to change."""
    kept: list[GemmParams] = []
    pruned: list[tuple[GemmParams, str]] = []
    first: BenchError | None = None
    for c in CANDIDATES:
        q = candidate(p, c)
        try:
            check_gemm_fits(ctx.spec, q, lambda dev, q=q: layout_for(q, dev), ctx.devices)
        except BenchError as exc:
            first = first or exc
            pruned.append((q, str(exc).split(";")[0]))
            continue
        why = padding(q, layout_for(q, _shape(ctx.spec, ctx.devices[0])))
        if why is None:
            kept.append(q)
        else:
            pruned.append((q, why))
    if not kept:
        if first is not None:
            raise BenchError(f"bench.autotune: no candidate config fits: {first}")
        raise BenchError(
            "bench.autotune: every candidate config is mostly padding for this shape: "
            + "; ".join(why for _, why in pruned)
        )
    return kept, pruned


def _shape(spec: Any, sip: int) -> DeviceShape:
    return DeviceShape(sip, spec.topology.cubes, spec.hw.cube.pes)


def _tile(q: GemmParams) -> tuple[int, int, int]:
    return (q.block_m, q.block_n, q.block_k)


def tuned_program(
    p: GemmParams, kept: list[GemmParams], layout_for: LayoutFor
) -> Callable[[Device], tuple[DeviceRun, list[tuple[GemmParams, float | None]], float]]:
    """The host program: deploy A and B, launch the tuned kernel (trials, then the best),
    read C back and check it. Returns the run, the trials and the simulated time they took."""

    def program(dev: Device) -> tuple[DeviceRun, list[tuple[GemmParams, float | None]], float]:
        layouts = {_tile(q): layout_for(q, dev) for q in kept}
        by_config = {}
        configs = []
        for q in kept:
            cfg = tl.Config(
                {"BLOCK_M": q.block_m, "BLOCK_N": q.block_n, "BLOCK_K": q.block_k},
                num_stages=q.num_stages,
            )
            configs.append(cfg)
            by_config[cfg] = q
        base = layouts[_tile(kept[0])]  # placements, PEs and kernel do not depend on tiles
        tuner = tl.autotune(configs, key=["M", "N", "K"], reset_to_zero=["c_ptr"])(base.kernel)

        def grid(meta: dict[str, Any]) -> tuple[int]:
            return (layouts[(meta["BLOCK_M"], meta["BLOCK_N"], meta["BLOCK_K"])].grid,)

        ops = deploy(dev, p, base)
        ta, tb, tc = ops.ta, ops.tb, ops.tc
        t_tune = dev.now
        launch = dev.launch(
            tuner, grid, ta, tb, tc, p.m, p.n, p.k, *ta.stride(), *tb.stride(), *tc.stride(),
            pes=base.pes, **base.meta,
        )  # fmt: skip
        # The trials are over and the final launch has not reached its PEs yet: count its
        # units from here, and its TCM peak from what is held now (nothing).
        since = unit_counters(dev.system)
        for pe in dev.system.pes:
            pe.tcm_peak = pe.tcm_used
        tune_ns = launch.issue_ns - t_tune
        best = by_config[tuner.best_config]
        d2h, err, ok = read_back(dev, p, ops)
        run = DeviceRun(
            dev.sip, launch, layouts[_tile(best)], slices_of(ta, tb, tc), ops.h2d, d2h, err, ok,
            params=best, busy_since=since,
        )  # fmt: skip
        trials = [(by_config[cfg], ns) for cfg, ns in launch.autotune]
        return run, trials, tune_ns

    return program


def run_autotuned(
    ctx: BenchContext, p: GemmParams, layout_for: LayoutFor, what: str
) -> BenchResult:
    kept, pruned = prune(ctx, p, layout_for)
    ran = ctx.run_devices(tuned_program(p, kept, layout_for), label=what)
    outs = [out for _, out in ran]
    result = report_gemm(ctx, p, [run for run, _, _ in outs], f"{what}, autotuned")
    system = ctx.systems[-1]
    skipped = f"; {len(pruned)} pruned before simulating (notes)" if pruned else ""
    what_ran = f"the {len(kept)} candidates tried, in order"
    if len(kept) == 1:
        what_ran = "the one candidate left, run without trials"
    table = Table(
        f"Autotuning: {what_ran} (times in ns){skipped}",
        ["device", "block_m", "block_n", "block_k", "num_stages", "kernel", "TFLOP/s",
         "roofline", "ratio", "best"],
    )  # fmt: skip
    several = len(outs) > 1
    for i, (run, trials, tune_ns) in enumerate(outs):
        best = run.params
        assert best is not None
        per = {f"best/{k}": float(getattr(best, k)) for k in BEST}
        per["tune_ns"] = tune_ns
        per["configs_tried"] = float(len(trials))
        for key, value in per.items():
            if several:
                result.metrics[f"sip{run.sip}/{key}"] = value
            if i == 0:
                result.metrics[key] = value
        for q, ns in trials or [(best, run.kernel_ns)]:
            tiles = layout_for(q, _shape(ctx.spec, run.sip)).tiles
            roof = roofline(system, q, len(tiles), len(run.slices), tiles)
            row: list[Any] = [f"sip{run.sip}", q.block_m, q.block_n, q.block_k, q.num_stages]
            if ns is None:
                row += ["failed", "", round(roof.bound_ns, 1), "", ""]
            else:
                row += [round(ns, 1), round(p.flops / ns / 1e3, 3), round(roof.bound_ns, 1),
                        round(roof.bound_ns / ns, 3), "*" if q == best else ""]  # fmt: skip
            table.rows.append(row)
    result.tables.insert(1, table)
    if pruned:
        result.notes.append(
            "autotune pruned before simulating: "
            + "; ".join(
                f"{q.block_m}x{q.block_n}x{q.block_k} s{q.num_stages} ({why})" for q, why in pruned
            )  # fmt: skip
        )
    result.notes.append(
        "autotune: every candidate ran as a launch of its own before the final one (tune_ns of "
        "simulated time); the headline figures are the final launch's, with the best config"
    )
    return result


def run_gemm(
    ctx: BenchContext,
    p: GemmParams,
    layout_of: Callable[[Device], Layout],
    what: str,
) -> BenchResult:
    """Run the GEMM on every selected device at once and report it (``what`` titles it)."""
    check_gemm_fits(ctx.spec, p, layout_of, ctx.devices)  # before any data moves
    ran = ctx.run_devices(gemm_program(p, layout_of), label=what)
    return report_gemm(ctx, p, [r for _, r in ran], what)
