"""MLflow tracking of runs and sweeps (the ``tracking`` config group).

Conventions (docs/tracking.md): one experiment per bench unless ``tracking.experiment`` names
one; run names ``<bench>-<topology>-<config hash>``; params are the resolved config flattened
to dotted keys; tags carry the group choices, overrides, config hash, git commit, package
version, sweep id and outcome; metrics are the bench's plus ``sim_time_ns``, ``wall_s`` and
``sim_events``; artifacts are ``config.yaml``, ``summary.json``, ``report.md`` (and
``error.txt`` for a failed run) plus the observation artifacts (``links.csv``, ``*.png``,
``trace.json.gz``; docs/traces.md). Every call goes through :func:`retry`, so several worker
processes can share one SQLite store: a "database is locked" answer is retried with backoff,
and a store is opened under a file lock (:func:`store_lock`), so that two commands started
together on a fresh store do not both create its tables (ADR 0020). Experiments are marked as
model-development experiments for MLflow 3's UI, and runs carry a description and a source
(ADR 0022). mlflow is imported only when tracking is on. A tracking server that does not
accept connections is reported within seconds (:func:`check_server`) instead of after
MLflow's HTTP retries, which take minutes.
"""

import getpass
import importlib
import json
import logging
import os
import random
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import kernbench
from kernbench.bench.result import headline_metrics
from kernbench.cli.interrupt import deferred
from kernbench.core.errors import ConfigError, KernbenchError
from kernbench.core.specs import param
from kernbench.report.markdown import fmt_cell

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; stores there are not shared by processes
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")

STORE_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
TAG_PREFIX = "kernbench."
MAX_TAG_CHARS = 5000
# MLflow's log_batch limits: 1000 metrics, 100 params and 100 tags per call.
METRICS_PER_BATCH = 1000
PARAMS_PER_BATCH = 100
# A reachable server accepts a connection in milliseconds, even across a data centre.
CONNECT_TIMEOUT_S = 3.0
# MLflow 3's UI opens an experiment by its kind: without this tag it guesses, and a new
# experiment opens in the GenAI view (traces, judges) instead of the runs table.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
NOTE_TAG = "mlflow.note.content"


@dataclass(frozen=True)
class TrackingSpec:
    KEY: ClassVar[str] = "tracking"

    enabled: bool = param(True, "log the run to MLflow")
    uri: str | None = param(
        None,
        "tracking URI; default MLFLOW_TRACKING_URI, else sqlite:///<launch dir>/outputs/mlflow.db",
    )
    experiment: str | None = param(None, "experiment name; default: the bench's name")

    def __post_init__(self) -> None:
        if self.uri is not None and "://" not in self.uri and not self.uri.startswith("sqlite:"):
            raise ConfigError(
                f"{self.KEY}.uri",
                f"{self.uri!r} is not a tracking URI; use e.g. sqlite:///path/mlflow.db or "
                "http://127.0.0.1:5000",
            )


def resolve_uri(uri: str | None, launch_dir: Path) -> str:
    """``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else the launch dir's SQLite store."""
    if uri:
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(launch_dir / 'outputs' / STORE_FILE).resolve()}"


def uri_source(uri: str | None) -> str:
    """The setting a resolved tracking URI came from, for error messages."""
    if not uri and os.environ.get("MLFLOW_TRACKING_URI"):
        return "MLFLOW_TRACKING_URI"
    return f"{TrackingSpec.KEY}.uri"


def check_server(uri: str, source: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """For an ``http(s)://`` tracking URI, raise :class:`ConfigError` naming ``source`` unless
    something accepts a TCP connection at its host and port within ``timeout_s``."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise ConfigError(
            source,
            f"no MLflow tracking server answers at {uri} ({reason}); start one, e.g. "
            f"`mlflow server --host 127.0.0.1 --port {port}`, or log to the local store "
            "with tracking=local",
        ) from None


def mlflow_modules(uri: str | None = None) -> list[str]:
    """The mlflow modules a run logging to ``uri`` imports: the client, and the SQL store's
    modules unless ``uri`` is a server."""
    if uri and uri.startswith(("http://", "https://")):
        return ["mlflow.tracking"]
    return ["mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store"]


def preload_mlflow(uri: str | None = None) -> None:
    """Import :func:`mlflow_modules` without opening any store: the seconds of ADR 0008,
    paid while something else is under way."""
    try:
        for name in mlflow_modules(uri):
            importlib.import_module(name)
    except ImportError:
        pass  # reported when the run opens the store


def describe_error(exc: BaseException) -> str:
    """A tracking failure as one line: a user's mistake by its message, else with its type."""
    return str(exc) if isinstance(exc, KernbenchError) else f"{type(exc).__name__}: {exc}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock on a SQLite store while the block opens it.

    MLflow creates a fresh store's tables and runs its migrations when the store is first
    opened, and two processes doing that at once fail (``table ... already exists``,
    ``duplicate column``): whoever takes the lock second finds the tables made. The lock is
    ``.<db name>.lock`` beside the database, taken with ``flock``, so it is released when the
    process ends however it ends. Other URIs (a server) need none."""
    path = sqlite_path(uri)
    if path is None or fcntl is None:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # as MLflow would, to lock beside it
        lock = open(path.with_name(f".{path.name}.lock"), "a")  # noqa: SIM115
    except OSError:
        # A directory we cannot write to: MLflow reports it if it must write; a read-only
        # store (kernbench compare) is opened unlocked, as nobody can be creating it.
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def artifact_location(uri: str) -> str | None:
    """Artifacts of a local SQLite store live beside it; a server decides for itself."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri.removeprefix("sqlite:///"))
    return (db.parent / ARTIFACT_DIR).resolve().as_uri()


def ui_command(uri: str) -> str:
    if uri.startswith("sqlite:"):
        return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1"
    return f"open {uri} in a browser"


@cache
def git_commit() -> str:
    """The commit of the kernbench checkout, or ``unknown`` outside a git checkout."""
    here = Path(kernbench.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text


def retry(fn: Callable[[], T], attempts: int = 12) -> T:
    """Call ``fn``, retrying while SQLite reports the database as locked."""
    delay = 0.05
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts - 1 or not _is_busy(exc):
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


def _chunks(items: list[T], size: int) -> Iterable[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Tracker:
    """A thin, retrying wrapper over ``MlflowClient`` for one tracking URI and experiment."""

    def __init__(self, uri: str, experiment: str, source: str = "tracking.uri"):
        check_server(uri, source)
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.experiment = experiment
        # "Creating initial MLflow database tables..." on a new store says nothing to a user.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        # The first look-up opens the store (and creates it if new): one process at a time.
        with store_lock(uri):
            self.client = retry(lambda: MlflowClient(tracking_uri=uri))
            self.experiment_id = self._experiment_id(experiment)

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        exp = retry(lambda: self.client.get_experiment_by_name(name))
        if exp is not None:
            if EXPERIMENT_KIND_TAG not in exp.tags:
                # Made by an older kernbench (or by hand): show it as runs, as ours are.
                retry(
                    lambda: self.client.set_experiment_tag(
                        exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND
                    )
                )
            return exp.experiment_id
        tags = {
            EXPERIMENT_KIND_TAG: EXPERIMENT_KIND,
            NOTE_TAG: f"kernbench runs of `{name}` (one run per command, a parent run per "
            "sweep). Compare them here or with `kernbench compare runs --experiment "
            f"{name}`.",
        }
        try:
            return retry(
                lambda: self.client.create_experiment(
                    name, artifact_location=artifact_location(self.uri), tags=tags
                )
            )
        except MlflowException:
            # Another process created it between our look-up and our create (a server's
            # store has no lock of ours).
            exp = retry(lambda: self.client.get_experiment_by_name(name))
            if exp is None:
                raise
            return exp.experiment_id

    def start_run(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        run_id = self.create_run(name, tags)
        self.log_params(run_id, params)
        return run_id

    def create_run(self, name: str, tags: Mapping[str, str]) -> str:
        run = retry(
            lambda: self.client.create_run(
                self.experiment_id, run_name=name, tags={k: _tag(v) for k, v in tags.items()}
            )
        )
        return run.info.run_id

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        plist = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for chunk in _chunks(plist, PARAMS_PER_BATCH):
            retry(lambda c=chunk: self.client.log_batch(run_id, params=c))

    def finish_run(
        self,
        run_id: str,
        status: str,
        metrics: Mapping[str, float] = {},
        tags: Mapping[str, Any] = {},
        artifacts: Iterable[Path] = (),
    ) -> None:
        from mlflow.entities import Metric, RunTag

        now_ms = int(time.time() * 1000)
        mlist = [Metric(k, float(v), now_ms, 0) for k, v in metrics.items() if _number(v)]
        tlist = [RunTag(k, _tag(v)) for k, v in tags.items()]
        for chunk in _chunks(tlist, PARAMS_PER_BATCH):
            retry(lambda c=chunk: self.client.log_batch(run_id, tags=c))
        for chunk in _chunks(mlist, METRICS_PER_BATCH):
            retry(lambda c=chunk: self.client.log_batch(run_id, metrics=c))
        for path in artifacts:
            if path.exists():
                retry(lambda p=path: self.client.log_artifact(run_id, str(p)))
        retry(lambda: self.client.set_terminated(run_id, status))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _tag(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_TAG_CHARS else text[: MAX_TAG_CHARS - 3] + "..."


def run_tags(
    *,
    bench: str | None,
    config_hash: str | None,
    choices: Mapping[str, str],
    overrides: list[str],
    role: str,
    sweep_id: str | None = None,
    job_num: int | None = None,
    parent_run_id: str | None = None,
    better: Mapping[str, str | None] | None = None,
    headline: Sequence[str] = (),
) -> dict[str, str]:
    """kernbench's tags of a run, MLflow's source tags and its description (``better`` and
    ``headline``: the bench's declarations, kept with the run for ``kernbench compare``)."""
    commit = git_commit()
    tags = {
        f"{TAG_PREFIX}bench": bench or "",
        f"{TAG_PREFIX}role": role,
        f"{TAG_PREFIX}config_hash": config_hash or "",
        f"{TAG_PREFIX}overrides": " ".join(overrides),
        f"{TAG_PREFIX}git_commit": commit,
        f"{TAG_PREFIX}version": kernbench.__version__,
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": "kernbench",
        "mlflow.user": _user(),
    }
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit
    tags.update({f"{TAG_PREFIX}choice.{k}": v for k, v in choices.items()})
    if sweep_id:
        tags[f"{TAG_PREFIX}sweep_id"] = sweep_id
    if job_num is not None:
        tags[f"{TAG_PREFIX}job_num"] = str(job_num)
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    for key, value in ((BETTER_TAG, better), (HEADLINE_TAG, list(headline))):
        text = json.dumps(value, separators=(",", ":"))
        if value and len(text) <= MAX_TAG_CHARS:  # cut short it would not parse
            tags[key] = text
    tags[NOTE_TAG] = run_description(
        bench=bench,
        choices=choices,
        overrides=overrides,
        role=role,
        sweep_id=sweep_id,
        job_num=job_num,
        config_hash=config_hash,
    )
    return tags


BETTER_TAG = f"{TAG_PREFIX}better"
# The config groups a run's description names, in this order (all are tags besides).
DESCRIBED_GROUPS = ("topology", "hw", "sim", "ccl", "model")
HEADLINE_TAG = f"{TAG_PREFIX}headline"


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers)
        return "unknown"


def run_description(
    *,
    bench: str | None,
    choices: Mapping[str, str],
    overrides: Sequence[str],
    role: str,
    sweep_id: str | None,
    job_num: int | None,
    config_hash: str | None,
) -> str:
    """The run's MLflow description (markdown): what ran, the command, and where from."""
    if role == "sweep":
        what = f"kernbench sweep `{sweep_id}`" + (f" of bench `{bench}`" if bench else "")
        lines = [f"{what}: the parent run of its jobs."]
    else:
        presets = ", ".join(f"{k} `{choices[k]}`" for k in DESCRIBED_GROUPS if k in choices)
        lines = [f"kernbench run of bench `{bench}`" + (f" ({presets})" if presets else "") + "."]
        if role == "job":
            lines[0] += f" Job {job_num} of sweep `{sweep_id}`."
    command = " ".join(["kernbench", *(["-m"] if role == "sweep" else []), *overrides])
    lines.append(f"Command: `{command}`")
    where = f"kernbench {kernbench.__version__}, commit `{git_commit()[:12]}`"
    if config_hash:
        where = f"config hash `{config_hash}`; {where}"
    lines.append(where + ".")
    return "\n\n".join(lines)


def outcome_note(
    status: str,
    error: str | None,
    metrics: Mapping[str, Any],
    headline: Sequence[str],
) -> str:
    """One markdown line for the end of a run's description: its outcome and headline
    metrics."""
    text = f"**{status}**" + (f": {error}" if error else "")
    shown = [(k, metrics[k]) for k in headline_metrics(metrics, headline) if _number(metrics[k])]
    if shown:
        text += " — " + ", ".join(f"`{k}` {fmt_cell(float(v))}" for k, v in shown[:8])
    return text


class TrackedRun:
    """The MLflow record of one run. A tracking failure never stops the run: it is kept in
    ``error`` for the caller to report, and the on-disk results stay the source of truth."""

    def __init__(self) -> None:
        self.tracker: Tracker | None = None
        self.run_id: str | None = None
        self.error: str | None = None
        self.description = ""
        self.headline: list[str] = []

    @classmethod
    def start(
        cls,
        spec: TrackingSpec,
        launch_dir: Path,
        *,
        bench: str | None,
        run_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
    ) -> "TrackedRun":
        tracked = cls()
        tracked.description = tags.get(NOTE_TAG, "")
        tracked.headline = json.loads(tags.get(HEADLINE_TAG, "[]"))
        try:
            # Cut short here, a run would leave no record (or a new store half made): a
            # signal waits for the run to exist, then closes it as KILLED.
            with deferred("the MLflow run is recorded, to close it as KILLED"):
                try:
                    uri = resolve_uri(spec.uri, launch_dir)
                    experiment = spec.experiment or bench or "kernbench"
                    tracked.tracker = Tracker(uri, experiment, uri_source(spec.uri))
                    tracked.run_id = tracked.tracker.create_run(run_name, tags)
                    tracked.tracker.log_params(tracked.run_id, params)
                except Exception as exc:
                    tracked.error = describe_error(exc)
        except KeyboardInterrupt:
            tracked.kill()
            raise
        return tracked

    def finish(
        self,
        status: str,
        metrics: Mapping[str, float],
        tags: Mapping[str, Any],
        artifacts: Iterable[Path],
    ) -> None:
        if self.tracker is None or self.run_id is None:
            return
        outcome = {"FINISHED": "ok"}.get(status, status.lower())
        error = tags.get(f"{TAG_PREFIX}error")
        note = outcome_note(outcome, error, metrics, self.headline)
        tags = {**tags, NOTE_TAG: f"{self.description}\n\n{note}".strip()}
        try:
            self.tracker.finish_run(self.run_id, status, metrics, tags, artifacts)
        except KeyboardInterrupt:
            self.kill()
            raise
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    def kill(self) -> None:
        """Close the run as KILLED (Ctrl-C); best effort, the process is stopping."""
        if self.tracker is None or self.run_id is None:
            return
        try:
            tag = f"{TAG_PREFIX}status"
            note = f"{self.description}\n\n**killed** (interrupted)".strip()
            retry(lambda: self.tracker.client.set_tag(self.run_id, tag, "killed"))
            retry(lambda: self.tracker.client.set_tag(self.run_id, NOTE_TAG, _tag(note)))
            retry(lambda: self.tracker.client.set_terminated(self.run_id, "KILLED"))
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    def describe(self) -> dict[str, str]:
        if self.tracker is None or self.run_id is None:
            return {}
        return {
            "uri": self.tracker.uri,
            "experiment": self.tracker.experiment,
            "experiment_id": self.tracker.experiment_id,
            "run_id": self.run_id,
        }
