"""The ``model`` config group: presets carry the published shapes, bad values name their key,
``check_tp`` says which head count a tensor-parallel degree does not divide."""

import dataclasses

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from kernbench.bench import BenchContext, BenchInfo, ModelSpec, check_tp
from kernbench.config import bench_params_from_cfg, conf_dir, flatten, model_spec_from_cfg
from kernbench.core.errors import ConfigError
from kernbench.topology import SystemSpec


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


# The figures of each checkpoint's config.json (docs/models.md), written out here rather than
# read from conf/ so that a slip in a preset fails.
LLAMA2_7B = ModelSpec(
    name="llama2_7b",
    hidden=4096,
    heads=32,
    kv_heads=32,
    head_dim=128,
    ffn=11008,
    layers=32,
    vocab=32000,
    norm_eps=1e-5,
    rope_theta=10000.0,
    dtype="fp16",
)
LLAMA3_8B = ModelSpec(
    name="llama3_8b",
    hidden=4096,
    heads=32,
    kv_heads=8,
    head_dim=128,
    ffn=14336,
    layers=32,
    vocab=128256,
    norm_eps=1e-5,
    rope_theta=500000.0,
    dtype="fp16",
)
TINY = ModelSpec(
    name="tiny",
    hidden=256,
    heads=4,
    kv_heads=2,
    head_dim=64,
    ffn=512,
    layers=2,
    vocab=512,
    norm_eps=1e-5,
    rope_theta=10000.0,
    dtype="fp16",
)
PRESETS = {"llama2_7b": LLAMA2_7B, "llama3_8b": LLAMA3_8B, "tiny": TINY}


def test_every_model_preset_is_tested():
    assert {p.stem for p in (conf_dir() / "model").glob("*.yaml")} == set(PRESETS)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_model_presets_compose_into_their_spec(preset):
    assert model_spec_from_cfg(compose_cfg(f"model={preset}")) == PRESETS[preset]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_model_yaml_lists_every_field_in_dataclass_order_with_its_type(preset):
    raw = yaml.safe_load((conf_dir() / "model" / f"{preset}.yaml").read_text())
    names = [f.name for f in dataclasses.fields(ModelSpec)]
    assert list(raw) == names
    for name in names:
        value = getattr(PRESETS[preset], name)
        assert raw[name] == value and type(raw[name]) is type(value), f"model.{name}"


def test_the_default_model_is_tiny_and_the_dataclass_defaults():
    assert model_spec_from_cfg(compose_cfg()) == TINY == ModelSpec()
    assert BenchContext.from_spec(SystemSpec()).model == TINY


def test_derived_sizes():
    assert (LLAMA3_8B.kv_dim, LLAMA3_8B.dtype_bytes) == (8 * 128, 2)
    assert dataclasses.replace(TINY, dtype="fp32").dtype_bytes == 4


def test_model_values_are_logged_as_params():
    flat = flatten(compose_cfg("model=llama3_8b"))
    assert (flat["model.name"], flat["model.kv_heads"], flat["model.vocab"]) == (
        "llama3_8b",
        8,
        128256,
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.hidden=0", "model.hidden: must be > 0, got 0"),
        ("model.heads=-4", "model.heads: must be > 0, got -4"),
        ("model.kv_heads=0", "model.kv_heads: must be > 0, got 0"),
        ("model.head_dim=0", "model.head_dim: must be > 0, got 0"),
        ("model.ffn=0", "model.ffn: must be > 0, got 0"),
        ("model.layers=0", "model.layers: must be > 0, got 0"),
        ("model.vocab=-1", "model.vocab: must be > 0, got -1"),
        ("model.norm_eps=0", "model.norm_eps: must be > 0, got 0.0"),
        ("model.rope_theta=-1", "model.rope_theta: must be > 0, got -1.0"),
        (
            "model.heads=3",
            "model.heads: heads * head_dim (model.head_dim) must equal model.hidden (256); "
            "got 3 * 64 = 192",
        ),
        (
            "model.head_dim=32",
            "model.heads: heads * head_dim (model.head_dim) must equal model.hidden (256); "
            "got 4 * 32 = 128",
        ),
        (
            "model.kv_heads=3",
            "model.kv_heads: must divide model.heads (4), each key/value head serving a group "
            "of query heads; got 3; use one of 1, 2, 4",
        ),
        ("model.dtype=fp8", "model.dtype: must be one of fp16, bf16, fp32, got 'fp8'"),
        ("model.layers=two", "model.layers: expected an integer, got 'two'"),
        (
            "+model.seq=128",
            "model.seq: unknown key; valid: name, hidden, heads, kv_heads, head_dim, ffn, "
            "layers, vocab, norm_eps, rope_theta, dtype",
        ),
    ],
)
def test_bad_model_values_name_their_key(override, message):
    with pytest.raises(ConfigError) as info:
        model_spec_from_cfg(compose_cfg(override))
    assert str(info.value) == message
    assert info.value.key == message.split(":")[0]


def test_a_valid_gqa_change_is_accepted():
    spec = model_spec_from_cfg(compose_cfg("model=llama3_8b", "model.kv_heads=4"))
    assert (spec.heads, spec.kv_heads) == (32, 4)


@pytest.mark.parametrize(
    ("model", "tp"),
    [(LLAMA3_8B, 1), (LLAMA3_8B, 2), (LLAMA3_8B, 8), (LLAMA2_7B, 32), (TINY, 2)],
)
def test_check_tp_accepts_a_degree_dividing_both_head_counts(model, tp):
    check_tp(model, tp)


# llama3_8b: 32 query heads, 8 KV heads (divisors 1, 2, 4, 8).
@pytest.mark.parametrize(
    ("model", "tp", "field"),
    [
        (LLAMA3_8B, 16, "kv_heads (8)"),  # divides the 32 query heads, not the 8 KV heads
        (LLAMA3_8B, 3, "heads (32)"),  # divides neither: the query heads are named first
        (LLAMA2_7B, 64, "heads (32)"),
        (TINY, 4, "kv_heads (2)"),
    ],
)
def test_check_tp_names_bench_tp_and_the_head_count_it_does_not_divide(model, tp, field):
    with pytest.raises(ConfigError) as info:
        check_tp(model, tp)
    assert info.value.key == "bench.tp"
    assert f"{tp} ranks cannot split model.{field} of model {model.name!r}" in str(info.value)


def test_check_tp_lists_the_degrees_that_work():
    with pytest.raises(ConfigError, match=r"use one of 1, 2, 4, 8$"):
        check_tp(LLAMA3_8B, 16)
    with pytest.raises(ConfigError, match=r"use one of 1, 2, 4, 8, 16, 32$"):
        check_tp(LLAMA2_7B, 3)


@pytest.mark.parametrize("tp", [0, -2, 1.5, True])
def test_check_tp_rejects_a_degree_that_is_not_a_positive_count(tp):
    with pytest.raises(ConfigError, match=r"^bench\.tp: must be a positive number of ranks"):
        check_tp(TINY, tp)


@dataclasses.dataclass(frozen=True)
class TpParams:
    """A bench's parameters that check their ``tp`` against the model before a run starts."""

    tp: int = 1

    def check_model(self, model: ModelSpec) -> None:
        check_tp(model, self.tp)


TP_BENCH = BenchInfo("tp_like", TpParams, lambda ctx, params: None, "")


def test_bench_params_are_checked_against_the_model_when_given():
    cfg = OmegaConf.create({"bench": {"name": "tp_like", "tp": 16}})
    assert bench_params_from_cfg(cfg, TP_BENCH) == TpParams(tp=16)  # no model: no check
    assert bench_params_from_cfg(cfg, TP_BENCH, model=LLAMA2_7B) == TpParams(tp=16)
    with pytest.raises(ConfigError, match=r"^bench\.tp: 16 ranks cannot split model\.kv_heads"):
        bench_params_from_cfg(cfg, TP_BENCH, model=LLAMA3_8B)
