"""A tiny user bench: the host writes a buffer to one HBM slice and reads it back."""

from dataclasses import dataclass

import numpy as np

from kernbench.bench import BenchResult, Table, bench
from kernbench.core.errors import BenchError
from kernbench.runtime import MemoryReadMsg, MemoryWriteMsg


@dataclass(frozen=True)
class TinyParams:
    size_bytes: int = 4096
    repeats: int = 2

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise BenchError(f"bench.repeats: must be >= 1, got {self.repeats}")


@bench("tiny", params=TinyParams, headline=("tiny/read_ns", "tiny/write_ns"))
def tiny(ctx, params: TinyParams) -> BenchResult:
    """Host write then read of ``size_bytes`` at cube 0, PE 0, ``repeats`` times."""
    system = ctx.new_system()
    addr = ctx.topology.address.hbm(0, 0, 0)
    data = (np.arange(params.size_bytes) % 251).astype(np.uint8)
    rows, checks = [], {}
    for i in range(params.repeats):
        ctx.progress(i, params.repeats, "tiny")
        wr = system.execute(MemoryWriteMsg(addr, params.size_bytes, data=data))
        rd = system.execute(MemoryReadMsg(addr, params.size_bytes))
        rows.append([i, wr.total_ns, rd.total_ns])
        checks[f"readback/{i}"] = bool(rd.ok and np.array_equal(rd.data, data))
    ctx.progress(params.repeats, params.repeats, "tiny")
    return BenchResult(
        metrics={"tiny/write_ns": rows[0][1], "tiny/read_ns": rows[0][2]},
        tables=[Table("host round trips", ["repeat", "write_ns", "read_ns"], rows)],
        checks=checks,
        notes=["host to cube 0 PE 0"],
    )


@bench("boom", params=TinyParams)
def boom(ctx, params: TinyParams) -> BenchResult:
    """Fails with an unexpected exception, as a bug in a bench would."""
    raise RuntimeError("boom")
