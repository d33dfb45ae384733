"""Helpers for hardware spec dataclasses: documented parameters and their validation."""

from dataclasses import field, fields
from typing import Any

from kernbench.core.errors import ConfigError


def param(default: Any, help: str) -> Any:
    """A spec field with its default and a one-line description (unit is in the name)."""
    return field(default=default, metadata={"help": help})


def describe(spec_cls: type) -> dict[str, str]:
    """Field name -> help text, for CLI help and docs."""
    return {f.name: f.metadata.get("help", "") for f in fields(spec_cls)}


def check_positive(spec: Any, *names: str) -> None:
    for name in names:
        value = getattr(spec, name)
        if not value > 0:
            raise ConfigError(f"{spec.KEY}.{name}", f"must be > 0, got {value!r}")


def check_non_negative(spec: Any, *names: str) -> None:
    for name in names:
        value = getattr(spec, name)
        if not value >= 0:
            raise ConfigError(f"{spec.KEY}.{name}", f"must be >= 0, got {value!r}")


def check_power_of_two(spec: Any, *names: str) -> None:
    for name in names:
        value = getattr(spec, name)
        if not (isinstance(value, int) and value > 0 and value & (value - 1) == 0):
            raise ConfigError(f"{spec.KEY}.{name}", f"must be a power of two > 0, got {value!r}")
