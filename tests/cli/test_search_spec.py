"""The search settings without running anything: constraints parsed over a whitelist, the
space from Hydra's sweep syntax, objective directions, and search.* kept out of a run's
params and hash."""

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from tracking_helpers import compose_cfg

from kernbench.cli.overrides import unknown_spec_keys
from kernbench.cli.search_plan import _distribution, _space, plan_search
from kernbench.cli.search_spec import Constraint, SearchSpec, objective_directions
from kernbench.config import config_hash, flatten, normalized
from kernbench.core.errors import ConfigError

GEMM_BETTER = {"*tflops": "higher", "*roofline_ratio": "higher", "*_busy": None}


def test_constraint_violation_is_how_far_from_holding():
    c = Constraint.parse("hw.hbm.pc_bw_gbs*8 <= 512")
    assert c.names == ("hw.hbm.pc_bw_gbs",)
    assert c.violation({"hw.hbm.pc_bw_gbs": 32}) == 256 - 512
    assert c.violation({"hw.hbm.pc_bw_gbs": 80}) == 640 - 512
    assert c.holds({"hw.hbm.pc_bw_gbs": 64}) and not c.holds({"hw.hbm.pc_bw_gbs": 65})
    chained = Constraint.parse("1 < min(a, b.c) / 2 <= abs(-3) ** 2")
    assert chained.names == ("a", "b.c")
    assert chained.violation({"a": 4, "b.c": 10}) == -1  # 1 < 2: holds by 1; 2 <= 9: by 7
    assert chained.violation({"a": 40, "b.c": 30}) == 15 - 9
    ratio = Constraint.parse("1 / a <= 2")
    assert ratio.violation({"a": 0}) == float("inf") and not ratio.holds({"a": 0})


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true') <= 1",
        "a.b() <= 1",
        "(lambda: 1)() <= 1",
        "a[0] <= 1",
        "'x' <= 1",
        "a == 1",
        "a + 1",
        "open('f') <= 1",
    ],
)
def test_constraints_allow_only_arithmetic_and_comparisons(text):
    with pytest.raises(ConfigError, match="^search.constraints: "):
        Constraint.parse(text)


def test_search_spec_rejects_nonsense_with_the_key():
    with pytest.raises(ConfigError, match="search.sampler: no sampler 'cmaes'; valid: nsga2, tpe"):
        SearchSpec(sampler="cmaes")
    with pytest.raises(ConfigError, match="search.directions: gives 1 direction"):
        SearchSpec(objectives=["a_ns", "b_ns"], directions=["minimize"])
    with pytest.raises(ConfigError, match="search.objectives: names a metric twice"):
        SearchSpec(objectives=["a_ns", "a_ns"])


def test_directions_come_from_the_metric_definitions():
    spec = SearchSpec(objectives=["latency_ns", "tflops", "roofline_ratio"])
    assert objective_directions(spec, "gemm", GEMM_BETTER) == ["minimize", "maximize", "maximize"]
    given = SearchSpec(objectives=["gemm_busy"], directions=["maximize"])
    assert objective_directions(given, "gemm", GEMM_BETTER) == ["maximize"]
    with pytest.raises(ConfigError, match="metric 'gemm_busy' of bench 'gemm' has no direction"):
        objective_directions(SearchSpec(objectives=["gemm_busy"]), "gemm", GEMM_BETTER)


def parse(line: str):
    [override] = OverridesParser.create().parse_overrides([line])
    return override


def test_hydra_sweep_syntax_maps_to_optuna_distributions():
    assert _distribution(parse("a=interval(4,16)")) == FloatDistribution(4.0, 16.0)
    assert _distribution(parse("a=tag(log,interval(1,100))")) == FloatDistribution(
        1.0, 100.0, log=True
    )
    assert _distribution(parse("a=tag(int,interval(64,512))")) == IntDistribution(64, 512)
    # range() stops before its end, as Hydra's basic sweeper and Python do.
    assert _distribution(parse("a=range(64,513,64)")) == IntDistribution(64, 512, step=64)
    assert _distribution(parse("a=range(0.5,2.0,0.5)")) == FloatDistribution(0.5, 1.5, step=0.5)
    assert _distribution(parse("a=choice(16,32,64)")) == CategoricalDistribution([16, 32, 64])
    assert _distribution(parse("topology=2x2,4x4")) == CategoricalDistribution(["2x2", "4x4"])
    with pytest.raises(ConfigError, match="not a glob"):
        _distribution(parse("bench=glob(*)"))


def test_the_space_needs_a_range_and_one_bench():
    overrides = OverridesParser.create().parse_overrides(["bench.m=64", "a=choice(1,2)"])
    space, lines, fixed = _space(overrides)
    assert list(space) == ["a"] and lines == ["a=choice(1,2)"] and fixed == ["bench.m=64"]
    with pytest.raises(ConfigError, match="nothing to search"):
        _space(OverridesParser.create().parse_overrides(["bench.m=64"]))
    with pytest.raises(ConfigError, match="^bench: a search optimises one bench"):
        _space(OverridesParser.create().parse_overrides(["bench=gemm,probe"]))


def test_plan_splits_constraints_on_config_keys_from_those_on_metrics(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = compose_cfg(
        "bench=gemm",
        "search.objectives=[latency_ns,tflops]",
        'search.constraints=["hw.hbm.pc_bw_gbs*8<=512","latency_ns<=1e4"]',
    )
    with open_dict(cfg):
        cfg.hydra = OmegaConf.create({"sweeper": {"n_trials": 3, "n_jobs": 1, "params": None}})
    plan = plan_search(cfg, ["bench=gemm", "hw.hbm.pc_bw_gbs=choice(16,32,64)"])
    assert plan.directions == ("minimize", "maximize")
    assert [c.text for c in plan.param_constraints] == ["hw.hbm.pc_bw_gbs*8<=512"]
    assert [c.text for c in plan.metric_constraints] == ["latency_ns<=1e4"]
    assert plan.storage == f"sqlite:///{tmp_path / 'outputs' / 'optuna.db'}"
    assert plan.study_name.startswith("gemm-")
    again = plan_search(cfg, ["bench=gemm", "hw.hbm.pc_bw_gbs=choice(16,32,64)"])
    assert again.study_name == plan.study_name  # the same command resumes the same study
    other = plan_search(cfg, ["bench=gemm", "hw.hbm.pc_bw_gbs=choice(16,32)"])
    assert other.study_name != plan.study_name


def test_search_settings_are_no_part_of_a_runs_params_or_hash():
    plain = compose_cfg("bench=gemm")
    searched = compose_cfg("bench=gemm", "search.objectives=[latency_ns,tflops]", "search.seed=3")
    assert config_hash(normalized(plain)) == config_hash(normalized(searched))
    assert not [k for k in flatten(normalized(searched)) if k.startswith("search")]


def test_a_misspelt_search_key_is_named_before_hydra():
    assert unknown_spec_keys(["search.objectives=[latency_ns]"]) is None
    problem = unknown_spec_keys(["search.objective=[latency_ns]"])
    assert problem.startswith("search.objective: unknown key; valid: objectives, directions")
