"""The GEMM benches through the real Hydra composition of conf/ and ``kernbench.cli.run``."""

import io
import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from rich.console import Console

from kernbench.bench import get_bench
from kernbench.cli import run
from kernbench.config import conf_dir

BENCHES = ("qkv_gemm", "qkv_gemm_multi_pe", "gemm")


def compose_cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=["tracking=off", *overrides])


def run_captured(tmp_path: Path, *overrides: str):
    out, err = io.StringIO(), io.StringIO()
    outcome = run(
        compose_cfg(*overrides),
        tmp_path,
        console=Console(file=out, width=160),
        err_console=Console(file=err),
    )
    return outcome, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", (*BENCHES, "llm_layer", "llm"))
def test_each_yaml_lists_every_parameter_with_a_comment(name):
    path = conf_dir() / "bench" / f"{name}.yaml"
    values = yaml.safe_load(path.read_text())
    params = get_bench(name).params
    assert list(values) == ["name", *(f.name for f in fields(params))]
    assert values["name"] == name
    assert get_bench(name).params(**{k: v for k, v in values.items() if k != "name"}) == params()
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", "name:")):
            assert " # " in line, f"{path.name}: no comment on {line!r}"


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("qkv_gemm", ("bench.m=40", "bench.n=70")),
        ("qkv_gemm_multi_pe", ("bench.m=40", "bench.k=48", "bench.n=72", "bench.block_m=8",
                               "bench.block_k=32", "bench.block_n=16")),
        ("gemm", ("bench.m=50", "bench.k=40", "bench.n=60", "bench.block_m=16",
                  "bench.block_k=16", "bench.block_n=32", "bench.pes=16", "bench.dtype=bf16")),
    ],
)  # fmt: skip
def test_bench_runs_through_the_command_line_path(tmp_path, name, overrides):
    outcome, out, err = run_captured(tmp_path, f"bench={name}", "topology=2x2", *overrides)
    assert (outcome.status, outcome.exit_code, err) == ("ok", 0, "")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["bench"] == name
    assert summary["checks"] == {"verified": True, "kernel_ge_roofline": True}
    m = summary["metrics"]
    assert m["kernel_ns"] >= m["roofline_ns"] > 0
    assert not any(k.startswith("sip") for k in m)
    report = (tmp_path / "report.md").read_text()
    assert "Roofline components" in report and "Per PE" in report
    assert "Roofline components" in out and "Per PE" not in out  # detail: report only
    assert (tmp_path / "unit_busy.png").is_file()


def test_device_all_on_two_sips_reports_each_and_the_aggregate(tmp_path):
    outcome, _, err = run_captured(
        tmp_path, "bench=gemm", "topology=4x4_2sip", "topology.mesh_w=1", "topology.mesh_h=1",
        "device=all", "bench.m=48", "bench.k=40", "bench.n=56", "bench.block_m=16",
        "bench.block_n=16", "bench.block_k=16", "bench.pes=4", "sim.trace=off",
    )  # fmt: skip
    assert (outcome.status, err) == ("ok", "")
    m = json.loads((tmp_path / "summary.json").read_text())["metrics"]
    for key in ("latency_ns", "kernel_ns", "tflops", "roofline_ratio", "verified"):
        assert {key, f"sip0/{key}", f"sip1/{key}"} <= set(m)
    assert m["latency_ns"] == max(m["sip0/latency_ns"], m["sip1/latency_ns"])
    assert m["pes_used"] == 8


def test_device_sip_n_runs_only_that_sip(tmp_path):
    outcome, _, _ = run_captured(
        tmp_path, "bench=qkv_gemm", "topology=4x4_2sip", "topology.mesh_w=1",
        "topology.mesh_h=1", "device=sip:1", "bench.m=32", "sim.trace=off",
    )  # fmt: skip
    assert outcome.status == "ok"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert not any(k.startswith("sip") for k in summary["metrics"])
    assert "sip1.cube0.pe0" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("bench=qkv_gemm", "bench.m=0"), "bench.m: must be a positive integer, got 0"),
        (("bench=qkv_gemm_multi_pe", "bench.dtype=fp8"),
         "bench.dtype: must be one of fp16, bf16, fp32, int8, got 'fp8'"),
        (("bench=gemm", "bench.block_k=-64"),
         "bench.block_k: must be a positive integer, got -64"),
        (("bench=gemm", "bench.pes=33"),
         "bench.pes: 33 PEs asked, this device has 32; use 1..8 or a multiple of 8 up to 32"),
    ],
)  # fmt: skip
def test_bad_parameters_fail_the_run_naming_the_key(tmp_path, overrides, message):
    outcome, _, err = run_captured(tmp_path, "topology=2x2", "sim.trace=off", *overrides)
    assert (outcome.status, outcome.exit_code, outcome.error) == ("failed", 2, message)
    assert err == f"error: {message}\n"


def test_a_wrongly_typed_parameter_names_the_key(tmp_path):
    outcome, _, _ = run_captured(tmp_path, "bench=gemm", "bench.m=big", "sim.trace=off")
    assert outcome.exit_code == 2
    assert outcome.error == "bench.m: expected an integer, got 'big'"


def test_tiles_too_big_for_tcm_fail_the_run_before_it_simulates(tmp_path):
    outcome, _, err = run_captured(
        tmp_path, "bench=gemm", "topology=2x2", "sim.trace=off", "bench.m=64", "bench.k=64",
        "bench.n=64", "bench.block_m=2048", "bench.block_n=2048", "bench.block_k=16",
    )  # fmt: skip
    assert (outcome.status, outcome.exit_code) == ("failed", 2)
    assert outcome.error.startswith("bench.block_m: tiles of 2048x16x2048 ")
    assert "(hw.pe.tcm_bytes = 16.0 MiB)" in outcome.error
    assert "sim_events" not in outcome.summary
    assert "Traceback" not in err
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"


def test_command_line_default_qkv_gemm(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "kernbench", "bench=qkv_gemm", "topology=2x2", "tracking=off",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["params"]["bench.m"] == 128
    assert summary["params"]["bench.block_k"] == 64
    assert summary["metrics"]["verified"] == 1.0
    assert "qkv_gemm on sip*.cube0.pe0: 128x256 @ 256x128 fp16" in proc.stdout
