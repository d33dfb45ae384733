"""The plots drawn by helper processes (kernbench.report.plot_workers) are the files drawn in
the run's own process, byte for byte and in the same order; a worker's failure fails the run
with its message; unused workers are stopped; a single run on two cores uses them."""

import subprocess
import sys

import pytest

from kernbench.bench import BenchContext, get_bench
from kernbench.report import stats
from kernbench.report.plot_workers import PlotWorkers, draw
from kernbench.topology import SystemSpec, TopologySpec


@pytest.fixture(scope="module")
def probe_batches():
    ctx = BenchContext.from_spec(SystemSpec(topology=TopologySpec(name="2x2", mesh_w=2, mesh_h=2)))
    info = get_bench("probe")
    params = info.params(size_bytes=4096, congestion=False)
    metrics = info.fn(ctx, params).metrics
    obs = ctx.observations()
    rows = stats.link_rows(obs)
    return [
        [("probe_plots", (metrics,))],
        [("link_heatmap", (obs, rows)), ("busy_plot", (obs, rows))],
    ]


def test_workers_draw_the_same_files_as_the_run_itself(probe_batches, tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    workers = PlotWorkers(2)
    assert workers.starter is not None
    workers.starter.join()  # the second starts once the first has matplotlib
    workers.send(probe_batches, there)
    assert len(workers.sent) == 2
    by_workers = draw(probe_batches, there, workers)
    in_process = draw(probe_batches, here, None)
    assert (
        by_workers
        == in_process
        == [
            "probe_bandwidth.png",
            "probe_latency_breakdown.png",
            "link_heatmap.png",
            "unit_busy.png",
        ]
    )
    for name in in_process:
        assert (there / name).read_bytes() == (here / name).read_bytes(), name
    assert workers.procs == []  # collected and closed


@pytest.mark.parametrize("count", [1, 2])
def test_workers_started_by_then_draw_every_batch_in_order(probe_batches, tmp_path, count):
    workers = PlotWorkers(count)
    workers.send(probe_batches, tmp_path)  # at once: the first is still importing matplotlib
    assert len(workers.sent) == 1
    assert draw(probe_batches, tmp_path, workers) == [
        "probe_bandwidth.png",
        "probe_latency_breakdown.png",
        "link_heatmap.png",
        "unit_busy.png",
    ]


def test_a_failing_plot_fails_with_its_message(tmp_path):
    workers = PlotWorkers(2)
    assert workers.starter is not None
    workers.starter.join()
    procs = list(workers.procs)
    assert len(procs) == 2
    workers.send([[("probe_plots", ({"a/sweep/4KiB/effective_bw_gbs": "x"},))]], tmp_path)
    with pytest.raises(RuntimeError, match=r"^the plot worker failed: ValueError: could not"):
        draw([], tmp_path, workers)
    assert all(p.poll() is not None for p in procs)  # the unused second one too


def test_close_stops_workers_that_were_never_used():
    workers = PlotWorkers(2)
    assert workers.starter is not None
    workers.starter.join()  # both started
    procs = list(workers.procs)
    workers.close()
    assert [p.poll() is not None for p in procs] == [True, True]
    assert draw([], None, workers) == []  # nothing sent: drawn here, nothing to draw


def test_closing_before_the_first_is_ready_starts_no_other():
    workers = PlotWorkers(3)
    first = workers.procs[0]
    workers.close()  # the first is still importing matplotlib
    assert first.poll() is not None
    assert workers.starter is not None and not workers.starter.is_alive()
    assert workers.procs == [] and workers._start_one() is False


FOR_RUN = """
import sys
from kernbench.report.plot_workers import PlotWorkers, usable_cpus
def count(level, in_sweep=False):
    w = PlotWorkers.for_run(level, in_sweep=in_sweep)
    if w and w.starter:
        w.starter.join()
    n = len(w.procs) if w else 0
    if w:
        w.close()
    return n
print(usable_cpus(), count("summary"), count("full"), count("off"), count("summary", True))
import matplotlib
print(count("summary"))
"""


def test_a_single_run_on_two_cores_uses_workers_until_matplotlib_is_here():
    proc = subprocess.run(
        [sys.executable, "-c", FOR_RUN], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.split("\n")[:2]
    cpus, summary, full, off, sweep = map(int, first.split())
    expected = 2 if cpus >= 2 else 0
    assert (summary, full, off, sweep) == (expected, expected, 0, 0)
    assert second == "0"


DECOY = """
from pathlib import Path
from kernbench.report.plot_workers import PlotWorkers
workers = PlotWorkers(1)
workers.send([[("probe_plots", ({},))]], Path("."))
print(workers.collect())
"""


def test_workers_import_the_kernbench_of_the_run_not_one_in_the_working_directory(tmp_path):
    (tmp_path / "kernbench").mkdir()
    (tmp_path / "kernbench" / "__init__.py").write_text("raise SystemExit('a decoy')\n")
    proc = subprocess.run(
        [sys.executable, "-P", "-c", DECOY],  # -P: like the console script, cwd not on the path
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, "[]"), proc.stderr
