"""llm: a Llama-style model (the ``model`` config group) end to end on the first ``pes`` PEs
of each SIP: ``bench.layers`` decoder layers (0: all of ``model.layers``), then the final
RMSNorm and the LM head on each sequence's last token. Prefill gives the time to first token,
decode the time of one output token (docs/llm.md; metric names in docs/metrics.md).

Every layer has its own seeded weights and KV cache; the layers and the head are
:class:`~kernbench.benches.llm_program.RankModel`'s, as in benches/llm_layer.py, and tensor
parallelism (``bench.tp``) splits them the same way, the LM head by vocabulary columns (each
rank computes its ``vocab / tp`` logits; gathering them for sampling is not modelled). The
hidden state after the last layer and the logits are checked against numpy.

When ``bench.layers`` is below ``model.layers`` the layers are identical in shape, so the
bench reports ``ttft_ns_extrapolated`` (``tpot_ns_extrapolated``): the simulated layers' time
scaled to ``model.layers``, plus the head; with every layer simulated, ``ttft_ns``
(``tpot_ns``) is the simulated time itself.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from kernbench.bench import BenchContext, BenchResult, ModelSpec, bench
from kernbench.core import BenchError, ConfigError
from kernbench.lang.dtypes import dtype_of
from kernbench.runtime import Device, dist
from kernbench.runtime.energy import system_energy

from .gemm import pe_set
from .llm_layer import LlmLayerParams, run_ranks
from .llm_ops import head_costs, layer_costs
from .llm_program import RankModel, Step, decode_splits
from .llm_reference import (
    cache_history,
    head_reference,
    head_weights,
    layer_reference,
    layer_weights,
)
from .llm_report import BETTER, devices, llm_result, shape_title, slowest, window_energy


@dataclass(frozen=True)
class LlmParams(LlmLayerParams):
    layers: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.layers, bool) or not isinstance(self.layers, int) or self.layers < 0:
            raise BenchError(
                f"bench.layers: must be a non-negative integer (0: all), got {self.layers!r}"
            )

    def check_model(self, model: ModelSpec) -> None:
        super().check_model(model)
        if self.layers > model.layers:
            raise ConfigError(
                "bench.layers",
                f"{self.layers} layers asked, model {model.name!r} has {model.layers} "
                f"(model.layers); use 1..{model.layers}, or 0 for all",
            )
        if model.vocab % self.tp:
            raise ConfigError(
                "bench.tp",
                f"{self.tp} ranks cannot split model.vocab ({model.vocab}) of model "
                f"{model.name!r} evenly for the LM head",
            )

    def layer_count(self, model: ModelSpec) -> int:
        """Layers simulated: ``layers``, or all of the model's."""
        return self.layers or model.layers


def model_program(p: LlmParams, model: ModelSpec, rank: int = 0, world: int = 1) -> Any:
    """The host program of one device (rank ``rank`` of ``world``): deploy every layer and the
    head, run the step through them, read the hidden state and the logits back."""
    dt = dtype_of(model.dtype, "model.dtype")
    step = Step.of(p)

    def program(dev: Device) -> dict[str, Any]:
        rm = RankModel(dev, model, p.pes, rank, world, cache_by_columns=p.phase == "decode")
        # the ranks share one model and one input: the seed of SIP 0
        rng = np.random.default_rng(p.seed + (dev.sip if world == 1 else 0))
        x = rng.standard_normal((step.rows, model.hidden)).astype(dt)
        want = x
        for _ in range(p.layer_count(model)):
            w = layer_weights(model, dt, rng)
            k_hist, v_hist = cache_history(model, p, dt, rng)
            rm.add_layer(w, k_hist, v_hist)
            if rank == 0:  # the reference, layer by layer, once
                want = layer_reference(model, p, w, want, k_hist, v_hist, dt).astype(dt)
        norm, lm_head = head_weights(model, dt, rng)
        rm.add_head(norm, lm_head)
        tx = dev.tensor(x, placement=rm.rows, name="x")
        splits = decode_splits(p, rm.n_kv) if p.phase == "decode" else 1
        if world > 1:
            dist.barrier()  # the ranks start together
        start, e_start = dev.now, system_energy(dev.system)
        for i in range(len(rm.layers)):
            rm.run_layer(i, tx, step, splits)
        layers_launched = len(dev.launches)
        logits = rm.run_head(tx, step)
        dev.synchronize()
        end, e_end = dev.now, system_energy(dev.system)  # before the reads back
        return {
            "out": tx.numpy(), "logits": logits.numpy(), "start": start, "end": end,
            "e_start": e_start, "e_end": e_end,
            "layers_end": dev.launches[layers_launched - 1].end_ns, "launches": rm.launches,
            "slices": rm.slices,
            "ref": want.astype(np.float64) if rank == 0 else None,
            "ref_logits": head_reference(model, want, norm, lm_head, step.tokens, dt)
            if rank == 0 else None,
        }  # fmt: skip

    return program


def model_errors(runs: list[dict[str, Any]], tp: int) -> tuple[list[float], float]:
    """Each run's largest error, hidden state and logits (its ``vocab / tp`` columns), against
    its reference (one rank: every device ran its own seeded model; else rank 0 holds the
    unsharded one), and the tolerance: ``2e-2`` of the largest reference value, at least 1."""
    errs, top = [], 1.0
    for i, r in enumerate(runs):
        own = r["ref"] is not None
        ref, logits = (
            (r["ref"], r["ref_logits"]) if own else (runs[0]["ref"], runs[0]["ref_logits"])
        )
        cols = logits.shape[1] // tp
        rank = 0 if tp == 1 else i
        part = logits[:, rank * cols : (rank + 1) * cols]
        errs.append(max(float(np.abs(r["out"].astype(np.float64) - ref).max()),
                        float(np.abs(r["logits"] - part).max())))  # fmt: skip
        top = max(top, float(np.abs(ref).max()), float(np.abs(logits).max()))
    return errs, 2e-2 * top


@bench("llm", params=LlmParams, better=BETTER,
       headline=("ttft_ns*", "tpot_ns*", "tokens_per_s", "mfu", "mbu", "verified"))  # fmt: skip
def llm(ctx: BenchContext, p: LlmParams) -> BenchResult:
    """The model's layers, final norm and LM head (prefill or one decode step)."""
    model = ctx.model
    p.check_model(model)
    pe_set(p.pes, ctx.spec.topology.cubes, ctx.spec.hw.cube.pes)  # fail before any run
    n = p.layer_count(model)
    runs = run_ranks(ctx, p, model, model_program, f"llm {model.name} {p.phase} {n} layers")
    run = slowest(runs)
    errs, tol = model_errors(runs, p.tp)
    layers_ns = run["layers_end"] - run["start"]
    head_ns = run["end"] - run["layers_end"]
    whole = layers_ns * model.layers / n + head_ns
    exact = "" if n == model.layers else "_extrapolated"
    first = {"layers": float(n), "layer_ns": layers_ns / n, "head_ns": head_ns}
    tokens = p.batch * p.tokens_per_seq
    first[f"{'ttft' if p.phase == 'prefill' else 'tpot'}_ns{exact}"] = whole
    first["tokens_per_s"] = tokens / whole * 1e9
    # the step's energy, scaled with its time to all the layers (at the step's average power)
    step = window_energy(runs).total_pj
    first["step_energy_uj"] = step * 1e-6
    span = run["end"] - run["start"]
    first["tokens_per_j"] = tokens * devices(runs, p) / (step * whole / span * 1e-12)
    costs = {op: c * n for op, c in layer_costs(model, p, ctx.spec.hw, run["slices"]).items()}
    for op, c in head_costs(model, p, ctx.spec.hw, run["slices"]).items():
        costs[op] = costs[op] + c if op in costs else c
    title = shape_title("llm", model, p) + f", {n} of {model.layers} layers (times in ns)"
    result = llm_result(p, model, ctx.spec.hw, runs, costs, errs, tol, title, first, "span_ns")
    ctx.plot("llm_ops", dict(result.metrics))
    result.sim_events = ctx.sim_events
    result.sim_time_ns = ctx.sim_time_ns
    return result
