"""Design-space searches (``-m hydra/sweeper=optuna``) run as commands into a real MLflow
store and Optuna study: one parent run with a child per trial, the Pareto front on the
parent, resuming a study, failed and rejected trials, bad objectives, joblib workers."""

import csv
import io
import json
import signal
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from tracking_helpers import (
    artifact_names,
    finish,
    role,
    run_kernbench,
    runs_in,
    sqlite_uri,
    start_kernbench,
)

from kernbench.bench import get_bench
from kernbench.cli.compare import main as compare_main
from kernbench.cli.search_spec import SearchSpec, objective_directions

# The must-show search's objectives (the issue's): latency against the energy model's energy.
OBJECTIVES = ["latency_ns", "energy_uj"]
GEMM = ("bench=gemm", "bench.m=256", "bench.n=256", "bench.k=256")
SPACE = ("hw.pe.gemm_tflops_fp16=interval(4,16)", "hw.hbm.pc_bw_gbs=choice(16,32,64)")
SMALL_GEMM = ("bench=gemm", "bench.m=64", "bench.n=64", "bench.k=64", "topology=2x2")
SEARCH = ("-m", "hydra/sweeper=optuna")


def directions(objectives: list[str]) -> list[str]:
    """Each objective's direction from its metric's definition, as the search takes it."""
    spec = SearchSpec(objectives=objectives)
    return objective_directions(spec, "gemm", get_bench("gemm", ()).better)


def objectives_override(names: list[str]) -> str:
    return f"search.objectives=[{','.join(names)}]"


def search_runs(launch: Path, experiment: str = "gemm") -> tuple:
    """The store's parent runs (oldest first) and child runs."""
    runs = runs_in(sqlite_uri(launch / "outputs" / "mlflow.db"), experiment)
    return [r for r in runs if role(r) == "sweep"], [r for r in runs if role(r) == "job"]


def study(launch: Path, name: str) -> optuna.Study:
    storage = sqlite_uri(launch / "outputs" / "optuna.db")
    return optuna.load_study(study_name=name, storage=storage)


def dominates(a: list[float], b: list[float], signs: list[int]) -> bool:
    """``a`` is at least as good as ``b`` in every objective and better in one."""
    pairs = [(s * x, s * y) for s, x, y in zip(signs, a, b, strict=True)]
    return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)


@pytest.fixture(scope="module")
def must_show(tmp_path_factory):
    launch = tmp_path_factory.mktemp("search")
    proc = run_kernbench(
        launch,
        *SEARCH,
        *GEMM,
        objectives_override(OBJECTIVES),
        "hydra.sweeper.n_trials=8",
        *SPACE,
    )
    return launch, proc


def test_search_logs_a_parent_with_a_child_per_trial(must_show):
    launch, proc = must_show
    assert proc.returncode == 0, proc.stderr
    parents, children = search_runs(launch)
    assert len(parents) == 1 and len(children) == 8
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    names = artifact_names(sqlite_uri(launch / "outputs" / "mlflow.db"), parent.info.run_id)
    assert {"pareto.csv", "pareto.md", "pareto.png", "search.json"} <= names
    assert parent.data.params["search.objectives"] == ",".join(OBJECTIVES)
    assert parent.data.params["search.directions"] == ",".join(directions(OBJECTIVES))
    for name in OBJECTIVES:
        assert f"best.{name}.hw.hbm.pc_bw_gbs" in parent.data.params
        assert f"best.{name}.hw.pe.gemm_tflops_fp16" in parent.data.params
    assert parent.data.metrics["trials_complete"] == 8
    # search.* is the study's, not the trial's: no child carries it as a param.
    assert not [k for c in children for k in c.data.params if k.startswith("search.")]


def test_front_is_the_non_dominated_set_of_the_trials(must_show):
    launch, _ = must_show
    [parent], children = search_runs(launch)
    trials = study(launch, parent.data.params["search.study"]).get_trials(
        states=(TrialState.COMPLETE,)
    )
    assert len(trials) == 8
    signs = [1 if d == "minimize" else -1 for d in directions(OBJECTIVES)]
    values = {t.number: t.values for t in trials}
    expected = {
        n for n, v in values.items() if not any(dominates(w, v, signs) for w in values.values())
    }
    sweep_dir = next((launch / "outputs" / "multirun").glob("*/*"))
    rows = list(csv.DictReader((sweep_dir / "pareto.csv").open()))
    assert {int(r["trial"]) for r in rows} == expected
    metrics = {c.info.run_id: c.data.metrics for c in children}
    for row in rows:
        # Each front point is the trial's child run, with the objectives it logged.
        logged = metrics[row["run_id"]]
        assert [float(row[n]) for n in OBJECTIVES] == [logged[n] for n in OBJECTIVES]
        assert [float(row[n]) for n in OBJECTIVES] == values[int(row["trial"])]
    assert (sweep_dir / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_front_prints_the_parents_front(must_show, capsys, monkeypatch):
    launch, _ = must_show
    monkeypatch.chdir(launch)
    assert compare_main(["front", "--format", "csv"]) == 0
    sweep_dir = next((launch / "outputs" / "multirun").glob("*/*"))
    assert capsys.readouterr().out == (sweep_dir / "pareto.csv").read_text()
    assert compare_main(["front", "--format", "json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert front["objectives"] == OBJECTIVES
    assert compare_main(["front", "--sweep", "nosuch"]) == 2


def test_a_study_resumes_to_n_trials_in_total(tmp_path):
    args = (*SEARCH, *SMALL_GEMM, "search.study=resumed", "tracking=off", *SPACE)
    first = run_kernbench(tmp_path, *args, "hydra.sweeper.n_trials=3")
    assert first.returncode == 0, first.stderr
    # A command killed mid-trial leaves it RUNNING in the study.
    study(tmp_path, "resumed").ask()
    second = run_kernbench(tmp_path, *args, "hydra.sweeper.n_trials=6")
    assert second.returncode == 0, second.stderr
    assert "4 of 6 trials done, running 2" in second.stdout
    assert "1 trial(s) left running by an earlier command recorded as failed" in second.stdout
    states = [t.state for t in study(tmp_path, "resumed").trials]
    assert states.count(TrialState.COMPLETE) == 5 and states.count(TrialState.FAIL) == 1
    sweeps = sorted((tmp_path / "outputs" / "multirun").glob("*/*"))
    assert len(sweeps) == 2 and len(list(sweeps[1].glob("*/summary.json"))) == 2
    third = run_kernbench(tmp_path, *args, "hydra.sweeper.n_trials=6")
    assert "6 of 6 trials done, running 0" in third.stdout


def test_an_interrupted_search_resumes_to_n_trials_in_total(tmp_path):
    args = (*SEARCH, *SMALL_GEMM, "search.study=stopped", "tracking=off", *SPACE)
    proc = start_kernbench(tmp_path, *args, "hydra.sweeper.n_trials=8")
    for line in proc.stdout:  # Ctrl-C once two trials are in
        if line.startswith("trial 1 "):
            proc.send_signal(signal.SIGINT)
            break
    first = finish(proc)
    assert first.returncode == 130, first.stderr
    asked = study(tmp_path, "stopped").trials  # the trial cut short is FAILED or RUNNING
    assert 2 <= len(asked) < 8
    second = run_kernbench(tmp_path, *args, "hydra.sweeper.n_trials=8")
    assert second.returncode == 0, second.stderr
    assert f"{len(asked)} of 8 trials done, running {8 - len(asked)}" in second.stdout
    trials = study(tmp_path, "stopped").trials
    assert len(trials) == 8 and TrialState.RUNNING not in {t.state for t in trials}
    assert [t.state for t in trials[len(asked) :]] == [TrialState.COMPLETE] * (8 - len(asked))
    sweeps = sorted((tmp_path / "outputs" / "multirun").glob("*/*"))
    assert len(list(sweeps[-1].glob("*/summary.json"))) == 8 - len(asked)


def test_failed_and_rejected_trials_are_recorded_and_the_study_goes_on(tmp_path):
    proc = run_kernbench(
        tmp_path,
        *SEARCH,
        *SMALL_GEMM,
        "search.study=mixed",
        "search.seed=1",  # fails trials 3-5, then completes 8 and 9
        'search.constraints=["hw.hbm.pc_bw_gbs*8<=256"]',
        "hydra.sweeper.n_trials=10",
        "hw.hbm.pc_bw_gbs=choice(16,32,64)",
        "bench.block_k=choice(32,0)",
    )
    trials = study(tmp_path, "mixed").trials
    by_state = {s: [t for t in trials if t.state == s] for s in TrialState}
    rejected, failed = by_state[TrialState.PRUNED], by_state[TrialState.FAIL]
    complete = by_state[TrialState.COMPLETE]
    assert rejected and failed and complete, [t.state for t in trials]
    for t in rejected:
        assert t.params["hw.hbm.pc_bw_gbs"] == 64
        assert "hw.hbm.pc_bw_gbs*8<=256 does not hold" in t.user_attrs["kernbench.error"]
        assert "kernbench.job_num" not in t.user_attrs  # never run
    for t in failed:
        assert t.params["bench.block_k"] == 0
        assert "bench.block_k" in t.user_attrs["kernbench.error"]
    assert all(t.params["bench.block_k"] == 32 for t in complete)
    assert max(t.number for t in complete) > min(t.number for t in failed)
    sweep_dir = next((tmp_path / "outputs" / "multirun").glob("*/*"))
    assert len(list(sweep_dir.glob("*/summary.json"))) == len(complete) + len(failed)
    assert proc.returncode == 1  # a job failed, as in any sweep
    assert f"sweep: {len(complete) + len(failed)} jobs, {len(complete)} ok" in proc.stdout
    parents, children = search_runs(tmp_path)
    assert parents[0].data.metrics["trials_rejected"] == len(rejected)
    assert len(children) == len(complete)  # a config error is not a run (ADR 0021)


def test_an_objective_without_a_direction_is_rejected_before_any_run(tmp_path):
    proc = run_kernbench(tmp_path, *SEARCH, *SMALL_GEMM, "search.objectives=[nosuch]", *SPACE)
    assert proc.returncode == 2
    assert "search.objectives: metric 'nosuch' of bench 'gemm' has no direction" in proc.stderr
    assert not list((tmp_path / "outputs").glob("multirun/*/*/0"))
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


def test_a_metric_the_bench_does_not_report_stops_the_search(tmp_path):
    proc = run_kernbench(
        tmp_path,
        *SEARCH,
        *SMALL_GEMM,
        "search.objectives=[latncy_ns]",
        "hydra.sweeper.n_trials=4",
        "tracking=off",
        *SPACE,
    )
    assert proc.returncode == 2, proc.stderr
    message = "objective 'latncy_ns' is not a metric of bench 'gemm'; it reports: "
    assert message in proc.stdout
    assert "latency_ns" in proc.stdout.split(message)[1].split("\n")[0]
    assert len(list((tmp_path / "outputs").glob("multirun/*/*/*/summary.json"))) == 1


def test_joblib_runs_a_batch_of_trials_in_parallel(tmp_path):
    proc = run_kernbench(
        tmp_path,
        *SEARCH,
        *SMALL_GEMM,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=4",
        "search.sampler=tpe",
        *SPACE,
    )
    assert proc.returncode == 0, proc.stderr
    parents, children = search_runs(tmp_path)
    assert len(parents) == 1 and len(children) == 4
    assert sorted(c.data.tags["kernbench.job_num"] for c in children) == ["0", "1", "2", "3"]
    assert proc.stdout.count("Launching jobs") == 2  # two batches of two


def test_search_json_lists_every_trial(must_show):
    launch, _ = must_show
    sweep_dir = next((launch / "outputs" / "multirun").glob("*/*"))
    data = json.loads((sweep_dir / "search.json").read_text())
    assert [t["number"] for t in data["trials"]] == list(range(8))
    assert all(t["this_sweep"] and t["state"] == "complete" for t in data["trials"])
    table = (sweep_dir / "pareto.md").read_text()
    assert table.startswith("### Pareto front of study ")
    reader = csv.reader(io.StringIO((sweep_dir / "pareto.csv").read_text()))
    assert next(reader)[:4] == ["trial", "job", *OBJECTIVES]


def test_ray_runs_a_batch_of_trials(tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    proc = run_kernbench(
        tmp_path,
        *SEARCH,
        *SMALL_GEMM,
        "hydra/launcher=ray_local",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=4",
        objectives_override(["latency_ns", "tflops"]),
        *SPACE,
        timeout=240,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert output.count("Ray Launcher is launching 2 jobs") == 2
    parents, children = search_runs(tmp_path)
    assert len(parents) == 1 and len(children) == 4
    assert parents[0].data.metrics["trials_complete"] == 4
