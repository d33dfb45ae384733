"""Every ``kernbench ...`` command line in the README and docs/ names only parameters its
bench has (the defaults changed under them once: the default bench is not the probe)."""

import shlex
from pathlib import Path

from kernbench.cli.overrides import unknown_bench_keys

ROOT = Path(__file__).resolve().parents[2]


def documented_commands() -> list[tuple[str, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for line in path.read_text().splitlines():
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("kernbench ") and not part.startswith("kernbench compare"):
                    command = part.split("#", 1)[0]
                    found.append((f"{path.relative_to(ROOT)}: {line.strip()}", command))
    return found


def test_the_docs_show_commands():
    assert len(documented_commands()) > 20


def test_documented_commands_name_only_parameters_their_bench_has():
    problems = []
    for where, command in documented_commands():
        problem = unknown_bench_keys(shlex.split(command)[1:])
        if problem:
            problems.append(f"{where}\n  -> {problem}")
    assert problems == []
