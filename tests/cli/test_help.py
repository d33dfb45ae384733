"""``kernbench --help`` (conf/hydra/help/kernbench.yaml) says what kernbench is, lists every
config group with its presets, shows examples that would run, and points to ``kernbench
compare`` and the exit codes."""

import shlex
import subprocess
import sys

import pytest

from kernbench.cli.overrides import unknown_bench_keys, unknown_presets
from kernbench.config import conf_dir


@pytest.fixture(scope="module")
def help_text(tmp_path_factory) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "kernbench", "--help"],
        cwd=tmp_path_factory.mktemp("help"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def groups() -> dict[str, list[str]]:
    """Every config group of conf/ (Hydra's own aside) and its presets."""
    return {
        d.name: sorted(p.stem for p in d.glob("*.yaml"))
        for d in sorted(conf_dir().iterdir())
        if d.is_dir() and d.name != "hydra" and any(d.glob("*.yaml"))
    }


def test_help_says_what_kernbench_is(help_text):
    assert "discrete-event" in help_text and "accelerator" in help_text
    assert "powered by Hydra" not in help_text  # Hydra's stock header


def test_help_lists_every_group_with_its_presets(help_text):
    lines = help_text.splitlines()
    assert len(groups()) >= 5
    for group, presets in groups().items():
        assert f"{group}: {', '.join(presets)}" in lines


def test_help_examples_name_existing_presets_and_parameters(help_text):
    examples = [
        line.split("#")[0].strip()
        for line in help_text.splitlines()
        if line.startswith("kernbench ") and not line.startswith("kernbench compare")
    ]
    assert any("=" in e for e in examples)
    for example in examples:
        args = shlex.split(example)[1:]
        assert unknown_presets(args) is None, example
        assert unknown_bench_keys(args) is None, example


def test_help_points_to_compare_and_the_exit_codes(help_text):
    assert "kernbench compare runs" in help_text
    assert "kernbench compare diff" in help_text
    for code, meaning in (("0", "ok"), ("2", "error: <key>"), ("1", "unexpected error")):
        assert any(line.startswith(code) and meaning in line for line in help_text.splitlines()), (
            code
        )
