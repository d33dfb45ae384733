"""Faults in ranks and kernels end the run as FAILED in a real MLflow store, with the error
naming the rank or who waits on what; never a hang or a raw traceback."""

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from tracking_helpers import (
    SEARCHPATH,
    TESTS_DIR,
    artifact_text,
    compose_cfg,
    run_in_process,
    sqlite_uri,
)

TWO_SIPS = ("topology=2x2", "topology.sips=2", "topology.mesh_w=1", "topology.mesh_h=1")


def logged_run(uri: str, outcome) -> Run:
    return MlflowClient(tracking_uri=uri).get_run(outcome.summary["mlflow"]["run_id"])


@pytest.fixture
def store(tmp_path):
    return sqlite_uri(tmp_path / "mlflow.db")


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("raise", "rank 1 raised ValueError: rank 1 lost its shard"),
        (
            "deadlock",
            "still wait: kernel wait_for_rank0 on sip1.cube0.pe0: tl.recv from sip0.cube0.pe0 "
            "(nothing sent); sip1: synchronize",
        ),
    ],
)
def test_a_faulty_rank_ends_the_run_failed_with_its_error(
    store, tmp_path, monkeypatch, fault, message
):
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    cfg = compose_cfg(
        SEARCHPATH, "bench=faulty", f"bench.fault={fault}", *TWO_SIPS, f"tracking.uri={store}"
    )
    outcome, output = run_in_process(cfg, tmp_path / "run", launch_dir=tmp_path)
    assert (outcome.status, outcome.exit_code) == ("failed", 2)
    assert message in outcome.error
    assert "Traceback" not in output
    run = logged_run(store, outcome)
    assert run.info.status == "FAILED"
    assert message in run.data.tags["kernbench.error"]
    assert message in artifact_text(store, run.info.run_id, "error.txt", tmp_path / "dl")


def test_a_world_size_the_topology_cannot_host_fails_the_run(store, tmp_path):
    cfg = compose_cfg("bench=tp_mlp", "bench.ranks=4", *TWO_SIPS, f"tracking.uri={store}")
    outcome, _ = run_in_process(cfg, tmp_path / "run", launch_dir=tmp_path)
    assert (outcome.status, outcome.exit_code) == ("failed", 2)
    assert outcome.error.startswith(
        "bench.ranks: 4 ranks need 4 SIPs (one each); this topology has 2"
    )
    assert logged_run(store, outcome).info.status == "FAILED"


def test_a_tile_that_does_not_fit_tcm_fails_the_run_naming_the_sizes(store, tmp_path):
    cfg = compose_cfg(
        "bench=gemm", "topology=2x2", "bench.m=4096", "bench.n=4096", "bench.k=64",
        "bench.block_m=4096", "bench.block_n=4096", "bench.block_k=64", f"tracking.uri={store}",
    )  # fmt: skip
    outcome, _ = run_in_process(cfg, tmp_path / "run", launch_dir=tmp_path)
    assert (outcome.status, outcome.exit_code) == ("failed", 2)
    assert outcome.error.startswith("bench.block_m: tiles of 4096x64x4096 ")
    assert "accumulator 64.0 MiB" in outcome.error and "hw.pe.tcm_bytes" in outcome.error
    assert logged_run(store, outcome).info.status == "FAILED"
