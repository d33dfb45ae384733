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
padded (``Placement.pad``); the caches split by rows (prefill) or columns (decode). Every op
runs on all the PEs; decode's GEMMs are weight-stationary (:func:`gemm`), tiles and attention
blocks grow with the size (docs/llm.md, "Mapping to the PEs").

Tensor parallelism (``bench.tp`` = T > 1): one rank per SIP (``dist.spawn``), Megatron's split.
Rank r holds query heads r·H/T.. and KV heads r·KV/T.. (columns of wq, wk, wv, its shard of the
KV cache), rows of wo for those heads, ffn/T columns of wg and wu and the rows of wd for them;
norms and residual adds run on the full residual stream on every rank. The output projection
and the down projection give partial products, summed over the ranks by ``dist.all_reduce``
(op ``all_reduce``) before their residual add.
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
from kernbench.core import BenchError, ConfigError
from kernbench.lang.dtypes import dtype_of
from kernbench.runtime import Device, Placement, dist
from kernbench.runtime.hub import Hub

from .attention_kernels import (
    decode_partials,
    launch_flash_attn_prefill,
    launch_flash_decode,
    launch_kv_cache_write,
)
from .gemm import pe_set
from .llm_kernels import launch_residual_add, launch_rmsnorm, launch_rope, launch_swiglu
from .llm_ops import Op, layer_costs, layer_ops
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
    splits: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise BenchError(f"bench.phase: must be prefill or decode, got {self.phase!r}")
        for key in ("batch", "seq_len", "context", "tp", "pes", "splits"):
            value = getattr(self, key)
            low = 0 if key == "splits" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                what = "a non-negative integer (0: auto)" if low == 0 else "a positive integer"
                raise BenchError(f"bench.{key}: must be {what}, got {value!r}")

    def check_model(self, model: ModelSpec) -> None:
        check_tp(model, self.tp)
        if model.ffn % self.tp:
            raise ConfigError(
                "bench.tp",
                f"{self.tp} ranks cannot split model.ffn ({model.ffn}) of model "
                f"{model.name!r} evenly",
            )

    @property
    def tokens_per_seq(self) -> int:
        """Tokens each sequence runs through the layer: the prompt, or one new token."""
        return self.seq_len if self.phase == "prefill" else 1


def _block(dim: int, cap: int = 256) -> int:
    """A GEMM tile side for ``dim``: the power of two covering it, at least 16, at most
    ``cap``. Larger tiles than the tuned GEMM's 128 halve the loads (DMAs, flows and ``tl``
    calls) per FLOP at full size; 3 stages of 256-wide fp16 tiles take 0.8 MiB of TCM."""
    b = 16
    while b < dim and b < cap:
        b *= 2
    return b


def gemm(dev: Device, a: Any, b: Any, c: Any, pes: list[tuple[int, int]]) -> Any:
    """``c = a @ b`` with the matmul kernel on ``pes``.

    Few rows (decode: ``M`` at most 16): weight-stationary, one program per PE on a
    ``BLOCK_N = N / len(pes)`` column block, which is the block of ``b`` (and ``c``) its own
    HBM slice holds under the weights' column placement: the weights are read
    once, from every slice at once, and never cross a cube. Else tiles of up to 256 in the
    diagonal order of :func:`matmul_kernel`."""
    (m, k), n = a.shape, b.shape[1]
    if m <= 16 and n % len(pes) == 0:
        bm, bn, bk = _block(m), n // len(pes), _block(k, 512)
    else:
        bm, bn, bk = _block(m), _block(n), _block(k)
    grid = (-(-m // bm) * -(-n // bn),)
    return dev.launch(
        matmul_kernel, grid, a, b, c, m, n, k, *a.stride(), *b.stride(), *c.stride(),
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, pes=pes,
    )  # fmt: skip


def attn_block(seq_len: int) -> int:
    """Flash-attention block (queries and keys) for a prompt of ``seq_len``: 16 up to 256
    tokens, 64 up to 1024, then 128 — fewer, larger ``tl.dot`` calls at full size."""
    return 16 if seq_len <= 256 else 64 if seq_len <= 1024 else 128


def decode_splits(p: "LlmLayerParams", kv_heads: int) -> int:
    """Context splits of flash decoding: ``bench.splits``, or (0) enough for one program per
    PE (``pes / (kv_heads * batch)``, at least 1), each split at least 64 positions."""
    if p.splits:
        return p.splits
    want = max(1, p.pes // (kv_heads * p.batch))
    return max(1, min(want, (p.context + 1) // 64))


def shard(
    model: ModelSpec, w: dict[str, np.ndarray], k_hist: Any, v_hist: Any, rank: int, world: int
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Rank ``rank``'s part of the weights and caches in Megatron's split (module docstring);
    the whole of them for one rank."""
    if world == 1:
        return w, k_hist, v_hist
    h, kvd, ffn = (n // world for n in (model.heads * model.head_dim, model.kv_dim, model.ffn))
    qs, kvs, fs = (slice(rank * n, (rank + 1) * n) for n in (h, kvd, ffn))
    cols = {"wq": qs, "wk": kvs, "wv": kvs, "wg": fs, "wu": fs}
    rows = {"wo": qs, "wd": fs}
    out = {n: np.ascontiguousarray(a[:, cols[n]]) if n in cols else a[rows[n]] if n in rows
           else a for n, a in w.items()}  # fmt: skip
    return out, np.ascontiguousarray(k_hist[..., kvs]), np.ascontiguousarray(v_hist[..., kvs])


def layer_program(p: LlmLayerParams, model: ModelSpec, rank: int = 0, world: int = 1) -> Any:
    """The host program of one device (of rank ``rank`` of ``world`` tensor-parallel ranks,
    which call it inside ``dist.spawn``): deploy the weights, the input and the cache, run the
    layer's launches in order, read the output back."""
    dt = dtype_of(model.dtype, "model.dtype")
    t_seq = p.tokens_per_seq
    tokens = p.batch * t_seq
    max_ctx = p.seq_len if p.phase == "prefill" else p.context + 1
    pos0 = 0 if p.phase == "prefill" else p.context
    hid, n_h, n_kv = model.hidden, model.heads // world, model.kv_heads // world
    h, kvd, ffn = n_h * model.head_dim, n_kv * model.head_dim, model.ffn // world

    def program(dev: Device) -> dict[str, Any]:
        pes = pe_set(p.pes, dev.cubes, dev.pes_per_cube)
        cube_ids = tuple(sorted({c for c, _ in pes}))
        pe_ids = tuple(sorted({i for _, i in pes}))
        where = {"cube_ids": cube_ids, "pe_ids": pe_ids, "pad": True}
        rows, cols = Placement("row", "row", **where), Placement("col", "col", **where)
        # the ranks share one model and one input: the seed of SIP 0
        w, x, k_hist, v_hist = make_weights(model, p, dt, dev.sip if world == 1 else 0)
        ws, ks, vs = shard(model, w, k_hist, v_hist, rank, world)
        tw = {name: dev.tensor(a, placement=cols, name=name) for name, a in ws.items()
              if a.ndim == 2}  # fmt: skip
        tn = {name: dev.tensor(a, placement=rows, name=name) for name, a in ws.items()
              if a.ndim == 1}  # fmt: skip
        tx = dev.tensor(x, placement=rows, name="x")
        # decode: a KV head's columns on the PEs its split programs run on (see docs/llm.md)
        cache = Placement(*(("row", "row") if p.phase == "prefill" else ("col", "col")),
                          cube_ids=cube_ids, pe_ids=pe_ids)  # fmt: skip
        kc = dev.tensor(ks, placement=cache, name="k_cache")
        vc = dev.tensor(vs, placement=cache, name="v_cache")

        def act(width: int, name: str) -> Any:
            return dev.empty((tokens, width), model.dtype, placement=rows, name=name)

        hn, q, k, v, attn = act(hid, "h"), act(h, "q"), act(kvd, "k"), act(kvd, "v"), act(h, "o")
        proj, gate, up = act(hid, "proj"), act(ffn, "gate"), act(ffn, "up")
        eps = model.norm_eps
        if world > 1:
            dist.barrier()  # the ranks start the layer together
        start = dev.now
        launches: dict[Op, list[Any]] = {op: [] for op in layer_ops(world)}

        def run(op: Op, *launched: Any) -> None:
            launches[op].extend(launched)

        def all_reduce(t: Any) -> None:
            if world > 1:
                first = len(dev.launches)
                dist.all_reduce(t)
                run("all_reduce", *dev.launches[first:])

        run("norm", launch_rmsnorm(dev, tx, tn["norm1"], hn, eps, pes=pes))
        run("qkv", *(gemm(dev, hn, tw[n], out, pes) for n, out in (("wq", q), ("wk", k),
                                                                  ("wv", v))))  # fmt: skip
        run("rope", launch_rope(dev, q, k, t_seq, n_h, n_kv, pos0, model.rope_theta, pes=pes))
        run("attention", launch_kv_cache_write(dev, k, v, kc, vc, t_seq, pos0, pes=pes))
        if p.phase == "prefill":
            run("attention", launch_flash_attn_prefill(
                dev, q, kc, vc, attn, p.batch, p.seq_len, n_h, n_kv, kv_rows=max_ctx,
                block_m=attn_block(p.seq_len), block_n=attn_block(p.seq_len),
                pes=pes))  # fmt: skip
        else:
            splits = decode_splits(p, n_kv)
            parts = decode_partials(dev, p.batch, n_h, model.head_dim, splits, rows)
            run("attention", *launch_flash_decode(
                dev, q, kc, vc, attn, p.context + 1, n_h, n_kv, parts, splits,
                block_n=attn_block(p.context), pes=pes))  # fmt: skip
        run("out_proj", gemm(dev, attn, tw["wo"], proj, pes))
        all_reduce(proj)
        run("residual", launch_residual_add(dev, proj, tx, tx, pes=pes))
        run("norm", launch_rmsnorm(dev, tx, tn["norm2"], hn, eps, pes=pes))
        run("mlp", gemm(dev, hn, tw["wg"], gate, pes), gemm(dev, hn, tw["wu"], up, pes))
        run("mlp", launch_swiglu(dev, gate, up, gate, pes=pes))
        run("mlp", gemm(dev, gate, tw["wd"], proj, pes))
        all_reduce(proj)
        run("residual", launch_residual_add(dev, proj, tx, tx, pes=pes))
        dev.synchronize()
        end = dev.now
        out = tx.numpy()
        return {
            "out": out, "start": start, "end": end, "launches": launches,
            "ref": layer_reference(model, p, w, x, k_hist, v_hist, dt) if rank == 0 else None,
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
        "all_reduce_share": None,
    },
    headline=("layer_ns", "tokens_per_s", "mfu", "mbu", "verified"),
)
def llm_layer(ctx: BenchContext, p: LlmLayerParams) -> BenchResult:
    """One decoder layer of the chosen model (prefill or decode) against its roofline."""
    model = ctx.model
    p.check_model(model)
    pe_set(p.pes, ctx.spec.topology.cubes, ctx.spec.hw.cube.pes)  # fail before any run
    runs = run_ranks(ctx, p, model)
    hw = ctx.spec.hw
    result = BenchResult()
    # the layer takes as long as its slowest rank; its op times partition that rank's timeline
    run = max(runs, key=lambda r: r["end"] - r["start"])
    layer_ns = run["end"] - run["start"]
    times = op_times(run["start"], run["launches"])
    costs = layer_costs(model, p, hw, run["slices"])
    ref = runs[0]["ref"]
    errs = [float(np.abs(r["out"].astype(np.float64) - ref).max()) for r in runs]
    err = max(errs)
    tol = 2e-2 * max(1.0, float(np.abs(ref).max()))
    tokens = p.batch * p.tokens_per_seq
    # every rank does its costs at once: the layer's work and the peak of all ranks' PEs
    flops = p.tp * sum(c.flops for c in costs.values())
    nbytes = p.tp * sum(c.bytes for c in costs.values())
    peak = hw.pe.gemm_tflops_fp16 * 1e3 * p.pes * p.tp  # FLOP per ns
    bw = hw.hbm.effective_bw_gbs * run["slices"] * p.tp  # bytes per ns
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
        + f", {p.pes} PEs"
        + (f" on each of {p.tp} tensor-parallel ranks (one per SIP)" if p.tp > 1 else "")
        + " (times in ns)",
        ["op", "time", "share", "GFLOP", "MB", "compute bound", "hbm bound", "bound", "ratio"],
    )
    for op in layer_ops(p.tp):
        c = costs[op]
        t = times[op]
        roof = c.roofline_ns
        m[f"op/{op}_ns"] = t
        m[f"op/{op}_roofline_ns"] = roof
        m[f"op/{op}_roofline_ratio"] = roof / t if t else 0.0
        table.rows.append([
            op, round(t, 1), f"{t / layer_ns:.1%}", round(c.flops / 1e9, 4),
            round(c.bytes / 1e6, 4), round(c.compute_ns, 1), round(c.hbm_ns, 1), c.bound,
            round(roof / t, 3) if t else 0.0,
        ])  # fmt: skip
    if p.tp > 1:
        m["all_reduce_share"] = times["all_reduce"] / layer_ns
        for rank, (r, e) in enumerate(zip(runs, errs, strict=True)):
            m[f"rank{rank}/layer_ns"] = r["end"] - r["start"]
            m[f"rank{rank}/max_abs_err"] = e
    m["max_abs_err"] = err
    m["tolerance"] = tol
    result.checks["verified"] = err <= tol
    result.checks["mfu_at_most_1"] = m["mfu"] <= 1.0
    result.checks["mbu_at_most_1"] = m["mbu"] <= 1.0
    m["verified"] = float(result.checks["verified"])
    result.tables.append(table)
    ctx.plot("llm_ops", dict(m))  # llm_ops.png: time by op beside the roofline bounds
    result.sim_events = ctx.sim_events
    result.sim_time_ns = ctx.sim_time_ns
    return result


def run_ranks(ctx: BenchContext, p: LlmLayerParams, model: ModelSpec) -> list[dict[str, Any]]:
    """What :func:`layer_program` returned on each rank: SIP 0 alone for one rank, else one
    rank per SIP under ``dist.spawn``."""
    label = f"llm_layer {model.name} {p.phase}"
    if p.tp == 1:
        return [run for _dev, run in ctx.run_devices(layer_program(p, model), label=label)]
    sips = ctx.spec.topology.sips
    if p.tp > sips:
        raise ConfigError(
            "bench.tp",
            f"{p.tp} ranks need {p.tp} SIPs (one each); this topology has {sips} "
            f"(topology.sips); use 1..{sips}",
        )

    def rank_fn(rank: int) -> dict[str, Any]:
        dist.init_process_group()
        return layer_program(p, model, rank, p.tp)(dist.device())

    system = ctx.new_system(f"{label} tp{p.tp}")
    return dist.spawn(rank_fn, p.tp, system=system, hub=Hub(system.sim))
