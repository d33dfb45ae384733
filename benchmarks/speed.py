"""Speed of the simulator: wall time and simulated events per second.

Run: ``.venv/bin/python benchmarks/speed.py`` (figures go to docs/performance.md). Each case
runs ``--repeat`` times and the best wall time is kept; bare SimPy is measured by the same
script on the same machine for comparison.
"""

import argparse
import time
from collections.abc import Callable

import simpy

from kernbench.bench import BenchContext, get_bench
from kernbench.core import KIB, MIB
from kernbench.runtime import PeDmaMsg, System
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("| case | wall_s | events | events/s |")
    print("| --- | ---: | ---: | ---: |")
    for name, fn in CASES.items():
        wall, events = best_of(args.repeat, fn)
        print(f"| {name} | {wall:.3f} | {events:,} | {events / wall:,.0f} |")


if __name__ == "__main__":
    main()
