"""tp_mlp: a two-layer MLP with Megatron-style tensor parallelism across SIPs.

``y = fc2(act(fc1(x)))`` with ``fc1 = ColumnParallelLinear(hidden, ffn)`` (output features
split over the ranks, activation fused, no communication) and ``fc2 = RowParallelLinear(ffn,
hidden)`` (input features split, all-reduce of the partial products, bias once). One rank per
SIP (``spawn``); every rank gets the same input and returns the full output, which must equal
the unsharded numpy MLP computed from the same fp16-rounded weights.

Metric names are listed in docs/metrics.md.
"""

from dataclasses import dataclass

import numpy as np

from kernbench.bench import HIGHER, LOWER, BenchContext, BenchResult, Table, bench
from kernbench.core import BenchError
from kernbench.lang.dtypes import dtype_of
from kernbench.runtime import dist, tp
from kernbench.runtime.hub import Hub


@dataclass(frozen=True)
class TpMlpParams:
    tokens: int = 128
    hidden: int = 512
    ffn: int = 2048
    activation: str = "gelu"
    dtype: str = "fp16"
    seed: int = 0
    ranks: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.ranks, int) or self.ranks < 0:
            raise BenchError(
                f"bench.ranks: must be 0 (every SIP) or a positive count, got {self.ranks!r}"
            )
        for key in ("tokens", "hidden", "ffn"):
            value = getattr(self, key)
            if not isinstance(value, int) or value <= 0:
                raise BenchError(f"bench.{key}: must be a positive integer, got {value!r}")
        if self.activation not in tp.ACTIVATIONS:
            raise BenchError(
                f"bench.activation: must be one of relu, gelu or empty, got {self.activation!r}"
            )
        dtype_of(self.dtype, "bench.dtype")


def reference(x: np.ndarray, w1, b1, w2, b2, activation: str, dt: np.dtype) -> np.ndarray:
    """The unsharded MLP in numpy: fp32 math on the device-rounded values; the hidden
    activation is rounded to ``dt`` as the device stores it."""
    f = np.float32
    h = x.astype(f) @ w1.astype(dt).astype(f).T + b1
    if activation == "relu":
        h = np.maximum(h, 0)
    elif activation == "gelu":
        h = tp.gelu_reference(h)
    h = h.astype(dt).astype(f)
    return h @ w2.astype(dt).astype(f).T + b2


@bench(
    "tp_mlp",
    params=TpMlpParams,
    better={
        "tflops": HIGHER,
        "max_abs_err": LOWER,
        "tolerance": None,
        "ranks": None,
        "verified": HIGHER,
    },
    headline=("forward_ns", "tflops", "verified"),
)
def tp_mlp(ctx: BenchContext, p: TpMlpParams) -> BenchResult:
    """Two-layer MLP, tensor-parallel over the SIPs, checked against numpy."""
    sips = ctx.spec.topology.sips
    world = p.ranks or sips
    if world > sips:
        raise BenchError(
            f"bench.ranks: {world} ranks need {world} SIPs (one each); this topology has {sips} "
            f"(topology.sips); use 0 or 1..{sips}"
        )
    if p.ffn % world:
        raise BenchError(f"bench.ffn: {p.ffn} is not divisible by the {world} ranks")
    dt = dtype_of(p.dtype, "bench.dtype")
    rng = np.random.default_rng(p.seed)
    x = rng.standard_normal((p.tokens, p.hidden)).astype(dt)
    w1 = (rng.standard_normal((p.ffn, p.hidden)) / np.sqrt(p.hidden)).astype(np.float32)
    b1 = (0.1 * rng.standard_normal(p.ffn)).astype(np.float32)
    w2 = (rng.standard_normal((p.hidden, p.ffn)) / np.sqrt(p.ffn)).astype(np.float32)
    b2 = (0.1 * rng.standard_normal(p.hidden)).astype(np.float32)

    def rank_fn(rank: int) -> dict[str, float]:
        dist.init_process_group()
        tp.initialize_model_parallel()
        dev = dist.device()
        fc1 = tp.ColumnParallelLinear(p.hidden, p.ffn, w1, b1, activation=p.activation, dtype=dt)
        fc2 = tp.RowParallelLinear(p.ffn, p.hidden, w2, b2, dtype=dt)
        tx = dev.tensor(x, dt, placement=tp.on_cube("replicate"), name="x")
        dist.barrier()
        t0 = dev.now
        h = fc1(tx)
        t1 = dev.now
        y = fc2(h)
        t2 = dev.now
        out = y.numpy()
        return {"out": out, "fc1_ns": t1 - t0, "fc2_ns": t2 - t1, "forward_ns": t2 - t0}

    system = ctx.new_system("tp_mlp")
    ran = dist.spawn(rank_fn, world, system=system, hub=Hub(system.sim))
    ref = reference(x, w1, b1, w2, b2, p.activation, dt)
    scale = float(np.abs(ref).max()) or 1.0
    # fp16 / bf16 operands with fp32 accumulation: the device rounds the hidden activation
    # exactly as the reference does, so the difference is accumulation order only; bound it by
    # a few units of fp16 rounding of the output's magnitude (bf16: 8x coarser).
    tol = scale * (2e-3 if dt.itemsize == 2 and dt != np.float16 else 5e-4) * 4
    result = BenchResult()
    errs = []
    table = Table(
        f"tp_mlp: {p.tokens} tokens, {p.hidden} -> {p.ffn} -> {p.hidden}, {world} rank(s)",
        ["rank", "fc1_ns", "fc2_ns (incl. all-reduce)", "forward_ns", "max_abs_err"],
    )
    for rank, r in enumerate(ran):
        err = float(np.abs(r["out"].astype(np.float64) - ref).max())
        errs.append(err)
        prefix = f"rank{rank}/" if world > 1 else ""
        for k in ("fc1_ns", "fc2_ns", "forward_ns"):
            result.metrics[prefix + k] = r[k]
        table.rows.append(
            [rank, round(r["fc1_ns"], 1), round(r["fc2_ns"], 1), round(r["forward_ns"], 1), err]
        )
    forward = max(r["forward_ns"] for r in ran)
    flops = 2 * p.tokens * p.hidden * p.ffn * 2
    result.metrics.update(
        forward_ns=forward,
        tflops=flops / forward / 1e3,
        max_abs_err=max(errs),
        tolerance=tol,
        ranks=float(world),
    )
    result.checks["verified"] = max(errs) <= tol
    result.metrics["verified"] = float(result.checks["verified"])
    result.tables.append(table)
    result.sim_events = ctx.sim_events
    result.sim_time_ns = ctx.sim_time_ns
    return result
