"""Energy of a run, from the counters the simulator keeps anyway (``hw.energy``, ADR 0030).

Nothing here runs during the simulation: when a system has run, :func:`system_energy` turns
its counters into picojoules with the prices of :class:`~kernbench.hw.energy.EnergySpec`:

- links: bytes per directed edge (``LinkStats``, kept at every trace level) times the edge's
  price per byte, by class (:func:`link_class`);
- HBM: bytes read and written per controller; TCM: bytes through each PE's TCM read and write
  channels; shared SRAM: the bytes leaving it (read) and entering it (written) on its router
  link;
- pe_gemm: its FLOPs by operand dtype (``Pe.gemm_flops``); pe_math: its operations, which are
  its busy time times its rate (``hw.pe.math_tflops``), since it charges exactly
  ``ops / rate``;
- static: the static power of every PE, cube and IO chiplet of the topology times the system's
  simulated time.

Units: pJ throughout; 1 W for 1 ns is 1000 pJ.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import mul
from typing import Any

from kernbench.hw.energy import EnergySpec
from kernbench.runtime.system import System
from kernbench.topology import Topology
from kernbench.topology.graph import Edge, Graph

LINK_CLASSES = ("noc", "ucie", "pcie", "switch")
# The split a report shows, in this order; the components sum to the total.
COMPONENTS = (*LINK_CLASSES, "hbm", "tcm", "sram", "gemm", "math", "static")
PJ_PER_W_NS = 1e3  # 1 W for 1 ns = 1e-9 J = 1000 pJ


def link_class(graph: Graph, edge: Edge) -> str:
    """``ucie`` between two UCIe ports (a die-to-die crossing); ``pcie`` on the host's link (to
    the package or, with several SIPs, to the switch); ``switch`` between the switch and a
    SIP; ``noc`` for every on-die link (router mesh, endpoints, port-to-router, IO NOC)."""
    a, b = graph.nodes[edge.src].name, graph.nodes[edge.dst].name
    if "host" in (a, b):
        return "pcie"
    if "switch" in (a, b):
        return "switch"
    if _is_ucie_port(a) and _is_ucie_port(b):
        return "ucie"
    return "noc"


def _is_ucie_port(name: str) -> bool:
    # cube ports are "<cube>.ucie.<dir>", IO chiplet PHYs "sip<s>.io.ucie<row>"
    return ".ucie." in name or name.rsplit(".", 1)[-1].startswith("ucie")


@dataclass(frozen=True)
class EnergyPlan:
    """What a topology's edges cost: pJ per byte of each edge, the edges of each link class and
    the shared SRAMs' read and write edges. One per topology (cached in ``Topology.memo``)."""

    pj_per_byte: tuple[float, ...]
    classes: tuple[str, ...]
    by_class: dict[str, tuple[int, ...]]
    sram_read: tuple[int, ...]
    sram_write: tuple[int, ...]
    static_w: float

    @classmethod
    def of(cls, topology: Topology) -> "EnergyPlan":
        plan = topology.memo.get("energy")
        if plan is None:
            plan = topology.memo["energy"] = cls._build(topology)
        return plan

    @classmethod
    def _build(cls, topology: Topology) -> "EnergyPlan":
        spec = topology.spec
        en = spec.hw.energy
        g = topology.graph
        per_bit = {
            "ucie": en.ucie_pj_per_bit,
            "pcie": en.pcie_pj_per_bit,
            "switch": en.switch_pj_per_bit,
        }
        classes, prices = [], []
        by_class: dict[str, list[int]] = {c: [] for c in LINK_CLASSES}
        sram_read, sram_write = [], []
        for e in g.edges:
            c = link_class(g, e)
            classes.append(c)
            by_class[c].append(e.id)
            if c == "noc":
                bit = en.noc_pj_per_bit + en.noc_wire_pj_per_bit_mm * e.length_mm
            else:
                bit = per_bit[c]
            prices.append(8.0 * bit)
            if g.nodes[e.src].name.endswith(".sram"):
                sram_read.append(e.id)
            elif g.nodes[e.dst].name.endswith(".sram"):
                sram_write.append(e.id)
        t, hw = spec.topology, spec.hw
        per_sip = en.io_static_w + t.cubes * (en.cube_static_w + hw.cube.pes * en.pe_static_w)
        return cls(
            pj_per_byte=tuple(prices),
            classes=tuple(classes),
            by_class={c: tuple(ids) for c, ids in by_class.items()},
            sram_read=tuple(sram_read),
            sram_write=tuple(sram_write),
            static_w=t.sips * per_sip,
        )


@dataclass
class Energy:
    """Energy of one or more systems' runs: pJ per component (:data:`COMPONENTS`), the
    pe_gemm FLOPs executed and the simulated time it was spent over."""

    components_pj: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COMPONENTS, 0.0))
    gemm_flops: int = 0
    duration_ns: float = 0.0

    @property
    def total_pj(self) -> float:
        return sum(self.components_pj.values())

    def __add__(self, other: "Energy") -> "Energy":
        return Energy(
            {c: self.components_pj[c] + other.components_pj[c] for c in COMPONENTS},
            self.gemm_flops + other.gemm_flops,
            self.duration_ns + other.duration_ns,
        )

    def __sub__(self, earlier: "Energy") -> "Energy":
        """What was spent between two snapshots of one system (``earlier`` taken first)."""
        return Energy(
            {c: self.components_pj[c] - earlier.components_pj[c] for c in COMPONENTS},
            self.gemm_flops - earlier.gemm_flops,
            self.duration_ns - earlier.duration_ns,
        )

    def metrics(self, tokens_per_s: float | None = None) -> dict[str, float]:
        """``energy_uj``; with simulated time ``avg_power_w``; with pe_gemm FLOPs
        ``tflops_per_w``; given a bench's ``tokens_per_s``, ``tokens_per_j`` (docs/metrics.md)."""
        total = self.total_pj
        out = {"energy_uj": total * 1e-6}
        power = total / self.duration_ns / PJ_PER_W_NS if self.duration_ns > 0 else 0.0
        if self.duration_ns > 0:
            out["avg_power_w"] = power
        if self.gemm_flops > 0 and total > 0:
            out["tflops_per_w"] = self.gemm_flops / total  # TFLOP/s per W = TFLOP/J = FLOP/pJ
        if tokens_per_s is not None and power > 0:
            out["tokens_per_j"] = tokens_per_s / power
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``summary.json``: totals and the split in µJ."""
        return {
            "total_uj": self.total_pj * 1e-6,
            "components_uj": {c: v * 1e-6 for c, v in self.components_pj.items()},
            "gemm_flops": self.gemm_flops,
            "duration_ns": self.duration_ns,
        }


def total_energy(systems: Iterable[System]) -> Energy:
    out = Energy()
    for s in systems:
        out = out + system_energy(s)
    return out


def system_energy(system: System) -> Energy:
    """The energy of ``system``'s run so far: a snapshot, so that a bench can take the energy
    of a window (``end - start``) once every transfer issued before each snapshot is done."""
    plan = EnergyPlan.of(system.topology)
    en = system.spec.hw.energy
    nbytes = system.transfers.stats.bytes
    pj = dict.fromkeys(COMPONENTS, 0.0)
    price = plan.pj_per_byte
    for c, ids in plan.by_class.items():
        pj[c] = sum(nbytes[e] * price[e] for e in ids)
    pj["sram"] = 8.0 * (
        sum(nbytes[e] for e in plan.sram_read) * en.sram_read_pj_per_bit
        + sum(nbytes[e] for e in plan.sram_write) * en.sram_write_pj_per_bit
    )
    for ctrl in system.hbm_controllers:
        pj["hbm"] += hbm_pj(en, ctrl.bytes_read, ctrl.bytes_written)
    flops = 0
    for pe in system.pes:
        pj["tcm"] += tcm_pj(en, pe.tcm_read.bytes, pe.tcm_write.bytes)
        pj["gemm"] += gemm_pj(en, pe.gemm_flops)
        pj["math"] += math_pj(en, pe.math.busy_ns, pe.spec.math_tflops)
        flops += sum(pe.gemm_flops.values())
    pj["static"] = plan.static_w * system.now * PJ_PER_W_NS
    return Energy(pj, flops, system.now)


def hbm_pj(en: EnergySpec, bytes_read: int, bytes_written: int) -> float:
    return 8.0 * (bytes_read * en.hbm_read_pj_per_bit + bytes_written * en.hbm_write_pj_per_bit)


def tcm_pj(en: EnergySpec, bytes_read: int, bytes_written: int) -> float:
    return 8.0 * (bytes_read * en.tcm_read_pj_per_bit + bytes_written * en.tcm_write_pj_per_bit)


def gemm_pj(en: EnergySpec, flops_by_dtype: dict[str, int]) -> float:
    return sum(n * en.gemm_pj_per_flop(dtype) for dtype, n in flops_by_dtype.items())


def math_pj(en: EnergySpec, busy_ns: float, math_tflops: float) -> float:
    # pe_math is busy ops / (math_tflops * 1e3) ns per call, so its ops are busy * rate
    return busy_ns * math_tflops * 1e3 * en.math_pj_per_op


def edge_energy_pj(system: System) -> list[float]:
    """pJ spent on each directed edge (its bytes at its price), indexed by edge id."""
    plan = EnergyPlan.of(system.topology)
    return list(map(mul, system.transfers.stats.bytes, plan.pj_per_byte))
