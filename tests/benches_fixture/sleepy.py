"""A user bench that blocks in wall-clock time, so a test can interrupt a run mid-bench."""

import time
from dataclasses import dataclass
from pathlib import Path

from kernbench.bench import BenchResult, bench
from kernbench.core.errors import BenchError


@dataclass(frozen=True)
class SleepyParams:
    seconds: float = 20.0  # how long to block at most, s
    step_s: float = 0.05  # sleep granularity, s: a signal is handled within one step
    ready_file: str = ""  # touched when the bench starts blocking; empty: none
    plot: bool = False  # ask for a plot before blocking (drawn meanwhile by a plot worker)

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise BenchError(f"bench.seconds: must be >= 0, got {self.seconds}")
        if self.step_s <= 0:
            raise BenchError(f"bench.step_s: must be > 0, got {self.step_s}")


@bench("sleepy", params=SleepyParams)
def sleepy(ctx, params: SleepyParams) -> BenchResult:
    """Sleep for ``seconds`` of wall-clock time in steps of ``step_s``; simulates nothing."""
    if params.plot:
        ctx.plot("probe_latency_breakdown", {"a/formula_ns": 3.0, "a/wire_ns": 2.0})
    if params.ready_file:
        Path(params.ready_file).touch()
    deadline = time.monotonic() + params.seconds
    steps = 0
    while time.monotonic() < deadline:
        time.sleep(min(params.step_s, max(deadline - time.monotonic(), 0.0)))
        steps += 1
    return BenchResult(metrics={"sleepy/steps": steps})
