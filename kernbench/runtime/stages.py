"""The pipelined PE's loads in flight (MODEL.md §3b, docs/kernels.md "The PE pipeline").

With ``num_stages`` >= 2 a ``tl.load`` issues its DMA and returns a pending block at once. Each
load site of the kernel (a ``tl.load`` call in its code) has ``num_stages`` buffers, as
Triton's pipeliner gives each load of a loop: a load takes the site's next buffer, and when
all are taken it first waits until the oldest is released — its data have arrived and every
call that read it so far has finished. A buffer's TCM is held from the load's issue until it
is released *and* the kernel has dropped the block.
"""

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from simpy.events import Event

if TYPE_CHECKING:
    from kernbench.runtime.kernel import PeWorker


class Stage:
    """One load in a site's buffer: its DMA, and when its data are ready and last used."""

    __slots__ = (
        "worker", "event", "placeholder", "dtype", "inverse", "valid", "post", "ready",
        "last_use", "_values", "_dropped", "_released", "_nbytes",
    )  # fmt: skip

    def __init__(
        self,
        worker: "PeWorker",
        event: Event,
        placeholder: np.ndarray,
        inverse: np.ndarray,
        valid: np.ndarray | None,
    ):
        self.worker = worker
        self.event = event
        self.placeholder = placeholder  # zeros of the block's shape and dtype
        self.dtype = placeholder.dtype
        self.inverse = inverse
        self.valid = valid
        self.post: Callable[[np.ndarray], np.ndarray] | None = None
        self.ready = 0.0
        self.last_use = 0.0
        self._values: np.ndarray | None = None
        self._dropped = False
        self._released = False
        self._nbytes = 0

    # -- data --------------------------------------------------------------------------------
    def values(self) -> np.ndarray:
        """The loaded values; the first call waits for the DMA and stalls the PE's issue until
        the data are in TCM (``ready``)."""
        if self._values is None:
            self._values = self.worker.land(self)
        return self._values

    def used_until(self, end_ns: float) -> None:
        if end_ns > self.last_use:
            self.last_use = end_ns

    def release_ns(self) -> float:
        """When the buffer is free again (waits for the data if they have not arrived)."""
        self.values()
        return self.ready if self.ready > self.last_use else self.last_use

    # -- TCM -----------------------------------------------------------------------------------
    def drop(self, nbytes: int) -> None:
        """The kernel dropped the block: its TCM is freed now if the buffer was released."""
        self._dropped = True
        self._nbytes = nbytes
        if self._released:
            self.worker.pe.tcm_used -= nbytes

    def release(self) -> None:
        """The buffer is reused: its TCM is freed now if the kernel dropped the block."""
        self._released = True
        if self._dropped:
            self.worker.pe.tcm_used -= self._nbytes


class Rings:
    """The buffers of every load site of one PE's launch."""

    def __init__(self) -> None:
        self.sites: dict[Any, deque[Stage]] = {}

    def take(self, site: Any, depth: int) -> float:
        """Make room for a load at ``site`` with ``depth`` buffers: release the oldest while
        all are taken; returns when the last one released was free (0 if none was)."""
        ring = self.sites.get(site)
        if ring is None:
            self.sites[site] = ring = deque()
        free_ns = 0.0
        while len(ring) >= depth:
            stage = ring.popleft()
            free_ns = max(free_ns, stage.release_ns())
            stage.release()
        return free_ns

    def add(self, site: Any, stage: Stage) -> None:
        self.sites[site].append(stage)

    def drain(self) -> float:
        """Release every buffer (the pipeline empties); returns when the last one is free."""
        free_ns = 0.0
        for ring in self.sites.values():
            while ring:
                stage = ring.popleft()
                free_ns = max(free_ns, stage.release_ns())
                stage.release()
        return free_ns

    def abandon(self) -> None:
        """Give every buffer back without waiting (the launch failed): the TCM of blocks the
        kernel dropped is freed now, that of blocks still alive when they are dropped."""
        for ring in self.sites.values():
            while ring:
                ring.popleft().release()
