"""A search's results, written to its sweep directory and logged with the sweep's parent run.

:func:`write_results` writes ``search.json`` (the whole study: every trial with its state,
parameters, objective values and child run), ``pareto.csv`` and ``pareto.md`` (the Pareto
front: the feasible trials no other trial dominates, from Optuna's ``study.best_trials``) and
``pareto.png`` (every trial, the front highlighted), and prints the front.
:func:`read_outcome` reads them back for :class:`~kernbench.cli.sweep.SweepCallback`, which
logs the files, the search settings and the best parameters per objective with the parent.
"""

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kernbench.cli.tables import output_console, print_tables
from kernbench.report.markdown import markdown_table

RESULTS_JSON = "search.json"
FRONT_CSV = "pareto.csv"
FRONT_MD = "pareto.md"
FRONT_PNG = "pareto.png"
# Axis labels: a metric's unit from its name's suffix (docs/metrics.md), longest match first.
UNITS = (
    ("tflops", "TFLOP/s"),
    ("_per_s", "1/s"),
    ("_gbs", "GB/s"),
    ("_ns", "ns"),
    ("_uj", "µJ"),
    ("_pj", "pJ"),
    ("_mw", "mW"),
    ("_w", "W"),
    ("_bytes", "bytes"),
    ("_s", "s"),
)


@dataclass
class TrialRow:
    number: int
    state: str  # complete, fail, pruned (rejected by a constraint), running
    params: dict[str, Any]
    values: list[float] | None
    feasible: bool = True
    on_front: bool = False
    job: int | None = None
    run_id: str | None = None
    error: str | None = None
    this_sweep: bool = False  # run by this command (else by an earlier one of the study)


@dataclass
class SearchOutcome:
    study: str
    storage: str
    bench: str
    objectives: list[str]
    directions: list[str]
    space: list[str]
    constraints: list[str]
    sampler: str
    seed: int
    n_trials: int
    trials: list[TrialRow] = field(default_factory=list)
    # Set when the study stopped early: an objective the bench does not report.
    error: str | None = None

    def front(self) -> list[TrialRow]:
        """The Pareto front, best first by the first objective."""
        rows = [t for t in self.trials if t.on_front and t.values is not None]
        sign = 1 if self.directions[0] == "minimize" else -1
        return sorted(rows, key=lambda t: (sign * t.values[0], t.number))  # type: ignore[index]

    def param_keys(self) -> list[str]:
        return list(dict.fromkeys(k for t in self.trials for k in t.params))

    def best(self) -> dict[str, TrialRow]:
        """The best feasible trial of each objective on its own."""
        out = {}
        done = [t for t in self.trials if t.values is not None and t.feasible]
        for i, (name, direction) in enumerate(zip(self.objectives, self.directions, strict=True)):
            if done:
                sign = 1 if direction == "minimize" else -1
                out[name] = min(done, key=lambda t: (sign * t.values[i], t.number))  # type: ignore[index]
        return out

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state] = out.get(t.state, 0) + 1
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SearchOutcome":
        trials = [TrialRow(**t) for t in data.pop("trials", [])]
        return cls(**data, trials=trials)


def front_table(outcome: SearchOutcome) -> tuple[list[str], list[list[Any]]]:
    """The front as a table: trial, job, objectives, parameters and, when tracked, run id."""
    keys = outcome.param_keys()
    front = outcome.front()
    tracked = any(t.run_id for t in outcome.trials)
    columns = ["trial", "job", *outcome.objectives, *keys, *(["run_id"] if tracked else [])]
    rows = [
        [
            t.number,
            t.job if t.this_sweep else None,
            *(t.values or []),
            *(t.params.get(k) for k in keys),
            *([t.run_id] if tracked else []),
        ]
        for t in front
    ]
    return columns, rows


def write_results(sweep_dir: Path, outcome: SearchOutcome) -> list[Path]:
    """``search.json``, ``pareto.csv``, ``pareto.md`` and ``pareto.png`` in ``sweep_dir``;
    the front printed. Returns the files written."""
    columns, rows = front_table(outcome)
    paths = [sweep_dir / RESULTS_JSON, sweep_dir / FRONT_CSV, sweep_dir / FRONT_MD]
    paths[0].write_text(json.dumps(asdict(outcome), indent=2) + "\n")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    paths[1].write_text(out.getvalue())
    title = f"Pareto front of study {outcome.study} ({_directions_text(outcome)})"
    paths[2].write_text(markdown_table({"title": title, "columns": columns, "rows": rows}))
    png = sweep_dir / FRONT_PNG
    if draw_front(outcome, png):
        paths.append(png)
    print_front(outcome)
    return paths


def _directions_text(outcome: SearchOutcome) -> str:
    return ", ".join(
        f"{o} {d}d" for o, d in zip(outcome.objectives, outcome.directions, strict=True)
    )


def print_front(outcome: SearchOutcome, console: Any = None) -> None:
    console = console or output_console()
    columns, rows = front_table(outcome)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(outcome.counts().items()))
    title = f"study {outcome.study}: Pareto front, {len(rows)} of {len(outcome.trials)} trials"
    if rows:
        print_tables(console, title, columns, rows, keep=2)
    else:
        console.print(f"{title}: no trial completed", markup=False)
    console.print(f"trials: {counts or 'none'} ({_directions_text(outcome)})", markup=False)
    if outcome.error:
        console.print(f"search stopped: {outcome.error}", markup=False, style="red")


def unit_label(metric: str) -> str:
    for suffix, unit in UNITS:
        if metric.endswith(suffix):
            return f"{metric} ({unit})"
    return metric


def draw_front(outcome: SearchOutcome, path: Path) -> bool:
    """Every completed trial (the first two objectives; one objective against the trial
    number), infeasible ones hollow, the front highlighted and joined. False if no trial
    completed."""
    done = [t for t in outcome.trials if t.values is not None]
    if not done:
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    two = len(outcome.objectives) >= 2

    def xy(rows: Sequence[TrialRow]) -> tuple[list[float], list[float]]:
        if two:
            return [r.values[0] for r in rows], [r.values[1] for r in rows]  # type: ignore[index]
        return [float(r.number) for r in rows], [r.values[0] for r in rows]  # type: ignore[index]

    feasible = [t for t in done if t.feasible and not t.on_front]
    infeasible = [t for t in done if not t.feasible]
    front = outcome.front()
    if two:
        front = sorted(front, key=lambda t: t.values[0])  # type: ignore[index]
    ax.scatter(*xy(feasible), s=24, color="tab:gray", alpha=0.7, label="trials")
    if infeasible:
        ax.scatter(
            *xy(infeasible), s=24, facecolors="none", edgecolors="tab:red", label="infeasible"
        )
    ax.plot(*xy(front), "o-", color="tab:blue", markersize=7, label="Pareto front")
    for t, x, y in zip(front, *xy(front), strict=True):
        ax.annotate(str(t.number), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    names = outcome.objectives
    arrows = {"minimize": "lower is better", "maximize": "higher is better"}
    if two:
        ax.set_xlabel(f"{unit_label(names[0])}, {arrows[outcome.directions[0]]}")
        ax.set_ylabel(f"{unit_label(names[1])}, {arrows[outcome.directions[1]]}")
    else:
        ax.set_xlabel("trial")
        ax.set_ylabel(f"{unit_label(names[0])}, {arrows[outcome.directions[0]]}")
    extra = f" (first 2 of {len(names)} objectives)" if len(names) > 2 else ""
    ax.set_title(f"{outcome.bench}: study {outcome.study}{extra}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return True


def read_outcome(sweep_dir: Path) -> SearchOutcome | None:
    """The search results of a sweep directory, or None if it ran no search."""
    path = sweep_dir / RESULTS_JSON
    if not path.exists():
        return None
    return SearchOutcome.from_json(json.loads(path.read_text()))


def result_files(sweep_dir: Path) -> list[Path]:
    names = (RESULTS_JSON, FRONT_CSV, FRONT_MD, FRONT_PNG)
    return [sweep_dir / n for n in names if (sweep_dir / n).exists()]


def parent_params(outcome: SearchOutcome) -> dict[str, Any]:
    """The parent run's params: the search settings and, per objective, the best trial's
    number, value and parameters (``best.<objective>.<key>``)."""
    params: dict[str, Any] = {
        "search.study": outcome.study,
        "search.storage": outcome.storage,
        "search.objectives": ",".join(outcome.objectives),
        "search.directions": ",".join(outcome.directions),
        "search.sampler": outcome.sampler,
        "search.seed": outcome.seed,
        "search.n_trials": outcome.n_trials,
        "search.space": " ".join(outcome.space),
    }
    if outcome.constraints:
        params["search.constraints"] = " ; ".join(outcome.constraints)
    for name, trial in outcome.best().items():
        i = outcome.objectives.index(name)
        params[f"best.{name}.trial"] = trial.number
        params[f"best.{name}.value"] = trial.values[i]  # type: ignore[index]
        for key, value in trial.params.items():
            params[f"best.{name}.{key}"] = value
    return params


def parent_metrics(outcome: SearchOutcome) -> dict[str, float]:
    counts = outcome.counts()
    metrics: dict[str, float] = {
        "trials": len(outcome.trials),
        "trials_complete": counts.get("complete", 0),
        "trials_failed": counts.get("fail", 0),
        "trials_rejected": counts.get("pruned", 0),
        "pareto_size": len(outcome.front()),
    }
    for name, trial in outcome.best().items():
        metrics[f"best/{name}"] = trial.values[outcome.objectives.index(name)]  # type: ignore[index]
    return metrics
