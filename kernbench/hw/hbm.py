"""HBM: one slice per PE, each served by its own controller with pseudo-channels.

Fidelity: a controller has ``pseudo_channels`` FIFO channels. The flit starting at address
``a`` is served by channel ``(a >> log2(burst_bytes)) & (pseudo_channels - 1)`` and holds it
for ``flit_bytes / (pc_bw_gbs * efficiency)`` ns (a 256 B burst: 10 ns by default). Reads and
writes share the channels, first come first served.

- A write flit is committed when its channel finishes it; a write is done when its last flit is
  committed, and its bytes become visible to loads at that moment.
- A read request enqueues all of its flits on their channels on arrival; data flits leave the
  controller in address order (in-order responses), each once its own burst and every earlier
  one are done.

That is the flit model's view (:meth:`HbmController.serve`, one burst at a time). The fluid
model (kernbench.sim.fluid) queues a read's bursts on each channel at once, behind what is
queued there, and shares the channels among writes by their bytes on each; it reports what
each channel did with :meth:`HbmController.account`.

Observation: a controller counts the bytes it read and wrote, the busy time summed over its
channels and the longest wait of a burst for its channel. With ``sim.trace=full`` it also
records spans per pseudo-channel: under the flit model a maximal run of consecutive bursts of
one message on one channel; under the fluid model one span per transfer and channel (a write's
may overlap another's, since writes share the channels).

Not modelled: banks, row buffers, refresh, read/write turnaround, ECC.
"""

from dataclasses import dataclass
from typing import ClassVar

from kernbench.core.errors import ConfigError
from kernbench.core.specs import check_non_negative, check_positive, check_power_of_two, param
from kernbench.core.units import GIB
from kernbench.sim.observer import Observer


@dataclass(frozen=True)
class HbmSpec:
    KEY: ClassVar[str] = "hw.hbm"

    slice_bytes: int = param(6 * GIB, "HBM slice per PE (8 slices = 48 GiB per cube), bytes")
    pseudo_channels: int = param(8, "pseudo-channels per controller (power of two)")
    pc_bw_gbs: float = param(32.0, "peak bandwidth of one pseudo-channel, GB/s")
    efficiency: float = param(0.8, "fraction of peak a channel sustains (0 < e <= 1)")
    burst_bytes: int = param(256, "burst size that selects the pseudo-channel, bytes")
    ctrl_overhead_ns: float = param(0.0, "controller overhead per transfer (head flit), ns")

    def __post_init__(self) -> None:
        check_positive(self, "slice_bytes", "pc_bw_gbs", "efficiency")
        check_power_of_two(self, "pseudo_channels", "burst_bytes")
        check_non_negative(self, "ctrl_overhead_ns")
        if self.efficiency > 1:
            raise ConfigError(f"{self.KEY}.efficiency", f"must be in (0, 1], got {self.efficiency}")

    @property
    def effective_bw_gbs(self) -> float:
        """Sustained bandwidth of one controller over all its channels."""
        return self.pseudo_channels * self.pc_bw_gbs * self.efficiency

    @property
    def ns_per_byte(self) -> float:
        """Time one pseudo-channel is busy per byte."""
        return 1.0 / (self.pc_bw_gbs * self.efficiency)

    def channel_of(self, addr: int) -> int:
        return (addr // self.burst_bytes) & (self.pseudo_channels - 1)


class HbmController:
    """Runtime state of one controller: when each pseudo-channel frees, and what it served."""

    __slots__ = (
        "name",
        "spec",
        "free_at",
        "bytes_read",
        "bytes_written",
        "busy_ns",
        "bursts",
        "max_wait_ns",
        "observer",
        "spans",
        "_open",
    )

    def __init__(self, name: str, spec: HbmSpec, observer: Observer | None = None):
        self.name = name
        self.spec = spec
        self.free_at = [0.0] * spec.pseudo_channels
        self.bytes_read = 0
        self.bytes_written = 0
        self.busy_ns = 0.0
        self.bursts = 0
        self.max_wait_ns = 0.0
        self.observer = observer if observer is not None and observer.full else None
        # Finished spans: (channel, msg id, start, end, bytes, bursts, busy_ns); a span may hold
        # idle gaps between its bursts, busy_ns is their service time.
        self.spans: list[tuple] = []
        self._open: list[list | None] = [None] * spec.pseudo_channels

    # -- what the transfer models see (kernbench.sim.transfer.Memory) -----------------------
    @property
    def channels(self) -> int:
        return self.spec.pseudo_channels

    @property
    def burst_bytes(self) -> int:
        return self.spec.burst_bytes

    @property
    def ns_per_byte(self) -> float:
        return self.spec.ns_per_byte

    def account(
        self, channel: int, msg_id: int, start: float, end: float, nbytes: int, bursts: int
    ) -> None:
        """A fluid transfer had ``channel`` serve its ``nbytes`` in ``bursts`` between
        ``start`` and ``end``."""
        service = nbytes * self.spec.ns_per_byte
        self.busy_ns += service
        self.bursts += bursts
        if self.observer is not None and self.observer.admit():
            self.spans.append((channel, msg_id, start, end, nbytes, bursts, service))

    def waited(self, wait_ns: float) -> None:
        """A transfer's bursts waited ``wait_ns`` for a channel."""
        if wait_ns > self.max_wait_ns:
            self.max_wait_ns = wait_ns

    def serve(self, addr: int, nbytes: int, now: float, msg_id: int = 0) -> float:
        """Enqueue one flit of message ``msg_id`` at ``now``; return when its channel ends it."""
        ch = (addr // self.spec.burst_bytes) & (self.spec.pseudo_channels - 1)
        free = self.free_at[ch]
        start = now if now > free else free
        service = nbytes * self.spec.ns_per_byte
        end = start + service
        self.free_at[ch] = end
        self.busy_ns += service
        self.bursts += 1
        if start - now > self.max_wait_ns:
            self.max_wait_ns = start - now
        if self.observer is not None:
            span = self._open[ch]
            if span is not None and span[0] == msg_id:
                span[2] = end
                span[3] += nbytes
                span[4] += 1
                span[5] += service
            else:
                if span is not None:
                    self._close(ch, span)
                self._open[ch] = [msg_id, start, end, nbytes, 1, service]
        return end

    def _close(self, ch: int, span: list) -> None:
        if self.observer is not None and self.observer.admit():
            self.spans.append((ch, *span))

    def close_spans(self) -> None:
        """Finish every open span (call when the run is over, before reading ``spans``)."""
        for ch, span in enumerate(self._open):
            if span is not None:
                self._close(ch, span)
                self._open[ch] = None
