"""Every run reports its energy (docs/energy.md): the metrics at every trace level, the split in
summary.json and report.md, the per-link and per-unit energy in links.csv, the directions a
comparison and a search use, and a bad price refused with the key named."""

import csv
import io
import json
from collections import defaultdict

import pytest
from hydra import compose, initialize_config_dir
from rich.console import Console

from kernbench.bench import get_bench
from kernbench.bench.result import metric_direction
from kernbench.cli import run
from kernbench.config import conf_dir
from kernbench.runtime.energy import COMPONENTS, Energy

GEMM = ("bench=gemm", "topology=2x2", "bench.m=64", "bench.n=64", "bench.k=128")
ENERGY_METRICS = {"energy_uj", "avg_power_w", "tflops_per_w"}


def run_cfg(tmp_path, *overrides: str):
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["tracking=off", *overrides])
    out, err = io.StringIO(), io.StringIO()
    outcome = run(
        cfg, tmp_path, console=Console(file=out, width=160), err_console=Console(file=err)
    )
    return outcome, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def gemm_runs(tmp_path_factory):
    """The same small GEMM at ``sim.trace=off`` and ``summary``."""
    runs = {}
    for level in ("off", "summary"):
        out_dir = tmp_path_factory.mktemp(level)
        outcome, out, err = run_cfg(out_dir, *GEMM, f"sim.trace={level}")
        assert (outcome.exit_code, err) == (0, "")
        runs[level] = (out_dir, json.loads((out_dir / "summary.json").read_text()), out)
    return runs


def test_energy_metrics_are_reported_at_trace_off_and_do_not_depend_on_the_level(gemm_runs):
    _, off, out = gemm_runs["off"]
    _, summary, _ = gemm_runs["summary"]
    assert off["metrics"].keys() >= ENERGY_METRICS
    for name in ENERGY_METRICS:
        assert off["metrics"][name] > 0
        assert off["metrics"][name] == pytest.approx(summary["metrics"][name], rel=1e-12)
    m = off["metrics"]
    # the definitions, from the run's own figures
    assert m["avg_power_w"] == pytest.approx(m["energy_uj"] * 1e-6 / (off["sim_time_ns"] * 1e-9))
    flops = 2 * 64 * 64 * 128  # one PE, tiles dividing the shape: no padded FLOPs
    assert m["tflops_per_w"] == pytest.approx(flops / 1e12 / (m["energy_uj"] * 1e-6))
    assert "energy: " in out and "W average" in out


def test_the_split_sums_to_the_total_in_the_summary_and_the_report(gemm_runs):
    out_dir, summary, _ = gemm_runs["off"]
    split = summary["energy"]["components_uj"]
    assert list(split) == [
        "noc", "ucie", "pcie", "switch", "hbm", "tcm", "sram", "gemm", "math", "static",
    ]  # fmt: skip
    assert sum(split.values()) == pytest.approx(summary["metrics"]["energy_uj"], rel=1e-12)
    for moved in ("noc", "ucie", "pcie", "hbm", "tcm", "gemm", "static"):
        assert split[moved] > 0, moved
    assert split["switch"] == 0  # one SIP: no switch
    report = (out_dir / "report.md").read_text()
    assert "## Energy" in report
    assert "| component | energy_uj | share |" in report
    assert "| total |" in report


def test_links_csv_energy_adds_up_to_the_split_by_link_class_and_unit_kind(gemm_runs):
    out_dir, summary, _ = gemm_runs["summary"]
    by: dict[str, float] = defaultdict(float)
    with (out_dir / "links.csv").open() as f:
        for row in csv.DictReader(f):
            key = row["link_class"] if row["kind"] == "link" else row["kind"]
            by[key] += float(row["energy_pj"])
    split = summary["energy"]["components_uj"]
    for link_class in ("noc", "ucie", "pcie", "switch"):
        assert by[link_class] * 1e-6 == pytest.approx(split[link_class], rel=1e-9, abs=1e-12)
    assert by["hbm"] * 1e-6 == pytest.approx(split["hbm"], rel=1e-9)
    assert by["pe_gemm"] * 1e-6 == pytest.approx(split["gemm"], rel=1e-9)
    assert by["pe_tcm"] * 1e-6 == pytest.approx(split["tcm"], rel=1e-9)
    assert by["pe_math"] * 1e-6 == pytest.approx(split["math"], rel=1e-9, abs=1e-12)
    assert by["dma"] == 0  # a DMA's bytes are charged on the links and memories it uses


def test_a_bench_with_tokens_reports_tokens_per_joule(tmp_path):
    outcome, _, err = run_cfg(tmp_path, "bench=llm_layer", "topology=2x2", "sim.trace=off")
    assert (outcome.exit_code, err) == (0, "")
    m = outcome.summary["metrics"]
    # the bench's own: its tokens over the layer's energy (the window from its start to its
    # end, not the run's average power, which includes deploying the weights), per layer
    tokens, layers = 128, 2  # bench.seq_len and model.layers of the defaults (tiny)
    assert m["tokens_per_j"] == pytest.approx(tokens / (m["layer_energy_uj"] * 1e-6 * layers))
    assert m["tokens_per_j"] != pytest.approx(m["tokens_per_s"] / m["avg_power_w"])
    assert m["tflops_per_w"] > 0


def test_without_its_own_a_run_gets_tokens_per_joule_at_its_average_power():
    energy = Energy(dict.fromkeys(COMPONENTS, 0.0) | {"static": 2e6}, 0, 1000.0)  # 2 W
    assert energy.metrics(tokens_per_s=10.0)["tokens_per_j"] == pytest.approx(10.0 / 2.0)
    assert "tokens_per_j" not in energy.metrics()


@pytest.mark.parametrize("bench", ["gemm", "llm", "llm_layer", "probe", "tp_mlp"])
def test_energy_directions_hold_whatever_the_bench_declares(bench):
    better = get_bench(bench).better
    assert metric_direction("energy_uj", better) == "lower"
    assert metric_direction("avg_power_w", better) == "lower"
    assert metric_direction("tflops_per_w", better) == "higher"
    assert metric_direction("tokens_per_j", better) == "higher"


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("hw.energy.noc_pj_per_bit=-1", "hw.energy.noc_pj_per_bit: must be >= 0, got -1"),
        ("hw.energy.pe_static_w=hot", "hw.energy.pe_static_w"),
    ],
)
def test_a_bad_price_is_refused_naming_its_key(tmp_path, override, fragment):
    outcome, _, err = run_cfg(tmp_path, "bench=probe", "topology=2x2", override)
    assert outcome.exit_code == 2
    assert fragment in outcome.error
    assert not outcome.summary.get("metrics")
