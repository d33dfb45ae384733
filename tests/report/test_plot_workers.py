"""The plots drawn by helper processes (kernbench.report.plot_workers) are the files drawn in
the run's own process, byte for byte and in the order they were asked for; tasks can be sent
while a worker still imports matplotlib; a plot's failure fails the run with its message,
while the tasks of a worker that died or could not read them are drawn by the run; unused
workers are stopped; a single run on two cores uses them; the probe asks for
its plots while it runs."""

import signal
import subprocess
import sys
import time

import pytest

from kernbench.bench import BenchContext, get_bench
from kernbench.report import plot_workers, stats
from kernbench.report.plot_workers import PlotWorkers, RunPlots
from kernbench.sim.spec import SimSpec
from kernbench.topology import SystemSpec, TopologySpec

SPEC_2X2 = SystemSpec(topology=TopologySpec(name="2x2", mesh_w=2, mesh_h=2))
PLOT_FILES = [
    "probe_latency_breakdown.png",
    "probe_bandwidth.png",
    "link_heatmap.png",
    "unit_busy.png",
]


@pytest.fixture(scope="module")
def probe_tasks():
    """The plots of a small probe run, as (name, args) tasks in the order they are asked for."""
    ctx = BenchContext.from_spec(SPEC_2X2)
    info = get_bench("probe")
    info.fn(ctx, info.params(size_bytes=4096, congestion=False))
    obs = ctx.observations()
    rows = stats.link_rows(obs)
    asked = [task for _, task in ctx.plots.entries]
    return [*asked, ("link_heatmap", (obs["topology"], rows)), ("busy_bars", (rows,))]


def assert_png(path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path.name
    assert path.stat().st_size > 10_000, path.name


def wait_until_started(workers: PlotWorkers, count: int, timeout_s: float = 120) -> None:
    """Until ``count`` workers have started and imported matplotlib."""
    deadline = time.monotonic() + timeout_s
    while not (len(workers.workers) == count and all(w.ready for w in workers.workers)):
        assert time.monotonic() < deadline, "the plot workers did not start"
        time.sleep(0.02)


def ask(plots: RunPlots, tasks) -> None:
    for name, args in tasks:
        plots.add(name, *args)


def test_workers_draw_the_same_files_as_the_run_itself(probe_tasks, tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    workers = PlotWorkers(2)
    wait_until_started(workers, 2)  # the second starts once the first has matplotlib
    by_workers = RunPlots(there, workers)
    ask(by_workers, probe_tasks)
    assert all(ticket is not None for ticket, _ in by_workers.entries)  # none drawn here
    in_process = RunPlots()
    ask(in_process, probe_tasks)
    assert by_workers.files(there) == in_process.files(here) == PLOT_FILES
    for name in PLOT_FILES:
        assert (there / name).read_bytes() == (here / name).read_bytes(), name
    assert workers.workers == []  # collected and closed


def test_both_workers_draw_when_both_are_ready(probe_tasks, tmp_path):
    workers = PlotWorkers(2)
    wait_until_started(workers, 2)
    tickets = [workers.submit(tmp_path, task) for task in probe_tasks[-2:]]  # a run's end
    assert [w.pending for w in workers.workers] == [1, 1]  # one figure each
    assert workers.finish() == {tickets[0]: ["link_heatmap.png"], tickets[1]: ["unit_busy.png"]}
    assert (tmp_path / "link_heatmap.png").exists() and (tmp_path / "unit_busy.png").exists()


@pytest.mark.parametrize("count", [1, 2])
def test_tasks_sent_while_the_first_imports_are_drawn_in_order(probe_tasks, tmp_path, count):
    workers = PlotWorkers(count)
    plots = RunPlots(tmp_path, workers)
    ask(plots, probe_tasks)  # at once: the first is still importing matplotlib
    assert len(workers.workers) == 1
    assert plots.files(tmp_path) == PLOT_FILES


def test_a_failing_plot_fails_with_its_message(tmp_path):
    workers = PlotWorkers(2)
    wait_until_started(workers, 2)
    procs = list(workers.procs)
    plots = RunPlots(tmp_path, workers)
    plots.add("probe_bandwidth", {"a/sweep/4KiB/effective_bw_gbs": "x"})
    with pytest.raises(RuntimeError, match=r"^the plot worker failed: ValueError: could not"):
        plots.files(tmp_path)
    assert all(p.poll() is not None for p in procs)  # the unused second one too


def test_the_plots_of_a_worker_that_died_are_drawn_by_the_run(probe_tasks, tmp_path):
    workers = PlotWorkers(1)
    wait_until_started(workers, 1)
    proc = workers.procs[0]
    proc.send_signal(signal.SIGSTOP)  # it cannot draw before it dies
    plots = RunPlots(tmp_path, workers)
    ask(plots, probe_tasks)
    assert all(ticket is not None for ticket, _ in plots.entries)  # all sent to it
    proc.kill()
    assert plots.files(tmp_path) == PLOT_FILES
    for name in PLOT_FILES:
        assert_png(tmp_path / name)


class Breakdown(dict):
    """Metrics in a class the workers cannot import (it lives in this test module)."""


def test_data_a_worker_cannot_read_is_drawn_by_the_run(probe_tasks, tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    name, (metrics,) = probe_tasks[0]
    task = (name, (Breakdown(metrics),))
    workers = PlotWorkers(1)
    wait_until_started(workers, 1)
    by_workers = RunPlots(there, workers)
    ask(by_workers, [task, probe_tasks[1]])
    in_process = RunPlots()
    ask(in_process, [task, probe_tasks[1]])
    assert by_workers.files(there) == in_process.files(here) == PLOT_FILES[:2]
    for name in PLOT_FILES[:2]:
        assert (there / name).read_bytes() == (here / name).read_bytes(), name


def test_a_worker_that_never_answers_fails_the_run_instead_of_hanging(
    probe_tasks, tmp_path, monkeypatch
):
    monkeypatch.setattr(plot_workers, "TIMEOUT_S", 0.5)
    workers = PlotWorkers(1)
    wait_until_started(workers, 1)
    proc = workers.procs[0]
    proc.send_signal(signal.SIGSTOP)  # alive, but it will not draw
    plots = RunPlots(tmp_path, workers)
    ask(plots, probe_tasks[:1])
    with pytest.raises(RuntimeError, match=r"had not drawn its plots 0.5 s after the run"):
        plots.files(tmp_path)
    assert proc.poll() is not None  # stopped for good


def test_close_stops_workers_that_were_never_used(tmp_path):
    workers = PlotWorkers(2)
    wait_until_started(workers, 2)
    procs = list(workers.procs)
    workers.close()
    assert [p.poll() is not None for p in procs] == [True, True]
    plots = RunPlots(tmp_path, workers)
    assert plots.files(tmp_path) == []  # nothing asked for, nothing drawn
    assert workers.submit(tmp_path, ("busy_bars", ([],))) is None  # closed: drawn here


def test_closing_before_the_first_is_ready_starts_no_other():
    workers = PlotWorkers(3)
    first = workers.procs[0]
    workers.close()  # the first is still importing matplotlib
    assert first.poll() is not None
    time.sleep(0.2)
    assert workers.workers == []
    workers._start_one()
    assert workers.workers == []


def test_the_probe_asks_for_its_plots_as_soon_as_their_data_is_final():
    ctx = BenchContext.from_spec(SPEC_2X2)
    asked_at: dict[str, str] = {}

    def progress(done: int, total: int, what: str) -> None:
        for _, (name, _args) in ctx.plots.entries:
            asked_at.setdefault(name, what)

    ctx.progress = progress
    info = get_bench("probe")
    params = info.params(size_bytes=4096)
    result = info.fn(ctx, params)
    # The breakdown before the first sweep step, the bandwidth curves before the first
    # congestion scenario: each was asked for while the bench still had work to do.
    assert asked_at["probe_latency_breakdown"].endswith("4 KiB")
    assert asked_at["probe_bandwidth"] in {
        k.split("/")[1] for k in result.metrics if k.startswith("congestion/")
    }
    # What the plots were given is what the bench finally reported.
    for _, (name, (metrics,)) in ctx.plots.entries:
        assert all(result.metrics[k] == v for k, v in metrics.items()), name


def test_nothing_is_asked_for_with_trace_off():
    spec = SystemSpec(topology=SPEC_2X2.topology, sim=SimSpec(trace="off"))
    ctx = BenchContext.from_spec(spec)
    info = get_bench("probe")
    info.fn(ctx, info.params(size_bytes=4096, congestion=False))
    assert ctx.plots.entries == []


FOR_RUN = """
import sys, time
from kernbench.report.plot_workers import PlotWorkers, usable_cpus
def count(level, in_sweep=False):
    w = PlotWorkers.for_run(level, in_sweep=in_sweep)
    if w is None:
        return 0
    deadline = time.monotonic() + 120
    while len(w.workers) < w.count and time.monotonic() < deadline:
        time.sleep(0.02)
    n = len(w.workers)
    w.close()
    return n
print(usable_cpus(), count("summary"), count("full"), count("off"), count("summary", True))
import matplotlib
print(count("summary"))
"""


def test_a_single_run_on_two_cores_uses_workers_until_matplotlib_is_here():
    proc = subprocess.run(
        [sys.executable, "-c", FOR_RUN], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.split("\n")[:2]
    cpus, summary, full, off, sweep = map(int, first.split())
    expected = 2 if cpus >= 2 else 0
    assert (summary, full, off, sweep) == (expected, expected, 0, 0)
    assert second == "0"


DECOY = """
from pathlib import Path
from kernbench.report.plot_workers import PlotWorkers, RunPlots
from kernbench.sim.spec import SimSpec
plots = RunPlots(Path("."), PlotWorkers(1))
plots.add("busy_bars", [])
print(plots.files(Path(".")))
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
