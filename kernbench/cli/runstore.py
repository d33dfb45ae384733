"""Read-only access to the MLflow tracking store for ``kernbench.compare``.

Runs are found by id, unique id prefix or run name; experiments by name. A missing SQLite
store is reported, never created, and every MLflow error becomes a :class:`CompareError`
naming the store. mlflow is imported when a store is opened, not at import time.
"""

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kernbench.cli.tracking import TAG_PREFIX
from kernbench.core.errors import KernbenchError

DEFAULT_EXPERIMENT = "probe"
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
        self.client = self._call(lambda: MlflowClient(tracking_uri=uri))

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
        """The experiment called ``name``, else ``probe``; an error lists those present."""
        experiments = self.experiments_with_runs()
        names = [e.name for e in experiments]
        wanted = name or DEFAULT_EXPERIMENT
        for exp in experiments:
            if exp.name == wanted:
                return exp
        listing = ", ".join(sorted(names))
        if name is None:
            raise CompareError(
                f"no experiment {DEFAULT_EXPERIMENT!r} in {self.uri}; pick one with "
                f"--experiment: {listing}"
            )
        raise CompareError(f"unknown experiment {name!r} in {self.uri}; experiments: {listing}")

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
                    max_results=SEARCH_PAGE_RUNS,
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
