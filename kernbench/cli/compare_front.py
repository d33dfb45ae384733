"""``kernbench compare front``: the Pareto front of a logged search (docs/search.md).

A search (``-m hydra/sweeper=optuna``) logs its results with its sweep's parent run:
``search.json`` holds every trial of the study and which are on the front. This reads it
back from the store and prints the front as a table, CSV or JSON, so the front of a search
run elsewhere (or long ago) needs neither the sweep directory nor Optuna's database.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from kernbench.cli.runstore import CompareError, Store, label, quote
from kernbench.cli.search_report import (
    FRONT_CSV,
    RESULTS_JSON,
    SearchOutcome,
    print_front,
)
from kernbench.cli.tables import output_console
from kernbench.cli.tracking import TAG_PREFIX

EXIT_OK = 0
# mlflow draws a progress bar on stderr for every download, even of one small file.
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def add_front_parser(sub: Any, common: argparse.ArgumentParser, **kwargs: Any) -> None:
    front = sub.add_parser(
        "front",
        parents=[common],
        help="print the Pareto front of a search (hydra/sweeper=optuna)",
        description="Print the Pareto front of a search: the trials no other trial beats "
        "in every objective, with their objective values, parameters and run ids.",
        **kwargs,
    )
    front.add_argument(
        "--sweep",
        metavar="SWEEP",
        help="the search's sweep id (as it printed) or its parent run; default: the latest search",
    )
    front.add_argument("--format", choices=("table", "csv", "json"), default="table")


def cmd_front(args: argparse.Namespace, store: Store) -> int:
    os.environ.setdefault(PROGRESS_BAR_ENV, "false")
    experiments = store.experiment_ids(args.experiment)
    parent = _parent(store, args.sweep, experiments)
    outcome = _outcome(store, parent)
    if args.format == "json":
        rows = [
            {
                "trial": t.number,
                "values": dict(zip(outcome.objectives, t.values or [], strict=True)),
                "params": t.params,
                "run_id": t.run_id,
            }
            for t in outcome.front()
        ]
        meta = {
            "study": outcome.study,
            "objectives": outcome.objectives,
            "directions": outcome.directions,
            "parent_run_id": parent.info.run_id,
        }
        print(json.dumps({**meta, "front": rows}, indent=2))
    elif args.format == "csv":
        with tempfile.TemporaryDirectory() as tmp:
            path = store._call(
                lambda: store.client.download_artifacts(parent.info.run_id, FRONT_CSV, tmp)
            )
            sys.stdout.write(Path(path).read_text())
    else:
        console = output_console()
        console.print(f"search of sweep {label(parent)}", markup=False)
        print_front(outcome, console)
    return EXIT_OK


def _parent(store: Store, ref: str | None, experiments: list[str]) -> Any:
    """The sweep's parent run, or the latest parent run of a search."""
    if ref is None:
        runs = store.search(experiments, f"tags.`{TAG_PREFIX}role` = 'sweep'")
        searches = [r for r in runs if "search.study" in r.data.params]
        if not searches:
            raise CompareError(
                f"no search in {store.uri}: run one with `kernbench -m hydra/sweeper=optuna ...`"
            )
        return searches[0]
    sweep_id, member = store.sweep(ref, experiments)
    if member.data.tags.get(f"{TAG_PREFIX}role") == "sweep":
        return member
    tag = f"{TAG_PREFIX}sweep_id"
    where = f"tags.`{tag}` = {quote(sweep_id)} and tags.`{TAG_PREFIX}role` = 'sweep'"
    parents = store.search([member.info.experiment_id], where)
    if not parents:
        raise CompareError(f"sweep {sweep_id!r} has no parent run in {store.uri}")
    return parents[0]


def _outcome(store: Store, parent: Any) -> SearchOutcome:
    names = {f.path for f in store._call(lambda: store.client.list_artifacts(parent.info.run_id))}
    if RESULTS_JSON not in names:
        raise CompareError(
            f"{label(parent)} ran no search (no {RESULTS_JSON} among its artifacts); "
            "list its jobs with `kernbench compare runs --sweep ...`"
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = store._call(
            lambda: store.client.download_artifacts(parent.info.run_id, RESULTS_JSON, tmp)
        )
        return SearchOutcome.from_json(json.loads(Path(path).read_text()))
