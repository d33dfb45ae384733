"""Single runs logged to a real SQLite MLflow store, read back with ``MlflowClient``: what a run
records, where the store lands, failed and interrupted runs, and a tracking server's REST API
(what the MLflow UI shows)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from tracking_helpers import (
    REPO,
    RUN_METRICS,
    SEARCHPATH,
    SMALL_PROBE,
    TESTS_DIR,
    TINY,
    artifact_names,
    artifact_text,
    command_env,
    compose_cfg,
    download_artifact,
    kernbench_argv,
    only_run,
    run_in_process,
    run_kernbench,
    sqlite_uri,
)

import kernbench
from kernbench.report.plot_workers import usable_cpus

# Every run logs these; plots and statistics files of the observation come on top.
ARTIFACTS = {"config.yaml", "summary.json", "report.md"}


def git_head() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
    )
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def logged_params(summary: dict) -> dict[str, str]:
    """The params MLflow holds for a run: the summary's flattened config, as strings."""
    return {k: str(v) for k, v in summary["params"].items()}


def expected_metrics(summary: dict) -> dict[str, float]:
    return {**summary["metrics"], **{k: float(summary[k]) for k in RUN_METRICS}}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite store for the in-process runs; each test finds its run by id."""
    return sqlite_uri(tmp_path_factory.mktemp("store") / "mlflow.db")


def logged_run(uri: str, outcome) -> Run:
    run_id = outcome.summary["mlflow"]["run_id"]
    return MlflowClient(tracking_uri=uri).get_run(run_id)


@pytest.fixture(scope="module")
def probe_run(store, tmp_path_factory):
    """The small probe run in-process: (its MLflow run, summary, out dir)."""
    tmp = tmp_path_factory.mktemp("probe_run")
    cfg = compose_cfg(*SMALL_PROBE, f"tracking.uri={store}")
    outcome, output = run_in_process(cfg, tmp / "run", launch_dir=tmp)
    assert (outcome.status, outcome.exit_code) == ("ok", 0), output
    summary = json.loads((tmp / "run" / "summary.json").read_text())
    return logged_run(store, outcome), summary, tmp / "run"


def test_run_params_are_the_flattened_resolved_config(probe_run, store):
    run, summary, _ = probe_run
    assert run.data.params == logged_params(summary)
    assert run.data.params["topology.name"] == "2x2"
    assert run.data.params["hw.hbm.pc_bw_gbs"] == "32.0"
    assert run.data.params["bench.size_bytes"] == "32768"
    assert run.data.params["bench.sweep"] == "False"
    assert run.data.params["tracking.uri"] == store
    assert run.data.params["model.name"] == "tiny"  # the default model group
    assert run.data.params["model.kv_heads"] == "2"


def test_run_tags_identify_bench_config_code_and_outcome(probe_run):
    run, summary, _ = probe_run
    tags = run.data.tags
    assert tags["kernbench.bench"] == "probe"
    assert tags["kernbench.role"] == "run"
    assert tags["kernbench.config_hash"] == summary["config_hash"]
    assert tags["kernbench.git_commit"] == git_head()
    assert tags["kernbench.version"] == kernbench.__version__
    assert tags["kernbench.status"] == "ok"
    assert tags["kernbench.overrides"] == ""  # no Hydra command line in-process
    for absent in ("kernbench.error", "kernbench.sweep_id", "kernbench.job_num"):
        assert absent not in tags
    assert "mlflow.parentRunId" not in tags


def test_run_metrics_are_the_summary_metrics_plus_run_metrics(probe_run):
    run, summary, _ = probe_run
    metrics = run.data.metrics
    assert len(summary["metrics"]) > 10
    assert metrics == pytest.approx(expected_metrics(summary), rel=1e-12)
    assert metrics["sim_time_ns"] > 0
    assert metrics["sim_events"] > 0


def test_run_artifacts_are_the_files_on_disk(probe_run, store, tmp_path):
    run, _, out_dir = probe_run
    names = artifact_names(store, run.info.run_id)
    assert names >= ARTIFACTS
    assert "error.txt" not in names
    for name in names:
        logged = download_artifact(store, run.info.run_id, name, tmp_path / "dl")
        assert logged.read_bytes() == (out_dir / name).read_bytes(), name


def test_run_name_experiment_status_and_summary_link(probe_run, store):
    run, summary, _ = probe_run
    experiment = MlflowClient(tracking_uri=store).get_experiment(run.info.experiment_id)
    assert experiment.name == "probe"
    assert run.info.run_name == f"probe-2x2-{summary['config_hash']}"
    assert run.info.status == "FINISHED"
    assert run.info.end_time >= run.info.start_time
    assert summary["mlflow"] == {
        "uri": store,
        "experiment": "probe",
        "experiment_id": experiment.experiment_id,
        "run_id": run.info.run_id,
    }


def test_config_hash_and_params_do_not_depend_on_how_a_number_is_spelled(
    probe_run, store, tmp_path
):
    """``hw.hbm.pc_bw_gbs=32`` is the default ``32.0`` (a float field): the same system, so the
    same config hash, run name and logged param."""
    default_run, default_summary, _ = probe_run
    cfg = compose_cfg(*SMALL_PROBE, "hw.hbm.pc_bw_gbs=32", f"tracking.uri={store}")
    outcome, output = run_in_process(cfg, tmp_path / "run", launch_dir=tmp_path)
    assert outcome.exit_code == 0, output
    assert outcome.summary["metrics"] == default_summary["metrics"]
    run = logged_run(store, outcome)
    assert run.data.params["hw.hbm.pc_bw_gbs"] == "32.0"
    assert run.data.tags["kernbench.config_hash"] == default_summary["config_hash"]
    assert run.info.run_name == default_run.info.run_name


def test_tracking_experiment_overrides_the_bench_name(store, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    cfg = compose_cfg(*TINY, f"tracking.uri={store}", "tracking.experiment=my-study")
    outcome, output = run_in_process(cfg, tmp_path / "run", launch_dir=tmp_path)
    assert outcome.exit_code == 0, output
    run = only_run(store, "my-study")
    assert run.info.run_id == outcome.summary["mlflow"]["run_id"]
    assert run.data.tags["kernbench.bench"] == "tiny"
    assert run.info.run_name.startswith("tiny-2x2-")
    assert MlflowClient(tracking_uri=store).get_experiment_by_name("tiny") is None


def test_mlflow_tracking_uri_env_overrides_the_default_store(store, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    outcome, output = run_in_process(compose_cfg(*TINY), tmp_path / "run", launch_dir=tmp_path)
    assert outcome.exit_code == 0, output
    assert outcome.summary["mlflow"]["uri"] == store
    assert logged_run(store, outcome).info.status == "FINISHED"
    assert not (tmp_path / "outputs").exists()


def test_tracking_uri_beats_the_environment(store, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri(tmp_path / "env.db"))
    cfg = compose_cfg(*TINY, f"tracking.uri={store}")
    outcome, output = run_in_process(cfg, tmp_path / "run", launch_dir=tmp_path)
    assert outcome.exit_code == 0, output
    assert logged_run(store, outcome).info.status == "FINISHED"
    assert not (tmp_path / "env.db").exists()


def test_tracking_off_creates_no_store(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = compose_cfg(*TINY, "tracking=off")
    outcome, output = run_in_process(cfg, tmp_path / "run", launch_dir=tmp_path)
    assert outcome.exit_code == 0, output
    assert "mlflow" not in outcome.summary
    assert "logged to MLflow" not in output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert not list(tmp_path.rglob("*.db"))


# --- failed runs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("bench.size_bytes=0", "bench.size_bytes: must be > 0, got 0"),
        ("+bench.foo=1", "bench.foo: unknown parameter; valid: "),
        ("+hw.hbm.foo=1", "hw.hbm.foo: unknown key; valid: "),
        ("device=sip:7", "device: "),
    ],
    ids=["bad-value", "added-bench-key", "added-hw-key", "device"],
)
def test_a_config_error_creates_no_run(store, tmp_path, override, message):
    """One rule: whatever the config error, it is reported (exit 2, summary.json on disk) and
    no MLflow run is made of it."""
    experiment = f"config-error-{override.split('=')[0].strip('+')}"
    cfg = compose_cfg(
        *SMALL_PROBE, override, f"tracking.uri={store}", f"tracking.experiment={experiment}"
    )
    outcome, output = run_in_process(cfg, tmp_path / "run", launch_dir=tmp_path)
    assert (outcome.status, outcome.exit_code) == ("failed", 2), output
    assert outcome.error.startswith(message)
    assert "mlflow" not in outcome.summary
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["status"], summary["error"]) == ("failed", outcome.error)
    assert MlflowClient(tracking_uri=store).get_experiment_by_name(experiment) is None


@pytest.mark.parametrize("key", ["bench.foo=1", "+bench.foo=1"])
def test_a_misspelt_bench_key_creates_no_run_however_it_is_spelt(tmp_path, key):
    proc = run_kernbench(tmp_path, "bench=probe", key, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: bench.foo: ") and "valid: " in last
    assert not (tmp_path / "outputs").exists()  # no store: nothing was logged


def test_bench_exception_is_logged_failed_with_its_traceback(store, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    cfg = compose_cfg(*TINY, "bench.name=boom", f"tracking.uri={store}")
    outcome, output = run_in_process(cfg, tmp_path / "run", launch_dir=tmp_path)
    assert (outcome.status, outcome.exit_code) == ("failed", 1)
    run = only_run(store, "boom")
    assert run.info.run_id == outcome.summary["mlflow"]["run_id"]
    assert run.info.status == "FAILED"
    assert run.data.tags["kernbench.error"] == "RuntimeError: boom"
    assert run.data.tags["kernbench.status"] == "failed"
    error_txt = artifact_text(store, run.info.run_id, "error.txt", tmp_path / "dl")
    assert error_txt.startswith("Traceback (most recent call last):")
    assert error_txt.rstrip().endswith("RuntimeError: boom")


# --- the command line, default store --------------------------------------------------------


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """``python -m kernbench`` started in a fresh directory with the default store:
    (launch dir, completed process, summary)."""
    launch = tmp_path_factory.mktemp("cli_run")
    proc = run_kernbench(
        launch, *TINY, "bench.repeats=3", f"hydra.run.dir={launch / 'runs' / 'one'}"
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((launch / "runs" / "one" / "summary.json").read_text())
    return launch, proc, summary


def test_command_line_run_lands_in_the_launch_dirs_store(cli_run):
    launch, proc, summary = cli_run
    outputs = launch / "outputs"
    # .mlflow.db.lock: the lock two commands starting at once take to create the store
    assert sorted(p.name for p in outputs.iterdir()) == [
        ".mlflow.db.lock",
        "mlartifacts",
        "mlflow.db",
    ]
    assert not list((launch / "runs").rglob("mlflow.db"))
    uri = sqlite_uri(outputs / "mlflow.db")
    run = only_run(uri, "tiny")
    run_id = run.info.run_id
    assert summary["mlflow"] == {
        "uri": sqlite_uri(outputs.resolve() / "mlflow.db"),
        "experiment": "tiny",
        "experiment_id": run.info.experiment_id,
        "run_id": run_id,
    }
    artifacts = outputs.resolve() / "mlartifacts" / run_id / "artifacts"
    assert run.info.artifact_uri == artifacts.as_uri()
    assert {p.name for p in artifacts.iterdir()} == artifact_names(uri, run_id)
    assert artifact_names(uri, run_id) >= ARTIFACTS
    assert f"logged to MLflow: experiment 'tiny', run {run_id}" in proc.stdout


def test_a_run_directory_holds_no_empty_log(cli_run):
    launch, _, _ = cli_run
    run_dir = launch / "runs" / "one"
    assert (run_dir / "summary.json").is_file()
    assert not list(run_dir.glob("*.log"))


def test_command_line_run_records_choices_overrides_and_metrics(cli_run):
    launch, _, summary = cli_run
    run = only_run(sqlite_uri(launch / "outputs" / "mlflow.db"), "tiny")
    tags = run.data.tags
    assert run.info.status == "FINISHED"
    assert run.info.run_name == f"tiny-2x2-{summary['config_hash']}"
    assert tags["kernbench.config_hash"] == summary["config_hash"]
    assert tags["kernbench.choice.topology"] == "2x2"
    assert tags["kernbench.choice.bench"] == "tiny"
    assert tags["kernbench.choice.hw"] == "default"
    assert tags["kernbench.choice.tracking"] == "local"
    assert tags["kernbench.overrides"] == "bench=tiny topology=2x2 bench.repeats=3"
    assert (tags["kernbench.role"], tags["kernbench.status"]) == ("run", "ok")
    assert tags["kernbench.git_commit"] == git_head()
    assert tags["kernbench.version"] == kernbench.__version__
    assert run.data.params == logged_params(summary)
    assert run.data.params["bench.repeats"] == "3"
    assert run.data.metrics == pytest.approx(expected_metrics(summary), rel=1e-12)
    assert set(run.data.metrics) >= {"tiny/write_ns", "tiny/read_ns"} | RUN_METRICS


# --- Ctrl-C ------------------------------------------------------------------------------


def wait_for(predicate, proc: subprocess.Popen, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"exited {proc.returncode} before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout_s} s")
        time.sleep(0.05)


@pytest.fixture
def started():
    """Popen wrapper that kills whatever a test left running."""
    procs: list[subprocess.Popen] = []

    def start(*args, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(*args, **kwargs)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def start_sleepy(started, tmp_path: Path, uri: str, *overrides: str) -> subprocess.Popen:
    """The sleepy bench on the command line, its run directory ``tmp_path / "run"``."""
    return started(
        kernbench_argv(
            SEARCHPATH,
            "bench=sleepy",
            "topology=2x2",
            *overrides,
            f"tracking.uri={uri}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ),
        cwd=tmp_path,
        env=command_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job inherits SIGINT ignored, and Python then keeps ignoring it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_marks_the_run_killed(tmp_path, started, signum):
    uri = sqlite_uri(tmp_path / "mlflow.db")
    ready = tmp_path / "bench-started"
    proc = start_sleepy(started, tmp_path, uri, f"bench.ready_file={ready}")
    # The MLflow run is created before the bench starts, so once the bench blocks it exists.
    wait_for(ready.exists, proc, timeout_s=60, what="bench start")
    run = only_run(uri, "sleepy")
    assert run.info.status == "RUNNING"
    interrupted = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - interrupted < 10  # the bench sleeps 20 s unless interrupted
    assert proc.returncode == 128 + signum, out
    # One line, not a traceback: what stopped the run and where its record is.
    name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert err.splitlines() == [
        f"killed by {name}: results in {tmp_path / 'run'}, MLflow run {run.info.run_id} closed "
        "as KILLED"
    ]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["status"], summary["error"]) == ("killed", "interrupted")
    run = only_run(uri, "sleepy")
    assert run.info.status == "KILLED", err
    assert run.data.tags["kernbench.status"] == "killed"
    assert run.data.tags["kernbench.error"] == "interrupted"
    killed_summary = artifact_text(uri, run.info.run_id, "summary.json", tmp_path / "dl")
    assert json.loads(killed_summary)["status"] == "killed"


@pytest.mark.skipif(
    usable_cpus() < 2, reason="only helper processes, on two or more cores, draw during a run"
)
def test_an_interrupted_run_keeps_and_logs_no_plot_drawn_while_it_ran(tmp_path, started):
    uri = sqlite_uri(tmp_path / "mlflow.db")
    run_dir = tmp_path / "run"
    proc = start_sleepy(started, tmp_path, uri, "bench.plot=true", "sim.trace=summary")
    drawn = run_dir / "probe_latency_breakdown.png"
    wait_for(drawn.exists, proc, timeout_s=120, what="the plot asked for by the bench")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0, out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "killed"
    assert list(run_dir.glob("*.png")) == []
    run = only_run(uri, "sleepy")
    assert run.info.status == "KILLED", err
    assert not any(name.endswith(".png") for name in artifact_names(uri, run.info.run_id))


@pytest.mark.parametrize("batch", ["params", "metrics"])
def test_ctrl_c_while_the_run_is_being_logged_still_closes_it(batch, store, tmp_path, monkeypatch):
    """Ctrl-C can land while the params (start) or the metrics (end) are being written; the
    run must not be left RUNNING for ever. Simulated by raising KeyboardInterrupt, as SIGINT
    does, from inside that ``log_batch`` call."""
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    log_batch = MlflowClient.log_batch
    interrupted: list[str] = []

    def interrupt_once(self, run_id, *args, **kwargs):
        if kwargs.get(batch) and not interrupted:
            interrupted.append(run_id)
            raise KeyboardInterrupt
        return log_batch(self, run_id, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", interrupt_once)
    cfg = compose_cfg(*TINY, f"tracking.uri={store}", f"tracking.experiment=ctrl-c-{batch}")
    with pytest.raises(KeyboardInterrupt):
        run_in_process(cfg, tmp_path / "run", launch_dir=tmp_path)
    monkeypatch.undo()
    [run_id] = interrupted
    status = MlflowClient(tracking_uri=store).get_run(run_id).info.status
    assert status != "RUNNING", f"Ctrl-C while logging the {batch} left run {run_id} RUNNING"


# --- an MLflow tracking server over the store: what the UI shows ----------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def mlflow_server(cli_run, tmp_path):
    """``mlflow server`` over the command-line run's store; yields its base URL."""
    launch, _, _ = cli_run
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            sqlite_uri(launch / "outputs" / "mlflow.db"),
            "--default-artifact-root",
            (tmp_path / "default-artifacts").as_uri(),
            "--artifacts-destination",
            (tmp_path / "served-artifacts").as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        # The server's job runner starts several consumer processes we do not need.
        env=dict(command_env(), MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # uvicorn runs in a child: stop the whole group
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited {proc.returncode}:\n{_read(tmp_path)}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not up after 60 s:\n{_read(tmp_path)}")
            time.sleep(0.2)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


def _read(tmp_path: Path) -> str:
    return (tmp_path / "server.log").read_text()


def test_tracking_server_serves_the_logged_run(mlflow_server, cli_run):
    _, _, summary = cli_run
    run_id = summary["mlflow"]["run_id"]
    query = urllib.parse.urlencode({"experiment_name": "tiny"})
    experiment = http_json(f"{mlflow_server}/api/2.0/mlflow/experiments/get-by-name?{query}")
    exp_id = experiment["experiment"]["experiment_id"]
    assert exp_id == summary["mlflow"]["experiment_id"]
    found = http_json(
        f"{mlflow_server}/api/2.0/mlflow/runs/search",
        {"experiment_ids": [exp_id], "filter": "tags.`kernbench.role` = 'run'"},
    )
    [run] = found["runs"]
    assert run["info"]["run_id"] == run_id
    assert run["info"]["status"] == "FINISHED"
    assert run["info"]["run_name"] == f"tiny-2x2-{summary['config_hash']}"
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics == pytest.approx(expected_metrics(summary), rel=1e-12)
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["bench.repeats"] == "3"
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["kernbench.config_hash"] == summary["config_hash"]
    query = urllib.parse.urlencode({"run_id": run_id})
    listed = http_json(f"{mlflow_server}/api/2.0/mlflow/artifacts/list?{query}")
    served = {f["path"] for f in listed["files"]}
    assert served >= ARTIFACTS
    assert served == {
        p.name for p in Path(urllib.parse.urlparse(run["info"]["artifact_uri"]).path).iterdir()
    }
    with urllib.request.urlopen(f"{mlflow_server}/", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers.get_content_type() == "text/html"
