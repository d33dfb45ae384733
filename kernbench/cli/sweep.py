"""Multirun sweeps: one MLflow parent run per sweep, a child per job, and a closing verdict.

:class:`SweepCallback` (registered in ``conf/config.yaml`` under ``hydra.callbacks``) runs in
the launching process. It first rejects sweeps that cannot be logged as one parent with its
children (:func:`check_swept_keys`). It then publishes the sweep — its id, store and
experiment — to the jobs through the environment (inherited by joblib and local Ray workers)
and ``sweep.json`` in the sweep directory, and creates the store, the experiment and the
parent run in a background thread while the launcher starts its workers (ADR 0013; joblib's
fork from a server that has loaded kernbench and mlflow once, ADR 0014): a job waits for
``sweep.json`` to name the parent before it touches the store, so workers never race to
create it. After the last job it reads every job's
``summary.json``, prints a table of the swept parameters and the jobs' headline metrics
(logged as ``sweep.csv`` and ``sweep.md`` with the parent), closes the parent as FINISHED or
FAILED, prints one line per failed job and exits non-zero when any failed. If the sweep is
interrupted (Ctrl-C, SIGTERM), at exit every started job without a ``summary.json`` gets one
saying it was killed, and the parent and every job run still RUNNING are closed as KILLED
(ADR 0023).
"""

import atexit
import csv
import io
import json
import multiprocessing
import os
import shlex
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from kernbench.bench.result import headline_metrics
from kernbench.cli.runstore import quote
from kernbench.cli.search_plan import prepare_search
from kernbench.cli.search_report import parent_metrics, parent_params, read_outcome, result_files
from kernbench.cli.tables import output_console, print_tables
from kernbench.cli.tracking import (
    MAX_TAG_CHARS,
    NOTE_TAG,
    TAG_PREFIX,
    Tracker,
    TrackingSpec,
    describe_error,
    mlflow_modules,
    preload_mlflow,
    resolve_uri,
    retry,
    run_tags,
    ui_command,
    uri_source,
)
from kernbench.config import build_spec, to_plain
from kernbench.core.errors import ConfigError, KernbenchError
from kernbench.report.markdown import markdown_table

ENV_VAR = "KERNBENCH_SWEEP"
SWEEP_FILE = "sweep.json"
# How long a job waits for the launcher to create the parent run: far longer than that takes
# (seconds), short enough that a stuck launcher does not hold every job forever.
PARENT_WAIT_S = 300.0
EXIT_USER_ERROR = 2
BENCH_KEYS = frozenset({"bench", "bench.name"})  # overrides that choose the bench
TABLE_CSV = "sweep.csv"
TABLE_MD = "sweep.md"
# Headline metric columns printed at the end of a sweep (sweep.csv and sweep.md have all).
PRINTED_METRICS = 6
KILLED_ERROR = "interrupted: the sweep was stopped before this job ended"


@dataclass(frozen=True)
class SweepInfo:
    sweep_id: str
    sweep_dir: str
    parent_run_id: str | None = None
    tracking_uri: str | None = None
    experiment: str | None = None
    # True while the launcher is still creating the parent run; sweep.json says when done.
    pending: bool = False
    job_num: int | None = None


def current_sweep() -> SweepInfo | None:
    """The sweep this job belongs to, or None for a single run."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    data: dict[str, Any] | None = None
    if os.environ.get(ENV_VAR):
        data = json.loads(os.environ[ENV_VAR])
    else:
        path = Path(hc.runtime.cwd) / hc.sweep.dir / SWEEP_FILE
        if path.exists():
            data = json.loads(path.read_text())
    if data is None:
        data = {"sweep_id": str(hc.sweep.dir), "sweep_dir": str(hc.sweep.dir)}
    return SweepInfo(**{**data, "job_num": int(hc.job.num)})


def await_parent(info: SweepInfo, timeout_s: float = PARENT_WAIT_S) -> SweepInfo:
    """``info`` once the launcher has created the sweep's parent run, or failed to: the
    final ``sweep.json``. Without a parent (``sweep.json`` is not visible here, as on a remote
    Ray node, or it was not ready within ``timeout_s``) the job is logged on its own.

    mlflow is imported first, so that its seconds of start-up overlap the launcher's."""
    if not info.pending:
        return info
    preload_mlflow(info.tracking_uri)
    path = Path(info.sweep_dir) / SWEEP_FILE
    deadline = time.monotonic() + timeout_s
    while path.exists():
        data = json.loads(path.read_text())  # replaced atomically, never seen half-written
        if not data.get("pending"):
            return SweepInfo(**{**data, "job_num": info.job_num})
        if time.monotonic() > deadline:
            print(
                f"warning: the sweep's MLflow parent run was not ready after {timeout_s:.0f} s;"
                f" job {info.job_num} is logged without it",
                file=sys.stderr,
            )
            break
        time.sleep(0.05)
    return replace(info, pending=False)


def swept_keys(config: DictConfig) -> dict[str, str]:
    """The keys a multirun sweeps over, each with its override: command-line sweeps and
    ``hydra.sweeper.params``."""
    lines = [str(o) for o in config.hydra.overrides.task]
    params = config.hydra.get("sweeper", {}).get("params") or {}
    lines += [f"{k}={v}" for k, v in params.items()]
    parsed = OverridesParser.create().parse_overrides(lines)
    return {o.key_or_group: o.input_line for o in parsed if o.is_sweep_override()}


def check_swept_keys(swept: dict[str, str], tracking: TrackingSpec) -> None:
    """Reject a sweep whose jobs would not log into one store and experiment: a sweep is
    one parent run with its children, and MLflow nests runs only within one experiment."""
    for key, override in swept.items():
        if key == TrackingSpec.KEY or key.startswith(f"{TrackingSpec.KEY}."):
            raise ConfigError(
                key,
                f"cannot be swept ({override}): a sweep logs to one MLflow store and "
                "experiment; run one sweep per value",
            )
    bench = next((swept[k] for k in sorted(BENCH_KEYS) if k in swept), None)
    if bench and tracking.enabled and not tracking.experiment:
        raise ConfigError(
            "tracking.experiment",
            f"the sweep runs several benches ({bench}) and each bench logs to its own "
            "experiment; set tracking.experiment=NAME to log the whole sweep into one, or "
            "run one sweep per bench",
        )


def warm_workers(config: DictConfig, tracking_uri: str | None) -> bool:
    """With the joblib launcher on its default process backend (loky), start the workers
    from a fork server that has imported kernbench, and mlflow when ``tracking_uri`` is set,
    once: each loky worker would otherwise import them on its own, seconds per worker
    (ADR 0008, 0014). The fork server is a fresh single-threaded process, so its children
    inherit no threads, locks or database connections. Returns whether it was set up;
    nothing changes when loky's start method was already chosen or another launcher or
    backend runs the jobs."""
    launcher = config.hydra.get("launcher") or {}
    if not str(launcher.get("_target_", "")).endswith(".JoblibLauncher"):
        return False
    if launcher.get("backend") not in (None, "loky") or launcher.get("prefer") == "threads":
        return False
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    try:
        from joblib.externals.loky.backend import context as loky_context
    except ImportError:
        return False
    if loky_context.get_start_method() is not None:
        return False
    mlflow = mlflow_modules(tracking_uri) if tracking_uri else []
    multiprocessing.set_forkserver_preload(["kernbench.cli.main", *mlflow, "kernbench.cli.preload"])
    loky_context.set_start_method("forkserver")
    return True


def _sweep_dir(config: DictConfig) -> Path:
    return (Path.cwd() / str(config.hydra.sweep.dir)).resolve()


def _publish(info: SweepInfo, *, env: bool) -> None:
    """Write ``sweep.json`` atomically (jobs poll it) and, before the jobs start, export it."""
    text = json.dumps({k: v for k, v in asdict(info).items() if k != "job_num"})
    path = Path(info.sweep_dir) / SWEEP_FILE
    tmp = path.with_name(f".{SWEEP_FILE}.{os.getpid()}")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)
    if env:
        os.environ[ENV_VAR] = text


class SweepCallback(Callback):
    def __init__(self) -> None:
        self.tracker: Tracker | None = None
        self.parent_run_id: str | None = None
        self.closed = False
        self.creating: threading.Thread | None = None
        self.sweep_dir: Path | None = None
        self.sweep_id = ""
        self.description = ""

    def __getstate__(self) -> dict[str, Any]:
        # Launchers ship the callbacks to every job's process; the parent run, its client and
        # the thread creating it stay in the launching process.
        return {**self.__dict__, "tracker": None, "creating": None}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            spec = build_spec(TrackingSpec, config.get("tracking"), TrackingSpec.KEY)
            swept = swept_keys(config)
            check_swept_keys(swept, spec)
            prepare_search(config)  # hydra/sweeper=optuna: its settings (docs/search.md)
        except KernbenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None
        sweep_dir = _sweep_dir(config)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        sweep_id = str(config.hydra.sweep.dir).removeprefix("outputs/multirun/")
        self.sweep_dir, self.sweep_id = sweep_dir, sweep_id
        info = SweepInfo(sweep_id=sweep_id, sweep_dir=str(sweep_dir))
        # Interrupted, the sweep never reaches on_multirun_end: close what it started at exit.
        atexit.register(self._close_interrupted)
        if spec.enabled:
            bench = to_plain(config.get("bench"), "bench") or {}
            bench_name = bench.get("name") if isinstance(bench, dict) else None
            if BENCH_KEYS & swept.keys():
                bench_name = None  # several benches: the launch-time one names none of them
            experiment = spec.experiment or bench_name or "kernbench"
            info = replace(
                info,
                tracking_uri=resolve_uri(spec.uri, Path.cwd()),
                experiment=experiment,
                pending=True,
            )
            tags = run_tags(
                bench=bench_name,
                config_hash=None,
                choices={},
                overrides=[str(o) for o in config.hydra.overrides.task],
                role="sweep",
                sweep_id=sweep_id,
            )
            self.description = tags[NOTE_TAG]
            name = f"sweep-{bench_name or experiment}-{sweep_id.replace('/', '_')}"
            # mlflow's import and the store take seconds (ADR 0008, 0013): do it while the
            # launcher starts its workers.
            self.creating = threading.Thread(
                target=self._create_parent,
                args=(info, name, tags, uri_source(spec.uri)),
                daemon=True,
            )
        _publish(info, env=True)
        warm_workers(config, info.tracking_uri)
        if self.creating is not None:
            self.creating.start()

    def _create_parent(self, info: SweepInfo, name: str, tags: dict[str, str], source: str) -> None:
        try:
            self.tracker = Tracker(str(info.tracking_uri), str(info.experiment), source)
            self.parent_run_id = self.tracker.start_run(name, {}, tags)
            info = replace(info, parent_run_id=self.parent_run_id)
        except Exception as exc:
            print(
                f"warning: MLflow tracking of the sweep failed: {describe_error(exc)}",
                file=sys.stderr,
            )
        finally:
            # Jobs wait for this; they log without a parent if creating it failed.
            _publish(replace(info, pending=False), env=False)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.creating is not None:
            self.creating.join()
        sweep_dir = _sweep_dir(config)
        jobs = _jobs(sweep_dir)
        failed = [(num, s) for num, s in jobs if s.get("status") != "ok"]
        swept = list(swept_keys(config))
        columns, rows = sweep_table(jobs, swept, sweep_dir)
        artifacts = _write_table(sweep_dir, columns, rows)
        search = read_outcome(sweep_dir)  # a search's front and best parameters go with it
        artifacts += result_files(sweep_dir)
        printed = _printed_columns(columns, swept)
        console = output_console()
        title = f"sweep {self.sweep_id or sweep_dir.name}: {len(jobs)} jobs"
        if rows:
            picked = [[row[columns.index(c)] for c in printed] for row in rows]
            styles = ["red" if row[1] != "ok" else "" for row in rows]
            print_tables(console, title, printed, picked, keep=2, styles=styles)
        if len(printed) < len(columns):
            print(f"all {len(columns) - 2} columns: {sweep_dir / TABLE_CSV}")
        if self.tracker is not None and self.parent_run_id is not None:
            metrics = {"jobs": len(jobs), "jobs_failed": len(failed)}
            bad = failed or (search and search.error)
            if search:
                metrics.update(parent_metrics(search))
                self.tracker.log_params(self.parent_run_id, parent_params(search))
            tags = {
                f"{TAG_PREFIX}status": "failed" if bad else "ok",
                NOTE_TAG: self._note(jobs, failed, columns, rows),
            }
            self.tracker.finish_run(
                self.parent_run_id, "FAILED" if bad else "FINISHED", metrics, tags, artifacts
            )
            sweep = shlex.quote(self.sweep_id)
            front = f"\n  its Pareto front: kernbench compare front --sweep {sweep}"
            print(
                f"sweep logged to MLflow: experiment {self.tracker.experiment!r}, parent run "
                f"{self.parent_run_id}\n  view it: {ui_command(self.tracker.uri)}\n"
                f"  compare its jobs: kernbench compare runs --sweep {sweep}"
                + (front if search else "")
            )
        self.closed = True
        os.environ.pop(ENV_VAR, None)
        print(
            f"sweep: {len(jobs)} jobs, {len(jobs) - len(failed)} ok, {len(failed)} failed "
            f"({sweep_dir})"
        )
        if failed:
            for num, s in failed:
                overrides = " ".join(_job_overrides(sweep_dir / num))
                print(
                    f"  job {num} [{overrides}]: {s.get('error', s.get('status'))}", file=sys.stderr
                )
            raise SystemExit(1)
        if search and search.error:
            raise SystemExit(EXIT_USER_ERROR)

    def _note(
        self,
        jobs: Sequence[tuple[str, dict[str, Any]]],
        failed: Sequence[tuple[str, dict[str, Any]]],
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> str:
        """The parent's description at the end: what ran, the outcome and the table, when it
        fits in a tag (else a pointer to the artifact)."""
        outcome = f"**{'failed' if failed else 'ok'}**: {len(jobs)} jobs, {len(failed)} failed."
        table = markdown_table({"columns": columns, "rows": rows})
        note = f"{self.description}\n\n{outcome}\n\n{table}"
        if len(note) > MAX_TAG_CHARS:
            note = f"{self.description}\n\n{outcome} The jobs' table: {TABLE_MD}, {TABLE_CSV}."
        return note

    def _close_interrupted(self) -> None:
        """At exit of an interrupted sweep: a ``summary.json`` for every started job that left
        none (its worker was killed), and the parent and every job run still RUNNING closed as
        KILLED. Nothing to do after on_multirun_end."""
        if self.closed or self.sweep_dir is None:
            return
        self.closed = True
        if self.creating is not None and self.creating.is_alive():
            self.creating.join(timeout=30)
        stopped = []
        for job_dir in _job_dirs(self.sweep_dir):
            path = job_dir / "summary.json"
            if not path.exists():
                text = json.dumps({"status": "killed", "error": KILLED_ERROR}, indent=2)
                path.write_text(text + "\n")
            if json.loads(path.read_text()).get("status") == "killed":
                stopped.append(job_dir.name)
        closed = 0
        if self.tracker is not None and self.parent_run_id is not None:
            try:
                closed = self._kill_runs()
            except Exception as exc:
                print(
                    f"warning: could not close the sweep's MLflow runs as KILLED: {exc}",
                    file=sys.stderr,
                )
        logged = f"; parent run and {closed} job run(s) closed as KILLED" if self.tracker else ""
        jobs = f"job(s) {', '.join(stopped)} stopped" if stopped else "no job was running"
        print(f"sweep killed: {jobs}{logged} ({self.sweep_dir})", file=sys.stderr)

    def _kill_runs(self) -> int:
        """Close the parent and the sweep's job runs still RUNNING as KILLED; their number."""
        assert self.tracker is not None and self.parent_run_id is not None
        client = self.tracker.client
        tag = f"{TAG_PREFIX}sweep_id"
        running = retry(
            lambda: client.search_runs(
                [self.tracker.experiment_id],
                filter_string=f"tags.`{tag}` = {quote(self.sweep_id)} and "
                "attributes.status = 'RUNNING'",
                max_results=10_000,
            )
        )
        children = [r for r in running if r.info.run_id != self.parent_run_id]
        tags = {f"{TAG_PREFIX}status": "killed", f"{TAG_PREFIX}error": KILLED_ERROR}
        for run in children:
            note = run.data.tags.get(NOTE_TAG, "")
            child_tags = {**tags, NOTE_TAG: f"{note}\n\n**killed**: {KILLED_ERROR}".strip()}
            self.tracker.finish_run(run.info.run_id, "KILLED", {}, child_tags)
        parent_tags = {
            f"{TAG_PREFIX}status": "killed",
            NOTE_TAG: f"{self.description}\n\n**killed**: the sweep was interrupted.",
        }
        self.tracker.finish_run(self.parent_run_id, "KILLED", {}, parent_tags)
        return len(children)


def _job_dirs(sweep_dir: Path) -> list[Path]:
    """Every job Hydra started has its own directory (with ``.hydra``), in job order."""
    return sorted((p.parent for p in sweep_dir.glob("*/.hydra")), key=_job_key)


def _jobs(sweep_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """Each started job's number and summary. A job without ``summary.json`` died before
    kernbench could write it (killed by the OS, a crashed worker) and counts as failed."""
    jobs = []
    for job_dir in _job_dirs(sweep_dir):
        path = job_dir / "summary.json"
        if path.exists():
            summary = json.loads(path.read_text())
        else:
            summary = {"status": "failed", "error": "the job ended without a summary.json"}
        jobs.append((job_dir.name, summary))
    return jobs


def sweep_table(
    jobs: Sequence[tuple[str, dict[str, Any]]], swept: Sequence[str], sweep_dir: Path
) -> tuple[list[str], list[list[Any]]]:
    """The sweep's table: a row per job with its number, status, the value of each swept key
    (as its override gave it) and its headline metrics (as its bench declared them), then
    ``wall_s``."""
    metrics: list[str] = []
    for _, summary in jobs:
        for name in headline_metrics(summary.get("metrics", {}), summary.get("headline", [])):
            if name not in metrics:
                metrics.append(name)
    columns = ["job", "status", *swept, *metrics, "wall_s"]
    rows = []
    for num, summary in jobs:
        values = _swept_values(sweep_dir / num)
        row: list[Any] = [_number(num), summary.get("status", "?")]
        row += [values.get(key) for key in swept]
        row += [summary.get("metrics", {}).get(name) for name in metrics]
        row.append(summary.get("wall_s"))
        rows.append(row)
    return columns, rows


def _printed_columns(columns: Sequence[str], swept: Sequence[str]) -> list[str]:
    fixed = 2 + len(swept)
    metrics = list(columns[fixed:-1])[:PRINTED_METRICS]
    return [*columns[:fixed], *metrics, columns[-1]]


def _swept_values(job_dir: Path) -> dict[str, Any]:
    """The job's value of each key it overrides, as typed (numbers as numbers)."""
    lines = _job_overrides(job_dir)
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except Exception:  # the job's own overrides were accepted; be safe all the same
        return {}
    return {o.key_or_group: _number(o.get_value_element_as_str()) for o in parsed}


def _number(text: Any) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except (TypeError, ValueError):
            pass
    return text


def _write_table(
    sweep_dir: Path, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[Path]:
    """``sweep.csv`` (full precision) and ``sweep.md`` in the sweep directory."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    csv_path, md_path = sweep_dir / TABLE_CSV, sweep_dir / TABLE_MD
    csv_path.write_text(out.getvalue())
    md_path.write_text(markdown_table({"title": "Sweep", "columns": columns, "rows": rows}))
    return [csv_path, md_path]


def _job_key(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (1 << 30, path.name)


def _job_overrides(job_dir: Path) -> list[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return []
    return [
        line.removeprefix("- ").strip()
        for line in path.read_text().splitlines()
        if line.startswith("- ")
    ]
