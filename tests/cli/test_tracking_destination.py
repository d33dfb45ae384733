"""Where a run is logged: a tracking server that does not answer is reported at once and the
results stay on disk; a sweep's job logs where its parent run is."""

import json
import socket
import sys

import pytest
from mlflow.tracking import MlflowClient
from tracking_helpers import (
    SMALL_PROBE,
    TINY,
    compose_cfg,
    run_in_process,
    run_kernbench,
    runs_in,
    sqlite_uri,
)

from kernbench.cli.sweep import SweepInfo
from kernbench.cli.tracking import Tracker, check_server
from kernbench.core.errors import ConfigError

main_module = sys.modules["kernbench.cli.main"]


def closed_port() -> int:
    """A localhost port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def no_server(uri: str, port: int, key: str = "tracking.uri") -> str:
    return (
        f"{key}: no MLflow tracking server answers at {uri} (Connection refused); start one, "
        f"e.g. `mlflow server --host 127.0.0.1 --port {port}`, or log to the local store with "
        "tracking=local"
    )


def test_an_unreachable_tracking_server_is_reported_and_the_run_still_written(tmp_path):
    port = closed_port()
    uri = f"http://127.0.0.1:{port}"
    proc = run_kernbench(
        tmp_path, *SMALL_PROBE, "tracking=server", f"tracking.uri={uri}", "hydra.run.dir=run"
    )
    assert proc.returncode == 0, proc.stderr
    message = no_server(uri, port)
    assert f"warning: MLflow tracking failed, results stay on disk: {message}" in proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["status"], summary["tracking_error"]) == ("ok", message)
    assert "mlflow" not in summary or not summary["mlflow"]
    assert (tmp_path / "run" / "report.md").exists()
    assert not (tmp_path / "outputs").exists()  # no fallback to a local store


def test_the_check_names_the_environment_variable_when_the_uri_came_from_it(tmp_path, monkeypatch):
    port = closed_port()
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    outcome, output = run_in_process(compose_cfg(*TINY), tmp_path / "run", tmp_path)
    assert outcome.exit_code == 0, output
    assert outcome.summary["tracking_error"] == no_server(uri, port, "MLFLOW_TRACKING_URI")


def test_a_listening_server_passes_the_check_and_other_stores_are_not_checked():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_server(f"http://127.0.0.1:{server.getsockname()[1]}", "tracking.uri")
    check_server("sqlite:///nowhere/mlflow.db", "tracking.uri")
    port = closed_port()
    with pytest.raises(ConfigError) as info:
        Tracker(f"http://127.0.0.1:{port}/", "e")
    assert info.value.key == "tracking.uri"


def test_a_sweep_job_logs_where_its_parent_run_is(tmp_path, monkeypatch):
    """The job follows the store and experiment the launcher published, not its own
    environment."""
    parent_uri = sqlite_uri(tmp_path / "parent.db")
    tracker = Tracker(parent_uri, "the-sweep")
    parent_id = tracker.start_run("sweep-tiny-x", {}, {"kernbench.role": "sweep"})
    info = SweepInfo("x", str(tmp_path), parent_id, parent_uri, "the-sweep", job_num=0)
    monkeypatch.setattr(main_module, "current_sweep", lambda: info)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri(tmp_path / "elsewhere.db"))
    outcome, output = run_in_process(compose_cfg(*TINY), tmp_path / "job", tmp_path)
    assert outcome.exit_code == 0, output
    assert outcome.summary["mlflow"]["uri"] == parent_uri
    child = MlflowClient(tracking_uri=parent_uri).get_run(outcome.summary["mlflow"]["run_id"])
    assert child.data.tags["mlflow.parentRunId"] == parent_id
    assert child.data.tags["kernbench.role"] == "job"
    assert len(runs_in(parent_uri, "the-sweep")) == 2
    assert not (tmp_path / "elsewhere.db").exists()
