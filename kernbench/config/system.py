"""The run's specs from a composed config: the system and the bench's parameters."""

import hashlib
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kernbench.bench import BenchInfo
from kernbench.config.validate import build_spec, to_plain
from kernbench.core.errors import ConfigError
from kernbench.hw import HwSpec
from kernbench.sim.spec import SimSpec
from kernbench.topology import SystemSpec, TopologySpec

# Keys of ``cfg.bench`` that select the bench rather than parameterise it.
BENCH_SELECT_KEYS = ("name", "module")

Scalar = str | int | float | bool | None


def conf_dir() -> Path:
    """The directory of the shipped Hydra configs (``conf/`` in a checkout, in a wheel too)."""
    return Path(str(files("kernbench.conf")))


def system_spec_from_cfg(cfg: DictConfig) -> SystemSpec:
    """Validate ``cfg.topology``, ``cfg.hw`` and ``cfg.sim`` and build the system spec."""
    return SystemSpec(
        topology=build_spec(TopologySpec, cfg.get("topology"), TopologySpec.KEY),
        hw=build_spec(HwSpec, cfg.get("hw"), HwSpec.KEY),
        sim=build_spec(SimSpec, cfg.get("sim"), SimSpec.KEY),
    )


def bench_selection(cfg: DictConfig) -> tuple[str, tuple[str, ...]]:
    """The bench name and the extra modules to import for it (``bench.module``)."""
    node = to_plain(cfg.get("bench"), "bench")
    if not isinstance(node, Mapping) or not node.get("name"):
        raise ConfigError("bench.name", "missing; choose a bench, e.g. bench=probe")
    name = node["name"]
    if not isinstance(name, str):
        raise ConfigError("bench.name", f"expected a bench name (a string), got {name!r}")
    module = node.get("module")
    if module is None:
        modules: tuple[str, ...] = ()
    elif isinstance(module, str):
        modules = (module,)
    elif isinstance(module, list) and all(isinstance(m, str) for m in module):
        modules = tuple(module)
    else:
        raise ConfigError(
            "bench.module", f"expected a module name or a list of them, got {module!r}"
        )
    return name, modules


def bench_params_from_cfg(cfg: DictConfig, info: BenchInfo) -> Any:
    """``cfg.bench`` without its selection keys, validated against the bench's params class."""
    node = to_plain(cfg.get("bench"), "bench") or {}
    values = {k: v for k, v in node.items() if k not in BENCH_SELECT_KEYS}
    return build_spec(info.params, values, "bench", noun="parameter")


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The whole config with interpolations resolved, as plain data."""
    return to_plain(cfg, "")


def flatten(cfg: DictConfig | Mapping[str, Any], prefix: str = "") -> dict[str, Scalar]:
    """Dotted key -> scalar for every leaf (list items get their index as a key part)."""
    data = resolved(cfg) if isinstance(cfg, DictConfig) else cfg
    out: dict[str, Scalar] = {}
    _flatten_into(data, prefix, out)
    return out


def _flatten_into(value: Any, key: str, out: dict[str, Scalar]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten_into(v, f"{key}.{k}" if key else str(k), out)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _flatten_into(v, f"{key}.{i}" if key else str(i), out)
    else:
        out[key] = value if isinstance(value, Scalar) else str(value)


def config_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML with sorted keys: stable for hashing and diffing."""
    return OmegaConf.to_yaml(OmegaConf.create(resolved(cfg)), sort_keys=True)


def config_hash(cfg: DictConfig) -> str:
    """Eight hex characters identifying the resolved config."""
    return hashlib.sha256(config_yaml(cfg).encode()).hexdigest()[:8]
