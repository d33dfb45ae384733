"""Speed of the two transfer models, measured in one run (docs/performance.md).

Run: ``.venv/bin/python benchmarks/model_speed.py [--repeat N] [--big]``. Every case runs
under ``sim.model=flit`` and ``sim.model=fluid``, the models interleaved in each repeat, in
this process (the bench alone: no interpreter start-up, tracking or plots); the best CPU time
of each is kept and the ratio printed. Cases:

- ``probe``: the full default probe (4x4, 32 KiB, sweep and congestion), ``sim.trace`` at its
  default (summary);
- ``far 64 KiB`` / ``far 64 MiB``: the probe's ``pe-cross-cube-far`` case alone
  (``bench.sweep=false bench.congestion=false``) at 64 KiB and 64 MiB; the flit model runs the
  64 MiB case only with ``--big`` (about a minute);
- ``gemm 512``: ``bench=gemm`` m = n = k = 512 on 8 PEs; ``gemm 1024 tuned``: 1024 on 8 PEs
  with the tiles autotuning picks (128 x 128 x 128); with ``--big`` also 1024 on 8 PEs with
  the default tiles and 2048 on 128 PEs tuned (fluid only). Reports simulated GFLOP per CPU
  second.
"""

import argparse
import dataclasses
import time
from collections.abc import Callable

from kernbench.bench import BenchContext, get_bench
from kernbench.core import KIB, MIB
from kernbench.sim.spec import MODELS
from kernbench.topology import SystemSpec

# The tiles bench.autotune picks for 1024^3 on 8 PEs (docs/kernels.md, "Autotuning").
TUNED = (128, 128, 128)
Case = Callable[[SystemSpec], tuple[int, float]]  # -> (sim events, simulated GFLOP)


def spec_for(model: str) -> SystemSpec:
    base = SystemSpec()
    return dataclasses.replace(base, sim=dataclasses.replace(base.sim, model=model))


def run(bench: str, spec: SystemSpec, **params: object) -> tuple[int, float]:
    info = get_bench(bench)
    result = info.fn(BenchContext.from_spec(spec), info.params(**params))
    if not result.passed:
        bad = [k for k, ok in result.checks.items() if not ok]
        raise SystemExit(f"{bench} failed its checks under {spec.sim.model}: {bad[:5]}")
    return result.sim_events, 0.0


def probe(spec: SystemSpec) -> tuple[int, float]:
    return run("probe", spec)


def far(size: int) -> Case:
    def case(spec: SystemSpec) -> tuple[int, float]:
        return run(
            "probe", spec, case="pe-cross-cube-far", sweep=False, congestion=False, size_bytes=size
        )

    return case


def gemm(n: int, pes: int = 8, tiles: tuple[int, int, int] | None = None) -> Case:
    """``bench=gemm`` m = n = k = ``n`` on ``pes`` PEs, with the bench's default tiles or
    ``tiles`` = (block_m, block_n, block_k)."""
    names = ("block_m", "block_n", "block_k")
    blocks = {} if tiles is None else dict(zip(names, tiles, strict=True))

    def case(spec: SystemSpec) -> tuple[int, float]:
        events, _ = run("gemm", spec, m=n, n=n, k=n, pes=pes, **blocks)
        return events, 2 * n**3 / 1e9

    return case


def measure(cases: dict[str, tuple[Case, tuple[str, ...]]], repeat: int) -> None:
    print(f"{'case':<12} {'model':<6} {'cpu_s':>9} {'events':>11} {'GFLOP/cpu_s':>12}")
    for name, (case, models) in cases.items():
        best = {m: (float("inf"), 0, 0.0) for m in models}
        for _ in range(repeat):
            for model in models:
                t0 = time.process_time()
                events, gflop = case(spec_for(model))
                cpu = time.process_time() - t0
                if cpu < best[model][0]:
                    best[model] = (cpu, events, gflop)
        for model, (cpu, events, gflop) in best.items():
            rate = f"{gflop / cpu:12.3f}" if gflop else f"{'':>12}"
            print(f"{name:<12} {model:<6} {cpu:9.3f} {events:11,d} {rate}")
        if len(models) == 2:
            print(f"{name:<12} flit / fluid: {best['flit'][0] / best['fluid'][0]:.1f}x cpu, "
                  f"{best['flit'][1] / max(best['fluid'][1], 1):.0f}x events")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--big", action="store_true", help="also the flit model's big cases")
    args = parser.parse_args()
    both = MODELS
    cases: dict[str, tuple[Case, tuple[str, ...]]] = {
        "probe": (probe, both),
        "far 64 KiB": (far(64 * KIB), both),
        "far 64 MiB": (far(64 * MIB), both if args.big else ("fluid",)),
        "gemm 512": (gemm(512), both),
        "gemm 1024 tuned": (gemm(1024, tiles=TUNED), both),
    }
    if args.big:
        cases["gemm 1024"] = (gemm(1024), both)
        cases["gemm 2048/128 tuned"] = (gemm(2048, 128, TUNED), ("fluid",))
    measure(cases, args.repeat)


if __name__ == "__main__":
    main()
