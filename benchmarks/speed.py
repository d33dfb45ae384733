"""Speed of the simulator: wall time and simulated events per second.

Run: ``.venv/bin/python benchmarks/speed.py`` (figures go to docs/performance.md). Each case
runs ``--repeat`` times and the best wall time is kept; bare SimPy is measured by the same
script on the same machine for comparison. ``--trace`` measures instead the cost of
observation: the default probe with ``sim.trace=off``, ``summary`` and ``full``, the levels
interleaved in every repeat, both the simulation alone and with the run's observation
artifacts written (links.csv, plots, trace.json.gz). ``--gc`` measures the default probe with
mlflow loaded (as in a tracked run), on the heap as it is and on a frozen heap
(``kernbench.cli.heap.frozen_heap``), interleaved, best CPU time of each. ``--commands`` times
the default probe end to end, ``python -m kernbench bench=probe sim.trace=<level>`` with
tracking on (a store that exists) and off, the six commands interleaved in each of
``--repeat`` rounds; it reports the median and the fastest of each, and the median over the
rounds of each command's time against the ``off`` command of the same round. ``--plots``
times each plot of the default probe in one warm process (matplotlib's version matters).
"""

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import simpy

from kernbench.bench import BenchContext, get_bench
from kernbench.core import KIB, MIB
from kernbench.report import write_observation
from kernbench.runtime import PeDmaMsg, System
from kernbench.sim.spec import TRACE_LEVELS
from kernbench.topology import SystemSpec, Topology


def best_of(repeat: int, fn: Callable[[], int]) -> tuple[float, int]:
    best, events = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        events = fn()
        best = min(best, time.perf_counter() - t0)
    return best, events


def default_probe() -> int:
    info = get_bench("probe")
    ctx = BenchContext.from_spec(SystemSpec())
    return info.fn(ctx, info.params()).sim_events


def far_transfer() -> int:
    topo = Topology(SystemSpec())
    system = System(topology=topo)
    last = topo.spec.topology.cubes - 1
    system.execute(PeDmaMsg(0, 0, 0, topo.address.hbm(0, last, 7), 1 * MIB))
    return system.sim.events


def all_pes_local() -> int:
    topo = Topology(SystemSpec())
    system = System(topology=topo)
    a = topo.address
    msgs = [PeDmaMsg(0, c, p, a.hbm(0, c, p), 16 * KIB) for c in range(16) for p in range(8)]
    system.execute_all(msgs)
    return system.sim.events


def bare_simpy(n: int = 500_000) -> int:
    """Events per second of SimPy itself: one process yielding ``n`` timeouts."""
    env = simpy.Environment()

    def ticker(env: simpy.Environment):
        for _ in range(n):
            yield env.timeout(1.0)

    env.process(ticker(env))
    env.run()
    return n


CASES = {
    "full default probe (4x4, 32 KiB, sweep + congestion)": default_probe,
    "one 1 MiB transfer, cube 0 -> cube 15": far_transfer,
    "128 PEs x 16 KiB to own HBM, concurrent": all_pes_local,
    "bare SimPy: 500k timeouts in one process": bare_simpy,
}


def probe_at(level: str, out_dir: Path | None) -> tuple[float, float, int]:
    """(simulation s, artifact-writing s, spans) of the default probe at trace ``level``."""
    spec = SystemSpec()
    spec = dataclasses.replace(spec, sim=dataclasses.replace(spec.sim, trace=level))
    info = get_bench("probe")
    t0 = time.perf_counter()
    ctx = BenchContext.from_spec(spec)
    result = info.fn(ctx, info.params())
    t1 = time.perf_counter()
    if out_dir is None:
        return t1 - t0, 0.0, 0
    obs = ctx.observations()
    write_observation(out_dir, {"metrics": result.metrics}, obs, ctx.plots)
    return t1 - t0, time.perf_counter() - t1, obs.get("events", 0)


def trace_cost(repeat: int) -> None:
    import kernbench.report.plots  # noqa: F401  (matplotlib's import is paid once per process)

    sim = {level: float("inf") for level in TRACE_LEVELS}
    total = dict(sim)
    spans = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            for level in TRACE_LEVELS:
                sim_s, _, _ = probe_at(level, None)
                sim[level] = min(sim[level], sim_s)
                run_s, write_s, spans[level] = probe_at(level, Path(tmp))
                total[level] = min(total[level], run_s + write_s)
    print("| sim.trace | simulation s | vs off | + artifacts s | vs off | spans |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for level in TRACE_LEVELS:
        print(
            f"| {level} | {sim[level]:.3f} | {sim[level] / sim['off']:.2f}x | "
            f"{total[level]:.3f} | {total[level] / total['off']:.2f}x | {spans[level]:,} |"
        )


def gc_cost(repeat: int) -> None:
    import gc

    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (what a tracked run has loaded)

    from kernbench.cli.heap import frozen_heap

    best = {"as it is": float("inf"), "frozen": float("inf")}
    tracked = len(gc.get_objects())
    for _ in range(repeat):
        for mode in best:
            gc.collect()
            t0 = time.process_time()
            if mode == "frozen":
                with frozen_heap():
                    default_probe()
            else:
                default_probe()
            best[mode] = min(best[mode], time.process_time() - t0)
    print(f"objects the collector tracks with mlflow loaded: {tracked:,}")
    print("| heap | default probe, CPU s |")
    print("| --- | ---: |")
    for mode, seconds in best.items():
        print(f"| {mode} | {seconds:.3f} |")


def command_cost(repeat: int, tracking_modes: tuple[str, ...] = ("local", "off")) -> None:
    import statistics
    import subprocess
    import sys

    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(  # the store exists before the first timed command
            [sys.executable, "-m", "kernbench", "bench=probe", "topology=2x2", "bench.sweep=false"],
            cwd=tmp,
            capture_output=True,
            check=True,
        )
        for _ in range(repeat):
            for tracking in (f"tracking={mode}" for mode in tracking_modes):
                for level in TRACE_LEVELS:
                    t0 = time.perf_counter()
                    subprocess.run(
                        [sys.executable, "-m", "kernbench", "bench=probe", f"sim.trace={level}",
                         tracking],
                        cwd=tmp,
                        capture_output=True,
                        check=True,
                    )  # fmt: skip
                    times.setdefault((tracking, level), []).append(time.perf_counter() - t0)
    # Per round: each command against the `off` command run just before it, which shared the
    # machine's load of that moment more closely than the medians of all rounds do.
    print("| tracking | sim.trace | median s | vs off | fastest s | vs off | per round, median |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for (tracking, level), values in times.items():
        med, fast = statistics.median(values), min(values)
        off = times[(tracking, "off")]
        rounds = statistics.median(v / o for v, o in zip(values, off, strict=True))
        print(
            f"| {tracking.split('=')[1]} | {level} | {med:.2f} | "
            f"{med / statistics.median(off):.2f}x | {fast:.2f} | {fast / min(off):.2f}x | "
            f"{rounds:.2f}x |"
        )


def plot_cost(repeat: int) -> None:
    """Best time of each plot of the default probe (``sim.trace=summary``), drawn by the same
    warm process, after the import of matplotlib and the plot workers' warm-up figure."""
    import matplotlib

    spec = SystemSpec()
    spec = dataclasses.replace(spec, sim=dataclasses.replace(spec.sim, trace="summary"))
    info = get_bench("probe")
    ctx = BenchContext.from_spec(spec)
    info.fn(ctx, info.params())
    obs = ctx.observations()
    t0 = time.perf_counter()
    from kernbench.report import plots, stats

    imported = time.perf_counter() - t0
    plots.warm_up()
    rows = stats.link_rows(obs)
    tasks = [*(task for _, task in ctx.plots.entries)]
    tasks += [("link_heatmap", (obs["topology"], rows)), ("busy_bars", (rows,))]
    best = dict.fromkeys((name for name, _ in tasks), float("inf"))
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            for name, args in tasks:
                t0 = time.perf_counter()
                getattr(plots, name)(*args, Path(tmp))
                best[name] = min(best[name], time.perf_counter() - t0)
    print(f"matplotlib {matplotlib.__version__}, import {imported:.2f} s")
    print("| plot | best s |")
    print("| --- | ---: |")
    for name, value in best.items():
        print(f"| {name} | {value:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trace", action="store_true", help="measure the cost of sim.trace")
    parser.add_argument("--gc", action="store_true", help="measure the frozen heap's effect")
    parser.add_argument(
        "--commands", action="store_true", help="time the default probe command per trace level"
    )
    parser.add_argument("--plots", action="store_true", help="time each plot of the probe")
    parser.add_argument(
        "--tracking",
        choices=("both", "local", "off"),
        default="both",
        help="with --commands: the tracking modes to time (default both)",
    )
    args = parser.parse_args()
    if args.plots:
        plot_cost(args.repeat)
        return
    if args.commands:
        command_cost(args.repeat, ("local", "off") if args.tracking == "both" else (args.tracking,))
        return
    if args.gc:
        gc_cost(args.repeat)
        return
    if args.trace:
        trace_cost(args.repeat)
        return
    print("| case | wall_s | events | events/s |")
    print("| --- | ---: | ---: | ---: |")
    for name, fn in CASES.items():
        wall, events = best_of(args.repeat, fn)
        print(f"| {name} | {wall:.3f} | {events:,} | {events / wall:,.0f} |")


if __name__ == "__main__":
    main()
