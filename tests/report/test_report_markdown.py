"""Markdown rendering of result dicts."""

from kernbench.report import fmt_cell, markdown_table, render_report


def test_markdown_table_right_aligns_numeric_columns():
    table = {"title": "t", "columns": ["case", "ns", "bytes"], "rows": [["a|b", 1.5, 4096]]}
    assert markdown_table(table) == (
        "### t\n\n| case | ns | bytes |\n| --- | ---: | ---: |\n| a\\|b | 1.5 | 4,096 |\n"
    )


def test_fmt_cell():
    assert [fmt_cell(v) for v in (True, None, 2.0, 123.456, 0.012345, 7, "x")] == [
        "true",
        "",
        "2",
        "123.5",
        "0.01235",
        "7",
        "x",
    ]


def test_render_report_sections():
    summary = {
        "status": "ok",
        "bench": "tiny",
        "config_hash": "abcd1234",
        "params": {"topology.name": "2x2", "hw.name": "default", "hw.hbm.pc_bw_gbs": 32.0},
        "metrics": {"tiny/read_ns": 10.0},
        "tables": [{"title": "rt", "columns": ["i"], "rows": [[0]]}],
        "checks": {"ok": True, "bad": False},
        "notes": ["a note"],
        "sim_time_ns": 10.0,
        "sim_events": 3,
        "wall_s": 0.5,
    }
    text = render_report(summary)
    assert text.startswith("# kernbench: tiny\n\n- **status**: ok\n- **config hash**: abcd1234\n")
    assert "| topology | name=2x2 |\n| hw | name=default |" in text
    assert "| hw.hbm.pc_bw_gbs | 32 |" in text
    assert "| tiny/read_ns | 10 |" in text
    assert "### rt" in text
    assert "- PASS `ok`\n- FAIL `bad`" in text
    assert "## Notes\n\n- a note\n\n## All parameters\n" in text
    assert text.endswith("| hw.hbm.pc_bw_gbs | 32 |\n")


def test_report_uses_no_html_that_mlflows_viewer_shows_as_text():
    params = {f"hw.x{i}": i for i in range(50)} | {"topology.name": "2x2"}
    text = render_report({"status": "ok", "bench": "tiny", "params": params, "notes": ["n"]})
    assert "<" not in text and ">" not in text
    assert text.index("## Configuration") < text.index("## Notes") < text.index("## All parameters")
    assert "| hw.x49 | 49 |" in text.split("## All parameters")[1]


def test_markdown_table_keeps_a_column_with_blanks_numeric():
    table = {"columns": ["job", "ns"], "rows": [[0, 1.5], [1, None]]}
    assert markdown_table(table) == "| job | ns |\n| ---: | ---: |\n| 0 | 1.5 |\n| 1 |  |\n"


def test_render_failed_report_shows_the_error():
    text = render_report({"status": "failed", "bench": "x", "error": "hw.hbm.foo: unknown key"})
    assert "- **status**: failed" in text
    assert "## Error\n\n```\nhw.hbm.foo: unknown key\n```" in text


def test_tables_of_a_section_are_grouped_and_emphasised_rows_are_bold():
    route = {
        "title": "Route of a (4 KiB), head flit",
        "columns": ["hop", "node", "cumulative_ns", "note"],
        "rows": [[0, "pe", 0.0, ""], [1, "r0", 2.5, "after bottleneck e (128 GB/s)"]],
        "section": "Route traces",
        "emphasis": "note",
    }
    text = render_report({"status": "ok", "bench": "x", "tables": [route, {**route}]})
    head, routes = text.split("\n## Route traces\n")
    assert "### Route of" not in head
    assert routes.count("### Route of a (4 KiB), head flit") == 2
    assert "| 0 | pe | 0 |  |" in routes
    assert "| **1** | **r0** | **2.5** | **after bottleneck e (128 GB/s)** |" in routes


def test_observation_section_links_files_and_shows_plots():
    observe = {
        "level": "full",
        "links_csv": "links.csv",
        "trace": "trace.json.gz",
        "spans": 12,
        "max_events": 100,
        "hottest": [{"title": "Hottest links (top 10 by utilization)", "columns": ["link"]}],
        "plots": [{"file": "link_heatmap.png", "title": "Link utilization"}],
    }
    text = render_report({"status": "ok", "bench": "x", "observe": observe})
    section = text.split("## Observation\n", 1)[1]
    assert "- **trace level**: full" in section
    assert "[links.csv](links.csv)" in section and "[trace.json.gz](trace.json.gz)" in section
    assert "- **spans recorded**: 12 (cap 100)" in section
    assert "### Hottest links (top 10 by utilization)" in section
    assert "### Plots\n\n![Link utilization](link_heatmap.png)" in section
    assert "Warning" not in section
