"""Autotuning, as Triton's ``triton.autotune`` and ``triton.Config``: ``tl.autotune`` and
``tl.Config`` (docs/kernels.md, "Autotuning").

``@tl.autotune(configs=[tl.Config({"BLOCK": 64}, num_stages=2), ...], key=["n"])`` over a
``@tl.jit`` kernel makes an :class:`Autotuner`. Launched through ``Device.launch``, it looks up
the best config for the launch's key (the values of the arguments named in ``key``, a tensor by
its dtype, then the dtype of every tensor argument, as Triton keys); the first launch of a key
runs every config that survives pruning, one after the other, each to completion, and keeps the
one with the least kernel time (the first listed of equals). Then the launch runs with it.

This module decides what to try and which config wins; how a config is launched and timed, and
how tensors are zeroed or restored between trials, is the host runtime's
(:mod:`kernbench.runtime.autotuning`), reached through the :class:`TrialRunner` it passes in:
the kernel language knows no hardware.
"""

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from kernbench.core.errors import AllocationError, KernelError

# Errors that mean "this config cannot run" (blocks that do not fit TCM, a kernel refusing its
# sizes): the trial is recorded as failed and skipped, as Triton skips out-of-resources configs.
TRIAL_ERRORS = (KernelError, AllocationError)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class Config:
    """A set of meta-parameters (``kwargs``) and launch options for the autotuner to try.

    ``num_stages`` sets the PE pipeline's depth for the launch (docs/kernels.md, "The PE
    pipeline"); ``num_warps``, ``num_ctas`` and ``maxnreg`` are kept and passed to the launch,
    which accepts and ignores them; ``pre_hook(args)`` is called before each launch with this
    config, with every argument by name.
    """

    def __init__(
        self,
        kwargs: Mapping[str, Any],
        num_warps: int = 4,
        num_stages: int = 3,
        num_ctas: int = 1,
        maxnreg: int | None = None,
        pre_hook: Callable[[dict[str, Any]], Any] | None = None,
    ):
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise KernelError(
                f"tl.Config: kwargs must be a dict of names to values, got {kwargs!r}"
            )
        options = {"num_warps": num_warps, "num_stages": num_stages, "num_ctas": num_ctas}
        for name, value in options.items():
            if not _positive_int(value):
                raise KernelError(f"tl.Config: {name} must be a positive integer, got {value!r}")
        if maxnreg is not None and not _positive_int(maxnreg):
            raise KernelError(
                f"tl.Config: maxnreg must be a positive integer or None, got {maxnreg!r}"
            )
        if pre_hook is not None and not callable(pre_hook):
            raise KernelError(f"tl.Config: pre_hook must be a function, got {pre_hook!r}")
        self.kwargs = dict(kwargs)
        self.num_warps = num_warps
        self.num_stages = num_stages
        self.num_ctas = num_ctas
        self.maxnreg = maxnreg
        self.pre_hook = pre_hook

    def all_kwargs(self) -> dict[str, Any]:
        """The meta-parameters and the launch options (``maxnreg`` only when set): what a
        launch with this config receives as keyword arguments."""
        options = {
            "num_warps": self.num_warps,
            "num_ctas": self.num_ctas,
            "num_stages": self.num_stages,
            "maxnreg": self.maxnreg,
        }
        return {**self.kwargs, **{k: v for k, v in options.items() if v is not None}}

    def _identity(self) -> tuple:
        return (tuple(self.all_kwargs().items()), self.pre_hook)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self.kwargs.items()]
        parts.append(f"num_stages={self.num_stages}")
        defaults = {"num_warps": 4, "num_ctas": 1, "maxnreg": None}
        parts += [f"{k}={getattr(self, k)!r}" for k, d in defaults.items() if getattr(self, k) != d]
        return f"Config({', '.join(parts)})"

    __str__ = __repr__


class TrialRunner(Protocol):
    """What the host runtime gives the tuner for one launch of a tuned kernel: ``meta`` is the
    launch's keyword arguments with a config's merged in."""

    def trial(self, meta: dict[str, Any]) -> float:
        """Launch, wait for completion, return the kernel time (ns); raise one of
        :data:`TRIAL_ERRORS` if the kernel failed."""

    def launch(self, meta: dict[str, Any]) -> Any:
        """The launch that counts (returns at once, as ``Device.launch``)."""

    def zero(self, name: str, value: Any) -> None:
        """Set the tensor to zeros, taking no simulated time."""

    def save(self, name: str, value: Any) -> Any:
        """A copy of the tensor's contents, taking no simulated time."""

    def restore(self, name: str, value: Any, saved: Any) -> None:
        """Write a copy made by :meth:`save` back, taking no simulated time."""


class Autotuner:
    """A kernel with configs to try (made by :func:`autotune`). Triton's attributes: ``fn``
    (the kernel), ``configs``, ``keys``, ``cache`` (key -> best config), ``best_config`` (of
    the last launch), ``configs_timings`` (config -> kernel ns of the last tuning, ``inf`` if
    it failed); and ``failures`` (config, error message) of the last tuning."""

    def __init__(
        self,
        fn: Callable[..., Any],
        configs: Sequence[Config],
        key: Sequence[str],
        prune_configs_by: Mapping[str, Any] | None = None,
        reset_to_zero: Sequence[str] | None = None,
        restore_value: Sequence[str] | None = None,
        pre_hook: Callable[..., Any] | None = None,
        post_hook: Callable[..., Any] | None = None,
    ):
        name = getattr(fn, "__name__", repr(fn))
        if not callable(fn) or isinstance(fn, Autotuner):
            raise KernelError(f"tl.autotune must decorate a kernel function, got {fn!r}")
        self.fn = fn
        self.__name__ = name
        self.__doc__ = fn.__doc__
        self.arg_names = list(inspect.signature(fn).parameters)
        self.configs = list(configs) if configs else [Config({})]
        bad = [c for c in self.configs if not isinstance(c, Config)]
        if bad:
            raise KernelError(f"tl.autotune of {name}: configs must be tl.Config, got {bad[0]!r}")
        for c in self.configs:
            self._names(f"config {c!r} sets", c.kwargs)
        self.keys = self._names("key names", _names_list(key, "key", name))
        self.reset_to_zero = self._names(
            "reset_to_zero names", _names_list(reset_to_zero or [], "reset_to_zero", name)
        )
        self.restore_value = self._names(
            "restore_value names", _names_list(restore_value or [], "restore_value", name)
        )
        prune = dict(prune_configs_by or {})
        unknown = set(prune) - {"perf_model", "top_k", "early_config_prune"}
        if unknown:
            raise KernelError(
                f"tl.autotune of {name}: prune_configs_by has {sorted(unknown)}; it takes "
                "perf_model, top_k and early_config_prune"
            )
        self.perf_model = prune.get("perf_model")
        self.configs_top_k = prune.get("top_k", 1.0)
        self.early_config_prune = prune.get("early_config_prune")
        self.user_pre_hook = pre_hook
        self.user_post_hook = post_hook
        self.cache: dict[tuple, Config] = {}
        self.best_config: Config | None = None
        self.configs_timings: dict[Config, float] = {}
        self.failures: list[tuple[Config, str]] = []
        self._saved: dict[str, Any] = {}

    def _names(self, what: str, names: Iterable[str]) -> list[str]:
        names = list(names)
        unknown = [n for n in names if n not in self.arg_names]
        if unknown:
            raise KernelError(
                f"tl.autotune of {self.__name__}: {what} {unknown[0]!r}, which is not a "
                f"parameter of the kernel; its parameters are {', '.join(self.arg_names)}"
            )
        return names

    # -- what a launch runs with -------------------------------------------------------------
    def key_of(self, args: dict[str, Any]) -> tuple:
        """The tuning key of a launch's arguments (by name): the values named in ``key`` (a
        tensor by its dtype), then the dtype of every tensor argument."""
        key: list[Any] = [_key_value(args[k]) for k in self.keys if k in args]
        key += [str(v.dtype) for v in args.values() if _is_tensor(v)]
        return tuple(key)

    def prune_configs(self, args: dict[str, Any], meta: dict[str, Any]) -> list[Config]:
        """The configs worth trying: ``early_config_prune(configs, args, **meta)``, then the
        ``top_k`` with the least time by ``perf_model(**args, **meta, **config.all_kwargs())``
        (``top_k`` a count, or a fraction of the configs if a float <= 1)."""
        configs = self.configs
        if self.early_config_prune is not None:
            configs = list(self.early_config_prune(configs, args, **meta))
            if not configs:
                raise KernelError(
                    f"tl.autotune of {self.__name__}: early_config_prune left no config; it "
                    "must return at least one"
                )
        if self.perf_model is not None:
            top_k = self.configs_top_k
            if isinstance(top_k, float) and top_k <= 1.0:
                top_k = max(1, int(len(configs) * top_k))
            elif isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise KernelError(
                    f"tl.autotune of {self.__name__}: top_k must be a positive int or a float "
                    f"<= 1, got {top_k!r}"
                )
            if len(configs) > top_k:
                est = [self.perf_model(**args, **meta, **c.all_kwargs()) for c in configs]
                order = sorted(range(len(configs)), key=lambda i: est[i])  # stable: ties keep order
                configs = [configs[i] for i in order[:top_k]]
        return configs

    def run(
        self, args: Sequence[Any], meta: dict[str, Any], runner: TrialRunner
    ) -> tuple[Any, list[tuple[Config, float | None]]]:
        """Launch with the best config for this launch's key, tuning first if the key is new.
        Returns the runner's launch and the trials this call ran, as (config, kernel ns or
        None if it failed), in order (empty when the key was known)."""
        try:
            bound = inspect.signature(self.fn).bind_partial(*args, **meta)
        except TypeError as exc:
            raise KernelError(f"launch of {self.__name__}: {exc}") from None
        bound.apply_defaults()
        named = dict(bound.arguments)
        tried: list[tuple[Config, float | None]] = []
        for c in self.configs:
            clash = sorted(meta.keys() & c.all_kwargs().keys())
            if clash:
                raise KernelError(
                    f"launch of {self.__name__}: {', '.join(clash)} given to the launch and set "
                    f"by the autotuner's config {c!r}; leave tuned parameters to the configs"
                )
        if len(self.configs) == 1:
            config = self.configs[0]
        else:
            key = self.key_of(named)
            if key not in self.cache:
                configs = self.prune_configs(named, meta)
                if len(configs) == 1:
                    self.cache[key] = configs[0]
                else:
                    tried = self._tune(configs, named, meta, runner)
                    self.cache[key] = self._best(tried)
                    self._before(runner, {**named, **self.cache[key].all_kwargs()}, reset_only=True)
            config = self.cache[key]
        self.best_config = config
        current = {**meta, **config.all_kwargs()}
        if config.pre_hook is not None:
            config.pre_hook({**named, **current})
        return runner.launch(current), tried

    def _tune(
        self,
        configs: list[Config],
        named: dict[str, Any],
        meta: dict[str, Any],
        runner: TrialRunner,
    ) -> list[tuple[Config, float | None]]:
        tried: list[tuple[Config, float | None]] = []
        self.failures = []
        for config in configs:
            current = {**meta, **config.all_kwargs()}
            full = {**named, **current}
            if config.pre_hook is not None:
                config.pre_hook(full)
            self._before(runner, full)
            error: Exception | None = None
            try:
                kernel_ns: float | None = runner.trial(current)
            except TRIAL_ERRORS as exc:
                kernel_ns, error = None, exc
                self.failures.append((config, str(exc)))
            self._after(runner, full, error)
            tried.append((config, kernel_ns))
        self.configs_timings = {c: float("inf") if t is None else t for c, t in tried}
        return tried

    def _best(self, tried: list[tuple[Config, float | None]]) -> Config:
        ran = [(c, t) for c, t in tried if t is not None]
        if not ran:
            why = "; ".join(f"{c!r}: {msg}" for c, msg in self.failures)
            raise KernelError(f"tl.autotune of {self.__name__}: every config failed: {why}")
        return min(ran, key=lambda ct: ct[1])[0]  # min keeps the first of equals

    # -- between trials (Triton's default hooks, unless the user gave their own) -----------
    def _before(self, runner: TrialRunner, full: dict[str, Any], reset_only: bool = False) -> None:
        if self.user_pre_hook is not None:
            self.user_pre_hook(full, reset_only=reset_only)
            return
        for name in self.reset_to_zero:
            if full.get(name) is not None:
                runner.zero(name, full[name])
        if not reset_only:
            self._saved = {
                n: runner.save(n, full[n]) for n in self.restore_value if full.get(n) is not None
            }

    def _after(self, runner: TrialRunner, full: dict[str, Any], error: Exception | None) -> None:
        if self.user_post_hook is not None:
            self.user_post_hook(full, exception=error)
            return
        for name, saved in self._saved.items():
            runner.restore(name, full[name], saved)
        self._saved = {}

    def __repr__(self) -> str:
        return f"<autotuned kernel {self.__name__}: {len(self.configs)} configs, key {self.keys}>"


def _names_list(names: Any, what: str, kernel: str) -> list[str]:
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise KernelError(
            f"tl.autotune of {kernel}: {what} must be a list of parameter names, got {names!r}"
        )
    return list(names)


def _is_tensor(value: Any) -> bool:
    """A tensor argument (it has a dtype and a shape), not a NumPy scalar."""
    return hasattr(value, "dtype") and hasattr(value, "shape") and not isinstance(value, np.generic)


def _key_value(value: Any) -> Any:
    return str(value.dtype) if _is_tensor(value) else value


def autotune(
    configs: Sequence[Config],
    key: Sequence[str],
    prune_configs_by: Mapping[str, Any] | None = None,
    reset_to_zero: Sequence[str] | None = None,
    restore_value: Sequence[str] | None = None,
    pre_hook: Callable[..., Any] | None = None,
    post_hook: Callable[..., Any] | None = None,
    warmup: Any = None,
    rep: Any = None,
    use_cuda_graph: bool = False,
    do_bench: Any = None,
    cache_results: bool = False,
) -> Callable[[Callable[..., Any]], Autotuner]:
    """Decorate a kernel to be tuned over ``configs`` whenever the values of the arguments
    named in ``key`` change (docs/kernels.md, "Autotuning").

    ``reset_to_zero``: tensors zeroed before each trial and before the launch that follows
    the tuning; ``restore_value``: tensors whose contents are put back after each trial;
    ``prune_configs_by``: ``early_config_prune``, ``perf_model`` and ``top_k`` as Triton's;
    ``pre_hook(args, reset_only)`` / ``post_hook(args, exception)`` replace the zeroing and
    restoring. ``warmup``, ``rep``, ``use_cuda_graph``, ``do_bench`` and ``cache_results`` are
    accepted and ignored: a simulated launch is timed exactly, once.
    """

    def decorator(fn: Callable[..., Any]) -> Autotuner:
        return Autotuner(
            fn, configs, key, prune_configs_by, reset_to_zero, restore_value, pre_hook, post_hook
        )

    return decorator
