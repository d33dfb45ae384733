"""Every ``kernbench ...`` command line in the README and docs/ names only parameters its
bench has (the defaults changed under them once: the default bench is not the probe) and only
presets that exist."""

import re
import shlex
from pathlib import Path

from kernbench.cli.overrides import unknown_bench_keys, unknown_presets

ROOT = Path(__file__).resolve().parents[2]


INLINE = re.compile(r"`(kernbench [^`]+)`")


def documented_commands() -> list[tuple[str, str]]:
    """Command lines in fenced code blocks, and inline code spans that hold one."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        in_code = False
        for line in path.read_text().splitlines():
            if line.lstrip().startswith("```"):
                in_code = not in_code
                continue
            parts = line.split("&&") if in_code else INLINE.findall(line)
            for part in parts:
                part = part.strip()
                if part.startswith("kernbench ") and not part.startswith("kernbench compare"):
                    found.append((f"{path.relative_to(ROOT)}: {line.strip()}", part))
    return found


def test_the_docs_show_commands():
    assert len(documented_commands()) > 20


def test_documented_commands_name_only_parameters_their_bench_has():
    problems = []
    for where, command in documented_commands():
        problem = unknown_bench_keys(shlex.split(command, comments=True)[1:])
        if problem:
            problems.append(f"{where}\n  -> {problem}")
    assert problems == []


# Presets of config directories or Hydra plugins the development install does not have.
ELSEWHERE = ("hydra.searchpath=", "hydra/launcher=ray ")


def test_documented_commands_choose_only_presets_that_exist():
    problems = []
    for where, command in documented_commands():
        if any(marker in command + " " for marker in ELSEWHERE):
            continue
        problem = unknown_presets(shlex.split(command, comments=True)[1:])
        if problem:
            problems.append(f"{where}\n  -> {problem}")
    assert problems == []
