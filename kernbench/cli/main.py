"""The ``kernbench`` command: a thin Hydra entry point over :func:`run`.

:func:`run` takes a composed config and an output directory, so tests drive it with
``hydra.compose`` and a temporary directory. Exit codes: 0 ok, 1 unexpected error or failed
numerical checks, 2 an error the user caused (:class:`KernbenchError`).
"""

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kernbench.bench import BenchContext, BenchResult, get_bench
from kernbench.cli import interrupt
from kernbench.cli.heap import frozen_heap, skip_exit_gc
from kernbench.cli.overrides import unknown_bench_keys, unknown_presets, unknown_spec_keys
from kernbench.cli.sweep import await_parent, current_sweep
from kernbench.cli.tracking import TAG_PREFIX, TrackedRun, TrackingSpec, run_tags, ui_command
from kernbench.config import (
    bench_params_from_cfg,
    bench_selection,
    build_spec,
    conf_dir,
    config_hash,
    config_yaml,
    devices_from_cfg,
    flatten,
    model_spec_from_cfg,
    normalized,
    sweep_trace_default,
    system_spec_from_cfg,
)
from kernbench.core.errors import BenchError, KernbenchError
from kernbench.report import (
    clear_observation,
    metrics_table,
    render_report,
    rich_table,
    write_observation,
)
from kernbench.report.plot_workers import PlotWorkers, RunPlots

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USER_ERROR = 2

ProgressFn = Callable[[int, int, str], None]


@dataclass
class RunOutcome:
    status: str
    exit_code: int
    out_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def run(
    cfg: DictConfig,
    out_dir: Path | str | None = None,
    *,
    console: Console | None = None,
    err_console: Console | None = None,
    show_progress: bool | None = None,
    launch_dir: Path | None = None,
) -> RunOutcome:
    """Validate ``cfg``, run its bench and write ``summary.json``, ``report.md`` and
    ``config.yaml`` to ``out_dir`` (default: the Hydra job's output directory), then log the
    run to MLflow when ``cfg.tracking.enabled``. ``launch_dir`` anchors the default MLflow
    store (default: the directory the command was started from).

    Never raises for a failed run: the failure is written to the summary, reported on
    ``err_console`` and returned with its exit code.
    """
    console = console or _default_console()
    err_console = err_console or Console(stderr=True)
    out_dir = Path(out_dir) if out_dir is not None else Path(HydraConfig.get().runtime.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "error.txt").unlink(missing_ok=True)
    clear_observation(out_dir)  # a bench may write its plots while it runs
    if show_progress is None:
        show_progress = console.is_terminal
    started = time.perf_counter()
    summary: dict[str, Any] = {"status": "failed", "bench": _bench_name(cfg)}
    error: str | None = None
    exit_code = EXIT_FAILED
    tracked: TrackedRun | None = None
    plots = RunPlots()
    try:
        # A sweep job records no trace unless sim.trace is set on the command line.
        in_sweep = current_sweep() is not None
        cfg = sweep_trace_default(cfg, multirun=in_sweep, overrides=_hydra_overrides())
        # The plots' helper imports matplotlib while the store opens and the bench runs.
        level = OmegaConf.select(cfg, "sim.trace", default="off")
        plots = RunPlots(out_dir, PlotWorkers.for_run(str(level), in_sweep=in_sweep))
        values = normalized(cfg)
        summary["config_hash"] = config_hash(values)
        summary["params"] = flatten(values)
        (out_dir / "config.yaml").write_text(config_yaml(values))
        choices = _hydra_choices()
        if choices:
            summary["choices"] = choices
        tracking = build_spec(TrackingSpec, cfg.get("tracking"), TrackingSpec.KEY)
        spec = system_spec_from_cfg(cfg)
        name, modules = bench_selection(cfg)
        info = get_bench(name, modules)
        model = model_spec_from_cfg(cfg)
        params = bench_params_from_cfg(cfg, info, spec, model)
        devices = devices_from_cfg(cfg, spec)
        summary.update(better=info.better, headline=list(info.headline))
        # Only a valid config becomes an MLflow run: a config error is not a run (ADR 0021).
        if tracking.enabled:
            tracked = _start_tracking(tracking, cfg, summary, launch_dir)
            if tracked.error:
                _warn_tracking(err_console, tracked.error)
            summary["mlflow"] = tracked.describe()
            started = time.perf_counter()  # wall_s measures the run, not the store's start-up
        # The collector skips the heap mlflow, SQLAlchemy and Hydra left (kernbench/cli/heap.py).
        with frozen_heap(), _progress(console, show_progress) as progress:
            ctx = BenchContext.from_spec(
                spec, progress=progress, devices=devices, plots=plots, model=model
            )
            result = info.fn(ctx, params)
        if not isinstance(result, BenchResult):
            raise BenchError(
                f"bench {name!r} returned {type(result).__name__}, expected a BenchResult"
            )
        summary.update(_result_fields(result, ctx))
        write_observation(out_dir, summary, ctx.observations(), plots)
        failed_checks = [k for k, ok in result.checks.items() if not ok]
        if failed_checks:
            error = f"checks failed: {', '.join(failed_checks)}"
        else:
            summary["status"] = "ok"
            exit_code = EXIT_OK
    except KernbenchError as exc:
        error, exit_code = str(exc), EXIT_USER_ERROR
    except KeyboardInterrupt as exc:
        _drop_plots(plots, out_dir, summary)
        summary.update(status="killed", error="interrupted", wall_s=time.perf_counter() - started)
        _write_results(out_dir, summary)
        if tracked is not None:
            tracked.finish("KILLED", {}, _outcome_tags(summary), _artifacts(out_dir))
        logged = (
            f", MLflow run {tracked.run_id} closed as KILLED" if tracked and tracked.run_id else ""
        )
        exc.add_note(f"results in {out_dir}{logged}")  # the line main() prints
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        detail = traceback.format_exc()
        (out_dir / "error.txt").write_text(detail)
        err_console.print(detail, markup=False, highlight=False, soft_wrap=True)
    finally:
        _drop_plots(plots, out_dir, summary)
    summary["wall_s"] = time.perf_counter() - started
    if error is not None:
        summary["error"] = error
        if not (out_dir / "error.txt").exists():
            (out_dir / "error.txt").write_text(error + "\n")
    try:
        _write_results(out_dir, summary)
    except BaseException:
        # The run must not stay RUNNING in MLflow when its results cannot be written.
        if tracked is not None:
            tracked.finish("FAILED", {}, {f"{TAG_PREFIX}status": "failed"}, ())
        raise
    if tracked is not None:
        metrics = dict(summary.get("metrics", {}))
        metrics.update({k: summary[k] for k in RUN_METRICS if k in summary})
        status = "FINISHED" if summary["status"] == "ok" else "FAILED"
        start_error = tracked.error
        tracked.finish(status, metrics, _outcome_tags(summary), _artifacts(out_dir))
        if tracked.error:
            summary["tracking_error"] = tracked.error
            _write_results(out_dir, summary)  # the on-disk record says logging failed
            if tracked.error != start_error:
                _warn_tracking(err_console, tracked.error)
    sweep = current_sweep()
    if error is not None:
        err_console.print(f"[red]error: {escape(error)}[/red]", soft_wrap=True, highlight=False)
    if sweep is not None:
        # A sweep prints one line per job; the tables are in each job's report.md.
        _say(
            console,
            f"job {sweep.job_num} {'ok' if error is None else 'FAILED'}: "
            f"{' '.join(_hydra_overrides())} ({summary['wall_s']:.2f} s, {out_dir})",
        )
        return RunOutcome(summary["status"], exit_code, out_dir, summary, error)
    if error is None:
        _print_result(console, summary)
    _say(
        console,
        f"results in {out_dir} ({', '.join(p.name for p in _artifacts(out_dir))})",
    )
    if tracked is not None and tracked.run_id:
        info = tracked.describe()
        _say(
            console,
            f"logged to MLflow: experiment {info['experiment']!r}, run {info['run_id']}\n"
            f"  view it: {ui_command(info['uri'])}",
        )
    return RunOutcome(summary["status"], exit_code, out_dir, summary, error)


RUN_METRICS = ("sim_time_ns", "wall_s", "sim_events")


def _say(console: Console, text: str) -> None:
    """Plain text: paths and overrides must not be read as rich markup."""
    console.print(text, soft_wrap=True, highlight=False, markup=False)


def _warn_tracking(err_console: Console, error: str) -> None:
    err_console.print(
        f"[yellow]warning: MLflow tracking failed, results stay on disk: {escape(error)}[/yellow]",
        soft_wrap=True,
        highlight=False,
    )


ARTIFACTS = (
    "config.yaml",
    "summary.json",
    "report.md",
    "error.txt",
    "links.csv",
    "trace.json.gz",
    "*.png",
)


def _drop_plots(plots: RunPlots, out_dir: Path, summary: dict[str, Any]) -> None:
    """Stop the plot workers; unless the run got as far as listing its plots, remove those
    drawn so far (a failed or interrupted run logs none, and none half written)."""
    plots.close()
    if "observe" not in summary:
        for path in out_dir.glob("*.png"):
            path.unlink(missing_ok=True)


def _artifacts(out_dir: Path) -> list[Path]:
    return [path for pattern in ARTIFACTS for path in sorted(out_dir.glob(pattern))]


def _outcome_tags(summary: dict[str, Any]) -> dict[str, str]:
    tags = {f"{TAG_PREFIX}status": summary["status"]}
    if summary.get("error"):
        tags[f"{TAG_PREFIX}error"] = summary["error"]
    return tags


def _start_tracking(
    spec: TrackingSpec, cfg: DictConfig, summary: dict[str, Any], launch_dir: Path | None
) -> TrackedRun:
    sweep = current_sweep()
    if sweep is not None:
        sweep = await_parent(sweep)
    if sweep is not None and sweep.tracking_uri:
        # A job logs where its sweep's parent run is, whatever its own environment says.
        spec = replace(spec, uri=sweep.tracking_uri, experiment=sweep.experiment)
    launch = launch_dir or _launch_dir()
    name = f"{summary.get('bench')}-{topology_label(summary['params'])}-{summary['config_hash']}"
    tags = run_tags(
        bench=summary.get("bench"),
        config_hash=summary["config_hash"],
        choices=summary.get("choices", {}),
        overrides=_hydra_overrides(),
        role="job" if sweep else "run",
        sweep_id=sweep.sweep_id if sweep else None,
        job_num=sweep.job_num if sweep else None,
        parent_run_id=sweep.parent_run_id if sweep else None,
        better=summary.get("better"),
        headline=summary.get("headline", ()),
    )
    return TrackedRun.start(
        spec,
        launch,
        bench=summary.get("bench"),
        run_name=name,
        params=summary["params"],
        tags=tags,
    )


def topology_label(params: dict[str, Any]) -> str:
    """The shape that runs, as a run name shows it: ``WxH``, with ``_Nsip`` for several SIPs
    (ADR 0019). It is the preset's name for every shipped preset, and follows an override
    such as ``topology.mesh_w=3``, which a preset's name would not."""
    w, h, sips = (params.get(f"topology.{k}") for k in ("mesh_w", "mesh_h", "sips"))
    shape = f"{w}x{h}"
    return shape if sips in (1, None) else f"{shape}_{sips}sip"


def _launch_dir() -> Path:
    """Where the command was started: Hydra's original cwd, else the current directory."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.cwd)
    return Path.cwd()


def _hydra_overrides() -> list[str]:
    if not HydraConfig.initialized():
        return []
    return [str(o) for o in HydraConfig.get().overrides.task]


def _default_console() -> Console:
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped output (logs, CI) would otherwise be cut at 80 columns.
        console.width = 160
    return console


def _bench_name(cfg: DictConfig) -> str | None:
    try:
        return str(cfg.bench.name)
    except Exception:
        return None


def _hydra_choices() -> dict[str, str]:
    """The chosen preset of each config group, when running under Hydra."""
    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {k: str(v) for k, v in choices.items() if not k.startswith("hydra/")}


def _result_fields(result: BenchResult, ctx: BenchContext) -> dict[str, Any]:
    energy = ctx.energy()
    metrics = dict(result.metrics)
    tokens = metrics.get("tokens_per_s")
    for name, value in energy.metrics(tokens if isinstance(tokens, int | float) else None).items():
        metrics.setdefault(name, value)  # every bench's energy metrics, after its own
    return {
        "metrics": metrics,
        "energy": energy.to_dict(),
        "checks": result.checks,
        "tables": [t.to_dict() for t in result.tables],
        "notes": result.notes,
        "sim_time_ns": result.sim_time_ns or ctx.sim_time_ns,
        "sim_events": result.sim_events or ctx.sim_events,
    }


def _write_results(out_dir: Path, summary: dict[str, Any]) -> None:
    text = json.dumps(summary, indent=2, default=_json_default)
    (out_dir / "summary.json").write_text(text + "\n")
    (out_dir / "report.md").write_text(render_report(json.loads(text)))


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays become plain numbers and lists; anything else its repr."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return repr(value)


def _print_result(console: Console, summary: dict[str, Any]) -> None:
    tables = summary.get("tables", [])
    # The bench's own tables summarize its metrics; detail tables go to report.md only.
    if summary.get("metrics") and not tables:
        console.print(metrics_table(summary["metrics"]))
    for table in tables:
        if not table.get("detail"):
            console.print(rich_table(table))
    checks = summary.get("checks", {})
    if checks:
        console.print(f"checks: {len(checks)} passed", style="green", highlight=False)
    for note in summary.get("notes", []):
        console.print(f"note: {note}", markup=False, highlight=False)
    energy = _energy_line(summary.get("metrics", {}))
    if energy:
        console.print(energy, markup=False, highlight=False)
    console.print(
        f"[bold green]ok[/bold green] {escape(str(summary.get('bench')))}: "
        f"simulated {summary.get('sim_time_ns', 0.0):,.1f} ns in "
        f"{summary.get('sim_events', 0):,} events "
        f"(sim.model={summary.get('params', {}).get('sim.model', '?')}), "
        f"wall {summary['wall_s']:.2f} s",
        highlight=False,
    )


def _energy_line(metrics: dict[str, Any]) -> str | None:
    """One console line of the run's energy metrics (the split is in report.md)."""
    if "energy_uj" not in metrics:
        return None
    parts = [f"{metrics['energy_uj']:,.3f} µJ"]
    for key, label in (
        ("avg_power_w", "W average"),
        ("tflops_per_w", "TFLOP/s per W"),
        ("tokens_per_j", "tokens per J"),
    ):
        if key in metrics:
            parts.append(f"{metrics[key]:,.4g} {label}")
    return "energy: " + ", ".join(parts)


@contextmanager
def _progress(console: Console, show: bool) -> Iterator[ProgressFn]:
    """A ``progress(done, total, what)`` callback driving a rich bar, or a no-op."""
    if not show:
        yield lambda done, total, what: None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = bar.add_task("running", total=None)

    def update(done: int, total: int, what: str) -> None:
        bar.update(task, completed=done, total=total or None, description=what)

    with bar:
        yield update


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    skip_exit_gc()  # in the process running the job: the launcher or a worker
    interrupt.install()  # a worker sent SIGTERM closes its run as KILLED too
    outcome = run(cfg)
    # In a sweep a failed job is recorded in its summary and the other jobs still run.
    if outcome.exit_code != EXIT_OK and HydraConfig.get().mode != RunMode.MULTIRUN:
        sys.exit(outcome.exit_code)


def main() -> None:
    """Console-script entry point (``kernbench``), same as ``python -m kernbench``.

    ``kernbench compare ...`` compares logged runs (see ``kernbench compare --help``).
    """
    # SIGTERM (kill, CI timeouts, schedulers) ends a run like Ctrl-C: logged KILLED, not RUNNING.
    interrupt.install()
    if len(sys.argv) > 1 and sys.argv[1] == "compare":
        from kernbench.cli.compare import main as compare_main

        sys.exit(compare_main(sys.argv[2:], prog="kernbench compare"))
    args = sys.argv[1:]
    problem = unknown_presets(args) or unknown_bench_keys(args) or unknown_spec_keys(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    skip_exit_gc()
    try:
        _hydra_main()
    except KeyboardInterrupt as exc:
        # One line, not the traceback; the run (or the sweep, at exit) is closed as KILLED.
        sys.exit(interrupt.report(exc))
