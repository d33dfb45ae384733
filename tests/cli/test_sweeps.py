"""Multiruns logged to a real SQLite MLflow store: one parent run per sweep and a child per
job, from the basic, joblib and Ray launchers, and a sweep with a failing job."""

import json
import shlex
import subprocess
import threading
import time
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from tracking_helpers import (
    SEARCHPATH,
    TINY,
    TINY_BENCH,
    artifact_text,
    finish,
    role,
    run_kernbench,
    runs_in,
    sqlite_uri,
    start_kernbench,
)

from kernbench.cli.compare import main as compare_main
from kernbench.cli.sweep import (
    SWEEP_FILE,
    SweepCallback,
    SweepInfo,
    await_parent,
    check_swept_keys,
    swept_keys,
)
from kernbench.cli.tracking import TrackingSpec
from kernbench.core.errors import ConfigError


def split(runs: list[Run]) -> tuple[Run, list[Run]]:
    """The one parent and the children, ordered by job number."""
    parents = [r for r in runs if role(r) == "sweep"]
    children = [r for r in runs if role(r) == "job"]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    assert len(parents) + len(children) == len(runs), [role(r) for r in runs]
    return parents[0], sorted(children, key=lambda r: int(r.data.tags["kernbench.job_num"]))


def assert_children_of(
    parent: Run, children: list[Run], sweep_dir: Path, bench: str = "tiny"
) -> None:
    """Every child points at the parent and shares its sweep id, and is the run its job's
    summary.json names."""
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    assert sweep["parent_run_id"] == parent.info.run_id
    assert sweep["pending"] is False
    assert parent.data.tags["kernbench.sweep_id"] == sweep["sweep_id"]
    assert parent.info.run_name.startswith(f"sweep-{bench}-")
    assert "mlflow.parentRunId" not in parent.data.tags
    for child in children:
        job = child.data.tags["kernbench.job_num"]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id, job
        assert child.data.tags["kernbench.sweep_id"] == sweep["sweep_id"], job
        summary = json.loads((sweep_dir / job / "summary.json").read_text())
        assert summary["mlflow"]["run_id"] == child.info.run_id, job
        assert child.data.tags["kernbench.config_hash"] == summary["config_hash"], job


def statuses(runs: list[Run]) -> list[str]:
    return [r.info.status for r in runs]


@pytest.fixture(scope="module")
def basic_sweeps(tmp_path_factory) -> dict[str, tuple[str, Path, subprocess.CompletedProcess]]:
    """Two sweeps with the basic launcher, run side by side (most of their time is start-up),
    each from its own directory into its default store: ``grid``, a 2x2 sweep, and
    ``failing``, three jobs of which job 1 has an invalid parameter. Each maps to
    (store URI, sweep dir, completed process)."""
    sweeps = {
        "grid": (*TINY_BENCH, "topology=2x2,4x4", "hw.hbm.pc_bw_gbs=16.0,32.0"),
        "failing": (*TINY, "bench.repeats=1,0,2"),
        "benches": (SEARCHPATH, "bench=tiny,probe", "topology=2x2", "tracking.experiment=mixed"),
    }
    started = {}
    try:
        for name, overrides in sweeps.items():
            launch = tmp_path_factory.mktemp(name)
            sweep_dir = launch / "sweep"
            proc = start_kernbench(launch, "-m", *overrides, f"hydra.sweep.dir={sweep_dir}")
            started[name] = (sqlite_uri(launch / "outputs" / "mlflow.db"), sweep_dir, proc)
        return {name: (uri, d, finish(proc)) for name, (uri, d, proc) in started.items()}
    finally:
        for _, _, proc in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def grid(basic_sweeps):
    return basic_sweeps["grid"]


def test_sweep_is_one_parent_with_a_child_per_job(grid):
    uri, sweep_dir, proc = grid
    assert proc.returncode == 0, proc.stderr
    assert "sweep: 4 jobs, 4 ok, 0 failed" in proc.stdout
    parent, children = split(runs_in(uri, "tiny"))
    assert [c.data.tags["kernbench.job_num"] for c in children] == ["0", "1", "2", "3"]
    assert_children_of(parent, children, sweep_dir)
    assert parent.info.status == "FINISHED"
    assert statuses(children) == ["FINISHED"] * 4
    assert parent.data.metrics == {"jobs": 4.0, "jobs_failed": 0.0}
    assert parent.data.tags["kernbench.status"] == "ok"
    assert f"parent run {parent.info.run_id}" in proc.stdout


def test_sweep_children_carry_their_jobs_choices_and_params(grid):
    uri, _, _ = grid
    _, children = split(runs_in(uri, "tiny"))
    cells = [
        (c.data.tags["kernbench.choice.topology"], c.data.params["hw.hbm.pc_bw_gbs"])
        for c in children
    ]
    assert cells == [("2x2", "16.0"), ("2x2", "32.0"), ("4x4", "16.0"), ("4x4", "32.0")]
    assert [c.data.tags["kernbench.overrides"] for c in children] == [
        f"bench=tiny topology={t} hw.hbm.pc_bw_gbs={bw}"
        for t in ("2x2", "4x4")
        for bw in ("16.0", "32.0")
    ]
    for child in children:
        topology = child.data.tags["kernbench.choice.topology"]
        assert child.info.run_name == f"tiny-{topology}-{child.data.tags['kernbench.config_hash']}"
        assert set(child.data.metrics) >= {"tiny/read_ns", "sim_time_ns", "wall_s", "sim_events"}
    assert len({c.data.tags["kernbench.config_hash"] for c in children}) == 4


def test_parallel_workers_into_a_fresh_default_store(tmp_path):
    proc = run_kernbench(
        tmp_path,
        "-m",
        *TINY,
        "bench.size_bytes=1024,2048",
        "bench.repeats=1,2,3,4",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=4",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Joblib.Parallel(n_jobs=4" in output
    assert "database is locked" not in output.lower()
    assert "tracking failed" not in output
    assert "sweep: 8 jobs, 8 ok, 0 failed" in proc.stdout
    uri = sqlite_uri(tmp_path / "outputs" / "mlflow.db")
    runs = runs_in(uri, "tiny")
    assert len(runs) == 9
    parent, children = split(runs)
    assert [c.data.tags["kernbench.job_num"] for c in children] == [str(n) for n in range(8)]
    assert len({c.info.run_id for c in children}) == 8
    cells = {(c.data.params["bench.size_bytes"], c.data.params["bench.repeats"]) for c in children}
    assert cells == {(s, r) for s in ("1024", "2048") for r in ("1", "2", "3", "4")}
    assert_children_of(parent, children, tmp_path / "sweep")
    assert statuses([parent, *children]) == ["FINISHED"] * 9
    assert parent.data.metrics == {"jobs": 8.0, "jobs_failed": 0.0}


def test_sweep_with_a_failing_job(basic_sweeps, tmp_path):
    """Job 1's config is invalid: it is reported and fails the sweep, but, a config error,
    it is no run (as a single command's is not); its summary.json says why."""
    uri, sweep_dir, proc = basic_sweeps["failing"]
    message = "bench.repeats: must be >= 1, got 0"
    assert proc.returncode == 1, proc.stderr
    assert "sweep: 3 jobs, 2 ok, 1 failed" in proc.stdout
    assert proc.stderr.rstrip("\n").splitlines()[-1] == (
        f"  job 1 [bench=tiny topology=2x2 bench.repeats=0]: {message}"
    )
    parent, children = split(runs_in(uri, "tiny"))
    assert_children_of(parent, children, sweep_dir)
    assert [c.data.tags["kernbench.job_num"] for c in children] == ["0", "2"]
    assert statuses(children) == ["FINISHED", "FINISHED"]
    summary = json.loads((sweep_dir / "1" / "summary.json").read_text())
    assert (summary["status"], summary["error"]) == ("failed", message)
    assert "mlflow" not in summary
    assert "kernbench.error" not in children[0].data.tags
    assert parent.info.status == "FAILED"
    assert parent.data.tags["kernbench.status"] == "failed"
    assert parent.data.metrics == {"jobs": 3.0, "jobs_failed": 1.0}


def test_ray_launcher_sweep(tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    uri = sqlite_uri(tmp_path / "mlflow.db")
    proc = run_kernbench(
        tmp_path,
        "-m",
        *TINY,
        "bench.repeats=1,2",
        "hydra/launcher=ray_local",
        f"tracking.uri={uri}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        timeout=240,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Ray Launcher is launching 2 jobs" in output
    assert "sweep: 2 jobs, 2 ok, 0 failed" in proc.stdout
    parent, children = split(runs_in(uri, "tiny"))
    assert [c.data.params["bench.repeats"] for c in children] == ["1", "2"]
    assert_children_of(parent, children, tmp_path / "sweep")
    assert statuses([parent, *children]) == ["FINISHED"] * 3


def test_a_job_that_left_no_summary_counts_as_failed(tmp_path, capsys):
    """A worker killed by the OS writes no summary.json; the sweep must not call itself ok."""
    (tmp_path / "0" / ".hydra").mkdir(parents=True)
    (tmp_path / "0" / "summary.json").write_text('{"status": "ok"}')
    (tmp_path / "1" / ".hydra").mkdir(parents=True)
    (tmp_path / "1" / ".hydra" / "overrides.yaml").write_text("- topology=4x4\n")
    config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(tmp_path)}, "overrides": {"task": []}}}
    )
    with pytest.raises(SystemExit) as exit_info:
        SweepCallback().on_multirun_end(config)
    assert exit_info.value.code == 1
    out, err = capsys.readouterr()
    assert "sweep: 2 jobs, 1 ok, 1 failed" in out
    assert "job 1 [topology=4x4]: the job ended without a summary.json" in err


def test_a_sweep_over_benches_logs_into_one_experiment(basic_sweeps):
    uri, sweep_dir, proc = basic_sweeps["benches"]
    assert proc.returncode == 0, proc.stderr
    assert "sweep: 2 jobs, 2 ok, 0 failed" in proc.stdout
    parent, children = split(runs_in(uri, "mixed"))
    assert_children_of(parent, children, sweep_dir, bench="mixed")
    assert parent.data.tags["kernbench.bench"] == ""
    assert [c.data.tags["kernbench.bench"] for c in children] == ["tiny", "probe"]
    assert statuses([parent, *children]) == ["FINISHED"] * 3
    experiments = {e.name for e in MlflowClient(tracking_uri=uri).search_experiments()}
    assert not experiments & {"tiny", "probe"}


SWEEP_ONE_STORE = "a sweep logs to one MLflow store and experiment; run one sweep per value"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            (*TINY, "tracking.experiment=a,b"),
            f"tracking.experiment: cannot be swept (tracking.experiment=a,b): {SWEEP_ONE_STORE}",
        ),
        (
            (*TINY, "tracking.uri='sqlite:///a.db','sqlite:///b.db'"),
            "tracking.uri: cannot be swept "
            f"(tracking.uri='sqlite:///a.db','sqlite:///b.db'): {SWEEP_ONE_STORE}",
        ),
        (
            (*TINY, "tracking=local,off"),
            f"tracking: cannot be swept (tracking=local,off): {SWEEP_ONE_STORE}",
        ),
        (
            (SEARCHPATH, "topology=2x2", "bench=tiny,probe"),
            "tracking.experiment: the sweep runs several benches (bench=tiny,probe) and each "
            "bench logs to its own experiment; set tracking.experiment=NAME to log the whole "
            "sweep into one, or run one sweep per bench",
        ),
    ],
    ids=["experiment", "uri", "group", "benches"],
)
def test_a_sweep_that_would_split_its_runs_is_rejected(tmp_path, overrides, message):
    proc = run_kernbench(tmp_path, "-m", *overrides, f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.rstrip("\n").splitlines()[-1] == f"error: {message}"
    assert not (tmp_path / "sweep").exists()
    assert not (tmp_path / "outputs").exists()  # no store, no run


def sweep_config(*task: str, params: dict | None = None):
    hydra = {"overrides": {"task": list(task)}, "sweeper": {"params": params}}
    return OmegaConf.create({"hydra": hydra})


def test_swept_keys_come_from_the_command_line_and_the_sweeper_params():
    config = sweep_config(
        "topology=2x2,4x4",
        "hw.hbm.pc_bw_gbs=16",
        "+bench.x=1",
        params={"tracking.experiment": "a,b"},
    )
    assert swept_keys(config) == {
        "topology": "topology=2x2,4x4",
        "tracking.experiment": "tracking.experiment=a,b",
    }
    with pytest.raises(ConfigError) as info:
        check_swept_keys(swept_keys(config), TrackingSpec())
    assert info.value.key == "tracking.experiment"


def test_sweeping_benches_is_fine_without_tracking_or_with_one_experiment():
    swept = swept_keys(sweep_config("bench=tiny,probe"))
    check_swept_keys(swept, TrackingSpec(enabled=False))
    check_swept_keys(swept, TrackingSpec(experiment="all"))
    with pytest.raises(ConfigError, match=r"^tracking.experiment: the sweep runs several"):
        check_swept_keys(swept, TrackingSpec())


def write_sweep_file(sweep_dir: Path, **fields) -> None:
    info = {"sweep_id": "s", "sweep_dir": str(sweep_dir), **fields}
    (sweep_dir / SWEEP_FILE).write_text(json.dumps(info))


def test_a_job_waits_for_the_parent_run_the_launcher_is_creating(tmp_path):
    pending = SweepInfo("s", str(tmp_path), tracking_uri="sqlite:///x.db", pending=True, job_num=3)
    write_sweep_file(tmp_path, tracking_uri="sqlite:///x.db", pending=True)

    def launcher_done() -> None:
        time.sleep(0.3)
        write_sweep_file(tmp_path, tracking_uri="sqlite:///x.db", parent_run_id="p1", pending=False)

    thread = threading.Thread(target=launcher_done)
    thread.start()
    try:
        info = await_parent(pending)
    finally:
        thread.join()
    assert (info.parent_run_id, info.pending, info.job_num) == ("p1", False, 3)
    assert info.tracking_uri == "sqlite:///x.db"


def test_a_job_without_the_sweep_file_or_a_parent_in_time_logs_on_its_own(tmp_path, capsys):
    pending = SweepInfo("s", str(tmp_path / "elsewhere"), pending=True, job_num=1)
    assert await_parent(pending) == SweepInfo("s", str(tmp_path / "elsewhere"), job_num=1)
    write_sweep_file(tmp_path, pending=True)
    stuck = SweepInfo("s", str(tmp_path), pending=True, job_num=2)
    info = await_parent(stuck, timeout_s=0.2)
    assert (info.parent_run_id, info.pending) == (None, False)
    assert "job 2 is logged without it" in capsys.readouterr().err


# --- the sweep's closing table ---------------------------------------------------------------


def test_a_sweep_ends_with_a_table_of_its_axes_and_headline_metrics(grid, tmp_path):
    uri, sweep_dir, proc = grid
    lines = proc.stdout.splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.startswith("sweep ") and "4 jobs" in line
    )
    header = lines[start + 1].split()
    assert header == [
        "job",
        "status",
        "topology",
        "hw.hbm.pc_bw_gbs",
        "tiny/read_ns",
        "tiny/write_ns",
        "wall_s",
    ]
    rows = [line.split() for line in lines[start + 3 : start + 7]]
    assert [r[:4] for r in rows] == [
        [str(n), "ok", t, bw]
        for n, (t, bw) in enumerate((("2x2", "16"), ("2x2", "32"), ("4x4", "16"), ("4x4", "32")))
    ]
    summaries = [json.loads((sweep_dir / str(n) / "summary.json").read_text()) for n in range(4)]
    for row, summary in zip(rows, summaries, strict=True):
        assert row[4] == f"{summary['metrics']['tiny/read_ns']:.1f}"
    # The same table, every digit, as the parent's artifacts and in the sweep directory.
    parent, _ = split(runs_in(uri, "tiny"))
    csv_text = artifact_text(uri, parent.info.run_id, "sweep.csv", tmp_path / "dl")
    assert csv_text == (sweep_dir / "sweep.csv").read_text()
    csv_rows = [line.split(",") for line in csv_text.splitlines()]
    assert csv_rows[0] == [
        "job",
        "status",
        "topology",
        "hw.hbm.pc_bw_gbs",
        "tiny/read_ns",
        "tiny/write_ns",
        "wall_s",
    ]
    assert [float(r[4]) for r in csv_rows[1:]] == [s["metrics"]["tiny/read_ns"] for s in summaries]
    md = artifact_text(uri, parent.info.run_id, "sweep.md", tmp_path / "dl")
    assert "| job | status | topology | hw.hbm.pc_bw_gbs | tiny/read_ns |" in md
    note = parent.data.tags["mlflow.note.content"]
    assert "**ok**: 4 jobs, 0 failed." in note
    assert "| 3 | ok | 4x4 | 32 |" in note


def test_the_sweep_prints_the_id_compare_takes(grid, capsys):
    uri, sweep_dir, proc = grid
    [hint] = [line for line in proc.stdout.splitlines() if "compare its jobs:" in line]
    argv = shlex.split(hint.split("compare its jobs:")[1])
    assert argv[:3] == ["kernbench", "compare", "runs"]
    assert compare_main([*argv[2:], "--tracking-uri", uri, "--format", "json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    _, children = split(runs_in(uri, "tiny"))
    assert [r["run_id"] for r in runs] == [c.info.run_id for c in children]
