"""Checks of the command line's overrides before Hydra composes the config.

Hydra reports a missing preset (``topology=5x5``) in a dozen lines and exits 1, where a
configuration error exits 2 with one ``error: <key>: ...`` line. :func:`unknown_presets` finds
those overrides first, asking Hydra's own config loader which presets each group has (the
shipped ``conf/``, ``hydra.searchpath`` and Hydra's plugins), so the error can list them.

Hydra also rejects an override of a key the config does not have with "Could not override ...
To append to your config use +bench.key=value", which for a misspelt bench parameter points
the wrong way: the bench would then reject the added key. :func:`unknown_bench_keys` finds
those overrides first, for the benches shipped in ``conf/bench``, so the command can name the
bench's valid parameters instead.

The same "Could not override" answers a misspelt key of a spec group (``hw.pe.nosuch=1``) or
a key the config does not have at all (``nosuchkey=1``), in a dozen lines and exit 1;
:func:`unknown_spec_keys` names the key and the valid ones instead, from the spec dataclasses
that are the config's schema (ADR 0006).

Anything these cannot decide (a bench from another config directory, a syntax error, another
config directory given with ``--config-dir``) is left to Hydra.
"""

import difflib
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import yaml
from hydra import initialize_config_dir
from hydra.core.config_loader import ConfigLoader
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override

from kernbench.bench import ModelSpec
from kernbench.cli.search_spec import SearchSpec
from kernbench.cli.tracking import TrackingSpec
from kernbench.config.system import conf_dir
from kernbench.config.validate import check_key
from kernbench.core.errors import ConfigError
from kernbench.hw import HwSpec
from kernbench.hw.ipcq import CclSpec
from kernbench.sim.spec import SimSpec
from kernbench.topology import TopologySpec

SPEC_GROUPS: dict[str, type] = {
    cls.KEY: cls
    for cls in (TopologySpec, HwSpec, SimSpec, CclSpec, ModelSpec, TrackingSpec, SearchSpec)
}
# Keys of conf/config.yaml itself besides the groups (and Hydra's own).
TOP_KEYS = ("device",)

# Flags that change where configs come from: with them Hydra decides alone.
CONFIG_SOURCE_FLAGS = ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn")


def _parse(args: Sequence[str]) -> list[Override]:
    parser = OverridesParser.create()
    overrides = []
    for arg in args:
        if arg.startswith("-"):
            continue
        try:
            overrides += parser.parse_overrides([arg])
        except Exception:  # not an override (e.g. the value of --cfg), or Hydra's to report
            continue
    return overrides


def unknown_presets(args: Sequence[str], conf: Path | None = None) -> str | None:
    """An error message for the first ``group=preset`` override (``+group=`` too, and each
    value of a ``-m`` sweep ``group=a,b``) whose preset the group does not have, or ``None``."""
    if any(a.split("=", 1)[0] in CONFIG_SOURCE_FLAGS for a in args):
        return None
    chosen: list[tuple[str, list[str]]] = []
    searchpath: list[str] = []
    for o in _parse(args):
        if o.get_key_element() == "hydra.searchpath":
            searchpath.append(o.input_line or "")
        elif o.package is None and not o.is_delete() and "." not in o.key_or_group:
            if o.is_choice_sweep():
                chosen.append((o.key_or_group, list(o.sweep_string_iterator())))
            elif not o.is_sweep_override() and o.value() is not None:
                chosen.append((o.key_or_group, [str(o.value())]))
    if not chosen:
        return None
    with _config_loader(conf or conf_dir()) as loader:
        for group, values in chosen:
            presets = loader.get_group_options(group, config_name="config", overrides=searchpath)
            if not presets:  # not a group: a plain key such as device=all
                continue
            for value in values:
                if value not in presets:
                    valid = ", ".join(presets)
                    return f"{group}: no preset {value!r}; valid: {valid}{_hint(value, presets)}"
    return None


def _hint(value: str, presets: list[str]) -> str:
    lowered = {p.lower(): p for p in presets}
    close = difflib.get_close_matches(value.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[close[0]]}?)" if close else ""


@contextmanager
def _config_loader(conf: Path) -> Iterator[ConfigLoader]:
    """Hydra's config loader over ``conf`` and Hydra's plugins, as ``@hydra.main`` sees it; the
    global Hydra state is restored on exit. Hydra warns about a searchpath entry it cannot find
    when it composes; it need not warn twice."""
    with warnings.catch_warnings(), initialize_config_dir(str(conf), version_base="1.3"):
        warnings.simplefilter("ignore", UserWarning)
        yield GlobalHydra.instance().config_loader()


def unknown_bench_keys(args: Sequence[str], conf: Path | None = None) -> str | None:
    """An error message for the first ``bench.<key>=`` override (without ``+``/``~``) whose key
    none of the selected benches' configs has, or ``None``."""
    conf = conf or conf_dir()
    overrides = _parse(args)
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


def unknown_spec_keys(args: Sequence[str], conf: Path | None = None) -> str | None:
    """An error message for the first override (without ``+``/``~``) of a key no spec group
    has (``hw.pe.nosuch=1``) or that the config does not have at all (``nosuchkey=1``)."""
    if any(a.split("=", 1)[0] in CONFIG_SOURCE_FLAGS for a in args):
        return None
    # Another config directory may bring groups of its own: then only the spec groups.
    searched = any(a.startswith("hydra.searchpath") for a in args)
    top = None
    for o in _parse(args):
        if o.package is not None or o.is_add() or o.is_delete() or o.is_force_add():
            continue
        key = o.key_or_group
        group, _, path = key.partition(".")
        if group == "hydra" or group.startswith("hydra/"):
            continue
        if path and group in SPEC_GROUPS:
            try:
                check_key(SPEC_GROUPS[group], group, path)
            except ConfigError as exc:
                return str(exc)
        elif not path and group not in TOP_KEYS and not searched:
            if top is None:
                top = _groups(conf or conf_dir())
            if group not in top:
                valid = ", ".join([*top, *TOP_KEYS])
                return f"{group}: unknown key; valid: {valid} (add a new one with +{key}=...)"
    return None


def _groups(conf: Path) -> list[str]:
    """The config groups of ``conf`` (its sub-directories with YAML files)."""
    return sorted(d.name for d in conf.iterdir() if d.is_dir() and any(d.glob("*.yaml")))
