"""Every shipped bench runs and verifies under both transfer models (issue 14), on small
systems; where a bench reports a kernel or collective time the two models agree on it within
the validated error (docs/fluid-model.md)."""

import dataclasses

import pytest

from kernbench.bench import BenchContext, discover, get_bench
from kernbench.sim.spec import MODELS, SimSpec
from kernbench.topology import SystemSpec, TopologySpec

TWO_SIPS = TopologySpec(name="2s2x2", sips=2, mesh_w=2, mesh_h=2)
ONE_SIP = TopologySpec(name="2x2", mesh_w=2, mesh_h=2)

# bench -> (topology, parameters, the metric both models must agree on, tolerance)
CASES = {
    "qkv_gemm": (ONE_SIP, {"m": 64, "k": 128, "n": 64}, "kernel_ns", 0.05),
    "qkv_gemm_multi_pe": (ONE_SIP, {"m": 64, "k": 128, "n": 192}, "kernel_ns", 0.05),
    # Pipelined loads put a PE's A and B tiles in flight together; the fluid model's single
    # rate per flow shows there (docs/fluid-model.md, gemm-512).
    "gemm": (ONE_SIP, {"m": 128, "k": 128, "n": 128, "pes": 4}, "kernel_ns", 0.07),
    "ipcq_allreduce": (ONE_SIP, {"scope": "cube", "size_bytes": 8192}, "allreduce_ns", 0.05),
    "ccl_allreduce": (TWO_SIPS, {"size_bytes": 4096}, None, None),
    "pe2pe": (TWO_SIPS, {"sizes": [256, 4096]}, None, None),
    "tp_mlp": (TWO_SIPS, {"tokens": 16, "hidden": 64, "ffn": 128}, None, None),
    "probe": (ONE_SIP, {"size_bytes": 8192, "sweep": False}, None, None),
    "llm_layer": (ONE_SIP, {"phase": "prefill", "seq_len": 32, "pes": 4}, "layer_ns", 0.05),
    "llm": (ONE_SIP, {"phase": "decode", "context": 32, "pes": 4, "layers": 1}, None, None),
    "model_check": (
        ONE_SIP,
        {"scenarios": "link-k2,all-local", "size_bytes": 4096},
        None,
        None,
    ),
}


def test_every_shipped_bench_is_covered():
    shipped = {name for name, info in discover().items() if info.fn.__module__.startswith(
        "kernbench.benches.")}  # fmt: skip
    assert shipped == set(CASES)


def run(name: str, model: str) -> dict[str, float]:
    topology, params, _metric, _tol = CASES[name]
    spec = SystemSpec(topology=topology, sim=dataclasses.replace(SimSpec(), model=model))
    info = get_bench(name)
    ctx = BenchContext.from_spec(spec, devices=tuple(range(topology.sips)))
    result = info.fn(ctx, info.params(**params))
    failed = [k for k, ok in result.checks.items() if not ok]
    assert not failed, f"{name} under {model}: {failed[:5]}"
    assert result.checks, f"{name} checked nothing"
    return result.metrics


@pytest.mark.parametrize("name", CASES)
def test_bench_runs_and_verifies_under_both_models(name):
    metrics = {m: run(name, m) for m in MODELS}
    _topology, _params, metric, tol = CASES[name]
    if metric is not None:
        flit, fluid = metrics["flit"][metric], metrics["fluid"][metric]
        assert fluid == pytest.approx(flit, rel=tol)
