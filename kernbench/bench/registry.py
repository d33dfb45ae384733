"""The bench registry: a bench is a function plus a dataclass of its parameters.

Benches live in modules of ``kernbench.benches`` (the checkout's ``benches/``) or in any module
named by ``bench.module``; importing the module registers its benches with :func:`bench`.
Registering a name twice raises. A bench declares here, once, which direction of each of its
metrics is better (``better``) and which metrics are its headline (``headline``): comparisons
and sweep summaries read them from the run's record (docs/metrics.md).
"""

import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from kernbench.bench.result import check_directions
from kernbench.core.errors import BenchError


@dataclass(frozen=True)
class BenchInfo:
    name: str
    params: type
    fn: Callable[..., Any]
    doc: str
    # metric-name glob -> "lower" / "higher" (is better) / None; first match wins
    better: dict[str, str | None] = field(default_factory=dict)
    # metric-name globs of the few metrics that sum a run up (sweep tables, compare runs)
    headline: tuple[str, ...] = ()

    def param_names(self) -> list[str]:
        return [f.name for f in fields(self.params)]


_REGISTRY: dict[str, BenchInfo] = {}


def bench(
    name: str,
    params: type,
    *,
    better: Mapping[str, str | None] = {},
    headline: Sequence[str] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(ctx, params) -> BenchResult`` as bench ``name`` with a params dataclass.

    ``better`` maps metric-name globs to ``"lower"`` or ``"higher"`` (is better) or None (no
    direction), first match first; metrics it does not match take the default of their unit
    suffix (``_ns`` lower, ``_gbs`` higher, ...). ``headline`` lists the globs of the metrics
    that sum a run up.
    """
    directions = check_directions(better, f"bench {name!r}")

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise BenchError(
                f"bench {name!r} is registered twice ({_REGISTRY[name].fn.__module__} and "
                f"{fn.__module__})"
            )
        _REGISTRY[name] = BenchInfo(
            name, params, fn, (fn.__doc__ or "").strip(), directions, tuple(headline)
        )
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
