"""A search's settings, checked before anything runs (ADR 0031, docs/search.md).

:func:`plan_search` turns the multirun's config and command line into a :class:`SearchPlan`:
the ``search.*`` settings, each objective's direction (from the bench's metric definitions),
the space as Optuna distributions from Hydra's sweep syntax (``choice(...)`` and ``a,b,c``,
``range(...)``, ``interval(...)``; ``tag(log, interval(...))`` samples on a log scale,
``tag(int, interval(...))`` integers), the overrides every trial gets, the constraints split
into those on config keys (checked before a trial runs) and those on metrics (after), the
study's name and its storage. :func:`prepare_search` runs in
:class:`~kernbench.cli.sweep.SweepCallback` before the sweep's parent run exists, so a bad
objective, constraint or space is a config error (exit 2), not a run.
"""

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer, ValueType
from omegaconf import DictConfig, OmegaConf

from kernbench.bench import get_bench
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
MISSING = object()


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
            value = OmegaConf.select(config, name, default=MISSING)
            if value is MISSING or isinstance(value, DictConfig) or name.startswith("hydra."):
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
    if o.value_type == ValueType.GLOB_CHOICE_SWEEP:
        raise ConfigError(key, f"{o.input_line}: a search samples choice(...), not a glob")
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
    check_same_objectives(study, plan)


def check_same_objectives(study: Any, plan: SearchPlan) -> None:
    had = study.user_attrs.get("objectives")
    directions = [d.name.lower() for d in study.directions]
    if had != plan.objectives or directions != list(plan.directions):
        raise ConfigError(
            f"{SearchSpec.KEY}.study",
            f"study {plan.study_name!r} in {plan.storage} optimises {had} ({directions}), not "
            f"{plan.objectives} ({list(plan.directions)}); name another study with "
            "search.study=NAME",
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
