"""The garbage collector around a run: mlflow, SQLAlchemy and Hydra leave about 300,000
long-lived objects in a process (ten times what the simulator itself needs), and every full
collection traverses all of them.

- :func:`frozen_heap` moves them out of the collector's reach while the bench runs: the
  simulator allocates fast and triggers full collections, which on the default probe cost
  about a second with mlflow loaded (docs/performance.md).
- :func:`skip_exit_gc` lets the process end without the interpreter's last collections.
"""

import atexit
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze every object tracked now (the collector skips frozen ones) until the block
    ends. Freezing and unfreezing only move lists, so this costs next to nothing; unfrozen
    afterwards, whatever of it died meanwhile is collected as usual (the next job of a sweep
    in the same process freezes again)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@cache
def skip_exit_gc() -> None:
    """Let this process end without the interpreter's last garbage collections.

    With mlflow, SQLAlchemy and Hydra loaded they take about a second per process, paid by
    the launcher and, at the end of a sweep, by every worker while the launcher waits. At exit
    nothing needs them: results are written and closed, logging flushes through its own exit
    hook, and the memory goes back to the OS."""
    atexit.register(gc.freeze)
