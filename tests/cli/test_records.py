"""Records that must not be lost or left wrong, with real processes and a real SQLite store:
two commands creating one store at once, SIGTERM to a joblib sweep, a signal while a run is
being recorded, and what the MLflow UI is told about experiments and runs."""

import json
import os
import pickle
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from tracking_helpers import (
    SEARCHPATH,
    TESTS_DIR,
    TINY,
    command_env,
    compose_cfg,
    finish,
    kernbench_argv,
    only_run,
    role,
    run_in_process,
    runs_in,
    sqlite_uri,
    start_kernbench,
)

from kernbench.cli import interrupt
from kernbench.cli.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, NOTE_TAG


def test_two_commands_started_together_on_a_fresh_store_are_both_logged(tmp_path):
    """A run and a sweep, started at once in one directory, both create its default store;
    before the store lock one of them lost its logging (``table ... already exists``) and a
    sweep's jobs were logged without their parent."""
    procs = [
        start_kernbench(tmp_path, *TINY, f"hydra.run.dir={tmp_path / 'run'}"),
        start_kernbench(
            tmp_path, "-m", *TINY, "bench.repeats=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}"
        ),
    ]
    done = [finish(p) for p in procs]
    for proc in done:
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output
        assert "warning" not in output, output
    uri = sqlite_uri(tmp_path / "outputs" / "mlflow.db")
    runs = runs_in(uri, "tiny")
    assert sorted(role(r) for r in runs) == ["job", "job", "run", "sweep"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    [parent] = [r for r in runs if role(r) == "sweep"]
    for job in (r for r in runs if role(r) == "job"):
        assert job.data.tags["mlflow.parentRunId"] == parent.info.run_id
    single = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "tracking_error" not in single
    assert single["mlflow"]["run_id"] in {r.info.run_id for r in runs}


def wait_for(predicate, proc: subprocess.Popen, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"exited {proc.returncode} before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} after {timeout_s} s")
        time.sleep(0.1)


def running_jobs(uri: str, sweep_dir: Path) -> int:
    """The sweep's job runs RUNNING, once the launcher has made the store (the test must not
    create it a second time)."""
    sweep_file = sweep_dir / "sweep.json"
    if not sweep_file.exists() or json.loads(sweep_file.read_text())["pending"]:
        return 0
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("sleepy")
    if exp is None:
        return 0
    runs = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
    return sum(role(r) == "job" for r in runs)


def test_sigterm_to_a_joblib_sweep_leaves_no_run_running(tmp_path):
    uri = sqlite_uri(tmp_path / "mlflow.db")
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.Popen(
        kernbench_argv(
            "-m",
            SEARCHPATH,
            "bench=sleepy",
            "topology=2x2",
            "bench.seconds=30,31,32",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            f"tracking.uri={uri}",
            f"hydra.sweep.dir={sweep_dir}",
        ),
        cwd=tmp_path,
        env=command_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Its own process group: the launcher, joblib's fork server and the workers.
        start_new_session=True,
    )
    try:
        # Both workers are in their bench (the sleepy bench blocks for 30 s).
        wait_for(lambda: running_jobs(uri, sweep_dir) == 2, proc, 120, "two running jobs")
        proc.send_signal(signal.SIGTERM)  # the launcher only, as `kill PID` does
        out, err = proc.communicate(timeout=60)
        # Nothing of the sweep outlives it: no worker goes on with its job.
        deadline = time.monotonic() + 10
        while group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not group_alive(proc.pid), "a process of the sweep outlived it"
    finally:
        if group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(timeout=10)
    assert proc.returncode == 128 + signal.SIGTERM, out + err
    assert "Traceback" not in err
    assert err.splitlines()[-2:] == [
        "killed by SIGTERM",
        f"sweep killed: job(s) 0, 1 stopped; parent run and 2 job run(s) closed as KILLED "
        f"({sweep_dir})",
    ]
    runs = runs_in(uri, "sleepy")
    assert sorted(role(r) for r in runs) == ["job", "job", "sweep"]
    assert [r.info.status for r in runs] == ["KILLED"] * 3
    for run in runs:
        assert run.data.tags["kernbench.status"] == "killed"
    for job in ("0", "1"):
        summary = json.loads((sweep_dir / job / "summary.json").read_text())
        assert summary["status"] == "killed"
    assert not (sweep_dir / "2").exists()  # never started


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def interrupt_inside(monkeypatch, method: str) -> list[str]:
    """Make ``MlflowClient.<method>`` receive a real SIGTERM on its first call, as a kill
    during the run's start-up would; returns the calls seen."""
    original = getattr(MlflowClient, method)
    calls: list[str] = []

    def signalled(self, *args, **kwargs):
        if not calls:
            os.kill(os.getpid(), signal.SIGTERM)
        calls.append(method)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, method, signalled)
    return calls


@pytest.fixture
def sigterm_handler():
    """kernbench's SIGTERM handler in this process for the test, the previous one after."""
    previous = signal.getsignal(signal.SIGTERM)
    interrupt.install()
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("method", ["get_experiment_by_name", "create_run", "log_batch"])
def test_a_kill_while_the_run_is_being_recorded_leaves_a_killed_run(
    tmp_path, monkeypatch, sigterm_handler, method
):
    """Opening the store, creating the run, logging its params: a SIGTERM there waits until
    the run exists, then closes it as KILLED."""
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    uri = sqlite_uri(tmp_path / "mlflow.db")
    calls = interrupt_inside(monkeypatch, method)
    cfg = compose_cfg(*TINY, f"tracking.uri={uri}")
    with pytest.raises(interrupt.Interrupted) as info:
        run_in_process(cfg, tmp_path / "run", launch_dir=tmp_path)
    monkeypatch.undo()
    assert calls and info.value.signum == signal.SIGTERM
    assert interrupt.exit_code(info.value) == 143
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "killed"
    run = only_run(uri, "tiny")
    assert run.info.status == "KILLED"
    assert run.data.tags["kernbench.status"] == "killed"
    assert len(run.data.params) == len(summary["params"])  # the start-up went through


def test_an_interrupt_keeps_its_signal_across_processes():
    exc = pickle.loads(pickle.dumps(interrupt.Interrupted(signal.SIGTERM)))
    assert (exc.signum, interrupt.exit_code(exc), interrupt.signal_name(exc)) == (
        signal.SIGTERM,
        143,
        "SIGTERM",
    )


def test_a_second_signal_stops_at_once(sigterm_handler):
    with pytest.raises(interrupt.Interrupted), interrupt.deferred("the test ends"):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # held: the block goes on
        reached = True
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
        pytest.fail("the second signal did not raise")
    assert reached
    with pytest.raises(KeyboardInterrupt) as info, interrupt.deferred("the test ends"):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        reached_end = True
    assert reached_end and not isinstance(info.value, interrupt.Interrupted)
    assert interrupt.exit_code(info.value) == 130


# --- what MLflow's UI is told ----------------------------------------------------------------


def test_experiments_are_model_development_and_runs_have_a_description_and_source(
    tmp_path, monkeypatch
):
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    uri = sqlite_uri(tmp_path / "mlflow.db")
    client = MlflowClient(tracking_uri=uri)
    # An experiment an older kernbench made, without the kind: it gets it too.
    client.create_experiment("old", artifact_location=(tmp_path / "art").as_uri())
    for experiment in ("old", "tiny"):
        cfg = compose_cfg(*TINY, f"tracking.uri={uri}", f"tracking.experiment={experiment}")
        outcome, output = run_in_process(cfg, tmp_path / experiment, launch_dir=tmp_path)
        assert outcome.exit_code == 0, output
        exp = client.get_experiment_by_name(experiment)
        assert exp.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"
    assert "kernbench compare runs --experiment tiny" in exp_note(client, "tiny")
    run = only_run(uri, "tiny")
    tags = run.data.tags
    assert tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.source.name"] == "kernbench"
    assert tags["mlflow.source.git.commit"] == tags["kernbench.git_commit"]
    assert tags["mlflow.user"]
    note = tags[NOTE_TAG]
    summary = outcome.summary
    assert note.startswith("kernbench run of bench `tiny`")
    assert f"config hash `{summary['config_hash']}`" in note
    read_ns = summary["metrics"]["tiny/read_ns"]
    assert note.endswith(
        f"**ok** — `tiny/read_ns` {read_ns:.1f}, `tiny/write_ns` "
        f"{summary['metrics']['tiny/write_ns']:.1f}"
    )


def exp_note(client: MlflowClient, name: str) -> str:
    return client.get_experiment_by_name(name).tags[NOTE_TAG]
