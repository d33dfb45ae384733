"""Multirun sweeps: one MLflow parent run per sweep, a child per job, and a closing verdict.

:class:`SweepCallback` (registered in ``conf/config.yaml`` under ``hydra.callbacks``) runs in
the launching process. Before any job starts it creates the store, the experiment and the
parent run, so workers never race to create them, and publishes the parent's id to the jobs
through the environment (inherited by joblib and local Ray workers) and ``sweep.json`` in the
sweep directory. After the last job it reads every job's ``summary.json``, closes the parent
as FINISHED or FAILED, prints one line per failed job and exits non-zero when any failed. If
the sweep is interrupted, the parent is marked KILLED at exit.
"""

import atexit
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from kernbench.cli.tracking import (
    TAG_PREFIX,
    Tracker,
    TrackingSpec,
    resolve_uri,
    run_tags,
    ui_command,
)
from kernbench.config import build_spec, to_plain

ENV_VAR = "KERNBENCH_SWEEP"
SWEEP_FILE = "sweep.json"


@dataclass(frozen=True)
class SweepInfo:
    sweep_id: str
    sweep_dir: str
    parent_run_id: str | None = None
    tracking_uri: str | None = None
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


def _sweep_dir(config: DictConfig) -> Path:
    return (Path.cwd() / str(config.hydra.sweep.dir)).resolve()


class SweepCallback(Callback):
    def __init__(self) -> None:
        self.tracker: Tracker | None = None
        self.parent_run_id: str | None = None
        self.closed = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = _sweep_dir(config)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        sweep_id = str(config.hydra.sweep.dir).removeprefix("outputs/multirun/")
        info = SweepInfo(sweep_id=sweep_id, sweep_dir=str(sweep_dir))
        spec = build_spec(TrackingSpec, config.get("tracking"), TrackingSpec.KEY)
        if spec.enabled:
            bench = to_plain(config.get("bench"), "bench") or {}
            bench_name = bench.get("name") if isinstance(bench, dict) else None
            try:
                uri = resolve_uri(spec.uri, Path.cwd())
                self.tracker = Tracker(uri, spec.experiment or bench_name or "kernbench")
                overrides = [str(o) for o in config.hydra.overrides.task]
                tags = run_tags(
                    bench=bench_name,
                    config_hash=None,
                    choices={},
                    overrides=overrides,
                    role="sweep",
                    sweep_id=sweep_id,
                )
                self.parent_run_id = self.tracker.start_run(
                    f"sweep-{bench_name}-{sweep_id.replace('/', '_')}", {}, tags
                )
                info = SweepInfo(sweep_id, str(sweep_dir), self.parent_run_id, uri)
                atexit.register(self._kill_if_open)
            except Exception as exc:
                print(f"warning: MLflow tracking of the sweep failed: {exc}", file=sys.stderr)
        text = json.dumps({k: v for k, v in asdict(info).items() if k != "job_num"})
        (sweep_dir / SWEEP_FILE).write_text(text + "\n")
        os.environ[ENV_VAR] = text

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = _sweep_dir(config)
        jobs = []
        # Every job Hydra started has its own directory; one without summary.json died
        # before kernbench could write it (killed by the OS, a crashed worker) and counts
        # as failed.
        for job_dir in sorted(sweep_dir.glob("*/.hydra"), key=lambda p: _job_key(p.parent)):
            path = job_dir.parent / "summary.json"
            if path.exists():
                summary = json.loads(path.read_text())
            else:
                summary = {"status": "failed", "error": "the job ended without a summary.json"}
            jobs.append((job_dir.parent.name, summary))
        failed = [(num, s) for num, s in jobs if s.get("status") != "ok"]
        if self.tracker is not None and self.parent_run_id is not None:
            metrics = {"jobs": len(jobs), "jobs_failed": len(failed)}
            tags = {f"{TAG_PREFIX}status": "failed" if failed else "ok"}
            self.tracker.finish_run(
                self.parent_run_id, "FAILED" if failed else "FINISHED", metrics, tags
            )
            self.closed = True
            print(
                f"sweep logged to MLflow: experiment {self.tracker.experiment!r}, parent run "
                f"{self.parent_run_id}\n  view it: {ui_command(self.tracker.uri)}"
            )
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

    def _kill_if_open(self) -> None:
        if self.closed or self.tracker is None or self.parent_run_id is None:
            return
        try:
            self.tracker.finish_run(
                self.parent_run_id, "KILLED", {}, {f"{TAG_PREFIX}status": "killed"}
            )
        except Exception as exc:
            print(f"warning: could not mark the sweep's MLflow run KILLED: {exc}", file=sys.stderr)


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
