"""The observation artifacts of a run: ``links.csv``, ``trace.json.gz`` and the plots.

:func:`write_observation` writes them to the run directory from the summary dict and the
observation records (plain data, ADR 0009) and describes them in ``summary["observe"]``, which
``report.md`` renders (hottest links and units, the plots as images, the cap note).
"""

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # a plot worker imports this package before its own module
    from kernbench.report.plot_workers import RunPlots

LINKS_CSV = "links.csv"
TRACE_FILE = "trace.json.gz"
TOP_N = 10


def clear_observation(out_dir: Path) -> None:
    """Remove the artifacts an earlier run left in ``out_dir``, so they cannot be logged with
    this one (called before the bench runs: its plots may be written while it runs)."""
    for old in [out_dir / LINKS_CSV, out_dir / TRACE_FILE, *out_dir.glob("*.png")]:
        old.unlink(missing_ok=True)


def write_observation(
    out_dir: Path,
    summary: dict[str, Any],
    obs: Mapping[str, Any],
    plots: "RunPlots | None" = None,
) -> None:
    """Nothing with ``sim.trace=off`` (empty ``obs``); else the table, plots and, with
    ``full``, the trace. ``plots`` holds those the bench asked for (``BenchContext.plots``),
    maybe being drawn by helper processes already (:mod:`kernbench.report.plot_workers`);
    the heat map and the busy chart are added to them. Pass it whenever there is a context:
    without it only those two are drawn."""
    if not obs:
        return
    from kernbench.report import stats, trace
    from kernbench.report.plot_workers import RunPlots

    plots = plots if plots is not None else RunPlots()
    rows = stats.link_rows(obs)
    plots.add("link_heatmap", obs["topology"], rows)
    if obs["level"] == "full":
        plots.add("busy_timeline", obs, rows)
    else:
        plots.add("busy_bars", rows)
    stats.write_links_csv(rows, out_dir / LINKS_CSV)  # while workers draw
    observe: dict[str, Any] = {
        "level": obs["level"],
        "links_csv": LINKS_CSV,
        "trace": None,
        "spans": obs["events"],
        "dropped": obs["dropped"],
        "max_events": obs["max_events"],
        "hottest": stats.hottest_tables(rows, TOP_N),
        "plots": [],
    }
    if obs["level"] == "full":
        trace.write_trace(obs, out_dir / TRACE_FILE)
        observe["trace"] = TRACE_FILE
        if obs["dropped"]:
            observe["note"] = trace.cap_note(obs)
            summary.setdefault("notes", []).append(observe["note"])
    written = plots.files(out_dir)
    observe["plots"] = [{"file": name, "title": PLOT_TITLES.get(name, name)} for name in written]
    summary["observe"] = observe


PLOT_TITLES = {
    "probe_bandwidth.png": "Bandwidth saturation per case",
    "probe_latency_breakdown.png": "Latency breakdown per case",
    "link_heatmap.png": "Link utilization over the cube mesh",
    "unit_busy.png": "Busiest units and links",
}
