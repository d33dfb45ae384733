"""Drawing a run's plots in helper processes that import matplotlib while the run goes on.

A single run keeps one core busy (opening the MLflow store, then the simulation); on a machine
with a second core the plots' fixed cost — importing matplotlib, then drawing the PNGs — can
be paid there (ADR 0015). :class:`PlotWorkers` starts ``python -m
kernbench.report.plot_workers`` processes when a run begins; each imports matplotlib, then
waits for one pickled batch of plot tasks on stdin, draws it and answers the file names on
stdout. :func:`draw` writes the same files in the same order whether workers draw them or not.

Sweep jobs draw in their own process (the other cores run other jobs), as does a run on a
single core, in a process that has imported matplotlib already, or where the helper processes
cannot be started.
"""

import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

# A task: (function name in kernbench.report.plots, its arguments before out_dir).
Task = tuple[str, tuple[Any, ...]]

READY = b"ready\n"
# Two, each drawing half of the plots: a run's plots cost about as much to draw as to import
# matplotlib, and both imports fit in the time the run takes before it needs them.
WORKERS = 2


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class PlotWorkers:
    """Helper processes started now, given their batches by :meth:`send`, read by
    :meth:`collect`; :meth:`close` stops any that are left (a failed or interrupted run).

    The first worker starts at once, each next one when the previous has imported matplotlib:
    on two cores, one import at a time runs beside the run instead of all of them competing
    with it. A run that ends sooner gives its plots to the workers started by then."""

    def __init__(self, count: int = WORKERS) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.sent: list[subprocess.Popen[bytes]] = []
        self.errors: dict[int, IO[bytes]] = {}  # pid -> its stderr, read only if it fails
        self.lock = threading.Lock()
        self.closed = False  # no more workers start (the batches were sent, or close())
        self.starter: threading.Thread | None = None
        if self._start_one() and count > 1:
            self.starter = threading.Thread(target=self._start_rest, args=(count - 1,), daemon=True)
            self.starter.start()

    def _start_one(self) -> bool:
        with self.lock:
            if self.closed:
                return False
            err = tempfile.TemporaryFile()  # noqa: SIM115  (closed by close())
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-P", "-m", "kernbench.report.plot_workers"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    env=_same_kernbench_env(),
                )
            except OSError:
                err.close()
                return False
            self.procs.append(proc)
            self.errors[proc.pid] = err
            return True

    def _start_rest(self, count: int) -> None:
        for _ in range(count):
            last = self.procs[-1]
            assert last.stdout is not None
            # collect() may read the same stream: it takes the line off if still there.
            if last.stdout.read(len(READY)) != READY:
                return  # it died, was stopped or already answered
            if not self._start_one():
                return

    @classmethod
    def for_run(cls, level: str, *, in_sweep: bool) -> "PlotWorkers | None":
        """Workers for a single run that will draw plots, on a machine with a spare core,
        unless this process has imported matplotlib already (drawing here is cheaper then)."""
        if level == "off" or in_sweep or usable_cpus() < 2 or "matplotlib" in sys.modules:
            return None
        workers = cls(WORKERS)
        return workers if workers.procs else None

    def send(self, batches: Sequence[Sequence[Task]], out_dir: Path) -> None:
        """Hand the batches to the workers (all to one when there is one), which start
        drawing while this process writes the other artifacts."""
        with self.lock:
            self.closed = True  # the workers started by now draw everything
        if not self.procs:
            return
        if len(self.procs) < len(batches):
            batches = [[task for batch in batches for task in batch]]
        self.sent = self.procs[: len(batches)]
        for proc, batch in zip(self.sent, batches, strict=False):
            assert proc.stdin is not None
            try:
                proc.stdin.write(pickle.dumps((str(out_dir), list(batch))))
                proc.stdin.close()
            except BrokenPipeError:
                pass  # it died: collect() reports it with its stderr

    def collect(self) -> list[str]:
        """The files the sent batches wrote, in order; a worker's failure raises here."""
        written: list[str] = []
        try:
            for proc in self.sent:
                assert proc.stdout is not None
                out = proc.stdout.read().removeprefix(READY)  # unless the starter took it
                if proc.wait() != 0 or not out:
                    lines = self._stderr(proc).strip().splitlines()
                    why = lines[-1] if lines else f"exit code {proc.returncode}"
                    raise RuntimeError(f"the plot worker failed: {why}")
                status, value = pickle.loads(out)
                if status != "ok":
                    raise RuntimeError(f"the plot worker failed: {value}")
                written += value
        finally:
            self.close()
        return written

    def _stderr(self, proc: subprocess.Popen[bytes]) -> str:
        err = self.errors[proc.pid]
        err.seek(0)
        return err.read().decode(errors="replace")

    def close(self) -> None:
        with self.lock:
            self.closed = True  # the list of workers is final
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait()
        if self.starter is not None:
            self.starter.join()  # it ends at the EOF of the worker it waited for
        for proc in self.procs:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
        for err in self.errors.values():
            err.close()
        self.procs, self.sent, self.errors = [], [], {}


def _same_kernbench_env() -> dict[str, str]:
    """The environment for a worker that imports the kernbench this process runs, whatever
    the working directory holds (``-P`` keeps it off ``sys.path``)."""
    import kernbench

    root = str(Path(kernbench.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, path] if path else [root])}


def draw(
    batches: Sequence[Sequence[Task]], out_dir: Path, workers: PlotWorkers | None
) -> list[str]:
    """The files the tasks wrote, in task order: collected from ``workers`` if the batches
    were sent to them, else drawn here."""
    if workers is not None and workers.sent:
        return workers.collect()
    return [name for batch in batches for name in _draw_batch(batch, out_dir)]


def _draw_batch(batch: Sequence[Task], out_dir: Path) -> list[str]:
    from kernbench.report import plots

    written: list[str] = []
    for name, args in batch:
        written += getattr(plots, name)(*args, out_dir)
    return written


def _serve() -> None:
    """A worker: import matplotlib, then draw the one batch read from stdin."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's; it kills us
    from kernbench.report import plots  # the import this process exists to pay early

    plots.warm_up()
    out = sys.stdout.buffer
    out.write(READY)
    out.flush()
    out_dir, batch = pickle.loads(sys.stdin.buffer.read())
    try:
        result: tuple[str, Any] = ("ok", _draw_batch(batch, Path(out_dir)))
    except Exception as exc:  # the run fails with it, as if it had drawn the plot itself
        result = ("error", f"{type(exc).__name__}: {exc}")
    out.write(pickle.dumps(result))
    out.flush()


if __name__ == "__main__":
    _serve()
