"""Markdown rendering of a run from its summary dict (as written to ``summary.json``).

Plain CommonMark tables and headings only: MLflow's artifact viewer shows raw HTML such as
``<details>`` as literal text, so the full parameter list is an appendix, not a folded block.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from kernbench.core.units import fmt_ns


def fmt_cell(value: Any) -> str:
    """A table cell: floats with a precision that suits them, everything else as text."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}"
        if abs(value) >= 100:
            return f"{value:,.1f}"
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(table: Mapping[str, Any]) -> str:
    """A ``{"title", "columns", "rows"}`` table as a titled GitHub-flavoured markdown table."""
    columns = [str(c) for c in table.get("columns", [])]
    lines = []
    if table.get("title"):
        lines += [f"### {table['title']}", ""]
    lines.append("| " + " | ".join(_escape(c) for c in columns) + " |")
    lines.append(
        "| " + " | ".join(_align(table.get("rows", []), i) for i in range(len(columns))) + " |"
    )
    strong = columns.index(table["emphasis"]) if table.get("emphasis") in columns else None
    for row in table.get("rows", []):
        cells = [_escape(fmt_cell(v)) for v in row]
        cells += [""] * (len(columns) - len(cells))
        if strong is not None and cells[strong]:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_report(summary: Mapping[str, Any]) -> str:
    """The run's ``report.md``: title, outcome, config summary, tables, checks, notes and, last,
    every parameter."""
    bench = summary.get("bench") or "?"
    status = summary.get("status", "?")
    out = [f"# kernbench: {bench}", ""]
    facts = [
        ("status", status),
        ("config hash", summary.get("config_hash")),
        ("simulated time", _ns(summary.get("sim_time_ns"))),
        ("simulation events", summary.get("sim_events")),
        ("wall time", _seconds(summary.get("wall_s"))),
    ]
    out += [f"- **{k}**: {v}" for k, v in facts if v is not None]
    if summary.get("error"):
        out += ["", "## Error", "", "```", str(summary["error"]), "```"]
    out += ["", "## Configuration", ""]
    out.append(_config_summary(summary.get("params", {})).rstrip())
    if summary.get("metrics"):
        out += ["", "## Metrics", ""]
        metrics = {"columns": ["metric", "value"], "rows": list(summary["metrics"].items())}
        out.append(markdown_table(metrics).rstrip())
    tables = summary.get("tables", [])
    for table in tables:
        if not table.get("section"):
            out += ["", markdown_table(table).rstrip()]
    if summary.get("energy"):
        out += _energy(summary["energy"])
    if summary.get("observe"):
        out += _observation(summary["observe"])
    sections: dict[str, list[Mapping[str, Any]]] = {}
    for table in tables:
        if table.get("section"):
            sections.setdefault(table["section"], []).append(table)
    for section, members in sections.items():
        out += ["", f"## {section}"]
        if section == "Route traces":
            out += ["", ROUTE_INTRO]
        out += ["\n" + markdown_table(t).rstrip() for t in members]
    if summary.get("checks"):
        out += ["", "## Checks", ""]
        out += [f"- {'PASS' if ok else 'FAIL'} `{name}`" for name, ok in summary["checks"].items()]
    if summary.get("notes"):
        out += ["", "## Notes", ""]
        out += [f"- {note}" for note in summary["notes"]]
    if summary.get("params"):
        out += ["", "## All parameters", ""]
        everything = {"columns": ["key", "value"], "rows": list(summary["params"].items())}
        out.append(markdown_table(everything).rstrip())
    return "\n".join(out).rstrip() + "\n"


ROUTE_INTRO = (
    "Each table follows the head flit hop by hop: `cumulative_ns` since the message was "
    "issued, `delta_ns` since the previous hop. The bold row is the first node after the "
    "slowest stage of the path."
)


def _energy(energy: Mapping[str, Any]) -> list[str]:
    """The energy section: the split by component (docs/energy.md); the rows sum to the total."""
    total = float(energy.get("total_uj", 0.0))
    rows: list[list[Any]] = [
        [name, float(uj), f"{uj / total:.1%}" if total > 0 else ""]
        for name, uj in energy.get("components_uj", {}).items()
    ]
    rows.append(["total", total, "100.0%" if total > 0 else ""])
    table = {"columns": ["component", "energy_uj", "share"], "rows": rows}
    out = ["", "## Energy", ""]
    out.append(
        "Dynamic energy of the bytes each link class, memory and unit handled, plus static "
        "power over the simulated time (the model and its defaults: `docs/energy.md`)."
    )
    return [*out, "", markdown_table(table).rstrip()]


def _observation(observe: Mapping[str, Any]) -> list[str]:
    """The observation section: files, the cap note, hottest links and units, plots."""
    out = ["", "## Observation", ""]
    files = [f"statistics of every link and unit: [{observe['links_csv']}]({observe['links_csv']})"]
    if observe.get("trace"):
        files.append(
            f"Perfetto trace: [{observe['trace']}]({observe['trace']}) (open in "
            "https://ui.perfetto.dev or chrome://tracing)"
        )
    out.append(f"- **trace level**: {observe.get('level')}")
    out += [f"- {f}" for f in files]
    if observe.get("level") == "full":
        out.append(
            f"- **spans recorded**: {fmt_cell(observe.get('spans', 0))} "
            f"(cap {fmt_cell(observe.get('max_events', 0))})"
        )
    if observe.get("note"):
        out += ["", f"> **Warning**: {observe['note']}"]
    for table in observe.get("hottest", []):
        out += ["", markdown_table(table).rstrip()]
    if observe.get("plots"):
        out += ["", "### Plots"]
        for plot in observe["plots"]:
            out += ["", f"![{plot['title']}]({plot['file']})"]
    return out


def _config_summary(params: Mapping[str, Any]) -> str:
    """One row per config group (hardware by preset name only; every value is listed under
    "All parameters" at the end)."""
    groups: dict[str, list[str]] = {}
    for key, value in params.items():
        group, _, rest = key.partition(".")
        if group == "hw" and rest != "name":
            continue
        groups.setdefault(group, []).append(
            f"{rest}={fmt_cell(value)}" if rest else fmt_cell(value)
        )
    rows = [[group, ", ".join(items)] for group, items in groups.items()]
    return markdown_table({"columns": ["group", "values"], "rows": rows})


def _align(rows: Sequence[Sequence[Any]], i: int) -> str:
    """Right-aligned when every value present is a number (a missing one is a blank cell)."""
    values = [r[i] for r in rows if i < len(r) and r[i] is not None]
    numeric = values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    return "---:" if numeric else "---"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _ns(value: Any) -> str | None:
    return None if value is None else fmt_ns(float(value))


def _seconds(value: Any) -> str | None:
    return None if value is None else f"{float(value):.2f} s"
