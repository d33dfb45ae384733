"""The run's specs from a composed config: the system and the bench's parameters."""

import contextlib
import copy
import dataclasses
import hashlib
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kernbench.bench import BenchInfo, ModelSpec, get_bench
from kernbench.config.validate import build_spec, check_system, to_plain
from kernbench.core.errors import ConfigError, KernbenchError
from kernbench.hw import HwSpec
from kernbench.hw.ipcq import CclSpec
from kernbench.sim.spec import SimSpec
from kernbench.topology import SystemSpec, TopologySpec

# Keys of ``cfg.bench`` that select the bench rather than parameterise it.
BENCH_SELECT_KEYS = ("name", "module")

Scalar = str | int | float | bool | None
# The config group of a design-space search's settings (kernbench.cli.search_spec).
SEARCH_KEY = "search"


def conf_dir() -> Path:
    """The directory of the shipped Hydra configs (``conf/`` in a checkout, in a wheel too)."""
    return Path(str(files("kernbench.conf")))


def system_spec_from_cfg(cfg: DictConfig) -> SystemSpec:
    """Validate ``cfg.topology``, ``cfg.hw``, ``cfg.sim`` and ``cfg.ccl``, each on its own and
    then against each other (:func:`check_system`); build the system spec."""
    spec = SystemSpec(
        topology=build_spec(TopologySpec, cfg.get("topology"), TopologySpec.KEY),
        hw=build_spec(HwSpec, cfg.get("hw"), HwSpec.KEY),
        sim=build_spec(SimSpec, cfg.get("sim"), SimSpec.KEY),
        ccl=build_spec(CclSpec, cfg.get("ccl"), CclSpec.KEY),
    )
    check_system(spec)
    return spec


def model_spec_from_cfg(cfg: DictConfig) -> ModelSpec:
    """Validate ``cfg.model``, the LLM shape a bench reads as ``ctx.model`` (docs/models.md);
    a config without it gets the defaults (the ``tiny`` preset)."""
    return build_spec(ModelSpec, cfg.get("model"), ModelSpec.KEY)


def devices_from_cfg(cfg: DictConfig, spec: SystemSpec) -> tuple[int, ...]:
    """The SIPs a single-device bench runs on: ``device=all`` (every SIP) or ``device=sip:N``."""
    value = cfg.get("device", "all")
    sips = spec.topology.sips
    valid = f"use `all` or `sip:N` with N in 0..{sips - 1}"
    if value == "all":
        return tuple(range(sips))
    if isinstance(value, str) and value.startswith("sip:"):
        try:
            sip = int(value[4:])
        except ValueError:
            sip = -1
        if 0 <= sip < sips:
            return (sip,)
        raise ConfigError(
            "device", f"{value!r} names no SIP of this topology ({sips} SIP(s)); {valid}"
        )
    raise ConfigError("device", f"expected `all` or `sip:N`, got {value!r}; {valid}")


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


def bench_params_from_cfg(
    cfg: DictConfig,
    info: BenchInfo,
    spec: SystemSpec | None = None,
    model: ModelSpec | None = None,
) -> Any:
    """``cfg.bench`` without its selection keys, validated against the bench's params class.

    With ``spec``, parameters whose class defines ``check_spec(spec)`` are also checked against
    the system before anything is built (a size against the HBM slice, say); with ``model``,
    those whose class defines ``check_model(model)`` against the model shape (``bench.tp``
    against its heads, say: :func:`kernbench.bench.check_tp`)."""
    node = to_plain(cfg.get("bench"), "bench") or {}
    values = {k: v for k, v in node.items() if k not in BENCH_SELECT_KEYS}
    params = build_spec(info.params, values, "bench", noun="parameter")
    check = getattr(params, "check_spec", None)
    if spec is not None and callable(check):
        check(spec)
    check = getattr(params, "check_model", None)
    if model is not None and callable(check):
        check(model)
    return params


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


def normalized(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config with each section the schema accepts replaced by its validated
    values, so ``hw.hbm.pc_bw_gbs=32`` and ``=32.0`` log the same params and hash. A section
    that does not validate stays as written; the run reports its error separately.

    ``search`` (what a design-space search optimises) is left out: it does not change what a
    run measures, so a trial has the params and hash of the same run outside a search
    (ADR 0031)."""
    data = resolved(cfg)
    data.pop(SEARCH_KEY, None)
    for cls in (TopologySpec, HwSpec, SimSpec, CclSpec, ModelSpec):
        with contextlib.suppress(KernbenchError):
            data[cls.KEY] = dataclasses.asdict(build_spec(cls, cfg.get(cls.KEY), cls.KEY))
    try:
        name, modules = bench_selection(cfg)
        params = bench_params_from_cfg(cfg, get_bench(name, modules))
        if dataclasses.is_dataclass(params):
            keep = {k: data["bench"][k] for k in BENCH_SELECT_KEYS if k in data["bench"]}
            data["bench"] = {**keep, **dataclasses.asdict(params)}
    except KernbenchError:
        pass
    return data


def config_yaml(cfg: DictConfig | Mapping[str, Any]) -> str:
    """The resolved config as YAML with sorted keys: stable for hashing and diffing."""
    data = resolved(cfg) if isinstance(cfg, DictConfig) else dict(cfg)
    return OmegaConf.to_yaml(OmegaConf.create(data), sort_keys=True)


def config_hash(cfg: DictConfig | Mapping[str, Any]) -> str:
    """Eight hex characters identifying the resolved config."""
    return hashlib.sha256(config_yaml(cfg).encode()).hexdigest()[:8]


SWEEP_TRACE = "off"


def sweep_trace_default(cfg: DictConfig, *, multirun: bool, overrides: list[str]) -> DictConfig:
    """``cfg`` with ``sim.trace=off`` for a job of a multirun, unless an override on the command
    line sets ``sim.trace`` (docs/traces.md). A single run keeps the configured level."""
    if not multirun:
        return cfg
    keys = {o.lstrip("+~").split("=", 1)[0].strip() for o in overrides}
    sim = cfg.get("sim")
    if "sim.trace" in keys or not isinstance(sim, DictConfig) or "trace" not in sim:
        return cfg
    cfg = copy.deepcopy(cfg)
    OmegaConf.update(cfg, "sim.trace", SWEEP_TRACE, merge=False)
    return cfg
