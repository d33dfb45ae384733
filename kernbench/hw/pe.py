"""A processing element: pe_cpu, pe_scheduler, pe_dma, pe_gemm, pe_math and pe_tcm.

Fidelity (data path): a DMA issued at a PE passes pe_cpu (``cpu_overhead_ns``) and
pe_scheduler (``scheduler_overhead_ns``), then waits for its DMA channel. The DMA has one read
and one write channel; each is a capacity-1 resource held from grant to completion, so DMAs
of one direction on one PE run one after the other (the next one's pe_cpu and pe_scheduler
work overlaps the running one). A DMA's latency counts from issue, waiting included. Flits
leave the DMA engine at the rate of the PE's router link. Compute units and TCM timing come
with the kernel runtime.
"""

from dataclasses import dataclass
from typing import ClassVar

from kernbench.core.specs import check_non_negative, check_positive, param


@dataclass(frozen=True)
class PeSpec:
    KEY: ClassVar[str] = "hw.pe"

    cpu_overhead_ns: float = param(2.0, "pe_cpu overhead per command, ns")
    scheduler_overhead_ns: float = param(1.0, "pe_scheduler overhead per command, ns")
    tcm_bytes: int = param(16 * 1024 * 1024, "scratchpad (TCM) capacity, bytes")
    tcm_read_bw_gbs: float = param(512.0, "TCM read bandwidth, GB/s")
    tcm_write_bw_gbs: float = param(512.0, "TCM write bandwidth, GB/s")
    gemm_tflops_fp16: float = param(8.0, "pe_gemm fp16 peak, TFLOP/s (fp32 at half rate)")
    math_tflops: float = param(1.0, "pe_math elementwise / reduction throughput, TFLOP/s")

    def __post_init__(self) -> None:
        check_non_negative(self, "cpu_overhead_ns", "scheduler_overhead_ns")
        check_positive(
            self,
            "tcm_bytes",
            "tcm_read_bw_gbs",
            "tcm_write_bw_gbs",
            "gemm_tflops_fp16",
            "math_tflops",
        )
