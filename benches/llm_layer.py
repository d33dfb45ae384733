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

The layer's tensors and launches are :class:`~kernbench.benches.llm_program.RankModel`'s:
activations split by rows and weights by columns over the PEs' HBM slices, decode's GEMMs
weight-stationary, tiles and attention blocks growing with the size (docs/llm.md, "Mapping to
the PEs"). Tensor parallelism (``bench.tp`` = T > 1): one rank per SIP (``dist.spawn``) in
Megatron's split, the output and down projections' partial products summed over the ranks by
``dist.all_reduce`` (op ``all_reduce``) before their residual add.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernbench.bench import BenchContext, BenchResult, ModelSpec, bench, check_tp
from kernbench.core import BenchError, ConfigError
from kernbench.lang.dtypes import dtype_of
from kernbench.runtime import Device, dist
from kernbench.runtime.energy import system_energy
from kernbench.runtime.hub import Hub

from .gemm import pe_set
from .llm_ops import layer_costs
from .llm_program import PHASES, RankModel, Step, decode_splits
from .llm_reference import layer_reference, make_weights
from .llm_report import BETTER, devices, llm_result, shape_title, slowest, window_energy


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


def layer_program(p: LlmLayerParams, model: ModelSpec, rank: int = 0, world: int = 1) -> Any:
    """The host program of one device (of rank ``rank`` of ``world`` tensor-parallel ranks,
    which call it inside ``dist.spawn``): deploy the weights, the input and the cache, run the
    layer's launches, read the output back."""
    dt = dtype_of(model.dtype, "model.dtype")
    step = Step.of(p)

    def program(dev: Device) -> dict[str, Any]:
        rm = RankModel(dev, model, p.pes, rank, world, cache_by_columns=p.phase == "decode")
        # the ranks share one model and one input: the seed of SIP 0
        w, x, k_hist, v_hist = make_weights(model, p, dt, dev.sip if world == 1 else 0)
        rm.add_layer(w, k_hist, v_hist)
        tx = dev.tensor(x, placement=rm.rows, name="x")
        if world > 1:
            dist.barrier()  # the ranks start the layer together
        start, e_start = dev.now, system_energy(dev.system)
        rm.run_layer(0, tx, step, decode_splits(p, rm.n_kv) if p.phase == "decode" else 1)
        dev.synchronize()
        end, e_end = dev.now, system_energy(dev.system)
        out = tx.numpy()
        return {
            "out": out, "start": start, "end": end, "launches": rm.launches,
            "e_start": e_start, "e_end": e_end,
            "ref": layer_reference(model, p, w, x, k_hist, v_hist, dt) if rank == 0 else None,
            "slices": rm.slices,
        }  # fmt: skip

    return program


@bench("llm_layer", params=LlmLayerParams, better=BETTER,
       headline=("layer_ns", "tokens_per_s", "mfu", "mbu", "verified"))  # fmt: skip
def llm_layer(ctx: BenchContext, p: LlmLayerParams) -> BenchResult:
    """One decoder layer of the chosen model (prefill or decode) against its roofline."""
    model = ctx.model
    p.check_model(model)
    pe_set(p.pes, ctx.spec.topology.cubes, ctx.spec.hw.cube.pes)  # fail before any run
    runs = run_ranks(ctx, p, model, layer_program, f"llm_layer {model.name} {p.phase}")
    run = slowest(runs)
    layer_ns = run["end"] - run["start"]
    # one rank: every device ran its own seeded layer; else rank 0 holds the unsharded one
    refs = [r["ref"] if r["ref"] is not None else runs[0]["ref"] for r in runs]
    errs = [float(np.abs(r["out"].astype(np.float64) - ref).max())
            for r, ref in zip(runs, refs, strict=True)]  # fmt: skip
    tol = 2e-2 * max(1.0, *(float(np.abs(ref).max()) for ref in refs))
    first = {"layer_ns": layer_ns}
    tokens = p.batch * p.tokens_per_seq
    if p.phase == "prefill":
        first["ttft_ns_extrapolated"] = layer_ns * model.layers
    else:
        first["tpot_ns_extrapolated"] = layer_ns * model.layers
    first["tokens_per_s"] = tokens / (layer_ns * model.layers) * 1e9
    energy = window_energy(runs)
    first["layer_energy_uj"] = energy.total_pj * 1e-6
    first["tokens_per_j"] = tokens * devices(runs, p) / (energy.total_pj * 1e-12 * model.layers)
    costs = layer_costs(model, p, ctx.spec.hw, run["slices"])
    title = shape_title("llm_layer", model, p) + " (times in ns)"
    result = llm_result(p, model, ctx.spec.hw, runs, costs, errs, tol, title, first, "layer_ns")
    ctx.plot("llm_ops", dict(result.metrics))  # llm_ops.png: time by op beside the bounds
    result.sim_events = ctx.sim_events
    result.sim_time_ns = ctx.sim_time_ns
    return result


def run_ranks(
    ctx: BenchContext, p: Any, model: ModelSpec, make: Callable[..., Any], label: str
) -> list[dict[str, Any]]:
    """What the host program ``make(p, model, rank, world)`` returned on each rank: SIP 0
    alone for one rank, else one rank per SIP under ``dist.spawn``; ``label`` names the
    system."""
    if p.tp == 1:
        return [run for _dev, run in ctx.run_devices(make(p, model), label=label)]
    sips = ctx.spec.topology.sips
    if p.tp > sips:
        raise ConfigError(
            "bench.tp",
            f"{p.tp} ranks need {p.tp} SIPs (one each); this topology has {sips} "
            f"(topology.sips); use 1..{sips}",
        )

    def rank_fn(rank: int) -> dict[str, Any]:
        dist.init_process_group()
        return make(p, model, rank, p.tp)(dist.device())

    system = ctx.new_system(f"{label} tp{p.tp}")
    return dist.spawn(rank_fn, p.tp, system=system, hub=Hub(system.sim))
