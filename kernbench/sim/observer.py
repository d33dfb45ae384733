"""Observation built into the simulator (``sim.trace``, docs/traces.md).

One :class:`Observer` serves a whole bench run and is shared by every system the bench starts.
Its level decides what components record:

- ``off``: nothing beyond the counters the energy model needs (bytes and flits per edge, a few
  adds per transfer; per-unit counters); the flit engine runs a stage without statistics.
- ``summary``: per-edge and per-unit counters (bytes, busy time, flits, longest wait), a few
  integer and float updates per flit per hop.
- ``full``: also spans. Under the flit model a span is a maximal run of consecutive flits of one
  message on one track (edge, HBM pseudo-channel) with no other message's flit between them,
  so spans on one track never overlap; under the fluid model a span is one transfer's leg on
  one edge (or its share of one pseudo-channel), and spans of concurrent transfers overlap
  (the trace lays them out in lanes). DMA channels record one span per DMA. Recorded spans
  count against ``max_events``; past it, spans are counted in ``dropped`` and not kept.

Components test ``observer.full`` (or ``enabled``) before building any record, so an observer
that is off costs one attribute read where it is consulted at all.
"""

from kernbench.sim.spec import TRACE_LEVELS


class Observer:
    def __init__(self, level: str = "summary", max_events: int = 2_000_000):
        if level not in TRACE_LEVELS:
            raise ValueError(f"trace level must be one of {', '.join(TRACE_LEVELS)}, got {level!r}")
        self.level = level
        self.enabled = level != "off"
        self.full = level == "full"
        self.max_events = max_events
        self.events = 0
        self.dropped = 0
        self.spans: list[tuple[str, str, float, float, dict]] = []

    def admit(self) -> bool:
        """Whether one more span may be kept (counts it either way)."""
        if self.events < self.max_events:
            self.events += 1
            return True
        self.dropped += 1
        return False

    def span(self, track: str, name: str, start_ns: float, end_ns: float, **args: object) -> None:
        """A free-form activity of ``track`` from ``start_ns`` to ``end_ns`` (``full`` only)."""
        if self.full and self.admit():
            self.spans.append((track, name, start_ns, end_ns, args))


class NullObserver(Observer):
    """Observes nothing (``sim.trace=off``)."""

    def __init__(self) -> None:
        super().__init__("off")


class RecordingObserver(Observer):
    """Records everything, without a cap; for tests."""

    def __init__(self) -> None:
        super().__init__("full", max_events=1 << 62)
