"""kernbench: a discrete-event model of an AI accelerator system and its experiment harness."""

__version__ = "0.1.0"
