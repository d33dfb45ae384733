"""The garbage collector around a run: the long-lived heap is frozen while the bench runs and
released after it; a command's process ends without the final collections."""

import gc
import subprocess
import sys
import weakref

from tracking_helpers import TINY, compose_cfg, run_in_process

from kernbench.cli.heap import frozen_heap

main_module = sys.modules["kernbench.cli.main"]


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_the_heap_is_frozen_inside_the_block_and_collectable_after_it():
    node = Node()
    alive = weakref.ref(node)
    with frozen_heap():
        assert gc.get_freeze_count() > 1000  # the interpreter's, pytest's and kernbench's
        del node
        gc.collect()
        assert alive() is not None  # frozen: the collector does not look at it
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert alive() is None


def test_a_run_executes_its_bench_on_a_frozen_heap(tmp_path, monkeypatch):
    seen = []
    real = main_module.BenchContext

    class Spy(real):
        @classmethod
        def from_spec(cls, *args, **kwargs):
            seen.append(gc.get_freeze_count())
            return real.from_spec(*args, **kwargs)

    monkeypatch.setattr(main_module, "BenchContext", Spy)
    outcome, output = run_in_process(compose_cfg(*TINY, "tracking=off"), tmp_path / "run", tmp_path)
    assert outcome.exit_code == 0, output
    assert len(seen) == 1 and seen[0] > 1000
    assert gc.get_freeze_count() == 0


def test_skip_exit_gc_freezes_the_heap_once_at_exit():
    code = (
        "import atexit, gc\n"
        "from kernbench.cli.heap import skip_exit_gc\n"
        "n = atexit._ncallbacks()\n"
        "skip_exit_gc(); skip_exit_gc()\n"
        "assert atexit._ncallbacks() == n + 1\n"
        "assert gc.get_freeze_count() == 0\n"
        "atexit._run_exitfuncs()\n"
        "print(gc.get_freeze_count() > 1000)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, "True"), proc.stderr
