"""``run`` on composed configs writes the run's files; the command line's exit codes and errors."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from rich.console import Console

from kernbench.cli import run
from kernbench.config import conf_dir

TESTS_DIR = Path(__file__).resolve().parents[1]
FIXTURE_CONF = TESTS_DIR / "benches_fixture" / "conf"
TINY = (f"hydra.searchpath=[file://{FIXTURE_CONF}]", "bench=tiny")


def compose_cfg(*overrides: str) -> DictConfig:
    # MLflow tracking has its own tests (test_tracking.py); here it would only add start-up.
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=["tracking=off", *overrides])


def run_captured(cfg: DictConfig, out_dir: Path):
    out, err = io.StringIO(), io.StringIO()
    outcome = run(cfg, out_dir, console=Console(file=out, width=120), err_console=Console(file=err))
    return outcome, out.getvalue(), err.getvalue()


@pytest.fixture
def tiny_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS_DIR))


def test_run_writes_summary_report_and_config(tmp_path, tiny_importable):
    outcome, out, err = run_captured(
        compose_cfg(*TINY, "topology=2x2", "bench.repeats=3"), tmp_path
    )
    assert (outcome.status, outcome.exit_code, err) == ("ok", 0, "")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "ok"
    assert summary["bench"] == "tiny"
    assert summary["params"]["topology.mesh_w"] == 2
    assert summary["params"]["bench.repeats"] == 3
    assert len(summary["config_hash"]) == 8
    assert summary["metrics"]["tiny/write_ns"] > 0
    assert summary["checks"] == {"readback/0": True, "readback/1": True, "readback/2": True}
    assert summary["sim_time_ns"] > 0
    assert summary["sim_events"] > 0
    assert summary["wall_s"] >= 0
    assert "error" not in summary
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# kernbench: tiny\n")
    assert "### host round trips" in report
    assert "| repeat | write_ns | read_ns |" in report
    assert "- PASS `readback/2`" in report
    assert "mesh_w: 2" in (tmp_path / "config.yaml").read_text()
    assert "host round trips" in out
    assert str(tmp_path) in out


def test_run_failing_after_composition_writes_a_failed_summary(tmp_path, tiny_importable):
    outcome, out, err = run_captured(compose_cfg(*TINY, "+bench.foo=1"), tmp_path)
    message = "bench.foo: unknown parameter; valid: size_bytes, repeats"
    assert (outcome.status, outcome.exit_code, outcome.error) == ("failed", 2, message)
    assert err == f"error: {message}\n"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["error"] == message
    assert summary["bench"] == "tiny"
    assert "## Error" in (tmp_path / "report.md").read_text()


def test_bench_error_from_params_is_a_user_error(tmp_path, tiny_importable):
    outcome, _, err = run_captured(compose_cfg(*TINY, "bench.repeats=0"), tmp_path)
    assert outcome.exit_code == 2
    assert err == "error: bench.repeats: must be >= 1, got 0\n"


def test_unknown_bench_module_is_a_user_error(tmp_path):
    outcome, _, err = run_captured(compose_cfg("+bench.module=no_such_module_xyz"), tmp_path)
    assert outcome.exit_code == 2
    assert err.startswith("error: bench.module: cannot import 'no_such_module_xyz'")


def kernbench(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(TESTS_DIR))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "kernbench",
            f"hydra.run.dir={tmp_path / 'run'}",
            "tracking=off",
            *overrides,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_command_line_run(tmp_path):
    proc = kernbench(tmp_path, *TINY, "topology=2x2")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "ok"
    assert summary["choices"]["topology"] == "2x2"
    assert summary["choices"]["bench"] == "tiny"
    assert summary["metrics"]["tiny/read_ns"] > 0
    assert (tmp_path / "run" / "report.md").is_file()
    assert "host round trips" in proc.stdout
    assert not (tmp_path / "outputs").exists()


def test_command_line_bad_key_is_one_line_naming_it(tmp_path):
    proc = kernbench(tmp_path, *TINY, "+hw.hbm.foo=1")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: hw.hbm.foo: unknown key; valid: slice_bytes, pseudo_channels, pc_bw_gbs, "
        "efficiency, burst_bytes, ctrl_overhead_ns"
    ]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["error"].startswith("hw.hbm.foo: unknown key")


def test_unexpected_exception_exits_1_with_traceback(tmp_path, tiny_importable):
    outcome, _, err = run_captured(compose_cfg(*TINY, "bench.name=boom"), tmp_path)
    assert (outcome.status, outcome.exit_code) == ("failed", 1)
    assert "Traceback" in err
    assert err.endswith("error: RuntimeError: boom\n")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["status"], summary["error"]) == ("failed", "RuntimeError: boom")


def test_command_line_run_with_a_model_records_its_shape(tmp_path):
    proc = kernbench(
        tmp_path,
        "model=llama3_8b",
        "bench=probe",
        "topology=2x2",
        "bench.sweep=false",
        "bench.congestion=false",
        "sim.trace=off",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "ok"
    assert summary["choices"]["model"] == "llama3_8b"
    params = summary["params"]
    # Llama 3 8B's config.json: 32 query heads sharing 8 KV heads, a 128256-token vocabulary.
    assert (params["model.name"], params["model.heads"], params["model.kv_heads"]) == (
        "llama3_8b",
        32,
        8,
    )
    assert (params["model.vocab"], params["model.rope_theta"]) == (128256, 500000.0)
    assert "kv_heads: 8" in (tmp_path / "run" / "config.yaml").read_text()
