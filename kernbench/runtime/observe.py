"""What a run observed, as plain data for the report layer (docs/traces.md, ADR 0009).

:func:`topology_record` describes the graph once; :func:`system_record` captures one system's
statistics and spans after it ran. Both hold only str, int, float, lists and dicts, so the
report layer renders them without touching live objects.
"""

from typing import Any

from kernbench.runtime.energy import (
    EnergyPlan,
    edge_energy_pj,
    gemm_pj,
    hbm_pj,
    math_pj,
    system_energy,
    tcm_pj,
)
from kernbench.runtime.system import System
from kernbench.topology import Topology


def _group(sip: int, cube: int, name: str) -> str:
    """The Perfetto process a component belongs to: host, switch, a SIP's IO chiplet or a cube."""
    if sip < 0:
        return name.split(".", 1)[0]
    return f"sip{sip}.cube{cube}" if cube >= 0 else f"sip{sip}.io"


def topology_record(topology: Topology) -> dict[str, Any]:
    g = topology.graph
    t = topology.spec.topology
    nodes = g.nodes
    edges = []
    classes = EnergyPlan.of(topology).classes
    for e in g.edges:
        a, b = nodes[e.src], nodes[e.dst]
        edges.append(
            {
                "name": e.name,
                "src": a.name,
                "dst": b.name,
                "bw_gbs": e.bw_gbs,
                "group": _group(a.sip, a.cube, a.name),
                "sip": a.sip if a.sip >= 0 else b.sip,
                "src_cube": a.cube,
                "dst_cube": b.cube,
                "link_class": classes[e.id],
            }
        )
    return {
        "name": t.name,
        "sips": t.sips,
        "mesh_w": t.mesh_w,
        "mesh_h": t.mesh_h,
        "hbm_channels": topology.spec.hw.hbm.pseudo_channels,
        "edges": edges,
    }


def system_record(system: System, label: str) -> dict[str, Any]:
    """One system's statistics (``summary``) and spans (``full``) after its run."""
    system.close_spans()
    topo = system.topology
    nodes = {n.name: n for n in topo.graph.nodes}
    st = system.transfers.stats
    en = system.spec.hw.energy
    units = []
    for ctrl in system.hbm_controllers:
        n = nodes[ctrl.name]
        units.append(
            {
                "name": ctrl.name,
                "kind": "hbm",
                "group": _group(n.sip, n.cube, n.name),
                "capacity": ctrl.spec.pseudo_channels,
                "ops": ctrl.bursts,
                "bytes": ctrl.bytes_read + ctrl.bytes_written,
                "busy_ns": ctrl.busy_ns,
                "max_wait_ns": ctrl.max_wait_ns,
                "energy_pj": hbm_pj(en, ctrl.bytes_read, ctrl.bytes_written),
                "spans": [list(s) for s in ctrl.spans],
            }
        )
    for ch in system.dma_channels:
        n = nodes[ch.name.rsplit(".", 1)[0]]
        units.append(
            {
                "name": ch.name,
                "kind": "dma",
                "group": _group(n.sip, n.cube, n.name),
                "capacity": 1,
                "ops": ch.ops,
                "bytes": ch.bytes,
                "busy_ns": ch.busy_ns,
                "max_wait_ns": ch.max_wait_ns,
                "energy_pj": 0.0,  # the bytes a DMA moves are charged on links and memories
                "spans": [list(s) for s in ch.spans],
            }
        )
    for pe in system.pes:
        n = nodes[f"{pe.name}.dma"]
        unit_pj = {
            pe.gemm.name: gemm_pj(en, pe.gemm_flops),
            pe.math.name: math_pj(en, pe.math.busy_ns, pe.spec.math_tflops),
            pe.tcm_read.name: tcm_pj(en, pe.tcm_read.bytes, 0),
            pe.tcm_write.name: tcm_pj(en, 0, pe.tcm_write.bytes),
        }
        for unit in pe.units:
            if unit.ops == 0:
                continue
            units.append(
                {
                    "name": unit.name,
                    "kind": unit.kind,
                    "group": _group(n.sip, n.cube, n.name),
                    "capacity": 1,
                    "ops": unit.ops,
                    "bytes": unit.bytes,
                    "busy_ns": unit.busy_ns,
                    "max_wait_ns": unit.max_wait_ns,
                    "energy_pj": unit_pj.get(unit.name, 0.0),  # dispatch: in static power
                    "spans": [list(s) for s in unit.spans],
                }
            )
    return {
        "label": label,
        "duration_ns": system.now,
        "links": {
            "bytes": list(st.bytes),
            "flits": list(st.flits),
            "busy_ns": list(st.busy_ns),
            "max_wait_ns": list(st.max_wait_ns),
            "energy_pj": edge_energy_pj(system),
        },
        "energy": system_energy(system).to_dict(),
        "link_spans": [list(s) for s in system.transfers.spans],
        "units": units,
    }
