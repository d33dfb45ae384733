"""Command line: the Hydra entry point and console output."""

from kernbench.cli.main import RunOutcome, main, run

__all__ = ["RunOutcome", "main", "run"]
