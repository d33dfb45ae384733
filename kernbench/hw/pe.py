"""A processing element: pe_cpu, pe_scheduler, pe_dma, pe_gemm, pe_math and pe_tcm.

Fidelity contract (docs/kernels.md):

- pe_cpu and pe_scheduler: every kernel-language call (``tl.load``, ``tl.dot``, an elementwise
  operation on a block, ...) is dispatched by pe_cpu (``cpu_overhead_ns``) and then
  pe_scheduler (``scheduler_overhead_ns``), one call after the other.
- pe_dma: one read and one write channel, each keeping up to ``dma_outstanding`` DMAs in
  flight (started in issue order, each held from grant to completion). A DMA moves one or
  more address runs; all runs of one DMA are in flight at once. Flits leave the DMA engine at
  the rate of the PE's router link.
- pe_gemm: ``tl.dot`` of an ``m x k`` by ``k x n`` block takes
  ``max(2*m*n*k / peak, operand bytes / tcm_read_bw) + gemm_fill_drain_ns``: operands stream
  from TCM while the array computes, and each call pays the pipeline fill and drain once.
  The peak is ``gemm_tflops_fp16`` for 16-bit and 8-bit inputs and half of it for fp32 inputs.
- pe_math: an elementwise operation on data costs one operation per output element, a reduction
  or a scan (``sum``, ``max``, ``argmax``, ``cumsum``, ...) one per input element, at
  ``math_tflops``. Every elementwise function costs the same, transcendental or not (``exp``,
  ``exp2``, ``log2``, ``sin``, ``cos``, ``rsqrt``, ``erf``, ``sigmoid`` and a fused ``fma`` as
  ``+``): ``math_tflops`` is a rate of elementwise results, not of FLOPs, and no published
  figure separates the functions; ``softmax`` is its five calls. Arithmetic on index and mask
  blocks and on pointers (``make_block_ptr``, ``advance``) runs in the address generator:
  dispatch only.
- atomics (``tl.atomic_*``) run at the memory, not on pe_math: a DMA read then a DMA write of
  the touched elements through pe_dma (docs/kernels.md).
- pe_gemm and pe_math share one accelerator slot (capacity 1): a PE computes one thing at a
  time.
- pe_tcm: ``tcm_bytes`` of scratchpad holding the blocks a kernel keeps alive (loaded data,
  accumulators, results of arithmetic on them; index and mask blocks are address-generator
  registers and do not count). Independent read and write channels: a load's bytes are written
  at ``tcm_write_bw_gbs`` from the moment its DMA starts (so a load ends no earlier than
  start + bytes / write bandwidth); a store's block is read at ``tcm_read_bw_gbs`` before its
  write DMA is posted.

With ``num_stages`` >= 2 the calls overlap: pe_cpu and pe_scheduler dispatch in order and
the program does not wait for a call's result, only for a pending load's data when it reads
them; a unit starts a call once its operands are ready (docs/kernels.md, "The PE pipeline").

Ignored: instruction fetch, register files, bank conflicts in TCM.
"""

from dataclasses import dataclass
from typing import ClassVar

from kernbench.core.errors import ConfigError
from kernbench.core.specs import check_non_negative, check_positive, param
from kernbench.sim.observer import Observer


@dataclass(frozen=True)
class PeSpec:
    KEY: ClassVar[str] = "hw.pe"

    cpu_overhead_ns: float = param(2.0, "pe_cpu overhead per command, ns")
    scheduler_overhead_ns: float = param(1.0, "pe_scheduler overhead per command, ns")
    tcm_bytes: int = param(16 * 1024 * 1024, "scratchpad (TCM) capacity, bytes")
    tcm_read_bw_gbs: float = param(512.0, "TCM read bandwidth, GB/s")
    tcm_write_bw_gbs: float = param(512.0, "TCM write bandwidth, GB/s")
    gemm_tflops_fp16: float = param(8.0, "pe_gemm fp16 peak, TFLOP/s (fp32 at half rate)")
    gemm_fill_drain_ns: float = param(8.0, "pe_gemm pipeline fill + drain per tl.dot, ns")
    math_tflops: float = param(1.0, "pe_math elementwise / reduction throughput, TFLOP/s")
    dma_outstanding: int = param(
        4, "DMAs a PE's read (write) channel keeps in flight at once, in issue order"
    )

    def __post_init__(self) -> None:
        check_non_negative(self, "cpu_overhead_ns", "scheduler_overhead_ns", "gemm_fill_drain_ns")
        check_positive(
            self,
            "tcm_bytes",
            "tcm_read_bw_gbs",
            "tcm_write_bw_gbs",
            "gemm_tflops_fp16",
            "math_tflops",
            "dma_outstanding",
        )
        if isinstance(self.dma_outstanding, bool) or not isinstance(self.dma_outstanding, int):
            raise ConfigError(
                f"{self.KEY}.dma_outstanding",
                f"must be a positive integer, got {self.dma_outstanding!r}",
            )

    @property
    def dispatch_ns(self) -> float:
        """pe_cpu + pe_scheduler: the fixed cost of every kernel-language call."""
        return self.cpu_overhead_ns + self.scheduler_overhead_ns

    def gemm_ns(self, m: int, n: int, k: int, operand_bytes: int, fp32: bool = False) -> float:
        """Busy time of pe_gemm for one ``tl.dot`` (dispatch not included)."""
        peak_flop_per_ns = self.gemm_tflops_fp16 * 1e3 * (0.5 if fp32 else 1.0)
        compute = 2.0 * m * n * k / peak_flop_per_ns
        stream = operand_bytes / self.tcm_read_bw_gbs
        return max(compute, stream) + self.gemm_fill_drain_ns

    def math_ns(self, ops: int) -> float:
        """Busy time of pe_math for ``ops`` elementwise or reduction operations."""
        return ops / (self.math_tflops * 1e3)


class PeUnit:
    """A capacity-1 unit of a PE that serves work in the order it is given (busy-until).

    It counts operations, bytes, busy time and the longest wait; with ``sim.trace=full`` it
    keeps one span per operation: ``(op id, start, end, bytes, queued_ns)``.
    """

    __slots__ = (
        "name", "kind", "free_at", "ops", "bytes", "busy_ns", "max_wait_ns", "spans", "obs",
    )  # fmt: skip

    def __init__(self, name: str, kind: str, observer: Observer | None = None):
        self.name = name
        self.kind = kind
        self.free_at = 0.0
        self.ops = 0
        self.bytes = 0
        self.busy_ns = 0.0
        self.max_wait_ns = 0.0
        self.spans: list[tuple[int, float, float, int, float]] = []
        self.obs = observer if observer is not None and observer.full else None

    def serve(self, ready_ns: float, duration_ns: float, nbytes: int = 0, op_id: int = 0) -> float:
        """Start the work at ``ready_ns`` or when the unit frees; return when it ends."""
        start = ready_ns if ready_ns > self.free_at else self.free_at
        end = start + duration_ns
        self.free_at = end
        self.ops += 1
        self.bytes += nbytes
        self.busy_ns += duration_ns
        wait = start - ready_ns
        if wait > self.max_wait_ns:
            self.max_wait_ns = wait
        if self.obs is not None and duration_ns > 0 and self.obs.admit():
            self.spans.append((op_id, start, end, nbytes, wait))
        return end


class Pe:
    """Runtime state of one PE: its units and its TCM occupancy."""

    def __init__(self, name: str, spec: PeSpec, observer: Observer | None = None):
        self.name = name
        self.spec = spec
        self.cpu = PeUnit(f"{name}.cpu", "pe_cpu", observer)
        self.scheduler = PeUnit(f"{name}.sched", "pe_scheduler", observer)
        self.gemm = PeUnit(f"{name}.gemm", "pe_gemm", observer)
        self.math = PeUnit(f"{name}.math", "pe_math", observer)
        self.tcm_read = PeUnit(f"{name}.tcm.read", "pe_tcm", observer)
        self.tcm_write = PeUnit(f"{name}.tcm.write", "pe_tcm", observer)
        self.slot_free_at = 0.0  # the accelerator slot pe_gemm and pe_math share
        self.tcm_used = 0
        self.tcm_peak = 0
        # pe_gemm FLOPs by operand dtype name (pe_gemm's ``bytes`` counts them all together).
        self.gemm_flops: dict[str, int] = {}

    @property
    def units(self) -> tuple[PeUnit, ...]:
        return (self.cpu, self.scheduler, self.gemm, self.math, self.tcm_read, self.tcm_write)

    def dispatch(self, t: float, op_id: int = 0) -> float:
        """One kernel-language call through pe_cpu and pe_scheduler; returns when it is issued."""
        t = self.cpu.serve(t, self.spec.cpu_overhead_ns, op_id=op_id)
        return self.scheduler.serve(t, self.spec.scheduler_overhead_ns, op_id=op_id)

    def compute(self, unit: PeUnit, t: float, duration_ns: float, nbytes: int, op_id: int) -> float:
        """Run ``duration_ns`` of work on ``unit`` (pe_gemm or pe_math) in the shared slot."""
        ready = t if t > self.slot_free_at else self.slot_free_at
        end = unit.serve(ready, duration_ns, nbytes, op_id)
        self.slot_free_at = end
        return end
