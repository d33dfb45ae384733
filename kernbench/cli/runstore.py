"""Read-only access to the MLflow tracking store for ``kernbench.compare``.

Runs are found by id, unique id prefix or run name; experiments by name, by default the one
of the latest run; sweeps by their id or their parent run. A missing SQLite store is
reported, never created, and every MLflow error becomes a :class:`CompareError` naming the
store. mlflow is imported when a store is opened, not at import time.
"""

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kernbench.cli.tracking import TAG_PREFIX, store_lock
from kernbench.core.errors import KernbenchError

SHORT_ID_CHARS = 8
SEARCH_PAGE_RUNS = 1000


class CompareError(KernbenchError):
    """A run, experiment, sweep or store named on the command line does not exist or is
    ambiguous; the message lists what would be valid."""


class Store:
    """Read-only access to one tracking store."""

    def __init__(self, uri: str):
        if uri.startswith("sqlite:///"):
            path = Path(uri.removeprefix("sqlite:///"))
            # Opening a missing SQLite store through mlflow would create an empty one.
            if not path.exists():
                raise CompareError(
                    f"no tracking store at {path}: run a bench first, or pass --tracking-uri "
                    "(or set MLFLOW_TRACKING_URI) to point at an existing store"
                )
        from mlflow.tracking import MlflowClient

        self.uri = uri
        # Opening a store that a run is creating at this moment would create it a second time.
        with store_lock(uri):
            self.client = self._call(lambda: MlflowClient(tracking_uri=uri))
            self._call(lambda: self.client.search_experiments(max_results=1))

    def _call(self, fn: Any) -> Any:
        from mlflow.exceptions import MlflowException

        from kernbench.cli.tracking import retry

        try:
            return retry(fn)  # sweep workers may be writing the same SQLite store
        except MlflowException as exc:
            raise CompareError(f"tracking store {self.uri}: {exc.message}") from exc

    def experiments(self) -> list[Any]:
        experiments: list[Any] = []
        token = None
        while True:
            page = self._call(
                lambda t=token: self.client.search_experiments(
                    max_results=SEARCH_PAGE_RUNS, page_token=t
                )
            )
            experiments.extend(page)
            token = page.token
            if not token:
                return experiments

    def experiments_with_runs(self) -> list[Any]:
        """Every experiment; an error if the store holds no run at all."""
        experiments = self.experiments()
        if not self.search([e.experiment_id for e in experiments], max_runs=1):
            raise CompareError(f"tracking store {self.uri} has no runs yet: run a bench first")
        return experiments

    def experiment(self, name: str | None) -> Any:
        """The experiment called ``name``, else the one of the latest run; an unknown name is
        an error that lists those present."""
        experiments = self.experiments_with_runs()
        if name is None:
            [latest] = self.search([e.experiment_id for e in experiments], max_runs=1)
            name = next(e.name for e in experiments if e.experiment_id == latest.info.experiment_id)
        for exp in experiments:
            if exp.name == name:
                return exp
        listing = ", ".join(sorted(e.name for e in experiments))
        raise CompareError(f"unknown experiment {name!r} in {self.uri}; experiments: {listing}")

    def experiment_ids(self, name: str | None) -> list[str]:
        """The experiment called ``name``, else every experiment: where runs are looked up."""
        if name:
            return [self.experiment(name).experiment_id]
        return [e.experiment_id for e in self.experiments_with_runs()]

    def experiment_name(self, experiment_id: str) -> str:
        return self._call(lambda: self.client.get_experiment(experiment_id)).name

    def sweep(self, ref: str, experiment_ids: Sequence[str]) -> tuple[str, Any]:
        """A sweep by its id (``kernbench.sweep_id``, as the sweep prints it) or by its parent
        run (id, id prefix or name): its id and one of its runs (the parent if logged)."""
        tag = f"{TAG_PREFIX}sweep_id"
        runs = self.search(experiment_ids, f"tags.`{tag}` = {quote(ref)}")
        if runs:
            parents = [r for r in runs if r.data.tags.get(f"{TAG_PREFIX}role") == "sweep"]
            return ref, (parents or runs)[0]
        try:
            run = self.resolve_run(ref, experiment_ids)
        except CompareError:
            run = None
        if run is not None and run.data.tags.get(tag):
            return run.data.tags[tag], run
        known = sorted(
            {
                s
                for r in self.search(experiment_ids, f"tags.`{TAG_PREFIX}role` = 'sweep'")
                if (s := r.data.tags.get(tag))
            }
        )
        raise CompareError(
            f"no sweep {ref!r} (by sweep id or parent run) in {self.uri}; sweeps: "
            f"{', '.join(known[-10:]) or 'none'}"
        )

    def search(
        self,
        experiment_ids: Sequence[str],
        filter_string: str = "",
        order_by: Sequence[str] = ("attributes.start_time DESC",),
        max_runs: int | None = None,
    ) -> list[Any]:
        """All matching runs (following MLflow's pages), newest first by default."""
        runs: list[Any] = []
        token = None
        while True:
            page = self._call(
                lambda t=token: self.client.search_runs(
                    list(experiment_ids),
                    filter_string=filter_string,
                    max_results=min(SEARCH_PAGE_RUNS, max_runs or SEARCH_PAGE_RUNS),
                    order_by=list(order_by),
                    page_token=t,
                )
            )
            runs.extend(page)
            token = page.token
            if not token or (max_runs is not None and len(runs) >= max_runs):
                return runs[:max_runs] if max_runs is not None else runs

    def resolve_run(self, ref: str, experiment_ids: Sequence[str]) -> Any:
        """A run by id, unique id prefix, or name (the latest run of that name)."""
        from mlflow.exceptions import MlflowException

        if len(ref) == 32:
            try:
                return self.client.get_run(ref)
            except MlflowException:
                pass  # not an id after all; it may still be a run name
        named = self.search(experiment_ids, f"attributes.run_name = {quote(ref)}", max_runs=1)
        if named:
            return named[0]
        runs = self.search(experiment_ids)
        prefixed = [r for r in runs if r.info.run_id.startswith(ref.lower())]
        if len(prefixed) == 1:
            return prefixed[0]
        if prefixed:
            matches = ", ".join(label(r) for r in prefixed[:5])
            raise CompareError(
                f"run id prefix {ref!r} is ambiguous: {len(prefixed)} runs match ({matches}); "
                "give more characters"
            )
        recent = ", ".join(label(r) for r in runs[:5]) or "none"
        raise CompareError(
            f"no run {ref!r} (by id, id prefix or run name) in {self.uri}; "
            f"give a run id, unique id prefix or run name; latest runs: {recent}"
        )


def quote(value: str) -> str:
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise CompareError(f"{value!r} contains both quote characters; give the run id instead")


def label(run: Any) -> str:
    return f"{run.info.run_name} ({run.info.run_id[:SHORT_ID_CHARS]})"


def status(run: Any) -> str:
    """kernbench's own outcome tag (``ok``/``failed``) once a run ended, else MLflow's."""
    if run.info.status == "RUNNING":
        return "running"
    return run.data.tags.get(f"{TAG_PREFIX}status") or run.info.status.lower()


def is_failed(run: Any) -> bool:
    return run.info.status in ("FAILED", "KILLED") or status(run) == "failed"


def start_text(run: Any) -> str:
    if not run.info.start_time:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.info.start_time / 1000))
