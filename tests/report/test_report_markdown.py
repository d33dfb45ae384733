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
    assert text.endswith("## Notes\n\n- a note\n")


def test_render_failed_report_shows_the_error():
    text = render_report({"status": "failed", "bench": "x", "error": "hw.hbm.foo: unknown key"})
    assert "- **status**: failed" in text
    assert "## Error\n\n```\nhw.hbm.foo: unknown key\n```" in text
