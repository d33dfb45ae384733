"""The shipped conf/ composes into the expected specs; bad values fail naming their key."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from kernbench.bench import BenchInfo
from kernbench.config import (
    bench_params_from_cfg,
    bench_selection,
    conf_dir,
    config_hash,
    flatten,
    system_spec_from_cfg,
)
from kernbench.core.errors import ConfigError
from kernbench.hw import HwSpec
from kernbench.sim.spec import SimSpec
from kernbench.topology import SystemSpec, TopologySpec


def compose_cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def config_error(*overrides: str) -> ConfigError:
    cfg = compose_cfg(*overrides)
    with pytest.raises(ConfigError) as info:
        system_spec_from_cfg(cfg)
    return info.value


@dataclass(frozen=True)
class ProbeLikeParams:
    """The parameters conf/bench/probe.yaml is written for (benches/probe.py: ProbeParams)."""

    case: str = "all"
    size_bytes: int = 32768
    sweep: bool = True
    congestion: bool = True


PROBE_LIKE = BenchInfo("probe", ProbeLikeParams, lambda ctx, params: None, "")


def test_conf_dir_is_the_package_data_directory():
    assert (conf_dir() / "config.yaml").is_file()
    assert conf_dir() == Path(__file__).resolve().parents[2] / "conf"


def test_default_config_is_the_default_system():
    assert system_spec_from_cfg(compose_cfg()) == SystemSpec()


@pytest.mark.parametrize(
    ("preset", "sips", "mesh_w", "mesh_h"),
    [
        ("2x2", 1, 2, 2),
        ("4x4", 1, 4, 4),
        ("8x8", 1, 8, 8),
        ("4x4_2sip", 2, 4, 4),
        ("4x4_6sip", 6, 4, 4),
    ],
)
def test_topology_presets(preset, sips, mesh_w, mesh_h):
    spec = system_spec_from_cfg(compose_cfg(f"topology={preset}"))
    assert spec.topology == TopologySpec(name=preset, sips=sips, mesh_w=mesh_w, mesh_h=mesh_h)
    assert spec.hw == HwSpec()
    assert spec.sim == SimSpec()


def test_every_topology_preset_is_tested():
    presets = {p.stem for p in (conf_dir() / "topology").glob("*.yaml")}
    assert presets == {"2x2", "4x4", "8x8", "4x4_2sip", "4x4_6sip"}


def _yaml_matches_spec(raw: dict, spec: object, key: str) -> None:
    names = [f.name for f in dataclasses.fields(spec)]
    assert list(raw) == names, f"{key}: keys differ from {type(spec).__name__}"
    for name in names:
        value = getattr(spec, name)
        if dataclasses.is_dataclass(value):
            _yaml_matches_spec(raw[name], value, f"{key}.{name}")
        else:
            assert raw[name] == value, f"{key}.{name}"
            assert type(raw[name]) is type(value), f"{key}.{name}: write {value!r}"


def test_hw_default_yaml_lists_every_field_with_the_dataclass_default():
    raw = yaml.safe_load((conf_dir() / "hw" / "default.yaml").read_text())
    _yaml_matches_spec(raw, HwSpec(), "hw")


def test_sim_default_yaml_lists_every_field_with_the_dataclass_default():
    raw = yaml.safe_load((conf_dir() / "sim" / "default.yaml").read_text())
    _yaml_matches_spec(raw, SimSpec(), "sim")


def test_hw_fast_hbm_doubles_the_channel_bandwidth_only():
    spec = system_spec_from_cfg(compose_cfg("hw=fast_hbm"))
    default = HwSpec()
    assert spec.hw == dataclasses.replace(
        default, name="fast_hbm", hbm=dataclasses.replace(default.hbm, pc_bw_gbs=64.0)
    )


def test_override_converts_to_the_field_type():
    spec = system_spec_from_cfg(compose_cfg("hw.hbm.pc_bw_gbs=16", "topology.mesh_w=3"))
    assert spec.hw.hbm.pc_bw_gbs == 16.0
    assert isinstance(spec.hw.hbm.pc_bw_gbs, float)
    assert spec.topology.mesh_w == 3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("hw.hbm.pc_bw_gbs=abc", "hw.hbm.pc_bw_gbs: expected a number, got 'abc'"),
        ("hw.cube.pes=1.5", "hw.cube.pes: expected an integer, got 1.5"),
        ("topology.name=[1,2]", "topology.name: expected a string, got [1, 2]"),
        (
            "+hw.hbm.foo=1",
            "hw.hbm.foo: unknown key; valid: slice_bytes, pseudo_channels, pc_bw_gbs, "
            "efficiency, burst_bytes, ctrl_overhead_ns",
        ),
        (
            "+sim.foo=1",
            "sim.foo: unknown key; valid: model, flit_bytes, ns_per_mm, read_request_bytes, trace, "
            "trace_max_events, num_stages",
        ),
        ("sim.trace=loud", "sim.trace: must be one of off, summary, full, got 'loud'"),
        ("sim.trace_max_events=0", "sim.trace_max_events: must be > 0, got 0"),
        (
            "hw.hbm=3",
            "hw.hbm: expected a mapping with keys slice_bytes, pseudo_channels, "
            "pc_bw_gbs, efficiency, burst_bytes, ctrl_overhead_ns; got 3",
        ),
        ("hw.hbm.pc_bw_gbs=0", "hw.hbm.pc_bw_gbs: must be > 0, got 0.0"),
        ("hw.noc.link_bw_gbs=-1", "hw.noc.link_bw_gbs: must be > 0, got -1.0"),
        ("topology.mesh_w=0", "topology.mesh_w: must be > 0, got 0"),
        ("sim.flit_bytes=0", "sim.flit_bytes: must be > 0, got 0"),
        (
            "hw.cube.pes=9",
            "hw.cube.pes: 9 PEs do not fit on 2x4 = 8 routers (one PE per router); use at most 8",
        ),
    ],
)
def test_bad_values_raise_config_error_naming_the_key(override, message):
    err = config_error(override)
    assert str(err) == message
    assert err.key == message.split(":")[0]


def test_interpolation_error_names_the_key():
    err = config_error("hw.name=${nope}")
    assert err.key == "hw.name"
    assert "cannot resolve" in str(err)


def test_bench_selection_and_probe_params():
    cfg = compose_cfg("bench=probe", "bench.size_bytes=4096", "bench.sweep=false")
    assert bench_selection(cfg) == ("probe", ())
    assert bench_params_from_cfg(cfg, PROBE_LIKE) == ProbeLikeParams(size_bytes=4096, sweep=False)


def test_probe_yaml_sets_exactly_the_probe_params():
    raw = yaml.safe_load((conf_dir() / "bench" / "probe.yaml").read_text())
    assert raw.pop("name") == "probe"
    assert raw == dataclasses.asdict(ProbeLikeParams())


def test_unknown_bench_param_names_the_valid_ones():
    cfg = compose_cfg("bench=probe", "+bench.foo=1")
    with pytest.raises(ConfigError) as info:
        bench_params_from_cfg(cfg, PROBE_LIKE)
    assert str(info.value) == (
        "bench.foo: unknown parameter; valid: case, size_bytes, sweep, congestion"
    )


def test_wrong_bench_param_type_names_the_key():
    cfg = compose_cfg("bench=probe", "bench.sweep=maybe")
    with pytest.raises(ConfigError, match=r"^bench\.sweep: expected true or false, got 'maybe'$"):
        bench_params_from_cfg(cfg, PROBE_LIKE)


def test_bench_module_may_be_a_list():
    cfg = compose_cfg("+bench.module=[a.b,c]")
    assert bench_selection(cfg) == ("qkv_gemm", ("a.b", "c"))


def test_missing_bench_name_is_a_config_error():
    cfg = compose_cfg("~bench.name")
    with pytest.raises(ConfigError, match=r"^bench\.name: missing"):
        bench_selection(cfg)


def test_flatten_gives_dotted_scalar_keys():
    flat = flatten(compose_cfg("topology=2x2"))
    assert flat["topology.mesh_w"] == 2
    assert flat["hw.hbm.pc_bw_gbs"] == 32.0
    assert flat["bench.name"] == "qkv_gemm"  # the default bench
    assert flatten({"a": {"b": [1, {"c": None}]}}) == {"a.b.0": 1, "a.b.1.c": None}


def test_config_hash_is_short_stable_and_sensitive():
    a = config_hash(compose_cfg())
    assert len(a) == 8
    assert int(a, 16) >= 0
    assert config_hash(compose_cfg()) == a
    assert config_hash(compose_cfg("hw.hbm.pc_bw_gbs=64")) != a


def test_probe_yaml_matches_the_registered_probe_bench():
    from kernbench.bench import get_bench

    info = get_bench("probe")
    cfg = compose_cfg("bench=probe")
    assert bench_params_from_cfg(cfg, info) == info.params()
    assert info.param_names() == [f.name for f in dataclasses.fields(ProbeLikeParams)]


def test_read_request_must_fit_in_one_flit():
    from kernbench.core.errors import ConfigError
    from kernbench.sim.spec import SimSpec

    with pytest.raises(ConfigError, match=r"sim.read_request_bytes: a read request is one flit"):
        SimSpec(flit_bytes=32, read_request_bytes=64)
    assert SimSpec(flit_bytes=64, read_request_bytes=64).read_request_bytes == 64
