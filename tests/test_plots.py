"""Plots and observation artifacts: produced for the probe and for a congestion scenario,
readable PNGs, logged to a real MLflow store and linked from report.md."""

import dataclasses
import gzip
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from kernbench.benches.probe import congestion_scenarios
from matplotlib import image as mpimg
from mlflow.tracking import MlflowClient
from rich.console import Console

from kernbench.bench import BenchContext
from kernbench.cli import run
from kernbench.config import conf_dir
from kernbench.core import KIB
from kernbench.report import render_report, write_observation
from kernbench.sim.spec import SimSpec
from kernbench.topology import SystemSpec, TopologySpec

PROBE_PLOTS = {
    "probe_bandwidth.png",
    "probe_latency_breakdown.png",
    "link_heatmap.png",
    "unit_busy.png",
}


def assert_readable_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = mpimg.imread(path)
    height, width = pixels.shape[:2]
    assert height >= 300 and width >= 400, (path.name, pixels.shape)
    # Not a blank canvas: many distinct colours.
    rgb = (pixels[::2, ::2, :3] * 255).astype(np.uint32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    assert len(np.unique(packed)) > 50, path.name


def image_links(report: str) -> list[str]:
    return re.findall(r"!\[[^\]]+\]\(([^)]+\.png)\)", report)


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory):
    """The probe on a 2x2 mesh with sim.trace=full, logged to a SQLite store in tmp."""
    tmp = tmp_path_factory.mktemp("probe_plots")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    overrides = ["bench=probe", "topology=2x2", "sim.trace=full", f"tracking.uri={uri}"]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    out = io.StringIO()
    outcome = run(
        cfg, tmp / "run", console=Console(file=out), err_console=Console(file=out), launch_dir=tmp
    )
    assert (outcome.status, outcome.exit_code) == ("ok", 0), out.getvalue()
    return uri, outcome, tmp / "run"


def test_probe_plots_are_readable_pngs_linked_from_the_report(probe_run):
    _, outcome, out_dir = probe_run
    for name in PROBE_PLOTS:
        assert_readable_png(out_dir / name)
    report = (out_dir / "report.md").read_text()
    assert sorted(image_links(report)) == sorted(PROBE_PLOTS)
    assert "[links.csv](links.csv)" in report
    assert "[trace.json.gz](trace.json.gz)" in report
    assert "### Hottest links (top 10 by utilization)" in report
    assert "### Hottest units (top 10 by utilization)" in report
    observe = outcome.summary["observe"]
    assert observe["level"] == "full" and observe["dropped"] == 0


def test_observation_artifacts_are_logged_to_mlflow(probe_run, tmp_path):
    uri, outcome, out_dir = probe_run
    client = MlflowClient(tracking_uri=uri)
    run_id = outcome.summary["mlflow"]["run_id"]
    logged = {f.path for f in client.list_artifacts(run_id)}
    assert logged >= PROBE_PLOTS | {"links.csv", "trace.json.gz", "report.md", "summary.json"}
    for name in sorted(PROBE_PLOTS) + ["trace.json.gz"]:
        local = Path(client.download_artifacts(run_id, name, str(tmp_path)))
        assert local.read_bytes() == (out_dir / name).read_bytes()
        if name.endswith(".png"):
            assert_readable_png(local)
    with gzip.open(tmp_path / "trace.json.gz", "rt") as f:
        assert json.load(f)["traceEvents"]


def test_probe_route_traces_mark_the_bottleneck(probe_run):
    _, _, out_dir = probe_run
    report = (out_dir / "report.md").read_text()
    routes = report.split("## Route traces", 1)[1]
    assert "### Route of pe-cross-cube-far (32 KiB), head flit" in routes
    assert re.search(
        r"\| \*\*\d+\*\* \| \*\*[\w.]+\*\* \| \*\*[\d.,]+\*\* \| \*\*[\d.,]+\*\* \| "
        r"\*\*after bottleneck sip0\.cube0\.ucie\.E\.conn0 \(128 GB/s\)\*\* \|",
        routes,
    )


@pytest.mark.parametrize("level", ["full", "summary"])
def test_congestion_scenario_plots(tmp_path, level):
    spec = SystemSpec(
        topology=TopologySpec(name="2x2", mesh_w=2, mesh_h=2),
        sim=dataclasses.replace(SimSpec(), trace=level),
    )
    ctx = BenchContext.from_spec(spec)
    scenarios, _ = congestion_scenarios(ctx.topology, 16 * KIB)
    port = next(sc for sc in scenarios if sc.name == "ucie-port")
    assert all(c.ok for c in ctx.new_system(port.name).execute_all(port.msgs))
    summary: dict = {"status": "ok", "bench": "congestion", "metrics": {}}
    write_observation(tmp_path, summary, ctx.observations())
    plots = {p["file"] for p in summary["observe"]["plots"]}
    assert plots == {"link_heatmap.png", "unit_busy.png"}
    for name in plots:
        assert_readable_png(tmp_path / name)
    assert sorted(image_links(render_report(summary))) == sorted(plots)
    assert (tmp_path / "trace.json.gz").exists() == (level == "full")
    # All eight flows share cube 0's east port: its connections are among the hottest links.
    hottest = [row[0] for row in summary["observe"]["hottest"][0]["rows"]]
    assert {f"sip0.cube0.ucie.E.conn{k}" for k in range(4)} <= set(hottest)


def test_a_run_removes_the_observation_artifacts_an_earlier_run_left(tmp_path):
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    stale = ["probe_bandwidth.png", "links.csv", "trace.json.gz"]
    for name in stale:
        (out_dir / name).write_text("from an earlier run")
    overrides = ["bench=probe", "topology=2x2", "bench.sweep=false", "bench.congestion=false"]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*overrides, "sim.trace=off", "tracking=off"])
    out = io.StringIO()
    outcome = run(cfg, out_dir, console=Console(file=out), err_console=Console(file=out))
    assert (outcome.status, outcome.exit_code) == ("ok", 0), out.getvalue()
    assert [name for name in stale if (out_dir / name).exists()] == []
    assert "observe" not in outcome.summary


def test_the_llm_op_plot_stacks_every_op_and_needs_op_metrics(tmp_path):
    from kernbench.report import plots

    metrics = {"layer_ns": 10.0, "op/norm_ns": 3.0, "op/norm_roofline_ns": 1.0,
               "op/mlp_ns": 7.0, "op/mlp_roofline_ns": 4.0}  # fmt: skip
    assert plots.llm_ops(metrics, tmp_path) == ["llm_ops.png"]
    img = mpimg.imread(tmp_path / "llm_ops.png")
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert plots.llm_ops({"layer_ns": 1.0}, tmp_path / "none") == []
