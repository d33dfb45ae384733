"""Launching a kernel made by ``tl.autotune`` (docs/kernels.md, "Autotuning").

``Device.launch`` hands such a kernel here. The tuner (:mod:`kernbench.lang.autotune`) decides
what to try; this module runs each trial as a launch of its own on the same grid and PEs and
waits for it, as tuning does on hardware: the trials take simulated time before the launch
that counts. A trial's time is its kernel time, from the launch barrier to the last PE's end
(stores committed). Tensors are zeroed, saved and restored between trials directly in the
simulated memory, without simulated time (a tuner's bookkeeping, not part of the workload).

A trial whose kernel fails with a :class:`KernelError` or :class:`AllocationError` (e.g. its
blocks do not fit TCM) is recorded as failed: the error is caught inside the program that
raised it, the PE's remaining programs of that trial are skipped and the launch ends as usual,
so the tuner goes on with the next config.
"""

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import greenlet
import numpy as np

from kernbench.core.errors import KernelError
from kernbench.lang.autotune import TRIAL_ERRORS, Autotuner
from kernbench.runtime.tensor import Tensor

if TYPE_CHECKING:
    from kernbench.runtime.device import Device, Launch


def launch_autotuned(
    dev: "Device",
    tuner: Autotuner,
    grid: Any,
    args: tuple[Any, ...],
    pes: Sequence[tuple[int, int]] | None,
    meta: dict[str, Any],
) -> "Launch":
    """Tune if the launch's key is new, then launch with the best config; the returned
    launch's ``autotune`` lists the trials this call ran."""
    launch, tried = tuner.run(args, meta, _Runner(dev, tuner, grid, args, pes))
    launch.autotune = tried
    return launch


class _Runner:
    """The :class:`~kernbench.lang.autotune.TrialRunner` of one launch on one device."""

    def __init__(
        self,
        dev: "Device",
        tuner: Autotuner,
        grid: Any,
        args: tuple[Any, ...],
        pes: Sequence[tuple[int, int]] | None,
    ):
        self.dev = dev
        self.tuner = tuner
        self.grid = grid
        self.args = args
        self.pes = pes

    def launch(self, meta: dict[str, Any]) -> "Launch":
        return self.dev.launch(self.tuner.fn, self.grid, *self.args, pes=self.pes, **meta)

    def trial(self, meta: dict[str, Any]) -> float:
        failures: list[Exception] = []
        launch = self.dev.launch(
            _guarded(self.tuner.fn, failures), self.grid, *self.args, pes=self.pes, **meta
        )
        self.dev.synchronize()
        if failures:
            raise failures[0]
        return max(t.end_ns for t in launch.pes) - launch.start_ns

    def _tensor(self, name: str, value: Any, what: str) -> Tensor:
        if not isinstance(value, Tensor) or value.device is not self.dev:
            raise KernelError(
                f"tl.autotune of {self.tuner.__name__}: {what} names {name!r}, which is not a "
                f"tensor of {self.dev.name} (got {value!r})"
            )
        if value.freed:
            raise KernelError(f"tl.autotune of {self.tuner.__name__}: tensor {name!r} was freed")
        return value

    def _regions(self, tensor: Tensor) -> list[tuple[int, int]]:
        """(address, bytes) of every shard copy of the tensor."""
        size = tensor.dtype.itemsize
        return [(a, s.elements * size) for s in tensor.shards for a in s.copies.values()]

    def zero(self, name: str, value: Any) -> None:
        memory = self.dev.system.memory
        for addr, nbytes in self._regions(self._tensor(name, value, "reset_to_zero")):
            memory.fill(addr, nbytes, 0)

    def save(self, name: str, value: Any) -> list[tuple[int, np.ndarray]]:
        memory = self.dev.system.memory
        tensor = self._tensor(name, value, "restore_value")
        return [(addr, memory.read(addr, nbytes)) for addr, nbytes in self._regions(tensor)]

    def restore(self, name: str, value: Any, saved: list[tuple[int, np.ndarray]]) -> None:
        memory = self.dev.system.memory
        for addr, data in saved:
            memory.write(addr, data)


def _guarded(fn: Callable[..., Any], failures: list[Exception]) -> Callable[..., Any]:
    """``fn`` for a trial: the first failing program's error is kept in ``failures`` (with
    the kernel, the PE and the program named), not raised, and every program that starts after
    it returns at once. Only the message is kept, not the traceback, so the failed program's
    blocks are freed from TCM."""

    @functools.wraps(fn)
    def trial(*args: Any, **meta: Any) -> None:
        if failures:
            return
        try:
            fn(*args, **meta)
        except TRIAL_ERRORS as exc:
            msg = str(exc)
            prog = getattr(greenlet.getcurrent(), "kernel_program", None)
            if prog is not None and prog.worker.where not in msg:  # as PeWorker names it
                msg = f"{prog.worker.where}, program {prog.pid}: {msg}"
            failures.append(type(exc)(msg))

    return trial
