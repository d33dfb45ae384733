"""The Sim context: one SimPy environment, id source, observer and event counter per run."""

import itertools
from collections.abc import Callable
from typing import Any

import simpy
from simpy.core import NORMAL
from simpy.events import Event

from kernbench.sim.observer import Observer
from kernbench.sim.spec import SimSpec

LATE = NORMAL + 1  # after SimPy's URGENT (0) and NORMAL (1) events of the same instant


class _Call(Event):
    """An event that is already triggered and runs ``fn(*args)`` when the clock reaches it."""

    def __init__(self, env: simpy.Environment, fn: Callable[..., None], args: tuple):
        self.env = env
        self.callbacks = [self._fire]
        self._ok = True
        self._value = None
        self._fn = fn
        self._args = args

    def _fire(self, _event: Event) -> None:
        self._fn(*self._args)


class Sim:
    """Everything a component needs at run time, passed explicitly (no globals)."""

    def __init__(self, spec: SimSpec | None = None, observer: Observer | None = None):
        self.spec = spec or SimSpec()
        self.env = simpy.Environment()
        # Without an observer of its own, a Sim observes at the level its spec asks for.
        self.observer: Observer = observer or Observer(self.spec.trace, self.spec.trace_max_events)
        self._ids = itertools.count(1)
        self.events = 0

    @property
    def now(self) -> float:
        return self.env.now

    def next_id(self) -> int:
        return next(self._ids)

    def call_at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` at absolute simulated time ``t`` (>= now)."""
        self.events += 1
        self.env.schedule(_Call(self.env, fn, args), NORMAL, t - self.env.now)

    def call_late(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` now, after every other event of this instant, including those
        scheduled for it from now on (SimPy orders an instant's events by priority first)."""
        self.events += 1
        self.env.schedule(_Call(self.env, fn, args), LATE, 0)

    def event(self) -> Event:
        """A fresh pending event, for processes to wait on."""
        self.events += 1
        return self.env.event()
