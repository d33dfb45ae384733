"""The README's table of config groups is one table, and names every group of ``conf/``
with exactly its presets."""

import re
from pathlib import Path

from kernbench.config import conf_dir

ROOT = Path(__file__).resolve().parents[1]


def group_table() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration groups", 1)[1].split("\n## ", 1)[0]
    lines = section.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| group "))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    # Nothing after the table's end is a row of it cut off by a paragraph.
    assert not any(line.startswith("|") for line in lines[end:]), lines[end:]
    return lines[start + 2 : end]


def test_the_readme_lists_every_config_group_with_its_presets():
    rows = {}
    for line in group_table():
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = set(re.findall(r"`([^`]+)`", cells[1]))
    groups = {
        p.name: {f.stem for f in p.glob("*.yaml")}
        for p in conf_dir().iterdir()
        if p.is_dir() and p.name != "hydra" and list(p.glob("*.yaml"))
    }
    assert rows == groups
