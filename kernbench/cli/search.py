"""A design-space search: an Optuna study driven through Hydra's launcher (ADR 0031).

``hydra/sweeper=optuna`` selects kernbench's sweeper plugin
(``hydra_plugins/kernbench_optuna_sweeper``), which calls :func:`run_search` with the plan
of :mod:`kernbench.cli.search_plan`. Each batch of ``hydra.sweeper.n_jobs`` trials is asked
of Optuna; trials whose config-key constraints fail are recorded as pruned without running;
the rest go to the launcher as one batch of jobs, and each job's objectives are read from
its ``summary.json`` and told to Optuna. A failed job is a failed trial and the study goes
on. The study lives in ``outputs/optuna.db`` beside the MLflow store, so the same command
(or the same ``search.study``) resumes it up to ``n_trials`` in total. The results (Pareto
front, best parameters) are written by :mod:`kernbench.cli.search_report`.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf

from kernbench.cli.search_plan import MISSING, SearchPlan, check_same_objectives, plan_search
from kernbench.cli.search_report import SearchOutcome, TrialRow, write_results
from kernbench.cli.search_spec import Constraint, finite

RUN_METRICS = ("sim_time_ns", "wall_s", "sim_events")
# Trial user attributes: where the trial ran and why it failed or was rejected.
JOB_ATTR, RUN_ATTR, DIR_ATTR = "kernbench.job_num", "kernbench.run_id", "kernbench.out_dir"
ERROR_ATTR, CONSTRAINTS_ATTR = "kernbench.error", "kernbench.constraints"
INTERRUPTED = "interrupted: the search stopped before this trial ended"


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
    check_same_objectives(study, plan)
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
        except BaseException as exc:
            reason = INTERRUPTED if isinstance(exc, KeyboardInterrupt) else f"launcher: {exc}"
            for trial in launched:
                trial.set_user_attr(ERROR_ATTR, reason)
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

    if plan.spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=plan.spec.seed)
    kwargs = {}
    if plan.spec.population_size is not None:
        kwargs["population_size"] = plan.spec.population_size
    return optuna.samplers.NSGAIISampler(seed=plan.spec.seed, **kwargs)


def _set_constraints(trial: Any, plan: SearchPlan, values: list[float]) -> None:
    """Optuna's constraint values (<= 0: it holds), one per constraint, set before ``tell``;
    the samplers and ``best_trials`` prefer and keep feasible trials."""
    texts = [c.text for c in plan.param_constraints + plan.metric_constraints]
    for text, value in zip(texts, values, strict=True):
        trial.set_constraint(text, value)
    trial.set_user_attr(CONSTRAINTS_ATTR, values)


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
    _set_constraints(trial, plan, violations(plan.param_constraints, values) + unknown)
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
            error = missing = (
                f"objective {absent[0]!r} is not a metric of bench {plan.bench!r}; "
                + _reported(metrics)
            )
    if error is None:
        bad = [o for o in plan.objectives if not finite(metrics[o])]
        if bad:
            error = f"objective {bad[0]!r} is {metrics[bad[0]]!r}, not a finite number"
    values = {**plan.base, **trial.params, **metrics}
    if error is None and plan.metric_constraints:
        task_cfg = ret.cfg if ret.cfg is not None else OmegaConf.create()
        for constraint in plan.metric_constraints:
            for name in constraint.names:
                if name not in values:
                    value = OmegaConf.select(task_cfg, name, default=MISSING)
                    if value is MISSING:
                        error = missing = (
                            f"constraint {constraint.text!r} names {name!r}, neither a config "
                            f"key nor a metric of bench {plan.bench!r}; " + _reported(metrics)
                        )
                        break
                    values[name] = value
        if error is None:
            constraints = plan.param_constraints + plan.metric_constraints
            _set_constraints(trial, plan, violations(constraints, values))
    if error is not None:
        trial.set_user_attr(ERROR_ATTR, error)
        study.tell(trial, state=TrialState.FAIL)
        print(f"trial {trial.number} (job {job_num}) failed: {error}", flush=True)
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return missing if missing and not completed else None
    if plan.param_constraints and not plan.metric_constraints:
        values = {**plan.base, **trial.params}
        _set_constraints(trial, plan, violations(plan.param_constraints, values))
    study.tell(trial, [float(metrics[o]) for o in plan.objectives])
    shown = ", ".join(f"{o}={metrics[o]:.6g}" for o in plan.objectives)
    print(f"trial {trial.number} (job {job_num}): {shown}", flush=True)
    return None


def _reported(metrics: dict[str, Any]) -> str:
    return f"it reports: {', '.join(sorted(metrics)) or 'no metric'}"


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
