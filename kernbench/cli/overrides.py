"""A check of ``bench.<key>=value`` overrides before Hydra composes the config.

Hydra rejects an override of a key the config does not have with "Could not override ...
To append to your config use +bench.key=value", which for a misspelt bench parameter points
the wrong way: the bench would then reject the added key. :func:`unknown_bench_keys` finds
those overrides first, for the benches shipped in ``conf/bench``, so the command can name the
bench's valid parameters instead. Anything it cannot decide (a bench from another config
directory, a syntax error) is left to Hydra.
"""

from collections.abc import Sequence
from pathlib import Path

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from kernbench.config.system import conf_dir


def unknown_bench_keys(args: Sequence[str], conf: Path | None = None) -> str | None:
    """An error message for the first ``bench.<key>=`` override (without ``+``/``~``) whose key
    none of the selected benches' configs has, or ``None``."""
    conf = conf or conf_dir()
    parser = OverridesParser.create()
    overrides = []
    for arg in args:
        if arg.startswith("-"):
            continue
        try:
            overrides += parser.parse_overrides([arg])
        except Exception:  # not an override (e.g. the value of --cfg), or Hydra's to report
            continue
    benches: list[str] = []
    keys: list[str] = []
    for o in overrides:
        if o.key_or_group == "bench" and o.package is None:
            benches += (
                list(o.sweep_string_iterator()) if o.is_sweep_override() else [str(o.value())]
            )
        elif o.key_or_group.startswith("bench.") and not (o.is_add() or o.is_delete()):
            keys.append(o.key_or_group.split(".")[1])
    if not keys:
        return None
    if not benches:
        benches = [_default_bench(conf)]
    for name in benches:
        path = conf / "bench" / f"{name}.yaml"
        if not path.is_file():
            return None
        known = yaml.safe_load(path.read_text()) or {}
        for key in keys:
            if key not in known:
                valid = ", ".join(k for k in known if k not in ("name", "module"))
                return (
                    f"bench.{key}: bench {name!r} has no parameter {key!r}; "
                    f"valid: {valid or 'none'}"
                )
    return None


def _default_bench(conf: Path) -> str:
    defaults = yaml.safe_load((conf / "config.yaml").read_text()).get("defaults", [])
    for item in defaults:
        if isinstance(item, dict) and "bench" in item:
            return str(item["bench"])
    return ""
