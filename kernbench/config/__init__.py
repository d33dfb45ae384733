"""Config layer: the shipped Hydra configs, and their validation into spec dataclasses.

Every error is a :class:`~kernbench.core.errors.ConfigError` whose key is the full dotted
config key (``hw.hbm.pc_bw_gbs``) and whose message says what would be valid.
"""

from kernbench.config.system import (
    BENCH_SELECT_KEYS,
    bench_params_from_cfg,
    bench_selection,
    conf_dir,
    config_hash,
    config_yaml,
    devices_from_cfg,
    flatten,
    model_spec_from_cfg,
    normalized,
    resolved,
    sweep_trace_default,
    system_spec_from_cfg,
)
from kernbench.config.validate import build_spec, to_plain

__all__ = [
    "BENCH_SELECT_KEYS",
    "bench_params_from_cfg",
    "bench_selection",
    "build_spec",
    "conf_dir",
    "devices_from_cfg",
    "config_hash",
    "config_yaml",
    "flatten",
    "model_spec_from_cfg",
    "normalized",
    "resolved",
    "sweep_trace_default",
    "system_spec_from_cfg",
    "to_plain",
]
