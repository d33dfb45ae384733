"""The energy model: what moving a bit, storing it and computing on it costs, and what the
silicon draws while it is powered (``hw.energy``, docs/energy.md).

Fidelity: energy is charged per event the simulator already counts, never per cycle.

- Links: a bit crossing a directed edge costs the pJ/bit of the edge's class (``noc``, ``ucie``,
  ``pcie``, ``switch``; kernbench.runtime.energy classifies the edges); an on-die (NOC) edge
  also costs ``noc_wire_pj_per_bit_mm`` per mm of its length.
- Memories: a bit read or written in HBM (at its controller), in a PE's TCM (its read and write
  channels) or in a cube's shared SRAM (the bytes leaving and entering its router link) costs
  the memory's read or write pJ/bit.
- Compute: a pe_gemm FLOP costs the pJ/FLOP of its operand dtype (an int8 multiply-accumulate
  is two operations, as in the ``tflops`` metrics); a pe_math operation costs ``math_pj_per_op``.
- Static: every PE, cube (its NOC, HBM controllers and PHYs, m_cpu, SRAM) and IO chiplet of
  the topology draws its static power for the whole simulated time, busy or idle.

Not modelled: energy that depends on data values (toggle rates), DRAM activate/precharge and
refresh as separate terms (folded into HBM pJ/bit), control messages' compute in the CPUs,
voltage and frequency scaling, temperature.
"""

from dataclasses import dataclass, fields
from typing import ClassVar

from kernbench.core.specs import check_non_negative, param

# dtype name of a tl.dot operand -> the EnergySpec field with its pJ per FLOP.
GEMM_DTYPE_FIELDS = {
    "float16": "gemm_fp16_pj_per_flop",
    "bfloat16": "gemm_bf16_pj_per_flop",
    "float32": "gemm_fp32_pj_per_flop",
    "int8": "gemm_int8_pj_per_op",
}


@dataclass(frozen=True)
class EnergySpec:
    KEY: ClassVar[str] = "hw.energy"

    noc_pj_per_bit: float = param(0.1, "NOC link traversal (router + link logic) per bit, pJ")
    noc_wire_pj_per_bit_mm: float = param(0.1, "on-die wire per bit per mm of link length, pJ")
    ucie_pj_per_bit: float = param(0.5, "UCIe die-to-die crossing per bit, pJ")
    pcie_pj_per_bit: float = param(6.0, "host PCIe link per bit, pJ")
    switch_pj_per_bit: float = param(10.0, "switch port link (SerDes + crossbar) per bit, pJ")
    hbm_read_pj_per_bit: float = param(3.9, "HBM read per bit (array + TSV + PHY), pJ")
    hbm_write_pj_per_bit: float = param(3.9, "HBM write per bit (array + TSV + PHY), pJ")
    tcm_read_pj_per_bit: float = param(0.1, "TCM (PE scratchpad SRAM) read per bit, pJ")
    tcm_write_pj_per_bit: float = param(0.1, "TCM (PE scratchpad SRAM) write per bit, pJ")
    sram_read_pj_per_bit: float = param(0.4, "shared SRAM read per bit, pJ")
    sram_write_pj_per_bit: float = param(0.4, "shared SRAM write per bit, pJ")
    gemm_fp16_pj_per_flop: float = param(0.25, "pe_gemm per FLOP with fp16 operands, pJ")
    gemm_bf16_pj_per_flop: float = param(0.25, "pe_gemm per FLOP with bf16 operands, pJ")
    gemm_fp32_pj_per_flop: float = param(0.6, "pe_gemm per FLOP with fp32 operands, pJ")
    gemm_int8_pj_per_op: float = param(0.04, "pe_gemm per operation with int8 operands, pJ")
    math_pj_per_op: float = param(0.5, "pe_math per elementwise / reduction operation, pJ")
    pe_static_w: float = param(0.5, "static power of one PE, W")
    cube_static_w: float = param(4.0, "static power of one cube besides its PEs, W")
    io_static_w: float = param(5.0, "static power of one IO chiplet, W")

    def __post_init__(self) -> None:
        check_non_negative(self, *(f.name for f in fields(self)))

    def gemm_pj_per_flop(self, dtype: str) -> float:
        """pJ per pe_gemm FLOP for operands of ``dtype`` (a numpy dtype name)."""
        return float(getattr(self, GEMM_DTYPE_FIELDS[dtype]))
