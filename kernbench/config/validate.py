"""Turn composed config nodes into frozen spec dataclasses, or a ConfigError naming the key.

Each node is checked in two steps. Its shape (known keys, mappings where a spec nests another)
is walked against the dataclass fields, so an unknown key is reported with the valid ones. The
values are then merged onto ``OmegaConf.structured(spec_cls)``, which converts and type-checks
them, and ``OmegaConf.to_object`` builds the dataclass, whose ``__post_init__`` rejects
semantic nonsense with its own ConfigError. :func:`check_system` then checks the values that
only make sense together (a key of one section against another's).
"""

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    MissingMandatoryValue,
    OmegaConfBaseException,
    UnsupportedValueType,
    ValidationError,
)

from kernbench.core.errors import ConfigError
from kernbench.core.units import fmt_bytes
from kernbench.topology import SystemSpec

_TYPE_WORDS = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
}


def to_plain(node: Any, key: str) -> Any:
    """The node with interpolations resolved, as plain dicts, lists and scalars."""
    if not isinstance(node, DictConfig | ListConfig):
        return node
    try:
        return OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException as exc:
        # full_key counts from the config root when the node is part of a bigger config.
        sub = getattr(exc, "full_key", "") or ""
        full = sub if key and sub.startswith(f"{key}.") else _join(key, sub)
        raise ConfigError(full, f"cannot resolve value: {_first_line(exc)}") from None


def build_spec(spec_cls: type, node: Any, key: str, noun: str = "key") -> Any:
    """An instance of the dataclass ``spec_cls`` from config ``node`` found at ``key``.

    ``noun`` names what a field is in messages ("key" for specs, "parameter" for benches).
    A missing node (``None``) gives the dataclass defaults.
    """
    values = to_plain(node, key)
    if values is None:
        values = {}
    _check_shape(spec_cls, values, key, noun)
    try:
        schema = OmegaConf.structured(spec_cls)
    except (ValidationError, UnsupportedValueType):
        # Field types OmegaConf cannot express: the dataclass checks its own values.
        return _construct(spec_cls, values, key)
    _clear_readonly(schema)
    try:
        merged = OmegaConf.merge(schema, values)
        return OmegaConf.to_object(merged)
    except MissingMandatoryValue as exc:
        raise ConfigError(_join(key, exc.full_key), f"required {noun} is missing") from None
    except ValidationError as exc:
        raise ConfigError(
            _join(key, exc.full_key), _type_message(spec_cls, values, exc.full_key)
        ) from None
    except OmegaConfBaseException as exc:
        raise ConfigError(_join(key, exc.full_key), _first_line(exc)) from None


# The smallest flit (ADR 0017): 16 bytes, a 128-bit NoC link; every flit is an event per hop.
MIN_FLIT_BYTES = 16


def check_system(spec: SystemSpec) -> None:
    """Cross-section checks of a ``SystemSpec``; each error names the key to change.

    - ``sim.flit_bytes``: MODEL.md makes the flit the HBM burst, and a controller charges a
      flit to the pseudo-channel of its first byte, so a flit must lie within one burst: a
      power of two from ``MIN_FLIT_BYTES`` up to ``hw.hbm.burst_bytes`` (which divides it).
    - ``ccl.slot_bytes``: one receive ring (``ccl.slots`` slots) must fit the memory of the
      tier it lives in (``ccl.buffer``).
    """
    flit, burst = spec.sim.flit_bytes, spec.hw.hbm.burst_bytes
    if flit < MIN_FLIT_BYTES or flit > burst or burst % flit:
        raise ConfigError(
            "sim.flit_bytes",
            f"must be a power of two from {MIN_FLIT_BYTES} to hw.hbm.burst_bytes ({burst}), so "
            f"that a flit lies within one HBM burst; got {flit}",
        )
    ccl = spec.ccl
    capacity = {
        "tcm": ("hw.pe.tcm_bytes", spec.hw.pe.tcm_bytes),
        "sram": ("hw.cube.sram_bytes", spec.hw.cube.sram_bytes),
        "hbm": ("hw.hbm.slice_bytes", spec.hw.hbm.slice_bytes),
    }
    key, room = capacity[ccl.buffer]
    if ccl.slots * ccl.slot_bytes > room:
        raise ConfigError(
            "ccl.slot_bytes",
            f"a ring of {ccl.slots} slots (ccl.slots) of {ccl.slot_bytes} bytes does not fit the "
            f"{ccl.buffer} it lives in ({key} = {fmt_bytes(room)}); use at most "
            f"{room // ccl.slots} bytes per slot",
        )


def _construct(spec_cls: type, values: dict[str, Any], key: str) -> Any:
    try:
        return spec_cls(**values)
    except TypeError as exc:
        raise ConfigError(key, str(exc)) from None


def check_key(spec_cls: type, key: str, path: str) -> None:
    """Raise the ConfigError :func:`build_spec` would for ``<key>.<path>``, if ``spec_cls``
    has no such (nested) key."""
    nested: Any = None
    for part in reversed(path.split(".")):
        nested = {part: nested}
    _check_shape(spec_cls, nested, key, "key")


def _check_shape(spec_cls: type, values: Any, key: str, noun: str) -> None:
    fields = _fields(spec_cls)
    if not isinstance(values, Mapping):
        raise ConfigError(
            key, f"expected a mapping with {noun}s {', '.join(fields)}; got {values!r}"
        )
    for name, value in values.items():
        if name not in fields:
            raise ConfigError(_join(key, str(name)), f"unknown {noun}; valid: {', '.join(fields)}")
        sub = _dataclass_of(fields[name])
        if sub is not None and value is not None:
            _check_shape(sub, value, _join(key, name), "key")


def _fields(spec_cls: type) -> dict[str, Any]:
    """Field name -> resolved type annotation, in declaration order."""
    try:
        hints = typing.get_type_hints(spec_cls)
    except Exception:
        hints = {}
    return {f.name: hints.get(f.name, f.type) for f in dataclasses.fields(spec_cls)}


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass type of a field, also inside ``Optional[...]``."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) == 1:
        return _dataclass_of(args[0])
    return None


def _type_message(spec_cls: type, values: Any, sub_key: str) -> str:
    """'expected <type>, got <value>' for the field at dotted ``sub_key`` below ``spec_cls``."""
    tp: Any = spec_cls
    value: Any = values
    for part in sub_key.split(".") if sub_key else []:
        cls = _dataclass_of(tp)
        tp = _fields(cls).get(part) if cls else None
        value = value.get(part) if isinstance(value, Mapping) else None
    cls = _dataclass_of(tp)
    if cls is not None:
        expected = f"a mapping with keys {', '.join(_fields(cls))}"
    else:
        expected = _TYPE_WORDS.get(tp, f"a value of type {getattr(tp, '__name__', tp)}")
    return f"expected {expected}, got {value!r}"


def _clear_readonly(node: DictConfig) -> None:
    """Frozen dataclasses give read-only nodes; merging user values needs them writable."""
    OmegaConf.set_readonly(node, None)
    for name in node:
        child = node._get_node(name)
        child._set_flag("readonly", None)
        if isinstance(child, DictConfig):
            _clear_readonly(child)


def _join(key: str, sub: Any) -> str:
    sub = str(sub or "")
    return f"{key}.{sub}" if key and sub else key or sub


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
