"""A design-space search: an Optuna study driven through Hydra's launcher (ADR 0031).

``hydra/sweeper=optuna`` selects kernbench's sweeper plugin
(``hydra_plugins/kernbench_optuna_sweeper``), which calls :func:`run_search`. The space is
Hydra's sweep syntax on the command line or in ``hydra.sweeper.params``: ``choice(...)``
(and ``a,b,c``), ``range(...)``, ``interval(...)`` (``tag(log, interval(...))`` samples on a
log scale, ``tag(int, interval(...))`` integers). Each batch of ``hydra.sweeper.n_jobs``
trials is asked of Optuna, trials whose config-key constraints fail are recorded as pruned
without running, the rest go to the launcher as one batch of jobs, and each job's objectives
are read from its ``summary.json`` and told to Optuna. A failed job is a failed trial and
the study goes on. The study lives in ``outputs/optuna.db`` beside the MLflow store, so the
same command (or ``search.study``) resumes it up to ``n_trials`` in total.

:func:`check_search` runs in :class:`~kernbench.cli.sweep.SweepCallback` before the sweep's
parent run exists: a bad objective, constraint or space is a config error (exit 2), not a
run. The results (Pareto front, best parameters) are written by
:mod:`kernbench.cli.search_report`.
"""

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf

from kernbench.bench import get_bench
from kernbench.cli.search_report import SearchOutcome, TrialRow, write_results
from kernbench.cli.search_spec import (
    Constraint,
    SearchSpec,
    finite,
    objective_directions,
    parse_constraints,
)
from kernbench.config import BENCH_SELECT_KEYS, bench_selection, build_spec
from kernbench.core.errors import ConfigError

SWEEPER_TARGET = "KernbenchOptunaSweeper"
STORE_FILE = "optuna.db"
RUN_METRICS = ("sim_time_ns", "wall_s", "sim_events")
# Trial user attributes: where the trial ran and why it failed or was rejected.
JOB_ATTR, RUN_ATTR, DIR_ATTR = "kernbench.job_num", "kernbench.run_id", "kernbench.out_dir"
ERROR_ATTR, CONSTRAINTS_ATTR = "kernbench.error", "kernbench.constraints"
INTERRUPTED = "interrupted: the search stopped before this trial ended"
_MISSING = object()


@dataclass(frozen=True)
class SearchPlan:
    """What one search command asks for, checked: see :func:`plan_search`."""

    spec: SearchSpec
    bench: str
    directions: tuple[str, ...]
    space: dict[str, Any]  # override key -> Optuna distribution
    space_lines: tuple[str, ...]
    fixed: tuple[str, ...]  # overrides every trial gets, as written
    param_constraints: tuple[Constraint, ...]
    metric_constraints: tuple[Constraint, ...]
    base: dict[str, Any]  # values of the config keys constraints name, before sampling
    study_name: str
    storage: str
    n_trials: int
    n_jobs: int

    @property
    def objectives(self) -> list[str]:
        return list(self.spec.objectives)


def is_search(config: DictConfig) -> bool:
    sweeper = OmegaConf.select(config, "hydra.sweeper._target_", default="") or ""
    return str(sweeper).endswith(SWEEPER_TARGET)


def check_search(config: DictConfig) -> None:
    """Raise :class:`ConfigError` unless the multirun's search (if it is one) is valid and its
    study, if it exists, optimises the same objectives in the same directions."""
    if is_search(config):
        plan = plan_search(config, [str(o) for o in config.hydra.overrides.task])
        check_study(plan)


def plan_search(config: DictConfig, arguments: Sequence[str]) -> SearchPlan:
    sweeper = config.hydra.sweeper
    n_trials, n_jobs = sweeper.get("n_trials"), sweeper.get("n_jobs")
    for key, value in (("n_trials", n_trials), ("n_jobs", n_jobs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"hydra.sweeper.{key}", f"must be an integer >= 1, got {value!r}")
    spec = build_spec(SearchSpec, config.get(SearchSpec.KEY), SearchSpec.KEY)
    bench, modules = bench_selection(config)
    directions = objective_directions(spec, bench, get_bench(bench, modules).better)
    params = sweeper.get("params") or {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(arguments)
    space, space_lines, fixed = _space(OverridesParser.create().parse_overrides(lines))
    constraints = parse_constraints(spec.constraints)
    base: dict[str, Any] = {}
    on_params, on_metrics = [], []
    for constraint in constraints:
        keys = True
        for name in constraint.names:
            if name in space:
                _check_numeric_space(name, space[name], constraint)
                continue
            value = OmegaConf.select(config, name, default=_MISSING)
            if value is _MISSING or isinstance(value, DictConfig) or name.startswith("hydra."):
                keys = False  # a metric, read after the run
            else:
                base[name] = value
        (on_params if keys else on_metrics).append(constraint)
    for constraint in on_params:
        constraint.violation({**base, **{n: 1 for n in space}})  # numbers, or a ConfigError
    storage = sweeper.get("storage") or default_storage(Path.cwd())
    return SearchPlan(
        spec=spec,
        bench=bench,
        directions=tuple(directions),
        space=space,
        space_lines=tuple(space_lines),
        fixed=tuple(fixed),
        param_constraints=tuple(on_params),
        metric_constraints=tuple(on_metrics),
        base=base,
        study_name=spec.study or _study_name(bench, spec, directions, space_lines, fixed),
        storage=str(storage),
        n_trials=n_trials,
        n_jobs=n_jobs,
    )


def default_storage(launch_dir: Path) -> str:
    """``sqlite:///<launch dir>/outputs/optuna.db``, beside the default MLflow store."""
    return f"sqlite:///{(launch_dir / 'outputs' / STORE_FILE).resolve()}"


def _space(overrides: list[Override]) -> tuple[dict[str, Any], list[str], list[str]]:
    """The Optuna distribution of each swept key, the sweep overrides and the fixed ones."""
    space: dict[str, Any] = {}
    space_lines, fixed = [], []
    for o in overrides:
        key = o.get_key_element()
        if not o.is_sweep_override():
            fixed.append(o.input_line or f"{key}={o.get_value_element_as_str()}")
            continue
        if key.lstrip("+~") in ("bench", *(f"bench.{k}" for k in BENCH_SELECT_KEYS)):
            raise ConfigError(
                key, "a search optimises one bench's metrics; run one search per bench"
            )
        space[key] = _distribution(o)
        space_lines.append(o.input_line or key)
    if not space:
        raise ConfigError(
            "hydra.sweeper.params",
            "nothing to search: give at least one key a range on the command line, e.g. "
            "'hw.hbm.pc_bw_gbs=choice(16,32,64)' or 'hw.pe.gemm_tflops_fp16=interval(4,16)'",
        )
    return space, space_lines, fixed


def _distribution(o: Override) -> Any:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    key, value = o.get_key_element(), o.value()
    tags = getattr(value, "tags", set()) or set()
    if o.is_interval_sweep():
        low, high = float(value.start), float(value.end)
        if "int" in tags:
            lo, hi = math.ceil(low), math.floor(high)
            if lo > hi:
                raise ConfigError(key, f"{o.input_line}: no integer in the interval")
            return IntDistribution(lo, hi, log="log" in tags)
        if not low < high or ("log" in tags and low <= 0):
            raise ConfigError(key, f"{o.input_line}: need 0 < low < high for a log interval")
        return FloatDistribution(low, high, log="log" in tags)
    if o.is_range_sweep() and not value.shuffle:
        values = list(o.sweep_iterator(transformer=Transformer.identity))
        if not values:
            raise ConfigError(key, f"{o.input_line}: the range is empty")
        step = abs(value.step)
        if all(isinstance(v, int) for v in values):
            return IntDistribution(min(values), max(values), step=step)
        return FloatDistribution(float(min(values)), float(max(values)), step=float(step))
    if o.is_choice_sweep() or o.is_range_sweep():
        choices = list(o.sweep_iterator(transformer=Transformer.encode))
        if not all(isinstance(c, str | int | float | bool) or c is None for c in choices):
            raise ConfigError(key, f"{o.input_line}: choices must be numbers, strings or null")
        return CategoricalDistribution(choices)
    raise ConfigError(
        key,
        f"{o.input_line}: a search samples choice(...), range(...) or interval(...), not a glob",
    )


def _check_numeric_space(name: str, distribution: Any, constraint: Constraint) -> None:
    choices = getattr(distribution, "choices", ())
    bad = [c for c in choices if not finite(c)]
    if bad:
        raise ConfigError(
            f"{SearchSpec.KEY}.constraints",
            f"{constraint.text!r} compares {name}, whose choice {bad[0]!r} is not a number",
        )


def _study_name(
    bench: str,
    spec: SearchSpec,
    directions: Sequence[str],
    space_lines: Sequence[str],
    fixed: Sequence[str],
) -> str:
    """``<bench>-<hash>`` of what the study optimises and over what: the same command names
    the same study (and resumes it); another space or objective starts another."""
    kept = [f for f in fixed if not f.lstrip("+~").startswith(("search.", "hydra"))]
    what = {
        "objectives": list(spec.objectives),
        "directions": list(directions),
        "constraints": list(spec.constraints),
        "space": sorted(space_lines),
        "fixed": sorted(kept),
    }
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:8]
    return f"{bench}-{digest}"


def check_study(plan: SearchPlan) -> None:
    """An existing study of that name must have the plan's objectives and directions."""
    import optuna

    path = plan.storage.removeprefix("sqlite:///") if plan.storage.startswith("sqlite:") else None
    if path is not None and not Path(path).exists():
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if plan.study_name not in optuna.get_all_study_names(storage=plan.storage):
        return
    study = optuna.load_study(study_name=plan.study_name, storage=plan.storage)
    _check_same_objectives(study, plan)


def _check_same_objectives(study: Any, plan: SearchPlan) -> None:
    had = study.user_attrs.get("objectives")
    directions = [d.name.lower() for d in study.directions]
    if had != plan.objectives or directions != list(plan.directions):
        raise ConfigError(
            f"{SearchSpec.KEY}.study",
            f"study {plan.study_name!r} in {plan.storage} optimises {had} ({directions}), not "
            f"{plan.objectives} ({list(plan.directions)}); name another study with "
            "search.study=NAME",
        )


@dataclass
class _Batch:
    trials: list[Any] = field(default_factory=list)
    rejected: int = 0


def run_search(sweeper: Any, arguments: list[str]) -> SearchOutcome:
    """The sweeper's ``sweep``: run the study to ``n_trials`` and write its results."""
    import optuna

    config: DictConfig = sweeper.config
    plan = plan_search(config, arguments)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, sweep_dir / "multirun.yaml")
    if plan.storage.startswith("sqlite:///"):
        Path(plan.storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=plan.study_name,
        storage=plan.storage,
        sampler=_sampler(plan),
        directions=list(plan.directions),
        load_if_exists=True,
    )
    if "objectives" not in study.user_attrs:
        study.set_user_attr("objectives", plan.objectives)
    _check_same_objectives(study, plan)
    stale = _close_stale(study)
    done = _finished(study)
    todo = max(plan.n_trials - done, 0)
    print(
        f"search: study {plan.study_name!r} ({plan.storage}): {done} of {plan.n_trials} trials "
        f"done, running {todo}; {_describe(plan)}"
        + (
            f"; {stale} trial(s) left running by an earlier command recorded as failed"
            if stale
            else ""
        ),
        flush=True,
    )
    job_idx, error = 0, None
    while todo > 0 and error is None:
        size = min(plan.n_jobs, todo)
        trials = [study.ask() for _ in range(size)]
        launched = [t for t in trials if _admit(study, t, plan)]
        todo -= size
        if not launched:
            continue
        batch = [_overrides(t, plan) for t in launched]
        sweeper.validate_batch_is_legal(batch)
        try:
            returns = sweeper.launcher.launch(batch, initial_job_idx=job_idx)
        except BaseException:
            for trial in launched:
                trial.set_user_attr(ERROR_ATTR, INTERRUPTED)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        for trial, ret, num in zip(
            launched, returns, range(job_idx, job_idx + len(launched)), strict=True
        ):
            error = _tell(study, trial, ret, num, plan) or error
        job_idx += len(launched)
    outcome = _outcome(study, plan, sweep_dir, error)
    write_results(sweep_dir, outcome)
    return outcome


def _describe(plan: SearchPlan) -> str:
    objectives = ", ".join(
        f"{o} ({d})" for o, d in zip(plan.objectives, plan.directions, strict=True)
    )
    return f"{plan.spec.sampler} sampler, seed {plan.spec.seed}, objectives {objectives}"


def _sampler(plan: SearchPlan) -> Any:
    import optuna

    constraints = plan.param_constraints + plan.metric_constraints
    kwargs: dict[str, Any] = {"seed": plan.spec.seed}
    if constraints:
        kwargs["constraints_func"] = _constraint_values
    if plan.spec.sampler == "tpe":
        return optuna.samplers.TPESampler(**kwargs)
    if plan.spec.population_size is not None:
        kwargs["population_size"] = plan.spec.population_size
    return optuna.samplers.NSGAIISampler(**kwargs)


def _constraint_values(trial: Any) -> list[float]:
    """Optuna's constraints: each <= 0 when its constraint holds (set before ``tell``)."""
    return list(trial.user_attrs.get(CONSTRAINTS_ATTR, [0.0]))


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def _close_stale(study: Any) -> int:
    """Trials an earlier command left RUNNING (killed before it could record them) failed.
    One command runs a study at a time (docs/search.md)."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL)
    return len(stale)


def _admit(study: Any, trial: Any, plan: SearchPlan) -> bool:
    """Sample the trial's point; record it as pruned, not run, if a config-key constraint
    fails there."""
    from optuna.trial import TrialState

    for key, distribution in plan.space.items():
        _suggest(trial, key, distribution)
    values = {**plan.base, **trial.params}
    failed = [c for c in plan.param_constraints if not c.holds(values)]
    if not failed:
        return True
    reason = "; ".join(c.explain(values) for c in failed)
    trial.set_user_attr(ERROR_ATTR, f"rejected: {reason}")
    unknown = [0.0] * len(plan.metric_constraints)  # never run: its metrics are unknown
    trial.set_user_attr(CONSTRAINTS_ATTR, violations(plan.param_constraints, values) + unknown)
    study.tell(trial, state=TrialState.PRUNED)
    print(f"trial {trial.number} rejected, not run: {reason}", flush=True)
    return False


def violations(constraints: Sequence[Constraint], values: dict[str, Any]) -> list[float]:
    """Optuna's constraint values: <= 0 where a constraint holds, > 0 where it does not (a
    strict ``<`` met with equality is just above 0)."""
    out = []
    for c in constraints:
        v = c.violation(values)
        out.append(v if c.holds(values) else max(v, 1e-12))
    return out


def _suggest(trial: Any, key: str, distribution: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(key, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            key, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    return trial.suggest_float(
        key, distribution.low, distribution.high, step=distribution.step, log=distribution.log
    )


def _overrides(trial: Any, plan: SearchPlan) -> tuple[str, ...]:
    sampled = [f"{key}={_text(value)}" for key, value in trial.params.items()]
    return (*plan.fixed, *sampled)


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def _tell(study: Any, trial: Any, ret: JobReturn, job_num: int, plan: SearchPlan) -> str | None:
    """Tell Optuna the trial's objectives from its job's summary, or that it failed. Returns
    an error that stops the study: an objective or constraint names a metric the bench does
    not report, and no trial has completed (a misspelt name, not a run's failure)."""
    from optuna.trial import TrialState

    trial.set_user_attr(JOB_ATTR, job_num)
    summary, error = _summary(ret)
    trial.set_user_attr(DIR_ATTR, str(_out_dir(ret) or ""))
    run_id = (summary.get("mlflow") or {}).get("run_id")
    if run_id:
        trial.set_user_attr(RUN_ATTR, run_id)
    metrics = {**summary.get("metrics", {}), **{k: summary[k] for k in RUN_METRICS if k in summary}}
    missing = None
    if error is None:
        absent = [o for o in plan.objectives if o not in metrics]
        if absent:
            error = missing = _not_reported("objective", absent[0], plan.bench, metrics)
    if error is None:
        bad = [o for o in plan.objectives if not finite(metrics[o])]
        if bad:
            error = f"objective {bad[0]!r} is {metrics[bad[0]]!r}, not a finite number"
    values = dict(metrics)
    if error is None and plan.metric_constraints:
        task_cfg = ret.cfg if ret.cfg is not None else OmegaConf.create()
        for constraint in plan.metric_constraints:
            for name in constraint.names:
                if name not in values:
                    value = OmegaConf.select(task_cfg, name, default=_MISSING)
                    if value is _MISSING:
                        error = missing = _not_reported(
                            f"constraint {constraint.text!r} names", name, plan.bench, metrics
                        )
                        break
                    values[name] = value
        if error is None:
            constraints = plan.param_constraints + plan.metric_constraints
            trial.set_user_attr(CONSTRAINTS_ATTR, violations(constraints, values))
    if error is not None:
        trial.set_user_attr(ERROR_ATTR, error)
        study.tell(trial, state=TrialState.FAIL)
        print(f"trial {trial.number} (job {job_num}) failed: {error}", flush=True)
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return missing if missing and not completed else None
    if plan.param_constraints and not plan.metric_constraints:
        values = {**plan.base, **trial.params}
        trial.set_user_attr(CONSTRAINTS_ATTR, violations(plan.param_constraints, values))
    study.tell(trial, [float(metrics[o]) for o in plan.objectives])
    shown = ", ".join(f"{o}={metrics[o]:.6g}" for o in plan.objectives)
    print(f"trial {trial.number} (job {job_num}): {shown}", flush=True)
    return None


def _not_reported(what: str, name: str, bench: str, metrics: dict[str, Any]) -> str:
    return (
        f"{what} {name!r}, which is not a metric of bench {bench!r}; it reports: "
        f"{', '.join(sorted(metrics)) or 'none'}"
    )


def _out_dir(ret: JobReturn) -> Path | None:
    hydra_cfg = ret.hydra_cfg
    out = OmegaConf.select(hydra_cfg, "hydra.runtime.output_dir") if hydra_cfg else None
    return Path(str(out)) if out else None


def _summary(ret: JobReturn) -> tuple[dict[str, Any], str | None]:
    """The job's ``summary.json`` and, unless its run was ok, why not."""
    if ret.status == JobStatus.FAILED:
        return {}, f"the job raised {type(ret._return_value).__name__}: {ret._return_value}"
    out = _out_dir(ret)
    path = out / "summary.json" if out else None
    if path is None or not path.exists():
        return {}, f"the job left no summary.json ({out})"
    summary = json.loads(path.read_text())
    if summary.get("status") != "ok":
        return summary, f"the run {summary.get('status', 'failed')}: {summary.get('error', '?')}"
    return summary, None


def _outcome(study: Any, plan: SearchPlan, sweep_dir: Path, error: str | None) -> SearchOutcome:
    from optuna.trial import TrialState

    front = {t.number for t in study.best_trials}
    rows = []
    for t in study.get_trials(deepcopy=False):
        constraints = t.user_attrs.get(CONSTRAINTS_ATTR)
        rows.append(
            TrialRow(
                number=t.number,
                state=t.state.name.lower(),
                params=dict(t.params),
                values=list(t.values) if t.state == TrialState.COMPLETE else None,
                feasible=constraints is None or all(v <= 0 for v in constraints),
                on_front=t.number in front,
                job=t.user_attrs.get(JOB_ATTR),
                run_id=t.user_attrs.get(RUN_ATTR),
                error=t.user_attrs.get(ERROR_ATTR),
                this_sweep=str(t.user_attrs.get(DIR_ATTR, "")).startswith(str(sweep_dir)),
            )
        )
    return SearchOutcome(
        study=plan.study_name,
        storage=plan.storage,
        bench=plan.bench,
        objectives=plan.objectives,
        directions=list(plan.directions),
        space=list(plan.space_lines),
        constraints=[c.text for c in plan.param_constraints + plan.metric_constraints],
        sampler=plan.spec.sampler,
        seed=plan.spec.seed,
        n_trials=plan.n_trials,
        trials=rows,
        error=error,
    )


def prepare_search(config: DictConfig) -> None:
    """For ``hydra/sweeper=optuna``, before the sweep's parent run exists: register the
    sweeper plugin with Hydra (its scan misses it in an editable install) and check the
    search (:func:`check_search`)."""
    if not is_search(config):
        return
    from hydra.core.plugins import Plugins

    from hydra_plugins.kernbench_optuna_sweeper.optuna_sweeper import KernbenchOptunaSweeper

    Plugins.instance().register(KernbenchOptunaSweeper)
    check_search(config)
