"""A PE's DMA channel (one for reads, one for writes): how many DMAs it keeps in flight and
what it counts (docs/kernels.md, "The PE pipeline")."""

from collections import deque


class DmaChannel:
    """A DMA channel that keeps up to ``capacity`` DMAs in flight (``hw.pe.dma_outstanding``):
    requests start in issue order, each as soon as fewer than ``capacity`` are in flight.

    It counts the DMAs it ran, their bytes, the time it had at least one in flight and the
    longest wait of a DMA for it; with ``sim.trace=full`` it keeps one span per DMA:
    ``(msg id, start, end, bytes, queued_ns)``.
    """

    __slots__ = (
        "name", "capacity", "active", "since", "waiting", "ops", "bytes", "busy_ns",
        "max_wait_ns", "spans",
    )  # fmt: skip

    def __init__(self, name: str, capacity: int = 1) -> None:
        self.name = name
        self.capacity = capacity
        self.active = 0
        self.since = 0.0  # when ``active`` last rose from 0
        self.waiting: deque = deque()
        self.ops = 0
        self.bytes = 0
        self.busy_ns = 0.0
        self.max_wait_ns = 0.0
        self.spans: list[tuple[int, float, float, int, float]] = []
