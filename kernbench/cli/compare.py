"""``python -m kernbench.compare``: compare tracked runs without a browser.

``runs`` lists the runs of an experiment (by default the latest run's) or of one sweep with
the params they vary and their headline metrics; ``diff`` compares two runs metric by metric
and exits 1 when one moved in its bad direction by more than a threshold, so it can gate CI.
Each metric's direction is the one its bench declared (kept with the run), else its unit
suffix's. Tables fit the terminal (:mod:`kernbench.cli.tables`). The store is only read: a
missing SQLite file is reported, never created. mlflow is imported only when the store is
opened, so ``--help`` stays fast.
"""

import argparse
import csv
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from kernbench.bench.result import RUN_METRIC_DIRECTIONS, SUFFIX_DIRECTIONS, metric_direction
from kernbench.cli.compare_front import add_front_parser, cmd_front
from kernbench.cli.runstore import (
    SHORT_ID_CHARS,
    CompareError,
    Store,
    is_failed,
    label,
    quote,
    start_text,
    status,
)
from kernbench.cli.tables import output_console, print_tables
from kernbench.cli.tracking import BETTER_TAG, HEADLINE_TAG, TAG_PREFIX, resolve_uri
from kernbench.core.errors import KernbenchError

EXIT_OK = 0
EXIT_WORSE = 1
EXIT_USER_ERROR = 2

# Without --metrics: the headline metrics the runs' benches declared, else these.
DEFAULT_METRIC_PATTERNS = ("latency_ns", "*/latency_ns")
DEFAULT_METRIC_COUNT = 6
DEFAULT_PARAM_COUNT = 6
DEFAULT_LIMIT = 50
DEFAULT_THRESHOLD = 0.05
# Host wall time measures the machine, not the model: reported but never a verdict by default.
NOISE_METRICS = ("wall_s",)

# Metrics only in one run of a diff listed by name before the rest are counted.
LISTED_MISSING = 10

EPILOG = """\
examples:
  {prog} runs                                  # the latest run's experiment
  {prog} runs --sweep SWEEP_ID --metrics '*/latency_ns,*/effective_bw_gbs'
  {prog} runs --status failed --params 'topology.*,bench.*' --format csv > runs.csv
  {prog} runs --sort pe-local-hbm/latency_ns --limit 5
  {prog} diff probe-4x4-1a2b3c4d probe-4x4-5e6f7a8b
  {prog} diff 3f9c 81d0 --threshold 0.02 --format json   # exit 1 if a metric got worse
  {prog} front --sweep SWEEP_ID                # the Pareto front of a search

runs are named by run id, a unique run id prefix, or run name (the latest run of that name);
a sweep by the id it printed or its parent run. --sweep, --parent and diff look in every
experiment unless --experiment names one.
the store is --tracking-uri, else MLFLOW_TRACKING_URI, else sqlite:///./outputs/mlflow.db.
exit codes: 0 ok, 1 diff found a metric worse than baseline, 2 bad input.
"""


def _value(text: str | None) -> Any:
    """A param's string as the number it spells, so columns sort and align as numbers."""
    if text is None:
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _patterns(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def _select(keys: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """Keys matching any pattern, in pattern order, then key order within a pattern."""
    ordered = sorted(set(keys))
    out: list[str] = []
    for pattern in patterns:
        out += [k for k in ordered if fnmatchcase(k, pattern) and k not in out]
    return out


def _unmatched(keys: Iterable[str], patterns: Sequence[str]) -> list[str]:
    keys = list(keys)
    return [p for p in patterns if not any(fnmatchcase(k, p) for k in keys)]


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def cmd_runs(args: argparse.Namespace, store: Store) -> int:
    if args.parent:
        # A parent is found in any experiment; its children are in its own.
        parent = store.resolve_run(args.parent, store.experiment_ids(args.experiment))
        exp_id = parent.info.experiment_id
        where = f"tags.`mlflow.parentRunId` = {quote(parent.info.run_id)}"
        what = f"children of {label(parent)}"
    elif args.sweep:
        sweep_id, member = store.sweep(args.sweep, store.experiment_ids(args.experiment))
        exp_id = member.info.experiment_id
        where = f"tags.`{TAG_PREFIX}sweep_id` = {quote(sweep_id)}"
        what = f"sweep {sweep_id}"
    else:
        exp = store.experiment(args.experiment)
        exp_id, where, what = exp.experiment_id, "", "runs"
        if not args.experiment:
            others = sorted(
                e.name
                for e in store.experiments_with_runs()
                if e.name != exp.name and store.search([e.experiment_id], max_runs=1)
            )
            if others:
                _note(
                    f"experiment {exp.name!r}, the latest run's; others: {', '.join(others)} "
                    "(--experiment NAME)"
                )
    experiment = store.experiment_name(exp_id)
    title = f"{experiment}: {what}"
    runs = store.search([exp_id], where)
    scoped = bool(args.parent or args.sweep)
    if scoped or not args.all_roles:
        runs = [r for r in runs if r.data.tags.get(f"{TAG_PREFIX}role") != "sweep"]
    if args.status == "finished":
        runs = [r for r in runs if r.info.status == "FINISHED" and not is_failed(r)]
    elif args.status == "failed":
        runs = [r for r in runs if is_failed(r)]
    if scoped:
        # A sweep reads best in job order; MLflow returned newest first.
        runs.sort(key=lambda r: _job_num(r))

    param_keys = {k for r in runs for k in r.data.params}
    metric_keys = {k for r in runs for k in r.data.metrics}
    if args.sort:
        runs = _sorted(runs, args.sort, args.desc, param_keys, metric_keys)
    total = len(runs)
    limit = DEFAULT_LIMIT if args.limit is None else args.limit
    if limit and total > limit:
        runs = runs[:limit]
        if args.limit is None:
            _note(f"showing the first {limit} of {total} runs; --limit 0 shows all")

    params = _choose_params(runs, _patterns(args.params))
    metrics = _choose_metrics(metric_keys, _patterns(args.metrics), _headline(runs))
    header = ["run", "id", "status", "start", *params, *metrics]
    records = [
        {
            "run_name": r.info.run_name,
            "run_id": r.info.run_id,
            "status": status(r),
            "start_time": start_text(r),
            "params": {k: _value(r.data.params.get(k)) for k in params},
            "metrics": {k: r.data.metrics.get(k) for k in metrics},
        }
        for r in runs
    ]
    if args.format == "json":
        for rec in records:
            rec["metrics"] = {k: _json_number(v) for k, v in rec["metrics"].items()}
        out = {"experiment": experiment, "runs": records}
        print(json.dumps(out, indent=2))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["run_name", "run_id", "status", "start_time", *params, *metrics])
        for rec in records:
            writer.writerow(
                [rec["run_name"], rec["run_id"], rec["status"], rec["start_time"]]
                + ["" if v is None else v for v in rec["params"].values()]
                + ["" if v is None else repr(v) for v in rec["metrics"].values()]
            )
    else:
        rows = [
            [
                rec["run_name"],
                rec["run_id"][:SHORT_ID_CHARS],
                rec["status"],
                rec["start_time"],
                *rec["params"].values(),
                *rec["metrics"].values(),
            ]
            for rec in records
        ]
        styles = ["red" if rec["status"] == "failed" else "" for rec in records]
        console = output_console()
        if rows:
            # Narrow terminals lose the start time, then the run names (ids stay), before
            # the columns are split over several tables.
            print_tables(
                console,
                f"{title} ({len(rows)})",
                header,
                rows,
                keep=4,
                optional=("start", "run"),
                styles=styles,
            )
        else:
            console.print(f"{title}: no runs match", markup=False)
    return EXIT_OK


def _job_num(run: Any) -> tuple[int, int]:
    job = _value(run.data.tags.get(f"{TAG_PREFIX}job_num"))
    return (job, 0) if isinstance(job, int) else (sys.maxsize, run.info.start_time or 0)


def _sorted(
    runs: list[Any], key: str, desc: bool, param_keys: set[str], metric_keys: set[str]
) -> list[Any]:
    if key in metric_keys:
        values = {r.info.run_id: r.data.metrics.get(key) for r in runs}
    elif key in param_keys:
        values = {r.info.run_id: _value(r.data.params.get(key)) for r in runs}
    else:
        known = sorted(metric_keys)[:12]
        raise CompareError(
            f"--sort {key!r} is neither a metric nor a param of these runs; metrics include: "
            f"{', '.join(known) or 'none'}"
        )
    present = [r for r in runs if values[r.info.run_id] is not None]
    missing = [r for r in runs if values[r.info.run_id] is None]
    # Mixed numbers and strings (a param that is sometimes "auto") sort as text.
    numeric = all(isinstance(values[r.info.run_id], int | float) for r in present)
    present.sort(
        key=lambda r: values[r.info.run_id] if numeric else str(values[r.info.run_id]),
        reverse=desc,
    )
    return present + missing


def _choose_params(runs: Sequence[Any], patterns: Sequence[str]) -> list[str]:
    keys = {k for r in runs for k in r.data.params}
    if patterns:
        for pattern in _unmatched(keys, patterns):
            _note(f"--params {pattern!r} matches no param of these runs")
        return _select(keys, patterns)
    # By default only what varies between the listed runs: for a sweep, its axes.
    varied = [k for k in sorted(keys) if len({r.data.params.get(k) for r in runs}) > 1]
    if len(varied) > DEFAULT_PARAM_COUNT:
        _note(
            f"showing {DEFAULT_PARAM_COUNT} of {len(varied)} params that differ; pick others "
            "with --params PATTERNS"
        )
        varied = varied[:DEFAULT_PARAM_COUNT]
    return varied


def _headline(runs: Sequence[Any]) -> list[str]:
    """The headline metric patterns the runs' benches declared, in order, without repeats."""
    out: list[str] = []
    for run in runs:
        for pattern in _json_tag(run, HEADLINE_TAG, []):
            if pattern not in out:
                out.append(pattern)
    return out


def _json_tag(run: Any, key: str, default: Any) -> Any:
    try:
        return json.loads(run.data.tags[key])
    except (KeyError, ValueError):
        return default


def _choose_metrics(keys: set[str], patterns: Sequence[str], headline: Sequence[str]) -> list[str]:
    if patterns:
        for pattern in _unmatched(keys, patterns):
            _note(f"--metrics {pattern!r} matches no metric of these runs")
        return _select(keys, patterns)
    chosen = _select(keys, [*(headline or DEFAULT_METRIC_PATTERNS)])
    if not chosen:
        chosen = sorted(k for k in keys if k not in NOISE_METRICS)
    if len(chosen) > DEFAULT_METRIC_COUNT:
        _note(
            f"showing {DEFAULT_METRIC_COUNT} of {len(chosen)} metrics; pick others with "
            "--metrics PATTERNS"
        )
        chosen = chosen[:DEFAULT_METRIC_COUNT]
    return chosen + [k for k in NOISE_METRICS if k in keys]


def direction(
    name: str,
    declared: Mapping[str, str | None] = {},
    lower: Sequence[str] = (),
    higher: Sequence[str] = (),
) -> str | None:
    """``"lower"`` or ``"higher"`` (is better) for a metric, ``None`` when it has none: the
    user's ``--lower-is-better`` / ``--higher-is-better`` patterns, then what the run's bench
    declared, then kernbench's defaults (:func:`kernbench.bench.metric_direction`)."""
    if any(fnmatchcase(name, p) for p in lower):
        return "lower"
    if any(fnmatchcase(name, p) for p in higher):
        return "higher"
    return metric_direction(name, declared)


def relative_change(baseline: float, candidate: float) -> float:
    if baseline == candidate:
        return 0.0
    if baseline == 0 or math.isnan(baseline) or math.isnan(candidate):
        return math.copysign(math.inf, candidate - baseline) if baseline == 0 else math.nan
    return (candidate - baseline) / abs(baseline)


def verdict(change: float, better: str | None, threshold: float) -> str:
    """``worse``/``better``/``same`` for a metric with a direction, else ``changed``/``same``."""
    if math.isnan(change):
        return "changed"
    if abs(change) <= threshold:
        return "same"
    if better is None:
        return "changed"
    got_lower = change < 0
    return "better" if got_lower == (better == "lower") else "worse"


def _pct(change: float) -> str:
    if math.isnan(change):
        return "n/a"
    if math.isinf(change):
        return "+inf" if change > 0 else "-inf"
    return f"{change:+.1%}"


def _threshold_text(threshold: float) -> str:
    return f"{threshold * 100:g}%"


def cmd_diff(args: argparse.Namespace, store: Store) -> int:
    exp_ids = store.experiment_ids(args.experiment)
    base = store.resolve_run(args.baseline, exp_ids)
    cand = store.resolve_run(args.candidate, exp_ids)
    for role, run in (("baseline", base), ("candidate", cand)):
        if is_failed(run) or run.info.status == "RUNNING":
            _note(f"{role} {label(run)} is {status(run)}; its metrics may be incomplete")

    patterns = _patterns(args.metrics)
    bm, cm = base.data.metrics, cand.data.metrics
    benches = [r.data.tags.get(f"{TAG_PREFIX}bench") for r in (base, cand)]
    # Two benches share kernbench's own metrics and, rarely, some of theirs (gemm, qkv_gemm).
    other_bench = all(benches) and benches[0] != benches[1]
    if other_bench:
        what = f"{label(base)} is a run of bench {benches[0]!r} and {label(cand)} of {benches[1]!r}"
        if not (bm.keys() & cm.keys()) - RUN_METRIC_DIRECTIONS.keys():
            raise CompareError(
                f"{what}: they share no metric but kernbench's own "
                f"({', '.join(sorted(RUN_METRIC_DIRECTIONS))}); compare two runs of one bench "
                "(kernbench compare runs lists them)"
            )
        _note(f"{what}: comparing only the metrics both have")
    common = _select(bm.keys() & cm.keys(), patterns or ["*"])
    if not common:
        what = f"matching --metrics {args.metrics!r} " if patterns else ""
        raise CompareError(
            f"{label(base)} and {label(cand)} share no metric {what}(baseline has "
            f"{len(bm)}, candidate {len(cm)}); compare runs of the same bench"
        )
    lower, higher = _patterns(args.lower_is_better), _patterns(args.higher_is_better)
    # What the candidate's bench declared, then the baseline's (the first match decides).
    declared = dict(_json_tag(cand, BETTER_TAG, {}))
    for pattern, value in _json_tag(base, BETTER_TAG, {}).items():
        declared.setdefault(pattern, value)
    rows = []
    for name in common:
        better = direction(name, declared, lower, higher)
        change = relative_change(bm[name], cm[name])
        judged = "ignored" if name in NOISE_METRICS and not args.include_wall else None
        rows.append(
            {
                "metric": name,
                "baseline": bm[name],
                "candidate": cm[name],
                "change": change,
                "better": better,
                "verdict": judged or verdict(change, better, args.threshold),
            }
        )
    worse = [r for r in rows if r["verdict"] == "worse"]
    summary = _summary(rows, worse, args.threshold)
    params_changed = {
        k: [_value(base.data.params.get(k)), _value(cand.data.params.get(k))]
        for k in sorted(base.data.params.keys() | cand.data.params.keys())
        if base.data.params.get(k) != cand.data.params.get(k)
    }
    only_base = sorted(bm.keys() - cm.keys())
    only_cand = sorted(cm.keys() - bm.keys())

    if args.format == "json":
        out = {
            "baseline": _run_ref(base),
            "candidate": _run_ref(cand),
            "threshold": args.threshold,
            "params_changed": params_changed,
            "metrics": [{k: _json_number(v) for k, v in r.items()} for r in rows],
            "only_in_baseline": only_base,
            "only_in_candidate": only_cand,
            "worse": [r["metric"] for r in worse],
            "summary": summary,
        }
        print(json.dumps(out, indent=2))
    else:
        console = output_console()
        for role, run in (("baseline", base), ("candidate", cand)):
            console.print(
                f"{role:<9}  {label(run)}  {status(run)}  {start_text(run)}", markup=False
            )
        if params_changed:
            changed = [[k, b, c] for k, (b, c) in params_changed.items()]
            columns = ["param", "baseline", "candidate"]
            print_tables(console, "params", columns, changed, wrap_key=True)
        table_rows = [
            [
                r["metric"],
                r["baseline"],
                r["candidate"],
                _pct(r["change"]),
                r["better"] or "",
                r["verdict"],
            ]
            for r in rows
        ]
        styles = [{"worse": "red", "better": "green"}.get(r["verdict"], "") for r in rows]
        print_tables(
            console,
            "metrics",
            ["metric", "baseline", "candidate", "change", "better", "verdict"],
            table_rows,
            styles=styles,
            wrap_key=True,
        )
        for role, names in (("baseline", only_base), ("candidate", only_cand)):
            if names:
                console.print(f"only in {role}: {_listing(names)}", markup=False)
        console.print(summary, markup=False, style="red" if worse else None)
    # A gate must not pass a candidate that failed or lost metrics the baseline has (another
    # bench's metrics are not lost: that bench never had them).
    missing = [k for k in _select(only_base, patterns or ["*"]) if k not in NOISE_METRICS]
    if other_bench:
        missing = []
    problems = []
    if is_failed(cand) or cand.info.status == "RUNNING":
        problems.append(f"candidate {label(cand)} is {status(cand)}")
    if missing:
        problems.append(
            f"candidate lacks {len(missing)} baseline metric(s): {', '.join(missing[:5])}"
        )
    for problem in problems:
        print(f"regression: {problem}", file=sys.stderr)
    return EXIT_WORSE if worse or problems else EXIT_OK


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:LISTED_MISSING])
    if len(names) <= LISTED_MISSING:
        return shown
    return f"{len(names)} metrics: {shown}, ... (--format json lists all)"


def _run_ref(run: Any) -> dict[str, Any]:
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "experiment_id": run.info.experiment_id,
        "status": status(run),
    }


def _summary(
    rows: Sequence[Mapping[str, Any]], worse: Sequence[Mapping[str, Any]], t: float
) -> str:
    limit = _threshold_text(t)
    if worse:
        noun = "metric" if len(worse) == 1 else "metrics"
        items = ", ".join(f"{r['metric']} ({_pct(r['change'])})" for r in worse)
        return f"{len(worse)} {noun} worse than baseline by more than {limit}: {items}"
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("better", "changed", "same")}
    tally = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    return f"no metric worse than baseline by more than {limit} ({tally})"


def _threshold(text: str) -> float:
    """A fraction (``0.05``) or a percentage (``5%``), not negative."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number; give a fraction like 0.05 or a percentage like 5%"
        ) from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative; a threshold is >= 0")
    return value


def _positive_or_zero(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count; give N >= 0 (0 = all)")
    return value


def build_parser(prog: str = "python -m kernbench.compare") -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="tracking store; default MLFLOW_TRACKING_URI, else sqlite:///./outputs/mlflow.db",
    )
    common.add_argument(
        "--experiment",
        metavar="NAME",
        help="experiment (one per bench); runs: default the latest run's; --sweep, --parent "
        "and diff: default all experiments",
    )
    formatter = argparse.RawDescriptionHelpFormatter
    epilog = EPILOG.format(prog=prog)
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Compare kernbench runs recorded in the MLflow tracking store.",
        epilog=epilog,
        formatter_class=formatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{runs,diff,front}")

    runs = sub.add_parser(
        "runs",
        parents=[common],
        help="list runs with the params they vary and chosen metrics",
        description="List the runs of an experiment or of one sweep. PATTERNS are "
        "comma-separated globs, e.g. '*/latency_ns,wall_s'.",
        epilog=epilog,
        formatter_class=formatter,
    )
    scope = runs.add_mutually_exclusive_group()
    scope.add_argument(
        "--sweep",
        metavar="SWEEP",
        help="only the jobs of this sweep: the id the sweep printed, or its parent run",
    )
    scope.add_argument("--parent", metavar="RUN", help="only the children of this parent run")
    runs.add_argument(
        "--metrics",
        metavar="PATTERNS",
        help="metric columns; default the headline metrics of the runs' benches, else "
        f"{','.join(DEFAULT_METRIC_PATTERNS)!r} (at most {DEFAULT_METRIC_COUNT}), plus wall_s",
    )
    runs.add_argument(
        "--params", metavar="PATTERNS", help="param columns; default the params that differ"
    )
    runs.add_argument(
        "--status", choices=("finished", "failed", "all"), default="all", help="default: all"
    )
    runs.add_argument(
        "--limit",
        type=_positive_or_zero,
        metavar="N",
        help=f"at most N runs (default {DEFAULT_LIMIT}; 0 = all)",
    )
    runs.add_argument(
        "--sort", metavar="KEY", help="sort by this metric or param, ascending (missing last)"
    )
    runs.add_argument("--desc", action="store_true", help="sort descending")
    runs.add_argument(
        "--all-roles",
        action="store_true",
        help="also list sweep parent runs (without --sweep/--parent)",
    )
    runs.add_argument("--format", choices=("table", "csv", "json"), default="table")

    diff = sub.add_parser(
        "diff",
        parents=[common],
        help="compare two runs metric by metric; exit 1 if one got worse",
        description="Compare every metric two runs share. A metric is 'worse' when it moved "
        "in its bad direction by more than --threshold. Its direction is the one its bench "
        "declared (kept with the run), else its unit's: lower is better for "
        f"{', '.join(s for s, d in SUFFIX_DIRECTIONS if d == 'lower')}, higher for "
        f"{', '.join(s for s, d in SUFFIX_DIRECTIONS if d == 'higher')}; a metric without "
        "one is only 'changed'. wall_s is ignored unless --include-wall.",
        epilog=epilog,
        formatter_class=formatter,
    )
    diff.add_argument("baseline", metavar="BASELINE", help="run id, id prefix or run name")
    diff.add_argument("candidate", metavar="CANDIDATE", help="run id, id prefix or run name")
    diff.add_argument(
        "--threshold",
        type=_threshold,
        default=DEFAULT_THRESHOLD,
        metavar="FRACTION",
        help=f"relative change that counts (default {DEFAULT_THRESHOLD}; '5%%' also works)",
    )
    diff.add_argument("--metrics", metavar="PATTERNS", help="only these metrics")
    diff.add_argument("--lower-is-better", metavar="PATTERNS", help="metrics where lower is better")
    diff.add_argument(
        "--higher-is-better", metavar="PATTERNS", help="metrics where higher is better"
    )
    diff.add_argument("--include-wall", action="store_true", help="judge wall_s too (host noise)")
    diff.add_argument("--format", choices=("table", "json"), default="table")
    add_front_parser(sub, common, epilog=epilog, formatter_class=formatter)
    return parser


def main(argv: list[str] | None = None, *, prog: str = "python -m kernbench.compare") -> int:
    """Entry point of ``python -m kernbench.compare`` and ``kernbench compare``."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        # argparse exits 0 for --help and 2 for bad usage; return it instead.
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    try:
        store = Store(resolve_uri(args.tracking_uri, Path.cwd()))
        if args.command == "runs":
            return cmd_runs(args, store)
        if args.command == "front":
            return cmd_front(args, store)
        return cmd_diff(args, store)
    except KernbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
