"""The LLM benches through the real Hydra composition of conf/ (the model group, the
``topology=4x4_2sip`` preset the issue names) and ``kernbench.cli.run``."""

import json

import pytest
from test_gemm_benches_cli import run_captured


@pytest.mark.parametrize(
    "overrides",
    [
        ("bench=llm_layer", "bench.phase=decode", "bench.context=40", "bench.batch=2"),
        ("bench=llm", "bench.phase=prefill", "bench.seq_len=16"),
    ],
    ids=["llm_layer-decode", "llm-prefill"],
)
def test_tensor_parallel_runs_on_the_two_sip_preset_verify_and_report_the_all_reduce(
    tmp_path, overrides
):
    outcome, out, _err = run_captured(
        tmp_path, *overrides, "topology=4x4_2sip", "bench.tp=2", "bench.pes=2", "sim.trace=off"
    )
    assert outcome.exit_code == 0, outcome.error
    summary = json.loads((tmp_path / "summary.json").read_text())
    m = summary["metrics"]
    assert summary["params"]["topology.sips"] == 2 and summary["params"]["model.name"] == "tiny"
    assert m["verified"] == 1.0 and m["max_abs_err"] <= m["tolerance"]
    assert 0 < m["all_reduce_share"] < 1
    assert {"rank0/max_abs_err", "rank1/max_abs_err"} <= set(m)
    assert "tensor-parallel ranks" in out  # the op table's title says how it ran


def test_more_layers_than_the_model_has_is_a_config_error_naming_the_key(tmp_path):
    outcome, _out, err = run_captured(tmp_path, "bench=llm", "bench.layers=5")
    assert outcome.exit_code == 2
    assert "bench.layers" in outcome.error and "model.layers" in outcome.error
    assert "bench.layers" in err


@pytest.mark.parametrize("bench", ["llm_layer", "llm"])
def test_without_tensor_parallelism_every_sip_runs_its_own_model_and_verifies(tmp_path, bench):
    # device=all (the default) on two SIPs: two independent devices, each with its own seed,
    # each checked against its own reference
    outcome, _out, _err = run_captured(
        tmp_path, f"bench={bench}", "topology=4x4_2sip", "bench.seq_len=16", "bench.pes=2",
        "sim.trace=off",
    )  # fmt: skip
    assert outcome.exit_code == 0, outcome.error
    m = json.loads((tmp_path / "summary.json").read_text())["metrics"]
    assert m["verified"] == 1.0 and 0 < m["max_abs_err"] <= m["tolerance"]
