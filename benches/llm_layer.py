"""llm_layer: one decoder layer of a Llama-style model (the ``model`` config group) in prefill
or decode, on the first ``pes`` PEs of each SIP, checked against numpy; each op's time against
its analytic roofline (docs/llm.md; metric names in docs/metrics.md).

The layer, as kernels in launch order (benches/llm_kernels.py, benches/attention_kernels.py,
the GEMMs with :func:`~kernbench.benches.matmul_kernels.matmul_kernel`):

- ``norm``: RMSNorm of the residual stream x;
- ``qkv``: the Q, K and V projections (three GEMMs);
- ``rope``: rotary embedding of Q and K at their positions;
- ``attention``: the new K and V written into the KV cache, then causal flash attention over
  the prompt (prefill) or split-context flash decoding over the cache (decode);
- ``out_proj``: the output projection; ``residual``: x += attention;
- ``norm`` again, ``mlp``: gate and up GEMMs, SiLU(gate) * up, down GEMM; ``residual``.

Placement: activations split by rows and weights by columns over the PEs' HBM slices, rows
padded (``Placement.pad``); the caches split by rows. Every op runs on all the PEs.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from kernbench.bench import (
    HIGHER,
    LOWER,
    BenchContext,
    BenchResult,
    ModelSpec,
    Table,
    bench,
    check_tp,
)
from kernbench.core import BenchError
from kernbench.lang.dtypes import dtype_of
from kernbench.runtime import Device, Placement

from .attention_kernels import (
    decode_partials,
    launch_flash_attn_prefill,
    launch_flash_decode,
    launch_kv_cache_write,
)
from .gemm import pe_set
from .llm_kernels import launch_residual_add, launch_rmsnorm, launch_rope, launch_swiglu
from .llm_ops import OPS, Op, layer_costs
from .llm_reference import layer_reference, make_weights
from .matmul_kernels import matmul_kernel

PHASES = ("prefill", "decode")


@dataclass(frozen=True)
class LlmLayerParams:
    phase: str = "prefill"
    batch: int = 1
    seq_len: int = 128
    context: int = 128
    tp: int = 1
    pes: int = 8
    splits: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise BenchError(f"bench.phase: must be prefill or decode, got {self.phase!r}")
        for key in ("batch", "seq_len", "context", "pes", "splits"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BenchError(f"bench.{key}: must be a positive integer, got {value!r}")
        if self.tp != 1:
            raise BenchError(
                f"bench.tp: tensor parallelism across SIPs is not built yet; use 1, got {self.tp!r}"
            )

    def check_model(self, model: ModelSpec) -> None:
        check_tp(model, self.tp)

    @property
    def tokens_per_seq(self) -> int:
        """Tokens each sequence runs through the layer: the prompt, or one new token."""
        return self.seq_len if self.phase == "prefill" else 1


def _block(dim: int) -> int:
    """A GEMM tile side for ``dim``: 128 (the tuned GEMM's) or the power of two covering it."""
    b = 16
    while b < dim and b < 128:
        b *= 2
    return b


def gemm(dev: Device, a: Any, b: Any, c: Any, pes: list[tuple[int, int]]) -> Any:
    """``c = a @ b`` with the matmul kernel on ``pes``."""
    (m, k), n = a.shape, b.shape[1]
    bm, bn, bk = _block(m), _block(n), _block(k)
    grid = (-(-m // bm) * -(-n // bn),)
    return dev.launch(
        matmul_kernel, grid, a, b, c, m, n, k, *a.stride(), *b.stride(), *c.stride(),
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, pes=pes,
    )  # fmt: skip


def layer_program(p: LlmLayerParams, model: ModelSpec) -> Any:
    """The host program of one device: deploy the weights, the input and the cache, run the
    layer's launches in order, read the output back."""
    dt = dtype_of(model.dtype, "model.dtype")
    t_seq = p.tokens_per_seq
    tokens = p.batch * t_seq
    max_ctx = p.seq_len if p.phase == "prefill" else p.context + 1
    pos0 = 0 if p.phase == "prefill" else p.context
    h, kvd, hid = model.heads * model.head_dim, model.kv_dim, model.hidden

    def program(dev: Device) -> dict[str, Any]:
        pes = pe_set(p.pes, dev.cubes, dev.pes_per_cube)
        cube_ids = tuple(sorted({c for c, _ in pes}))
        pe_ids = tuple(sorted({i for _, i in pes}))
        where = {"cube_ids": cube_ids, "pe_ids": pe_ids, "pad": True}
        rows, cols = Placement("row", "row", **where), Placement("col", "col", **where)
        w, x, k_hist, v_hist = make_weights(model, p, dt, dev.sip)
        tw = {name: dev.tensor(a, placement=cols, name=name) for name, a in w.items()
              if a.ndim == 2}  # fmt: skip
        tn = {name: dev.tensor(a, placement=rows, name=name) for name, a in w.items()
              if a.ndim == 1}  # fmt: skip
        tx = dev.tensor(x, placement=rows, name="x")
        cache = Placement("row", "row", cube_ids=cube_ids, pe_ids=pe_ids)
        kc = dev.tensor(k_hist, placement=cache, name="k_cache")
        vc = dev.tensor(v_hist, placement=cache, name="v_cache")

        def act(width: int, name: str) -> Any:
            return dev.empty((tokens, width), model.dtype, placement=rows, name=name)

        hn, q, k, v, attn = act(hid, "h"), act(h, "q"), act(kvd, "k"), act(kvd, "v"), act(h, "o")
        proj, gate, up = act(hid, "proj"), act(model.ffn, "gate"), act(model.ffn, "up")
        eps = model.norm_eps
        start = dev.now
        launches: dict[Op, list[Any]] = {op: [] for op in OPS}

        def run(op: Op, *launched: Any) -> None:
            launches[op].extend(launched)

        run("norm", launch_rmsnorm(dev, tx, tn["norm1"], hn, eps, pes=pes))
        run("qkv", *(gemm(dev, hn, tw[n], out, pes) for n, out in (("wq", q), ("wk", k),
                                                                  ("wv", v))))  # fmt: skip
        run("rope", launch_rope(dev, q, k, t_seq, model.heads, model.kv_heads, pos0,
                                model.rope_theta, pes=pes))  # fmt: skip
        run("attention", launch_kv_cache_write(dev, k, v, kc, vc, t_seq, pos0, pes=pes))
        if p.phase == "prefill":
            run("attention", launch_flash_attn_prefill(
                dev, q, kc, vc, attn, p.batch, p.seq_len, model.heads, model.kv_heads,
                kv_rows=max_ctx, pes=pes))  # fmt: skip
        else:
            parts = decode_partials(dev, p.batch, model.heads, model.head_dim, p.splits, rows)
            run("attention", *launch_flash_decode(
                dev, q, kc, vc, attn, p.context + 1, model.heads, model.kv_heads, parts,
                p.splits, pes=pes))  # fmt: skip
        run("out_proj", gemm(dev, attn, tw["wo"], proj, pes))
        run("residual", launch_residual_add(dev, proj, tx, tx, pes=pes))
        run("norm", launch_rmsnorm(dev, tx, tn["norm2"], hn, eps, pes=pes))
        run("mlp", gemm(dev, hn, tw["wg"], gate, pes), gemm(dev, hn, tw["wu"], up, pes))
        run("mlp", launch_swiglu(dev, gate, up, gate, pes=pes))
        run("mlp", gemm(dev, gate, tw["wd"], proj, pes))
        run("residual", launch_residual_add(dev, proj, tx, tx, pes=pes))
        dev.synchronize()
        end = dev.now
        out = tx.numpy()
        return {
            "out": out, "start": start, "end": end, "launches": launches,
            "ref": layer_reference(model, p, w, x, k_hist, v_hist, dt),
            "slices": len(pes),
        }  # fmt: skip

    return program


def op_times(start: float, launches: dict[Op, list[Any]]) -> dict[Op, float]:
    """Each op's share of the layer's timeline: from the end of what ran before it to the end
    of its last launch (launches run one after another, in stream order)."""
    order = sorted(
        ((launch.end_ns, op) for op, ls in launches.items() for launch in ls), key=lambda e: e[0]
    )
    times = {op: 0.0 for op in launches}
    last = start
    for end, op in order:
        times[op] += end - last
        last = end
    return times


@bench(
    "llm_layer",
    params=LlmLayerParams,
    better={
        "*tokens_per_s": HIGHER,
        "*mfu": HIGHER,
        "*mbu": HIGHER,
        "*max_abs_err": LOWER,
        "*verified": HIGHER,
        "*roofline*": None,
        "*tolerance": None,
    },
    headline=("layer_ns", "tokens_per_s", "mfu", "mbu", "verified"),
)
def llm_layer(ctx: BenchContext, p: LlmLayerParams) -> BenchResult:
    """One decoder layer of the chosen model (prefill or decode) against its roofline."""
    model = ctx.model
    pe_set(p.pes, ctx.spec.topology.cubes, ctx.spec.hw.cube.pes)  # fail before any run
    ran = ctx.run_devices(layer_program(p, model), label=f"llm_layer {model.name} {p.phase}")
    hw = ctx.spec.hw
    result = BenchResult()
    run = ran[0][1]
    layer_ns = run["end"] - run["start"]
    times = op_times(run["start"], run["launches"])
    costs = layer_costs(model, p, hw, run["slices"])
    ref = run["ref"]
    err = float(np.abs(run["out"].astype(np.float64) - ref).max())
    tol = 2e-2 * max(1.0, float(np.abs(ref).max()))
    tokens = p.batch * p.tokens_per_seq
    flops = sum(c.flops for c in costs.values())
    nbytes = sum(c.bytes for c in costs.values())
    peak = hw.pe.gemm_tflops_fp16 * 1e3 * p.pes  # FLOP per ns
    bw = hw.hbm.effective_bw_gbs * run["slices"]  # bytes per ns
    m = result.metrics
    m["layer_ns"] = layer_ns
    if p.phase == "prefill":
        m["ttft_ns_extrapolated"] = layer_ns * model.layers
        m["tokens_per_s"] = tokens / (layer_ns * model.layers) * 1e9
    else:
        m["tpot_ns_extrapolated"] = layer_ns * model.layers
        m["tokens_per_s"] = p.batch / (layer_ns * model.layers) * 1e9
    m["mfu"] = flops / layer_ns / peak
    m["mbu"] = nbytes / layer_ns / bw
    table = Table(
        f"llm_layer: {model.name} {p.phase}, batch {p.batch}, "
        + (f"{p.seq_len} tokens" if p.phase == "prefill" else f"context {p.context}")
        + f", {p.pes} PEs (times in ns)",
        ["op", "time", "share", "GFLOP", "MB", "compute bound", "hbm bound", "bound", "ratio"],
    )
    for op in OPS:
        c = costs[op]
        t = times[op]
        roof = max(c.compute_ns, c.hbm_ns)
        m[f"op/{op}_ns"] = t
        m[f"op/{op}_roofline_ns"] = roof
        m[f"op/{op}_roofline_ratio"] = roof / t if t else 0.0
        table.rows.append([
            op, round(t, 1), f"{t / layer_ns:.1%}", round(c.flops / 1e9, 4),
            round(c.bytes / 1e6, 4), round(c.compute_ns, 1), round(c.hbm_ns, 1),
            "compute" if c.compute_ns >= c.hbm_ns else "hbm", round(roof / t, 3) if t else 0.0,
        ])  # fmt: skip
    m["max_abs_err"] = err
    m["tolerance"] = tol
    result.checks["verified"] = err <= tol
    result.checks["mfu_at_most_1"] = m["mfu"] <= 1.0
    result.checks["mbu_at_most_1"] = m["mbu"] <= 1.0
    m["verified"] = float(result.checks["verified"])
    result.tables.append(table)
    result.sim_events = ctx.sim_events
    result.sim_time_ns = ctx.sim_time_ns
    return result
