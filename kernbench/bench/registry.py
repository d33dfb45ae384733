"""The bench registry: a bench is a function plus a dataclass of its parameters.

Benches live in modules of ``kernbench.benches`` (the checkout's ``benches/``) or in any module
named by ``bench.module``; importing the module registers its benches with :func:`bench`.
Registering a name twice raises.
"""

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from kernbench.core.errors import BenchError


@dataclass(frozen=True)
class BenchInfo:
    name: str
    params: type
    fn: Callable[..., Any]
    doc: str

    def param_names(self) -> list[str]:
        return [f.name for f in fields(self.params)]


_REGISTRY: dict[str, BenchInfo] = {}


def bench(name: str, params: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(ctx, params) -> BenchResult`` as bench ``name`` with a params dataclass."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise BenchError(
                f"bench {name!r} is registered twice ({_REGISTRY[name].fn.__module__} and "
                f"{fn.__module__})"
            )
        _REGISTRY[name] = BenchInfo(name, params, fn, (fn.__doc__ or "").strip())
        return fn

    return register


def discover(extra_modules: tuple[str, ...] = ()) -> dict[str, BenchInfo]:
    """Import every bench module shipped with kernbench plus ``extra_modules``."""
    import kernbench.benches as shipped

    for mod in pkgutil.iter_modules(shipped.__path__):
        importlib.import_module(f"kernbench.benches.{mod.name}")
    for name in extra_modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise BenchError(f"bench.module: cannot import {name!r}: {exc}") from exc
    return dict(_REGISTRY)


def get_bench(name: str, extra_modules: tuple[str, ...] = ()) -> BenchInfo:
    known = discover(extra_modules)
    if name not in known:
        raise BenchError(
            f"bench.name: unknown bench {name!r}; available: {', '.join(sorted(known))}"
        )
    return known[name]
