"""A user bench whose ranks go wrong on purpose: one raises, or one waits for a message that is
never sent. For the tests of how such faults end a run."""

from dataclasses import dataclass

import kernbench.lang as tl
from kernbench.bench import BenchResult, bench
from kernbench.core.errors import BenchError
from kernbench.runtime import dist

FAULTS = ("raise", "deadlock")


@dataclass(frozen=True)
class FaultyParams:
    fault: str = "raise"

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise BenchError(f"bench.fault: one of {', '.join(FAULTS)}, got {self.fault!r}")


@tl.jit
def wait_for_rank0(src: tuple) -> None:
    tl.recv(src)


@bench("faulty", params=FaultyParams)
def faulty(ctx, p: FaultyParams) -> BenchResult:
    """Rank 1 raises, or rank 1's kernel receives from rank 0, which sends nothing."""

    def rank(r: int) -> None:
        dist.init_process_group()
        if r == 1 and p.fault == "raise":
            raise ValueError("rank 1 lost its shard")
        if r == 1:
            dev = dist.device()
            dev.launch(wait_for_rank0, (1,), (0, 0, 0), pes=[(0, 0)])
            dev.synchronize()

    system = ctx.new_system("faulty")
    dist.spawn(rank, ctx.spec.topology.sips, system=system)
    return BenchResult()
