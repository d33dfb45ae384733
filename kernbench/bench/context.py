"""What a bench receives: the system spec, a built topology, a way to start systems and the
model shape of the ``model`` config group."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kernbench.bench.model import ModelSpec
from kernbench.report.plot_workers import RunPlots
from kernbench.runtime import Device, Hub, System
from kernbench.runtime.energy import Energy, total_energy
from kernbench.runtime.observe import system_record, topology_record
from kernbench.sim.observer import Observer
from kernbench.topology import SystemSpec, Topology


def _no_progress(done: int, total: int, what: str) -> None:
    """Default progress callback: report nothing."""


@dataclass
class BenchContext:
    """``observer`` (default: one at the level of ``spec.sim.trace``) is shared by every system
    the bench starts, so the span cap holds for the whole run. ``devices`` are the SIPs a
    single-device bench runs on (config key ``device``). ``plots`` are the run's plots: those
    the bench asks for with :meth:`plot`, then the observation plots (default: drawn at the
    end, in this process). With ``log_transfers`` every system logs what it moved
    (:attr:`kernbench.sim.transfer.TransferModel.log`). ``model`` is the LLM shape of the
    ``model`` config group (default: the ``tiny`` preset); a bench that models no LLM ignores
    it."""

    spec: SystemSpec
    topology: Topology
    progress: Callable[[int, int, str], None] = _no_progress
    observer: Observer | None = None
    devices: tuple[int, ...] = (0,)
    systems: list[System] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    plots: RunPlots = field(default_factory=RunPlots)
    log_transfers: bool = False  # every system logs its transfers (TransferModel.log)
    model: ModelSpec = field(default_factory=ModelSpec)

    def __post_init__(self) -> None:
        if self.observer is None:
            sim = self.spec.sim
            self.observer = Observer(sim.trace, sim.trace_max_events)

    @classmethod
    def from_spec(cls, spec: SystemSpec, **kw: object) -> "BenchContext":
        return cls(spec, Topology(spec), **kw)

    def new_system(self, label: str | None = None) -> System:
        """A fresh, idle system on the shared topology (each starts at t = 0). ``label`` names
        it in traces and plots (default ``system <n>``)."""
        system = System(topology=self.topology, observer=self.observer)
        if self.log_transfers:
            system.transfers.log = []
        self.systems.append(system)
        self.labels.append(label or f"system {len(self.systems) - 1}")
        return system

    def run_devices(
        self, program: Callable[[Device], Any], label: str | None = None
    ) -> list[tuple[Device, Any]]:
        """Run ``program(device)`` for every selected SIP (``devices``) at once, as independent
        devices in one fresh system sharing the host link and the fabric; return each device
        with what its program returned."""
        system = self.new_system(label)
        hub = Hub(system.sim)
        devs = [Device(system, hub, sip) for sip in self.devices]
        tasks = [hub.spawn(program, d, name=f"host program on {d.name}") for d in devs]
        hub.run(system.sim.env.all_of([t.done for t in tasks]))
        return [(d, t.value) for d, t in zip(devs, tasks, strict=True)]

    def plot(self, name: str, *args: Any) -> None:
        """Ask for the plot ``kernbench.report.plots.<name>(*args, out_dir)`` unless
        ``sim.trace=off``. Ask as soon as its data is final: with helper processes it is drawn
        while the bench goes on. ``args`` are plain data the bench no longer changes."""
        assert self.observer is not None
        if self.observer.enabled:
            self.plots.add(name, *args)

    @property
    def sim_events(self) -> int:
        return sum(s.sim.events for s in self.systems)

    @property
    def sim_time_ns(self) -> float:
        return sum(s.now for s in self.systems)

    def energy(self) -> Energy:
        """The energy of every system the bench started (docs/energy.md), from counters kept at
        every trace level."""
        return total_energy(self.systems)

    def observations(self) -> dict[str, Any]:
        """Everything the observer saw, as plain data for the report layer (ADR 0009); empty
        with ``sim.trace=off``."""
        obs = self.observer
        assert obs is not None
        if not obs.enabled:
            return {}
        systems = [
            system_record(s, label) for s, label in zip(self.systems, self.labels, strict=True)
        ]
        return {
            "level": obs.level,
            "max_events": obs.max_events,
            "events": obs.events,
            "dropped": obs.dropped,
            "topology": topology_record(self.topology),
            "systems": systems,
        }
