"""Kernel programs on PEs: what each ``tl.*`` call costs and which bytes it moves.

A :class:`PeWorker` runs the program instances a launch gives one PE, one after the other, in
one greenlet. It keeps the PE's local clock ``t``: calls that use only the PE (dispatch,
pe_gemm, pe_math, TCM) advance it without touching the event queue; calls that use the fabric
(a load's DMA) are issued at ``t`` through the system. Stores are posted: their DMA is issued
at ``t`` and the worker only waits for them at the end. An atomic is a DMA read and then a DMA
write of the same elements, and blocks until the write has committed. Timing per call is the
contract of :mod:`kernbench.hw.pe`.

With ``depth`` (``num_stages``) 1 every call blocks: ``t`` is when it ended. With 2 or more
``t`` is the next dispatch: a load returns a :class:`~kernbench.runtime.stages.Stage` at once,
a call on blocks returns when its result will be ready and the program goes on, and only
reading a pending load waits (docs/kernels.md, "The PE pipeline"; ADR 0027).
"""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kernbench.core.errors import AllocationError, KernbenchError, KernelError
from kernbench.core.units import fmt_bytes
from kernbench.hw.pe import Pe
from kernbench.lang.core import Block, Pointer
from kernbench.runtime.atomics import address_runs, atomic
from kernbench.runtime.hub import Hub
from kernbench.runtime.ipcq import Ipcq
from kernbench.runtime.stages import Rings, Stage
from kernbench.runtime.system import DmaRun, System
from kernbench.runtime.tensor import Tensor
from kernbench.topology.graph import Node


class Program:
    """The running program instance that ``kernbench.lang`` calls reach (one per grid point)."""

    def __init__(self, worker: "PeWorker", pid: tuple[int, int, int]):
        self.worker = worker
        self.pid = pid

    # -- the hooks kernbench.lang calls ----------------------------------------------------
    def program_id(self, axis: int) -> int:
        self._axis(axis)
        return self.pid[axis]

    def num_programs(self, axis: int) -> int:
        self._axis(axis)
        return self.worker.launch.grid[axis]

    def _axis(self, axis: int) -> None:
        if axis not in (0, 1, 2):
            raise KernelError(f"{self.worker.where}: grid axis must be 0, 1 or 2, got {axis!r}")

    def compute(self, name: str, ops: int, nbytes: int, inputs: Sequence[Any] = ()) -> float:
        return self.worker.math(ops, nbytes, inputs)

    def gemm(
        self, m: int, n: int, k: int, operand_bytes: int, dtype: str, inputs: Sequence[Any] = ()
    ) -> float:
        return self.worker.gemm(m, n, k, operand_bytes, dtype, inputs)

    def stages(self, depth: int) -> int:
        """Set the pipelining depth for the loads that follow (``tl.range(...,
        num_stages=)``); returns the previous depth."""
        return self.worker.set_depth(depth)

    def tcm_alloc(self, nbytes: int, what: str) -> None:
        self.worker.tcm_alloc(nbytes, what)

    def tcm_free(self, nbytes: int) -> None:
        self.worker.pe.tcm_used -= nbytes

    def load(self, ptr: Pointer, mask: np.ndarray | None, site: Any = None) -> Any:
        return self.worker.load(ptr, mask, site)

    def timestamp(self, name: str) -> None:
        w = self.worker
        # Pipelined, a mark is when every call issued so far has finished computing.
        w.marks[name] = max(w.t, w.pe.slot_free_at) if w.depth >= 2 else w.t

    def pe_id(self) -> tuple[int, int, int]:
        w = self.worker
        return (w.sip, w.cube, w.index)

    def neighbor(self, direction: str) -> tuple[int, int, int] | None:
        return self.worker.ipcq.neighbor(self.pe_id(), direction)

    def _peer(self, peer: Any, what: str) -> tuple[int, int, int]:
        if isinstance(peer, str):
            found = self.neighbor(peer)
            if found is None:
                raise KernelError(
                    f"{self.worker.where}: {what}: no neighbour {peer} of this PE (grid edge)"
                )
            return found
        return self.worker.ipcq.check(peer, f"{self.worker.where}: {what}")

    def send(self, dst: Any, data: np.ndarray, ready: float = 0.0) -> None:
        w = self.worker
        if ready > w.t:  # the block must exist before it can be read from TCM
            w.t = ready
        w.ipcq.send(w, self._peer(dst, "tl.send"), data)

    def recv(self, src: Any) -> np.ndarray:
        return self.worker.ipcq.recv(self.worker, self._peer(src, "tl.recv"))

    def store(
        self, ptr: Pointer, data: np.ndarray, mask: np.ndarray | None, src: Any = None
    ) -> None:
        self.worker.store(ptr, data, mask, src)

    def atomic(
        self,
        name: str,
        ptr: Pointer,
        mask: np.ndarray | None,
        release: bool,
        update: Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray],
    ) -> np.ndarray:
        w = self.worker
        if w.depth >= 2:  # its operands are computed: wait for the PE's compute
            w.t = max(w.t, w.pe.slot_free_at)
        return w.atomic(name, ptr, mask, release, update)


class PeWorker:
    """Runs a launch's programs on one PE and keeps its local clock."""

    def __init__(self, launch: Any, pe: Pe, sip: int, cube: int, index: int, node: Node):
        self.launch = launch
        self.pe = pe
        self.sip = sip
        self.cube = cube
        self.index = index
        self.node = node  # the PE's DMA endpoint on its router
        self.system: System = launch.system
        self.hub: Hub = launch.hub
        self.t = 0.0
        self.pending: list[Any] = []
        self.start_ns = 0.0
        self.end_ns = 0.0
        self.programs = 0
        self.marks: dict[str, float] = {}
        self.depth = launch.num_stages  # loads in flight per load site; 1 = blocking
        self.rings = Rings()
        segment = self.system.topology.address
        self._offset_bits = segment.offset_bits
        self._slice_bytes = segment.slice_bytes

    @property
    def ipcq(self) -> "Ipcq":
        return Ipcq.of(self.system)

    @property
    def where(self) -> str:
        return f"kernel {self.launch.kernel_name} on {self.pe.name}"

    # -- the worker's life -----------------------------------------------------------------
    def run(self, programs: list[tuple[int, int, int]], kernel: Callable[..., Any]) -> None:
        import greenlet

        g = greenlet.getcurrent()
        self.t = self.start_ns = self.system.now
        try:
            self._run(programs, kernel, g)
        except BaseException:
            self.rings.abandon()  # a failed launch leaves the PE's TCM as it found it
            raise

    def _run(
        self, programs: list[tuple[int, int, int]], kernel: Callable[..., Any], g: Any
    ) -> None:
        for pid in programs:
            g.kernel_program = Program(self, pid)
            self.depth = self.launch.num_stages
            try:
                kernel(*self.launch.args, **self.launch.meta)
            except (KernelError, AllocationError) as exc:
                # kernbench.lang knows no PE: name the kernel, the PE and the program here.
                if self.where in str(exc):
                    raise
                raise type(exc)(f"{self.where}, program {pid}: {exc}") from exc
            except KernbenchError:
                raise
            except Exception as exc:
                raise KernelError(
                    f"{self.where}, program {pid}: {type(exc).__name__}: {exc}"
                ) from exc
            finally:
                g.kernel_program = None
            self.programs += 1
        self._drain()
        for ev in self.pending:
            self.hub.wait(ev, f"{self.where}: store to be committed")
            self.t = max(self.t, self.system.now)
        self.end_ns = self.t

    # -- the pipeline ------------------------------------------------------------------------
    def set_depth(self, depth: int) -> int:
        previous = self.depth
        if depth < 2 <= previous:
            self._drain()
        self.depth = depth
        return previous

    def _drain(self) -> None:
        """Empty the pipeline: every load landed and released, every call finished."""
        free = self.rings.drain()
        self.t = max(self.t, free, self.pe.slot_free_at)

    @staticmethod
    def _operands(t: float, inputs: Sequence[Any]) -> float:
        """When a call issued at ``t`` has its operands: the latest of their ``ready``."""
        for b in inputs:
            if isinstance(b, Block) and b.ready > t:
                t = b.ready
        return t

    @staticmethod
    def _consumed(inputs: Sequence[Any], end_ns: float) -> None:
        """The call that read ``inputs`` ends at ``end_ns``: a loaded buffer is in use until
        then."""
        for b in inputs:
            if isinstance(b, Block):
                stage = b.root()._stage
                if stage is not None:
                    stage.used_until(end_ns)

    # -- PE-local work ---------------------------------------------------------------------
    def math(self, ops: int, nbytes: int, inputs: Sequence[Any] = ()) -> float:
        """A call on blocks: dispatch, then ``ops`` operations on pe_math (none for index and
        address arithmetic, which the address generator does). Returns when its result is
        ready; pipelined, the program goes on after the dispatch."""
        pe = self.pe
        t = pe.dispatch(self.t)
        if self.depth < 2:
            self.t = pe.compute(pe.math, t, pe.spec.math_ns(ops), nbytes, 0) if ops else t
            return self.t
        start = self._operands(t, inputs)
        end = pe.compute(pe.math, start, pe.spec.math_ns(ops), nbytes, 0) if ops else start
        self._consumed(inputs, end)
        self.t = t
        return end

    def gemm(
        self, m: int, n: int, k: int, operand_bytes: int, dtype: str, inputs: Sequence[Any] = ()
    ) -> float:
        """A ``tl.dot`` of ``dtype`` operands (a numpy dtype name): dispatch, then pe_gemm."""
        pe = self.pe
        t = pe.dispatch(self.t)
        busy = pe.spec.gemm_ns(m, n, k, operand_bytes, dtype == "float32")
        flops = pe.gemm_flops
        flops[dtype] = flops.get(dtype, 0) + 2 * m * n * k  # the energy model's FLOPs by dtype
        if self.depth < 2:
            pe.tcm_read.serve(t, operand_bytes / pe.spec.tcm_read_bw_gbs, operand_bytes)
            self.t = pe.compute(pe.gemm, t, busy, 2 * m * n * k, 0)
            return self.t
        start = max(self._operands(t, inputs), pe.slot_free_at)
        pe.tcm_read.serve(start, operand_bytes / pe.spec.tcm_read_bw_gbs, operand_bytes)
        end = pe.compute(pe.gemm, start, busy, 2 * m * n * k, 0)
        self._consumed(inputs, end)
        self.t = t
        return end

    def tcm_alloc(self, nbytes: int, what: str) -> None:
        pe = self.pe
        if pe.tcm_used + nbytes > pe.spec.tcm_bytes:
            held, fix = "live blocks", "use smaller tiles"
            if self.depth >= 2:
                held = f"live blocks and the buffers of loads in flight (num_stages={self.depth})"
                fix = "use smaller tiles or fewer stages (num_stages)"
            raise AllocationError(
                f"{self.where}: {what} ({fmt_bytes(nbytes)}) does not fit TCM: "
                f"{fmt_bytes(pe.spec.tcm_bytes)} capacity (hw.pe.tcm_bytes), "
                f"{fmt_bytes(pe.tcm_used)} held by {held}; {fix}"
            )
        pe.tcm_used += nbytes
        if pe.tcm_used > pe.tcm_peak:
            pe.tcm_peak = pe.tcm_used

    # -- DMA -------------------------------------------------------------------------------
    def _elements(
        self, op: str, ptr: Pointer, mask: np.ndarray | None
    ) -> tuple[Tensor, np.ndarray, np.ndarray | None]:
        tensor = ptr.target
        if not isinstance(tensor, Tensor):
            raise KernelError(f"{self.where}: tl.{op} through a pointer to {tensor!r}")
        if tensor.freed:
            raise KernelError(f"{self.where}: tl.{op} of tensor {tensor.name!r} after it was freed")
        flat = ptr.offsets.reshape(-1)
        valid = None if mask is None else mask.reshape(-1)
        idx = flat if valid is None else flat[valid]
        bad = (idx < 0) | (idx >= tensor.numel)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            pos = first if valid is None else int(np.flatnonzero(valid)[first])
            at = np.unravel_index(pos, ptr.offsets.shape) if ptr.offsets.ndim else ()
            raise KernelError(
                f"{self.where}: tl.{op} out of bounds of tensor {tensor.name!r} "
                f"({'x'.join(map(str, tensor.shape))}, {tensor.numel} elements): offset "
                f"{int(idx[first])} at block index {tuple(int(i) for i in at)}; mask it "
                f"(mask=offsets < n)"
            )
        return tensor, idx, valid

    def _segments(self, addrs: np.ndarray) -> np.ndarray:
        mask = (1 << self._offset_bits) - 1
        return (addrs >> self._offset_bits) * 4096 + (addrs & mask) // self._slice_bytes

    def runs(self, tensor: Tensor, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
        """The distinct addresses of elements ``idx`` of ``tensor`` (sorted), where each
        element's value sits among them, and their contiguous runs within HBM slices."""
        addrs = tensor.addresses(idx, self.cube, self.index)
        uniq, inverse = np.unique(addrs, return_inverse=True)
        return uniq, inverse, address_runs(uniq, tensor.dtype.itemsize, self._segments(uniq))

    def load(self, ptr: Pointer, mask: np.ndarray | None, site: Any = None) -> Any:
        """Blocking: the loaded values. Pipelined: a :class:`Stage` whose DMA is in flight."""
        tensor, idx, valid = self._elements("load", ptr, mask)
        shape = ptr.offsets.shape
        if idx.size == 0:
            self.t = self.pe.dispatch(self.t)
            return np.zeros(shape, tensor.dtype)
        if self.depth < 2:  # blocking: wait for the data now
            self.t = self.pe.dispatch(self.t)
            return self.land(self._read(tensor, idx, valid, shape))
        free = self.rings.take(site, self.depth)
        if free > self.t:
            self.t = free
        self.t = self.pe.dispatch(self.t)
        stage = self._read(tensor, idx, valid, shape)
        self.rings.add(site, stage)
        return stage

    def _read(
        self, tensor: Tensor, idx: np.ndarray, valid: np.ndarray | None, shape: tuple[int, ...]
    ) -> Stage:
        """One DMA read of the elements' runs, issued at the program's time ``t``."""
        uniq, inverse, runs = self.runs(tensor, idx)
        size = tensor.dtype.itemsize
        dma_runs: list[DmaRun] = [(int(uniq[i]), n * size, None) for i, n in runs]
        ev = self.system.dma(self.node, "read", dma_runs, self.t)
        return Stage(self, ev, np.zeros(shape, tensor.dtype), inverse, valid)

    def land(self, stage: Stage) -> np.ndarray:
        """Wait for a pipelined load's data; the program's issue stalls until they are in
        TCM. Returns the block's values."""
        grant, completions = self.hub.wait(stage.event, f"{self.where}: tl.load")
        raw = np.concatenate([c.data for c in completions])
        values = raw.view(stage.dtype)[stage.inverse]
        pe = self.pe
        tcm_end = pe.tcm_write.serve(grant, raw.size / pe.spec.tcm_write_bw_gbs, raw.size)
        now = self.system.now
        stage.ready = now if now > tcm_end else tcm_end
        if stage.ready > self.t:
            self.t = stage.ready
        out = stage.placeholder.reshape(-1)
        if stage.valid is None:
            out[:] = values
        else:
            out[stage.valid] = values
        result = out.reshape(stage.placeholder.shape)
        return result if stage.post is None else stage.post(result)

    def _writable(self, op: str, tensor: Tensor) -> None:
        if any(len(s.copies) > 1 for s in tensor.shards):
            raise KernelError(
                f"{self.where}: tl.{op} into tensor {tensor.name!r}, which is replicated; "
                f"{op} into a tensor placed row- or column-wise (one copy per element)"
            )

    def store(
        self, ptr: Pointer, data: np.ndarray, mask: np.ndarray | None, src: Any = None
    ) -> None:
        """Posted: the block is read from TCM once it exists, then written by one DMA; the
        program goes on after the TCM read (blocking) or the dispatch (pipelined)."""
        tensor, idx, valid = self._elements("store", ptr, mask)
        self._writable("store", tensor)
        pe = self.pe
        t = issued = pe.dispatch(self.t)
        if idx.size == 0:
            self.t = t
            return
        if self.depth >= 2 and isinstance(src, Block) and src.ready > t:
            t = src.ready
        flat = data.reshape(-1)
        vals = flat if valid is None else flat[valid]
        addrs = tensor.addresses(idx, self.cube, self.index)
        # The last store to an address wins, as a sequential program would leave it.
        rev_uniq, rev_first = np.unique(addrs[::-1], return_index=True)
        chosen = vals[::-1][rev_first]
        size = tensor.dtype.itemsize
        raw = np.ascontiguousarray(chosen).view(np.uint8)
        t = pe.tcm_read.serve(t, raw.size / pe.spec.tcm_read_bw_gbs, raw.size)
        runs = address_runs(rev_uniq, size, self._segments(rev_uniq))
        dma_runs: list[DmaRun] = [
            (int(rev_uniq[i]), n * size, raw[i * size : (i + n) * size]) for i, n in runs
        ]
        self.pending.append(self.system.dma(self.node, "write", dma_runs, t))
        if self.depth >= 2:
            self._consumed((src,), t)
            t = issued
        self.t = t

    def atomic(
        self,
        name: str,
        ptr: Pointer,
        mask: np.ndarray | None,
        release: bool,
        update: Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray],
    ) -> np.ndarray:
        """A read-modify-write at the memory (kernbench.runtime.atomics)."""
        return atomic(self, name, ptr, mask, release, update)
