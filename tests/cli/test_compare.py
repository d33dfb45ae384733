"""``python -m kernbench.compare`` against a real SQLite MLflow store built once per module,
its runs tagged as kernbench's tracker tags them (with the benches' real declarations of their
metrics' directions and headlines)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kernbench.bench import get_bench, metric_direction
from kernbench.cli.compare import direction, main, relative_change, verdict
from kernbench.cli.tracking import run_tags

REPO = Path(__file__).resolve().parents[2]
T0_MS = 1_700_000_000_000
BASE_METRICS = {
    "pe-local-hbm/latency_ns": 100.0,
    "pe-local-hbm/effective_bw_gbs": 40.0,
    "pe-local-hbm/utilization": 0.5,
    "sim_events": 1000.0,
    "wall_s": 1.0,
}


def _params(topology: str = "2x2", pc_bw_gbs: int = 32) -> dict[str, str]:
    return {
        "topology.name": topology,
        "hw.hbm.pc_bw_gbs": str(pc_bw_gbs),
        "bench.size_bytes": "4096",
        "bench.name": "probe",
    }


def _tags(role: str, config_hash: str, bench: str = "probe", **extra: str) -> dict[str, str]:
    """The tags kernbench logs for a run of ``bench`` (a sweep parent has no bench)."""
    info = get_bench(bench) if role != "sweep" else None
    tags = run_tags(
        bench=bench,
        config_hash=config_hash,
        choices={"topology": "2x2"},
        overrides=[],
        role=role,
        better=info.better if info else None,
        headline=info.headline if info else (),
    )
    return {**tags, **extra}


def _gemm_params(bench: str, block: int = 64) -> dict[str, str]:
    return {"topology.name": "2x2", "bench.name": bench, "bench.block_m": str(block)}


GEMM_METRICS = {
    "latency_ns": 5000.0,
    "kernel_ns": 4000.0,
    "tflops": 10.0,
    "roofline_ns": 1000.0,
    "roofline_ratio": 0.25,
    "pes_used": 1.0,
    "max_abs_err": 0.001,
    "verified": 1.0,
    "sim_time_ns": 6000.0,
    "wall_s": 1.0,
}


class StoreBuilder:
    """Writes runs the way kernbench's tracker does, with start times one second apart."""

    def __init__(self, uri: str):
        self.client = MlflowClient(tracking_uri=uri)
        self.clock_ms = T0_MS
        self.ids: dict[str, str] = {}

    def run(
        self,
        experiment_id: str,
        key: str,
        name: str,
        params: dict[str, str],
        tags: dict[str, str],
        metrics: dict[str, float],
        status: str = "FINISHED",
    ) -> str:
        self.clock_ms += 1000
        run = self.client.create_run(
            experiment_id, start_time=self.clock_ms, tags=tags, run_name=name
        )
        run_id = run.info.run_id
        for k, v in params.items():
            self.client.log_param(run_id, k, v)
        for k, v in metrics.items():
            self.client.log_metric(run_id, k, v)
        outcome = "ok" if status == "FINISHED" else "failed"
        self.client.set_tag(run_id, "kernbench.status", outcome)
        self.client.set_terminated(run_id, status, end_time=self.clock_ms + 500)
        self.ids[key] = run_id
        return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, dict[str, str]]:
    """Experiment ``plain``: a run without kernbench's tags, with a flat ``latency_ns``.
    Experiment ``congestion``: one run. Experiment ``gemm``: a baseline, a run 30 % slower
    (tflops down, kernel_ns up), and a run of bench ``qkv_gemm`` (the same metric names), in
    a sweep of experiment ``gemm``. Experiment ``probe``, written last (the latest run's): a
    baseline run, two candidates, a failed run, a run name logged twice, and a sweep (parent +
    3 jobs over hw.hbm.pc_bw_gbs)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    b = StoreBuilder(uri)
    probe = b.client.create_experiment("probe")
    congestion = b.client.create_experiment("congestion")
    gemm = b.client.create_experiment("gemm")
    plain = b.client.create_experiment("plain")
    b.run(
        plain,
        "plain",
        "plain-run",
        {},
        {"kernbench.role": "run"},
        {"latency_ns": 7.0, "x/latency_ns": 8.0, "hops": 3.0, "wall_s": 0.5},
    )
    b.run(
        congestion,
        "congestion",
        "congestion-2x2-ffff6666",
        {"topology.name": "2x2"},
        _tags("run", "ffff6666"),
        {"congestion/hbm-incast-8/makespan_ns": 5000.0},
    )
    gemm_sweep = {"kernbench.sweep_id": "sw-gemm"}
    gemm_parent = b.run(
        gemm, "gemm-parent", "sweep-gemm-sw-gemm", {}, _tags("sweep", "", **gemm_sweep), {}
    )
    slower = {**GEMM_METRICS, "kernel_ns": 5714.0, "tflops": 7.0, "latency_ns": 6714.0}
    for job, (key, bench, metrics) in enumerate(
        [("gemm", "gemm", GEMM_METRICS), ("gemm-slow", "gemm", slower), ("qkv", "qkv_gemm", slower)]
    ):
        job_tags = {**gemm_sweep, "kernbench.job_num": str(job), "mlflow.parentRunId": gemm_parent}
        b.run(
            gemm,
            key,
            f"{bench}-2x2-{job}aaaaaaa",
            _gemm_params(bench, 64 + 32 * job),
            _tags("job", f"{job}aaaaaaa", bench=bench, **job_tags),
            metrics,
        )
    b.run(probe, "base", "probe-2x2-aaaa1111", _params(), _tags("run", "aaaa1111"), BASE_METRICS)
    slow = {**BASE_METRICS, "pe-local-hbm/latency_ns": 110.0, "wall_s": 3.0}
    b.run(probe, "slow", "probe-2x2-bbbb2222", _params(), _tags("run", "bbbb2222"), slow)
    bw = {
        **BASE_METRICS,
        "pe-local-hbm/effective_bw_gbs": 30.0,
        "pe-local-hbm/utilization": 0.6,
        "sim_events": 1500.0,
    }
    b.run(probe, "bw", "probe-2x2-cccc3333", _params(), _tags("run", "cccc3333"), bw)
    b.run(
        probe,
        "failed",
        "probe-4x4-dddd4444",
        _params("4x4"),
        _tags("run", "dddd4444", **{"kernbench.error": "checks failed"}),
        {"wall_s": 0.5},
        status="FAILED",
    )
    b.run(probe, "dup-old", "probe-dup", _params(), _tags("run", "eeee5555"), BASE_METRICS)
    newer = {**BASE_METRICS, "pe-local-hbm/latency_ns": 200.0}
    b.run(probe, "dup-new", "probe-dup", _params(), _tags("run", "eeee5555"), newer)
    sweep = {"kernbench.sweep_id": "sw-0001"}
    parent = b.run(probe, "parent", "probe-sweep-sw-0001", {}, _tags("sweep", "", **sweep), {})
    for job, pc_bw_gbs in enumerate((32, 64, 128)):
        job_tags = {**sweep, "kernbench.job_num": str(job), "mlflow.parentRunId": parent}
        metrics = {**BASE_METRICS, "pe-local-hbm/latency_ns": 100.0 - 10 * job}
        b.run(
            probe,
            f"job{job}",
            f"probe-2x2-{job}0000000",
            _params(pc_bw_gbs=pc_bw_gbs),
            _tags("job", f"{job}0000000", **job_tags),
            metrics,
        )
    return uri, b.ids


def compare(capsys, uri: str, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--tracking-uri", uri])
    out, err = capsys.readouterr()
    return code, out, err


LATEST_NOTE = "note: experiment 'probe', the latest run's; others: congestion, gemm, plain"


def runs_json(capsys, uri: str, *argv: str) -> list[dict]:
    code, out, err = compare(capsys, uri, "runs", "--format", "json", *argv)
    assert code == 0, err
    assert err in ("", f"{LATEST_NOTE} (--experiment NAME)\n")
    return json.loads(out)["runs"]


def test_runs_lists_every_run_but_sweep_parents_newest_first(store, capsys):
    uri, ids = store
    runs = runs_json(capsys, uri)
    assert [r["run_id"] for r in runs] == [
        ids[k]
        for k in ("job2", "job1", "job0", "dup-new", "dup-old", "failed", "bw", "slow", "base")
    ]
    assert runs[5]["status"] == "failed"
    assert runs[0]["status"] == "ok"


def test_runs_default_columns_are_varied_params_latency_and_wall(store, capsys):
    uri, _ = store
    runs = runs_json(capsys, uri)
    assert list(runs[0]["params"]) == ["hw.hbm.pc_bw_gbs", "topology.name"]
    assert runs[0]["params"] == {"hw.hbm.pc_bw_gbs": 128, "topology.name": "2x2"}
    assert list(runs[0]["metrics"]) == ["pe-local-hbm/latency_ns", "wall_s"]


def test_runs_of_a_sweep_are_its_jobs_in_job_order(store, capsys):
    uri, ids = store
    runs = runs_json(capsys, uri, "--sweep", "sw-0001")
    assert [r["run_id"] for r in runs] == [ids["job0"], ids["job1"], ids["job2"]]
    # Only the sweep's axis varies between its jobs; the probe's headline metric is there.
    assert [r["params"] for r in runs] == [{"hw.hbm.pc_bw_gbs": v} for v in (32, 64, 128)]
    by_parent = runs_json(capsys, uri, "--parent", ids["parent"][:10])
    assert by_parent == runs


def test_runs_table_shows_names_and_varied_param_columns(store, capsys):
    uri, ids = store
    code, out, err = compare(capsys, uri, "runs", "--sweep", "sw-0001")
    assert (code, err) == (0, "")
    assert "probe: sweep sw-0001 (3)" in out
    assert "hw.hbm.pc_bw_gbs" in out
    assert "topology.name" not in out
    lines = out.splitlines()
    job1 = next(line for line in lines if "probe-2x2-10000000" in line)
    assert ids["job1"][:8] in job1
    assert " 64 " in job1
    assert " 90 " in job1


def test_runs_filters_status_sorts_limits_and_selects_columns(store, capsys):
    uri, ids = store
    failed = runs_json(capsys, uri, "--status", "failed")
    assert [r["run_id"] for r in failed] == [ids["failed"]]
    finished = runs_json(capsys, uri, "--status", "finished")
    assert ids["failed"] not in [r["run_id"] for r in finished]
    fastest = runs_json(
        capsys, uri, "--sort", "pe-local-hbm/latency_ns", "--limit", "2", "--params", "hw.*"
    )
    assert [r["run_id"] for r in fastest] == [ids["job2"], ids["job1"]]
    assert list(fastest[0]["params"]) == ["hw.hbm.pc_bw_gbs"]
    picked = runs_json(capsys, uri, "--metrics", "*/effective_bw_gbs,sim_*", "--limit", "1")
    assert list(picked[0]["metrics"]) == ["pe-local-hbm/effective_bw_gbs", "sim_events"]


def test_runs_all_roles_adds_the_sweep_parent(store, capsys):
    uri, ids = store
    runs = runs_json(capsys, uri, "--all-roles")
    assert ids["parent"] in [r["run_id"] for r in runs]


def test_runs_csv_has_full_ids_and_raw_values(store, capsys):
    uri, ids = store
    code, out, _ = compare(capsys, uri, "runs", "--sweep", "sw-0001", "--format", "csv")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == (
        "run_name,run_id,status,start_time,hw.hbm.pc_bw_gbs,pe-local-hbm/latency_ns,wall_s"
    )
    assert lines[1].startswith(f"probe-2x2-00000000,{ids['job0']},ok,")
    assert lines[1].endswith(",32,100.0,1.0")


def test_runs_other_experiment(store, capsys):
    uri, ids = store
    runs = runs_json(capsys, uri, "--experiment", "congestion")
    assert [r["run_id"] for r in runs] == [ids["congestion"]]
    # No */latency_ns there: the default falls back to the run's other metrics.
    assert list(runs[0]["metrics"]) == ["congestion/hbm-incast-8/makespan_ns"]


def test_runs_unknown_experiment_or_sweep_lists_valid_ones(store, capsys):
    uri, _ = store
    code, out, err = compare(capsys, uri, "runs", "--experiment", "nope")
    assert (code, out) == (2, "")
    assert err.startswith("error: unknown experiment 'nope'")
    assert "congestion" in err and "probe" in err
    code, _, err = compare(capsys, uri, "runs", "--sweep", "sw-9")
    assert code == 2
    assert err == (
        f"error: no sweep 'sw-9' (by sweep id or parent run) in {uri}; sweeps: sw-0001, sw-gemm\n"
    )


def diff_json(capsys, uri: str, *argv: str) -> tuple[int, dict]:
    code, out, err = compare(capsys, uri, "diff", "--format", "json", *argv)
    assert err == ""
    return code, json.loads(out)


def test_diff_latency_grown_10pct_is_worse_at_5pct_threshold(store, capsys):
    uri, ids = store
    code, out = diff_json(capsys, uri, ids["base"], ids["slow"], "--threshold", "0.05")
    assert code == 1
    verdicts = {m["metric"]: m["verdict"] for m in out["metrics"]}
    assert verdicts == {
        "pe-local-hbm/effective_bw_gbs": "same",
        "pe-local-hbm/latency_ns": "worse",
        "pe-local-hbm/utilization": "same",
        "sim_events": "same",
        "wall_s": "ignored",
    }
    assert out["worse"] == ["pe-local-hbm/latency_ns"]
    latency = next(m for m in out["metrics"] if m["metric"] == "pe-local-hbm/latency_ns")
    assert latency["change"] == pytest.approx(0.10)
    assert latency["better"] == "lower"
    assert out["summary"] == (
        "1 metric worse than baseline by more than 5%: pe-local-hbm/latency_ns (+10.0%)"
    )


def test_diff_latency_grown_10pct_passes_at_20pct_threshold(store, capsys):
    uri, ids = store
    code, out = diff_json(capsys, uri, ids["base"], ids["slow"], "--threshold", "20%")
    assert code == 0
    assert out["worse"] == []
    assert out["summary"] == "no metric worse than baseline by more than 20% (4 same)"


def test_diff_judges_wall_time_only_when_asked(store, capsys):
    uri, ids = store
    code, out = diff_json(
        capsys, uri, ids["base"], ids["slow"], "--threshold", "0.2", "--include-wall"
    )
    assert (code, out["worse"]) == (1, ["wall_s"])


def test_diff_bandwidth_drop_is_worse_and_utilization_gain_better(store, capsys):
    uri, ids = store
    code, out = diff_json(capsys, uri, ids["base"], ids["bw"])
    assert code == 1
    verdicts = {m["metric"]: m["verdict"] for m in out["metrics"]}
    assert verdicts["pe-local-hbm/effective_bw_gbs"] == "worse"
    assert verdicts["pe-local-hbm/utilization"] == "better"
    # No direction for an event count: it changed, it is never worse.
    assert verdicts["sim_events"] == "changed"
    assert out["worse"] == ["pe-local-hbm/effective_bw_gbs"]


def test_diff_bandwidth_gain_is_better(store, capsys):
    uri, ids = store
    code, out = diff_json(capsys, uri, ids["bw"], ids["base"], "--metrics", "*_gbs")
    assert code == 0
    assert [(m["metric"], m["verdict"]) for m in out["metrics"]] == [
        ("pe-local-hbm/effective_bw_gbs", "better")
    ]
    assert out["summary"] == "no metric worse than baseline by more than 5% (1 better)"


def test_diff_direction_overrides(store, capsys):
    uri, ids = store
    code, out = diff_json(capsys, uri, ids["base"], ids["bw"], "--lower-is-better", "sim_events")
    assert code == 1
    assert "sim_events" in out["worse"]
    code, out = diff_json(
        capsys,
        uri,
        ids["base"],
        ids["bw"],
        "--metrics",
        "*/effective_bw_gbs",
        "--lower-is-better",
        "*/effective_bw_gbs",
    )
    assert (code, out["worse"]) == (0, [])
    assert [m["verdict"] for m in out["metrics"]] == ["better"]


def test_diff_table_names_runs_and_prints_a_verdict_line(store, capsys):
    uri, ids = store
    code, out, err = compare(capsys, uri, "diff", "probe-2x2-aaaa1111", ids["slow"][:6])
    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"baseline   probe-2x2-aaaa1111 ({ids['base'][:8]})  ok")
    assert lines[1].startswith(f"candidate  probe-2x2-bbbb2222 ({ids['slow'][:8]})  ok")
    row = next(line for line in lines if "pe-local-hbm/latency_ns" in line)
    assert "+10.0%" in row and "worse" in row
    assert lines[-1] == (
        "1 metric worse than baseline by more than 5%: pe-local-hbm/latency_ns (+10.0%)"
    )


def test_diff_run_name_means_the_latest_run_of_that_name(store, capsys):
    uri, ids = store
    code, out = diff_json(capsys, uri, "probe-2x2-aaaa1111", "probe-dup")
    assert out["candidate"]["run_id"] == ids["dup-new"]
    assert code == 1
    assert out["worse"] == ["pe-local-hbm/latency_ns"]


def test_diff_shows_changed_params(store, capsys):
    uri, ids = store
    _, out = diff_json(capsys, uri, ids["job0"], ids["job2"])
    assert out["params_changed"] == {"hw.hbm.pc_bw_gbs": [32, 128]}
    assert out["worse"] == []


def test_diff_unknown_run_exits_2_and_says_what_is_valid(store, capsys):
    uri, ids = store
    code, out, err = compare(capsys, uri, "diff", ids["base"], "no-such-run")
    assert (code, out) == (2, "")
    assert err.startswith("error: no run 'no-such-run' (by id, id prefix or run name)")
    assert f"latest runs: probe-2x2-20000000 ({ids['job2'][:8]})" in err
    assert len(err.splitlines()) == 1


def test_diff_unknown_experiment_exits_2(store, capsys):
    uri, ids = store
    code, _, err = compare(capsys, uri, "diff", ids["base"], ids["slow"], "--experiment", "x")
    assert code == 2
    assert "unknown experiment 'x'" in err
    assert "experiments: Default, congestion, gemm, plain, probe" in err


def test_diff_runs_without_common_metrics_exit_2(store, capsys):
    uri, ids = store
    code, _, err = compare(capsys, uri, "diff", ids["base"], ids["congestion"])
    assert code == 2
    assert "share no metric" in err


def test_missing_store_is_reported_not_created(tmp_path, capsys):
    db = tmp_path / "outputs" / "mlflow.db"
    code, _, err = compare(capsys, f"sqlite:///{db}", "runs")
    assert code == 2
    assert err.startswith(f"error: no tracking store at {db}")
    assert not db.exists()


def test_empty_store_exits_2(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()
    capsys.readouterr()  # mlflow's own log of creating the tables
    for argv in (["runs"], ["diff", "a", "b"]):
        code, _, err = compare(capsys, uri, *argv)
        assert code == 2
        assert err == f"error: tracking store {uri} has no runs yet: run a bench first\n"


def test_bad_threshold_is_a_usage_error(store, capsys):
    uri, ids = store
    code, _, err = compare(capsys, uri, "diff", "a", "b", "--threshold", "-1")
    assert code == 2
    assert "'-1' is negative" in err


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pe-local-hbm/latency_ns", "lower"),
        ("congestion/hbm-incast-8/makespan_ns", "lower"),
        ("wall_s", "lower"),
        ("sim_time_ns", "lower"),
        ("bench/size_bytes", "lower"),
        ("pe-local-hbm/effective_bw_gbs", "higher"),
        ("gemm/achieved_tflops", "higher"),
        ("host/ops_per_s", "higher"),  # a rate, not a duration
        ("sim_events", None),
        # Without a declaration a name's words decide nothing.
        ("pe-local-hbm/utilization", None),
        ("tflops", None),
        ("max_abs_err", None),
    ],
)
def test_default_direction_is_by_unit_suffix(name, expected):
    assert metric_direction(name) == expected


@pytest.mark.parametrize(
    ("bench", "name", "expected"),
    [
        ("gemm", "tflops", "higher"),
        ("gemm", "sip1/tflops", "higher"),
        ("gemm", "roofline_ratio", "higher"),
        ("gemm", "max_abs_err", "lower"),
        ("gemm", "verified", "higher"),
        ("gemm", "roofline_hbm_ns", None),  # an analytic bound, not a measurement
        ("gemm", "kernel_ns", "lower"),
        ("probe", "pe-local-hbm/utilization", "higher"),
        ("probe", "pe-local-hbm/hops", None),
        ("probe", "pe-local-hbm/latency_ns", "lower"),
        ("tp_mlp", "tflops", "higher"),
        ("ipcq_allreduce", "model_ratio", "lower"),
        ("ipcq_allreduce", "model_ns", None),
    ],
)
def test_benches_declare_their_metrics_directions(bench, name, expected):
    assert metric_direction(name, get_bench(bench).better) == expected


def test_user_patterns_beat_the_declared_direction():
    declared = get_bench("gemm").better
    assert direction("tflops", declared) == "higher"
    assert direction("tflops", declared, lower=["tfl*"]) == "lower"
    assert direction("pes_used", declared, higher=["pes_used"]) == "higher"


def test_verdict_and_relative_change():
    assert relative_change(100.0, 110.0) == pytest.approx(0.1)
    assert relative_change(0.0, 0.0) == 0.0
    assert relative_change(0.0, 1.0) == float("inf")
    assert verdict(0.1, "lower", 0.05) == "worse"
    assert verdict(0.1, "higher", 0.05) == "better"
    assert verdict(-0.1, "higher", 0.05) == "worse"
    assert verdict(0.05, "lower", 0.05) == "same"
    assert verdict(0.5, None, 0.05) == "changed"


def test_help_via_python_m():
    out = subprocess.run(
        [sys.executable, "-m", "kernbench.compare", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "usage: python -m kernbench.compare" in out.stdout
    assert "diff probe-4x4-1a2b3c4d probe-4x4-5e6f7a8b" in out.stdout


def test_diff_against_a_failed_candidate_fails_the_gate(store, capsys):
    # The failed run has only wall_s, which is never judged: the gate must still not pass.
    uri, ids = store
    code, _, err = compare(capsys, uri, "diff", ids["base"], ids["failed"])
    assert code == 1
    assert "regression: candidate" in err and "failed" in err
    assert "lacks 4 baseline metric(s)" in err


# --- where runs are looked up, and which columns --------------------------------------------


def test_runs_default_to_the_latest_runs_experiment_and_say_so(store, capsys):
    uri, ids = store
    code, out, err = compare(capsys, uri, "runs")
    assert code == 0
    assert err == f"{LATEST_NOTE} (--experiment NAME)\n"
    assert out.startswith("probe: runs (9)")
    code, out, err = compare(capsys, uri, "runs", "--experiment", "gemm")
    assert (code, err) == (0, "")
    assert out.startswith("gemm: runs (3)")


def test_a_sweep_is_found_by_its_id_or_parent_in_any_experiment(store, capsys):
    uri, ids = store
    jobs = [ids["gemm"], ids["gemm-slow"], ids["qkv"]]
    for ref in ("sw-gemm", ids["gemm-parent"], ids["gemm-parent"][:7], "sweep-gemm-sw-gemm"):
        runs = runs_json(capsys, uri, "--sweep", ref)
        assert [r["run_id"] for r in runs] == jobs, ref
    by_parent = runs_json(capsys, uri, "--parent", ids["gemm-parent"][:9])
    assert [r["run_id"] for r in by_parent] == jobs
    code, out, err = compare(capsys, uri, "runs", "--sweep", ids["gemm-parent"])
    assert (code, err) == (0, "")
    assert out.startswith("gemm: sweep sw-gemm (3)")
    # --experiment still narrows the look-up.
    code, _, err = compare(capsys, uri, "runs", "--sweep", "sw-gemm", "--experiment", "probe")
    assert code == 2 and "no sweep 'sw-gemm'" in err


def test_default_metric_columns_are_the_benches_headline(store, capsys):
    uri, _ = store
    runs = runs_json(capsys, uri, "--sweep", "sw-gemm")
    assert list(runs[0]["metrics"]) == [
        "latency_ns",
        "kernel_ns",
        "tflops",
        "roofline_ratio",
        "verified",
        "wall_s",
    ]


def test_without_a_headline_the_default_columns_are_flat_and_nested_latencies(store, capsys):
    uri, _ = store
    runs = runs_json(capsys, uri, "--experiment", "plain")
    assert list(runs[0]["metrics"]) == ["latency_ns", "x/latency_ns", "wall_s"]


# --- diff: directions the benches declared, and runs of two benches -------------------------


def test_diff_tflops_down_30pct_is_worse_not_changed(store, capsys):
    uri, ids = store
    code, out = diff_json(capsys, uri, ids["gemm"], ids["gemm-slow"])
    assert code == 1
    rows = {m["metric"]: (m["better"], m["verdict"]) for m in out["metrics"]}
    assert rows["tflops"] == ("higher", "worse")
    assert rows["kernel_ns"] == ("lower", "worse")
    assert rows["latency_ns"] == ("lower", "worse")
    assert rows["roofline_ns"] == (None, "same")
    assert rows["verified"] == ("higher", "same")
    assert out["worse"] == ["kernel_ns", "latency_ns", "tflops"]
    tflops = next(m for m in out["metrics"] if m["metric"] == "tflops")
    assert tflops["change"] == pytest.approx(-0.3)


def test_diff_of_two_benches_says_so(store, capsys):
    uri, ids = store
    code, out, err = compare(capsys, uri, "diff", ids["gemm"], ids["qkv"], "--format", "json")
    assert code == 1  # the shared metrics are compared: qkv's run is slower
    assert err == (
        f"note: gemm-2x2-0aaaaaaa ({ids['gemm'][:8]}) is a run of bench 'gemm' and "
        f"qkv_gemm-2x2-2aaaaaaa ({ids['qkv'][:8]}) of 'qkv_gemm': comparing only the metrics "
        "both have\n"
    )
    assert json.loads(out)["worse"] == ["kernel_ns", "latency_ns", "tflops"]
    code, out, err = compare(capsys, uri, "diff", ids["base"], ids["gemm"])
    assert (code, out) == (2, "")
    assert err == (
        f"error: probe-2x2-aaaa1111 ({ids['base'][:8]}) is a run of bench 'probe' and "
        f"gemm-2x2-0aaaaaaa ({ids['gemm'][:8]}) of 'gemm': they share no metric but "
        "kernbench's own (avg_power_w, energy_uj, sim_events, sim_time_ns, tflops_per_w, "
        "tokens_per_j, wall_s); compare two runs of one bench "
        "(kernbench compare runs lists them)\n"
    )


# --- tables at the terminal's width ---------------------------------------------------------


def printed_numbers(out: str) -> set[str]:
    return set(re.findall(r"-?[0-9][0-9,]*\.?[0-9]*%?", out))


@pytest.mark.parametrize("columns", [80, 160])
def test_runs_table_fits_the_terminal_and_never_cuts_a_value(store, capsys, monkeypatch, columns):
    uri, ids = store
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, _ = compare(
        capsys, uri, "runs", "--sweep", "sw-gemm", "--metrics", "*", "--params", "*"
    )
    assert code == 0
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= columns
    assert "…" not in out
    # Every value is printed whole on one line: ids, params, and each metric.
    for key in ("gemm", "gemm-slow", "qkv"):
        assert ids[key][:8] in out
    for value in ("5,714", "6,714", "0.001", "1,000", "7", "10", "128"):
        assert value in printed_numbers(out), value
    for name in ("roofline_ratio", "max_abs_err", "bench.block_m"):
        assert name.split(".")[-1] in out
    titles = [line.rstrip() for line in lines if line.startswith("gemm: sweep sw-gemm (3)")]
    if columns == 160:
        assert titles == ["gemm: sweep sw-gemm (3)"]
    else:
        # Too many columns for one table: split, each table keyed by the run id.
        assert len(titles) > 1
        assert titles == [
            f"gemm: sweep sw-gemm (3) [{n}/{len(titles)}]" for n in range(1, len(titles) + 1)
        ]
    assert out.count(ids["qkv"][:8]) == len(titles)


def test_runs_table_keeps_names_and_start_where_they_fit(store, capsys, monkeypatch):
    uri, ids = store
    monkeypatch.setenv("COLUMNS", "160")
    code, out, _ = compare(capsys, uri, "runs", "--sweep", "sw-gemm")
    assert code == 0
    assert out.splitlines()[0].rstrip() == "gemm: sweep sw-gemm (3)"
    lines = out.splitlines()
    header = lines[next(i for i, line in enumerate(lines) if line.startswith("─")) - 1]
    assert header.split()[:4] == ["run", "id", "status", "start"]
    assert "qkv_gemm-2x2-2aaaaaaa" in out


@pytest.mark.parametrize("columns", [80, 160])
def test_diff_table_fits_the_terminal_and_never_cuts_a_value(store, capsys, monkeypatch, columns):
    uri, ids = store
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, _ = compare(capsys, uri, "diff", ids["job0"], ids["job2"])
    assert code == 0
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= columns
    assert "…" not in out
    row = next(line for line in lines if "pe-local-hbm/latency_ns" in line)
    assert re.search(r"100\s+80\s+-20.0%\s+lower\s+better", row), row
