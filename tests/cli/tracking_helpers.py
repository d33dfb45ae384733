"""Shared by the MLflow tests: compose or launch kernbench runs and read a real store back."""

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from rich.console import Console

from kernbench.cli import run
from kernbench.cli.main import RunOutcome
from kernbench.config import conf_dir

TESTS_DIR = Path(__file__).resolve().parents[1]
REPO = TESTS_DIR.parent
FIXTURE_CONF = TESTS_DIR / "benches_fixture" / "conf"
SEARCHPATH = f"hydra.searchpath=[file://{FIXTURE_CONF}]"
TINY_BENCH = (SEARCHPATH, "bench=tiny")
TINY = (*TINY_BENCH, "topology=2x2")
SMALL_PROBE = ("bench=probe", "topology=2x2", "bench.sweep=false", "bench.congestion=false")
RUN_METRICS = {"sim_time_ns", "wall_s", "sim_events"}
# A command pays 3-6 s of mlflow start-up per process; these bound a hung one, not a slow one.
COMMAND_TIMEOUT_S = 120


def sqlite_uri(db: Path) -> str:
    return f"sqlite:///{db}"


def compose_cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def run_in_process(cfg: DictConfig, out_dir: Path, launch_dir: Path) -> tuple[RunOutcome, str]:
    """``run`` with captured consoles; returns the outcome and stdout + stderr."""
    out, err = io.StringIO(), io.StringIO()
    outcome = run(
        cfg,
        out_dir,
        console=Console(file=out, width=160),
        err_console=Console(file=err, width=160),
        launch_dir=launch_dir,
    )
    return outcome, out.getvalue() + err.getvalue()


def command_env(**extra: str) -> dict[str, str]:
    """The test's environment without a tracking URI of its own, with the fixture benches
    importable."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def kernbench_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "kernbench", *args]


def start_kernbench(cwd: Path, *args: str) -> subprocess.Popen:
    """The command, started as from a terminal: Ctrl-C (SIGINT) interrupts it even when the
    tests run as a shell's background job, which inherits SIGINT ignored (and Python then
    keeps ignoring it)."""
    return subprocess.Popen(
        kernbench_argv(*args),
        cwd=cwd,
        env=command_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def finish(
    proc: subprocess.Popen, timeout: float = COMMAND_TIMEOUT_S
) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_kernbench(
    cwd: Path, *args: str, timeout: float = COMMAND_TIMEOUT_S
) -> subprocess.CompletedProcess:
    return finish(start_kernbench(cwd, *args), timeout)


def runs_in(uri: str, experiment: str) -> list[Run]:
    """Every run of ``experiment`` in the store, oldest first."""
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} in {uri}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return sorted(runs, key=lambda r: r.info.start_time)


def only_run(uri: str, experiment: str) -> Run:
    runs = runs_in(uri, experiment)
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


def download_artifact(uri: str, run_id: str, name: str, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    return Path(MlflowClient(tracking_uri=uri).download_artifacts(run_id, name, str(dst)))


def artifact_text(uri: str, run_id: str, name: str, dst: Path) -> str:
    return download_artifact(uri, run_id, name, dst).read_text()


def artifact_names(uri: str, run_id: str) -> set[str]:
    return {f.path for f in MlflowClient(tracking_uri=uri).list_artifacts(run_id)}


def role(r: Run) -> str | None:
    return r.data.tags.get("kernbench.role")
