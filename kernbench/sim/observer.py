"""Observation hooks. Components check ``observer.enabled`` before building any record, so an
observer that is off costs one attribute read."""

from dataclasses import dataclass, field


class Observer:
    enabled = True

    def span(self, track: str, name: str, start_ns: float, end_ns: float, **args: object) -> None:
        """An activity of ``track`` (a unit or link name) from ``start_ns`` to ``end_ns``."""


class NullObserver(Observer):
    enabled = False


@dataclass
class RecordingObserver(Observer):
    """Keeps every span in memory; for tests and small runs."""

    spans: list[tuple[str, str, float, float, dict]] = field(default_factory=list)

    def span(self, track: str, name: str, start_ns: float, end_ns: float, **args: object) -> None:
        self.spans.append((track, name, start_ns, end_ns, args))
