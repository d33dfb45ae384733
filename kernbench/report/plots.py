"""Plots of a run (matplotlib, Agg backend, PNG), from its summary and observation records.

- ``probe_bandwidth.png``: effective GB/s against message size per probe case (log x), from
  the ``<case>/sweep/<size>/effective_bw_gbs`` metrics, with each case's bottleneck dotted.
- ``probe_latency_breakdown.png``: overhead, wire, serialization, drain and queueing per case
  as stacked bars, from the ``<case>/<part>_ns`` metrics.
- ``link_heatmap.png``: the cube mesh of each SIP, cubes as tiles coloured by their busiest
  internal link, UCIe crossings (and the IO chiplet's PHYs) as arrows coloured by utilization.
- ``unit_busy.png``: with ``sim.trace=full`` a timeline of the busiest units' and links' spans;
  otherwise a bar chart of their busy fraction.
- ``llm_ops.png``: an LLM layer's (or model's) time by op as a stacked bar beside the same ops'
  roofline bounds, from the ``op/<op>_ns`` and ``op/<op>_roofline_ns`` metrics.

Each function returns the file names it wrote (none when it has nothing to show).
"""

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import colors  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.patches import FancyArrow, Rectangle  # noqa: E402

from kernbench.report.stats import total_time_ns  # noqa: E402

DPI = 110
TOP_UNITS = 24
_SIZE = re.compile(r"^(\d+)(GiB|MiB|KiB|B)$")
_UNIT = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
BREAKDOWN = ("overhead_ns", "wire_ns", "serialization_ns", "drain_ns", "queueing_ns")


def _size_bytes(label: str) -> int | None:
    m = _SIZE.match(label)
    return int(m.group(1)) * _UNIT[m.group(2)] if m else None


def warm_up() -> None:
    """Draw a small throw-away figure: a process's first figure loads fonts and sets up the
    renderer, a few tenths of a second that a plot worker pays while it waits (ADR 0015)."""
    import io

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.bar(["a"], [1.0], color="C0")
    ax.set_title("warm-up", y=1.0)
    ax.text(0, 0.5, "x\ny", fontsize=7)
    fig.savefig(io.BytesIO(), format="png", dpi=DPI, pil_kwargs={"compress_level": 1})
    plt.close(fig)


def _save(fig: Any, out_dir: Path, name: str) -> str:
    # Fixed margins instead of tight_layout and fast PNG compression: each layout pass or
    # strong compression costs about a tenth of a second per figure. For the same reason
    # every title is placed at y=1.0 rather than positioned from the axes' tick labels.
    fig.savefig(out_dir / name, dpi=DPI, pil_kwargs={"compress_level": 1})
    plt.close(fig)
    return name


def probe_bandwidth(metrics: Mapping[str, float], out_dir: Path) -> list[str]:
    curves: dict[str, list[tuple[int, float]]] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 4 and parts[1] == "sweep" and parts[3] == "effective_bw_gbs":
            size = _size_bytes(parts[2])
            if size is not None:
                curves.setdefault(parts[0], []).append((size, float(value)))
    if not curves:
        return []
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for i, (case, points) in enumerate(curves.items()):
        points.sort()
        color = f"C{i % 10}"
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", color=color, label=case)
        peak = metrics.get(f"{case}/bottleneck_bw_gbs")
        if peak:
            ax.axhline(peak, color=color, linestyle=":", linewidth=0.8)
    sizes = sorted({p[0] for pts in curves.values() for p in pts})
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [_fmt_size(s) for s in sizes])
    ax.set_xlabel("message size")
    ax.set_ylabel("effective bandwidth, GB/s")
    ax.set_title("Bandwidth saturation per case (dotted: bottleneck bandwidth)", y=1.0)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.subplots_adjust(left=0.08, right=0.98, top=0.93, bottom=0.1)
    return [_save(fig, out_dir, "probe_bandwidth.png")]


def probe_latency_breakdown(metrics: Mapping[str, float], out_dir: Path) -> list[str]:
    cases = [
        k.removesuffix("/formula_ns")
        for k in metrics
        if k.endswith("/formula_ns") and k.count("/") == 1
    ]
    if not cases:
        return []
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(cases) + 3), 5.5))
    bottom = [0.0] * len(cases)
    for i, part in enumerate(BREAKDOWN):
        values = [max(float(metrics.get(f"{c}/{part}", 0.0)), 0.0) for c in cases]
        ax.bar(cases, values, bottom=bottom, label=part.removesuffix("_ns"), color=f"C{i}")
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    # The zero-height top segments would pin the axis to the tallest bar: leave room above.
    ax.set_ylim(0.0, max(bottom) * 1.05 or 1.0)
    ax.set_ylabel("ns")
    ax.set_title("Latency breakdown per case", y=1.0)
    ax.tick_params(axis="x", labelrotation=35)
    plt.setp(ax.get_xticklabels(), ha="right")
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.1, right=0.98, top=0.93, bottom=0.22)
    return [_save(fig, out_dir, "probe_latency_breakdown.png")]


def llm_ops(metrics: Mapping[str, float], out_dir: Path) -> list[str]:
    ops = [
        k.removeprefix("op/").removesuffix("_ns")
        for k in metrics
        if k.startswith("op/") and k.endswith("_ns") and not k.endswith("_roofline_ns")
    ]
    if not ops:
        return []
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    bars = ("simulated", "roofline bound")
    bottom = [0.0, 0.0]
    for i, op in enumerate(ops):
        values = [
            max(float(metrics[f"op/{op}_ns"]), 0.0),
            max(float(metrics.get(f"op/{op}_roofline_ns", 0.0)), 0.0),
        ]
        ax.bar(bars, values, bottom=bottom, label=op, color=f"C{i % 10}")
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylim(0.0, max(bottom) * 1.05 or 1.0)
    ax.set_ylabel("ns")
    ax.set_title("Time by op", y=1.0)
    ax.legend(fontsize=8, loc="upper right")
    fig.subplots_adjust(left=0.14, right=0.98, top=0.93, bottom=0.08)
    return [_save(fig, out_dir, "llm_ops.png")]


def _fmt_size(n: int) -> str:
    for unit in ("GiB", "MiB", "KiB"):
        if n >= _UNIT[unit] and n % _UNIT[unit] == 0:
            return f"{n // _UNIT[unit]} {unit}"
    return f"{n} B"


def link_heatmap(topo: Mapping[str, Any], rows: list[dict[str, Any]], out_dir: Path) -> list[str]:
    """``topo`` is the observation records' topology (ADR 0009), ``rows`` the link table."""
    w, h, sips = topo["mesh_w"], topo["mesh_h"], topo["sips"]
    shown = min(sips, 4)
    util = {r["name"]: r["utilization"] for r in rows if r["kind"] == "link"}
    tiles: dict[tuple[int, int], float] = {}
    arrows_by_link: dict[tuple[int, int, int], list[float]] = {}  # (sip, src, dst cube) -> utils
    for e in topo["edges"]:
        s, a, b, u = e["sip"], e["src_cube"], e["dst_cube"], util.get(e["name"], 0.0)
        if s < 0 or s >= shown:
            continue
        crossing = ".ucie." in e["src"] and ".ucie." in e["dst"] and a != b
        io_phy = ".io.ucie" in e["src"] and b >= 0 or ".io.ucie" in e["dst"] and a >= 0
        if crossing or io_phy:
            arrows_by_link.setdefault((s, a, b), []).append(u)
        elif a >= 0 and a == b:
            tiles[(s, a)] = max(tiles.get((s, a), 0.0), u)
    values = list(tiles.values()) + [sum(v) / len(v) for v in arrows_by_link.values()]
    vmax = max(values + [1e-12])
    norm = colors.Normalize(0.0, vmax)
    cmap = plt.get_cmap("inferno")
    fig, axes = plt.subplots(1, shown, figsize=(1.6 + 1.7 * (w + 1) * shown, 0.8 + 1.5 * h))
    axes = [axes] if shown == 1 else list(axes)

    def centre(cube: int, row: int) -> tuple[float, float]:
        return (-1.0, float(row)) if cube < 0 else (float(cube % w), float(cube // w))

    for s, ax in enumerate(axes):
        # One collection per kind instead of a patch each: adding and drawing hundreds of
        # separate patches (curved arrows most) cost more than the rest of the figure.
        shapes, fills = [], []
        for c in range(w * h):
            x, y = centre(c, 0)
            u = tiles.get((s, c), 0.0)
            shapes.append(Rectangle((x - 0.3, y - 0.3), 0.6, 0.6))
            fills.append(cmap(norm(u)))
            ax.text(x, y, f"cube {c}\n{u:.1%}", ha="center", va="center", fontsize=7,
                    color="white" if norm(u) < 0.6 else "black")  # fmt: skip
        for y in range(h):
            shapes.append(Rectangle((-1.2, y - 0.2), 0.4, 0.4))
            fills.append(colors.to_rgba("lightgrey"))
            ax.text(-1.0, y, f"io\nphy{y}", ha="center", va="center", fontsize=6)
        ax.add_collection(PatchCollection(shapes, facecolors=fills, edgecolors="grey"))
        arrows, shades = [], []
        for (sip, a, b), us in arrows_by_link.items():
            if sip != s:
                continue
            u = sum(us) / len(us)
            row_a = b // w if a < 0 else a // w
            row_b = a // w if b < 0 else b // w
            (x0, y0), (x1, y1) = centre(a, row_a), centre(b, row_b)
            dx, dy = x1 - x0, y1 - y0
            length = (dx * dx + dy * dy) ** 0.5 or 1.0
            px, py = -dy / length * 0.1, dx / length * 0.1  # each direction on its own side
            trim = 0.3 / length
            arrows.append(
                FancyArrow(x0 + dx * trim + px, y0 + dy * trim + py,
                           dx * (1 - 2 * trim), dy * (1 - 2 * trim),
                           width=0.02 + 0.05 * norm(u), head_width=0.12, head_length=0.1,
                           length_includes_head=True)
            )  # fmt: skip
            shades.append(cmap(norm(u)))
        if arrows:
            ax.add_collection(PatchCollection(arrows, facecolors=shades, edgecolors="none"))
        ax.set_xlim(-1.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"sip{s}", y=1.0)
    fig.suptitle(
        "Link utilization: tiles = busiest link inside the cube, arrows = UCIe crossings",
        fontsize=9,
    )
    fig.subplots_adjust(left=0.02, right=0.84, top=0.9, bottom=0.03, wspace=0.05)
    cax = fig.add_axes((0.87, 0.1, 0.02, 0.75))
    fig.colorbar(
        plt.cm.ScalarMappable(norm=norm, cmap=cmap),
        cax=cax,
        label="utilization over the run's simulated time",
    )
    return [_save(fig, out_dir, "link_heatmap.png")]


def _busiest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    busy = (r for r in rows if r["busy_ns"] > 0)
    return sorted(busy, key=lambda r: (-r["utilization"], -r["busy_ns"]))[:TOP_UNITS]


def busy_bars(rows: list[dict[str, Any]], out_dir: Path) -> list[str]:
    """The busy fraction of the most utilized links and units (``sim.trace=summary``)."""
    busiest = _busiest(rows)
    if not busiest:
        return []
    names = [r["name"] for r in busiest]
    fig, ax = plt.subplots(figsize=(9, 0.6 + 0.3 * len(names)))
    ax.barh(names[::-1], [r["utilization"] for r in busiest][::-1], color="C0")
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_xlabel("busy fraction of the run's simulated time")
    ax.set_title(f"Busiest units and links (top {len(names)})", y=1.0)
    ax.tick_params(axis="y", labelsize=7)
    fig.subplots_adjust(
        left=0.36, right=0.97, top=1 - 0.45 / fig.get_figheight(), bottom=0.6 / fig.get_figheight()
    )
    return [_save(fig, out_dir, "unit_busy.png")]


def busy_timeline(obs: Mapping[str, Any], rows: list[dict[str, Any]], out_dir: Path) -> list[str]:
    """Busy spans of the most utilized links and units on the run's timeline, the systems
    laid end to end (``sim.trace=full``)."""
    names = [r["name"] for r in _busiest(rows)]
    if not names:
        return []
    edges = {e["name"]: i for i, e in enumerate(obs["topology"]["edges"])}
    wanted_edges = {edges[n]: n for n in names if n in edges}
    bars: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    offset = 0.0
    bounds = []
    for system in obs["systems"]:
        for span in system["link_spans"]:
            name = wanted_edges.get(span[0])
            if name is not None:
                bars[name].append((offset + span[2], span[3] - span[2]))
        for u in system["units"]:
            if u["name"] not in bars:
                continue
            for span in u["spans"]:
                start, end = (span[2], span[3]) if u["kind"] == "hbm" else (span[1], span[2])
                bars[u["name"]].append((offset + start, end - start))
        offset += system["duration_ns"]
        bounds.append(offset)
    total = total_time_ns(obs) or 1.0
    scale, unit = (1e-3, "µs") if total >= 1e4 else (1.0, "ns")
    fig, ax = plt.subplots(figsize=(11, 0.8 + 0.32 * len(names)))
    for i, name in enumerate(names[::-1]):
        spans = [(s * scale, max(d * scale, total * scale * 2e-4)) for s, d in bars[name]]
        ax.broken_barh(spans, (i - 0.4, 0.8), color=f"C{i % 10}")
    for b in bounds[:-1]:
        ax.axvline(b * scale, color="grey", linewidth=0.3)
    ax.set_yticks(range(len(names)), names[::-1], fontsize=7)
    ax.set_xlim(0, total * scale)
    ax.set_xlabel(f"simulated time, {unit} (systems of the run laid end to end, grey lines)")
    ax.set_title(f"Busy timeline of the busiest units and links (top {len(names)})", y=1.0)
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.28, right=0.98, top=1 - 0.35 / height, bottom=0.55 / height)
    return [_save(fig, out_dir, "unit_busy.png")]
