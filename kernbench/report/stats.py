"""Per-link and per-unit statistics of a run, from its observation records (docs/traces.md).

Every directed edge and every unit the run used (HBM controllers, PE DMA channels) becomes a
row; counters are summed over the systems a bench started and utilization is taken over the
run's simulated time (the sum of the systems' run times), the same ``sim_time_ns`` the summary
reports.
"""

import csv
from collections.abc import Mapping
from operator import add
from pathlib import Path
from typing import Any

COLUMNS = [
    "kind",
    "name",
    "src",
    "dst",
    "group",
    "bw_gbs",
    "bytes",
    "flits",
    "busy_ns",
    "utilization",
    "max_wait_ns",
    "peak_queue_bytes",
    "link_class",
    "energy_pj",
]


def total_time_ns(obs: Mapping[str, Any]) -> float:
    return float(sum(s["duration_ns"] for s in obs.get("systems", [])))


def link_rows(obs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per directed edge (``kind=link``) and per unit (``hbm``, ``dma``).

    ``flits`` counts bursts for an HBM controller and DMAs for a DMA channel. A unit's
    utilization divides its busy time by its capacity (an HBM controller's pseudo-channels).
    ``peak_queue_bytes`` of a link is ``max_wait_ns × bw_gbs``: under the flit model the
    largest backlog a flit found ahead of it; under the fluid model, whose ``max_wait_ns`` is
    the longest delay of a transfer the link held back (LinkStats), what the link could have
    carried meanwhile. Bytes, flits and busy time are exact and the same under both models.
    ``energy_pj`` is what the energy model charges the link's bytes or the unit's work
    (docs/energy.md); ``link_class`` is the link's price class (noc, ucie, pcie, switch).
    """
    if not obs:
        return []
    edges = obs["topology"]["edges"]
    total = total_time_ns(obs)
    n = len(edges)
    nbytes, flits, busy, wait = [0] * n, [0] * n, [0.0] * n, [0.0] * n
    energy = [0.0] * n
    units: dict[str, dict[str, Any]] = {}
    for system in obs["systems"]:
        links = system["links"]
        # Element-wise over the edges, in C: a run may start many systems of many edges.
        nbytes = list(map(add, nbytes, links["bytes"]))
        flits = list(map(add, flits, links["flits"]))
        busy = list(map(add, busy, links["busy_ns"]))
        wait = list(map(max, wait, links["max_wait_ns"]))
        energy = list(map(add, energy, links.get("energy_pj", energy)))
        for u in system["units"]:
            row = units.setdefault(
                u["name"],
                {
                    "kind": u["kind"],
                    "name": u["name"],
                    "src": "",
                    "dst": "",
                    "group": u["group"],
                    "bw_gbs": "",
                    "bytes": 0,
                    "flits": 0,
                    "busy_ns": 0.0,
                    "capacity": u["capacity"],
                    "max_wait_ns": 0.0,
                    "peak_queue_bytes": "",
                    "link_class": "",
                    "energy_pj": 0.0,
                },
            )
            row["energy_pj"] += u.get("energy_pj", 0.0)
            row["bytes"] += u["bytes"]
            row["flits"] += u["ops"]
            row["busy_ns"] += u["busy_ns"]
            row["max_wait_ns"] = max(row["max_wait_ns"], u["max_wait_ns"])
    rows = []
    for i, e in enumerate(edges):
        rows.append(
            {
                "kind": "link",
                "name": e["name"],
                "src": e["src"],
                "dst": e["dst"],
                "group": e["group"],
                "bw_gbs": e["bw_gbs"],
                "bytes": nbytes[i],
                "flits": flits[i],
                "busy_ns": busy[i],
                "utilization": busy[i] / total if total > 0 else 0.0,
                "max_wait_ns": wait[i],
                "peak_queue_bytes": wait[i] * e["bw_gbs"],
                "link_class": e.get("link_class", ""),
                "energy_pj": energy[i],
            }
        )
    for row in sorted(units.values(), key=lambda r: (r["kind"], r["name"])):
        capacity = row.pop("capacity")
        row["utilization"] = row["busy_ns"] / (capacity * total) if total > 0 else 0.0
        rows.append(row)
    return rows


def write_links_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows([row[k] for k in COLUMNS] for row in rows)


def hottest_tables(rows: list[dict[str, Any]], top: int = 10) -> list[dict[str, Any]]:
    """The ``top`` most utilized links and units, as report tables."""

    def key(r: dict[str, Any]) -> tuple[float, float]:
        return (-r["utilization"], -r["busy_ns"])

    links = sorted((r for r in rows if r["kind"] == "link"), key=key)
    units = sorted((r for r in rows if r["kind"] != "link"), key=key)
    links = [r for r in links if r["busy_ns"] > 0][:top]
    units = [r for r in units if r["busy_ns"] > 0][:top]
    return [
        {
            "title": f"Hottest links (top {top} by utilization)",
            "columns": [
                "link",
                "bw_gbs",
                "bytes",
                "busy_ns",
                "utilization",
                "max_wait_ns",
                "peak_queue_bytes",
            ],
            "rows": [
                [
                    r["name"],
                    r["bw_gbs"],
                    r["bytes"],
                    round(r["busy_ns"], 3),
                    f"{r['utilization']:.2%}",
                    round(r["max_wait_ns"], 3),
                    round(r["peak_queue_bytes"], 1),
                ]
                for r in links
            ],
        },
        {
            "title": f"Hottest units (top {top} by utilization)",
            "columns": ["unit", "kind", "bytes", "ops", "busy_ns", "utilization", "max_wait_ns"],
            "rows": [
                [
                    r["name"],
                    r["kind"],
                    r["bytes"],
                    r["flits"],
                    round(r["busy_ns"], 3),
                    f"{r['utilization']:.2%}",
                    round(r["max_wait_ns"], 3),
                ]
                for r in units
            ],
        },
    ]
