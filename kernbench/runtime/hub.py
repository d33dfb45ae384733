"""Cooperative greenlets over one SimPy environment.

Host programs (one per device or rank) and kernel programs (one per PE of a launch) are plain
Python functions that block on simulated events. Each runs in its own greenlet; a blocking call
(:meth:`Hub.wait`) parks the greenlet on a SimPy event and switches to the hub, which steps the
environment and resumes greenlets, in the order their events fire, until what it was asked to
run is done. Everything happens in one thread, in a deterministic order.

If nothing can run and no event is pending while greenlets still wait, the run is deadlocked:
the hub raises a :class:`SimulationError` that lists who waits on what.

While it runs, BLAS is limited to one thread: kernels multiply small tiles, for which a BLAS
thread pool only adds hand-off cost (on a loaded 2-core machine, 100x for a 128x128 product).
"""

from collections import deque
from collections.abc import Callable
from typing import Any

import greenlet
from simpy.events import Event
from threadpoolctl import ThreadpoolController

from kernbench.core.errors import SimulationError
from kernbench.sim.context import Sim

_BLAS: ThreadpoolController | None = None


def _one_blas_thread() -> Any:
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


class Task:
    """A greenlet the hub runs; ``done`` succeeds with the function's return value."""

    def __init__(self, name: str, done: Event):
        self.name = name
        self.done = done
        self.greenlet: greenlet.greenlet | None = None

    @property
    def value(self) -> Any:
        return self.done.value


class Hub:
    def __init__(self, sim: Sim):
        self.sim = sim
        self.env = sim.env
        self.main = greenlet.getcurrent()
        self.ready: deque[tuple[greenlet.greenlet, Any]] = deque()
        self.waiting: dict[greenlet.greenlet, str] = {}
        self.tasks: list[Task] = []

    def spawn(self, fn: Callable[..., Any], *args: Any, name: str, **attrs: Any) -> Task:
        """Start ``fn(*args)`` in a new greenlet at the current simulated time. ``attrs`` are
        set on the greenlet (e.g. the running kernel program)."""
        task = Task(name, self.sim.event())

        def body(_start: Any = None) -> None:
            task.done.succeed(fn(*args))

        g = greenlet.greenlet(body, parent=self.main)
        for k, v in attrs.items():
            setattr(g, k, v)
        task.greenlet = g
        self.tasks.append(task)
        self.ready.append((g, None))
        return task

    def wait(self, event: Event, what: str) -> Any:
        """Block the calling greenlet until ``event`` has fired; return its value. Called from
        the main greenlet, run the simulation until then."""
        cur = greenlet.getcurrent()
        if cur is self.main:
            self.run(event)
            return event.value
        if event.callbacks is None:  # already processed
            return event.value
        self.waiting[cur] = what
        event.callbacks.append(lambda ev: self.ready.append((cur, ev.value)))
        return self.main.switch()

    def run(self, until: Event) -> None:
        """Run greenlets and events until ``until`` has been processed."""
        if greenlet.getcurrent() is not self.main:
            raise RuntimeError("Hub.run must be called from the hub's own greenlet")
        with _one_blas_thread():
            self._run(until)

    def _run(self, until: Event) -> None:
        env = self.env
        while True:
            while self.ready:
                g, value = self.ready.popleft()
                self.waiting.pop(g, None)
                g.switch(value)
            if until.callbacks is None:
                return
            if env.peek() == float("inf"):
                raise SimulationError(self._deadlock())
            env.step()

    def _deadlock(self) -> str:
        lines = sorted(set(self.waiting.values()))
        who = "; ".join(lines[:12]) + (f"; and {len(lines) - 12} more" if len(lines) > 12 else "")
        return (
            f"deadlock at t={self.env.now:.3f} ns: no event is pending but "
            f"{len(self.waiting)} program(s) still wait: {who or 'nothing'}"
        )
