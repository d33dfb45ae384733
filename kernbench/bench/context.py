"""What a bench receives: the system spec, a built topology and a way to start systems."""

from collections.abc import Callable
from dataclasses import dataclass, field

from kernbench.runtime import System
from kernbench.sim.observer import Observer
from kernbench.topology import SystemSpec, Topology


def _no_progress(done: int, total: int, what: str) -> None:
    """Default progress callback: report nothing."""


@dataclass
class BenchContext:
    spec: SystemSpec
    topology: Topology
    progress: Callable[[int, int, str], None] = _no_progress
    observer: Observer | None = None
    systems: list[System] = field(default_factory=list)

    @classmethod
    def from_spec(cls, spec: SystemSpec, **kw: object) -> "BenchContext":
        return cls(spec, Topology(spec), **kw)

    def new_system(self) -> System:
        """A fresh, idle system on the shared topology (each starts at t = 0)."""
        system = System(topology=self.topology, observer=self.observer)
        self.systems.append(system)
        return system

    @property
    def sim_events(self) -> int:
        return sum(s.sim.events for s in self.systems)

    @property
    def sim_time_ns(self) -> float:
        return sum(s.now for s in self.systems)
