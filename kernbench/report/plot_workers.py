"""A run's plots, drawn by helper processes while the run goes on, or by the run at its end.

A single run keeps one core busy (opening the MLflow store, then the simulation); on a machine
with a second core the plots' fixed cost — importing matplotlib, then drawing the PNGs — can
be paid there (ADRs 0015 and 0016). :class:`PlotWorkers` starts ``python -m
kernbench.report.plot_workers`` processes when a run begins; each imports matplotlib, then
draws the tasks it reads from stdin, one pickled task at a time, answering each with the file
names it wrote. :class:`RunPlots` is the run's list of plots: a bench asks for a plot as soon
as its data is final (``BenchContext.plot``), so a worker draws it while the simulation goes
on; the observation plots are asked for at the end. :meth:`RunPlots.files` gives the same
files in the same order whether workers drew them or not. A plot that fails in a worker fails
the run with its error; the tasks of a worker that died are drawn by the run itself.

Sweep jobs draw in their own process (the other cores run other jobs), as does a run on a
single core, in a process that has imported matplotlib already, or where the helper processes
cannot be started.
"""

import contextlib
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

# A task: (function name in kernbench.report.plots, its arguments before out_dir).
Task = tuple[str, tuple[Any, ...]]

READY = b"ready\n"
# Two: at the end of a run two figures are left to draw, one each, on a 2-core machine.
WORKERS = 2
# How many figures a worker could draw while another imports matplotlib: a task goes to a
# worker still importing only when those that are ready have more than this many to draw.
IMPORT_COST = 3
# A worker that has not drawn its plots this long after the run ended is stuck: the run fails.
TIMEOUT_S = 300.0


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _Worker:
    """One helper process, a thread that writes its tasks and one that reads its answers."""

    def __init__(self, lock: threading.Lock, on_ready: Callable[["_Worker"], None]) -> None:
        self.lock = lock  # the PlotWorkers' lock, which guards ``pending``
        # A plot's error comes back as its answer; a worker that dies has its tasks drawn by
        # the run, which then reports whatever killed it there.
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "kernbench.report.plot_workers"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_same_kernbench_env(),
        )
        self.ready = False
        self.pending = 0  # tasks sent and not answered
        self.answers: dict[int, tuple[str, Any]] = {}  # ticket -> (status, files or why)
        # Pickled tasks, written by a thread: a worker still importing does not read its
        # stdin, and a task must not block the simulation that asked for it.
        self.outbox: queue.Queue[bytes | None] = queue.Queue()
        self.threads = [
            threading.Thread(target=self._write, daemon=True),
            threading.Thread(target=self._read, args=(on_ready,), daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _write(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            while (data := self.outbox.get()) is not None:
                stdin.write(data)
                stdin.flush()
            stdin.close()  # the worker ends after its last task
        except (BrokenPipeError, ValueError, OSError):
            pass  # it died or was stopped: its missing answers report it

    def _read(self, on_ready: Callable[["_Worker"], None]) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            if stdout.readline() != READY:
                return  # it died or was stopped before it could draw
            self.ready = True
            on_ready(self)
            while True:
                ticket, status, value = pickle.load(stdout)
                with self.lock:
                    self.answers[ticket] = (status, value)
                    self.pending -= 1
        except (EOFError, ValueError, OSError, pickle.UnpicklingError):
            pass  # its output ended


class PlotWorkers:
    """Helper processes started now, given tasks by :meth:`submit`, whose answers
    :meth:`finish` collects; :meth:`close` stops any that are left (a failed or interrupted
    run).

    The first worker starts at once, each next one when the previous has imported matplotlib:
    on two cores, one import at a time runs beside the run instead of all of them competing
    with it. Once the run has asked for its last plot no more start."""

    def __init__(self, count: int = WORKERS) -> None:
        self.count = count
        self.workers: list[_Worker] = []
        self.lock = threading.Lock()
        self.closed = False  # no more workers start (finish() or close() was called)
        self.tickets = 0
        self._start_one()

    def _start_one(self, after: _Worker | None = None) -> None:
        with self.lock:
            if self.closed or len(self.workers) >= self.count:
                return
            if after is not None and after is not self.workers[-1]:
                return
            with contextlib.suppress(OSError):  # the run draws what no worker takes
                self.workers.append(_Worker(self.lock, self._start_one))

    @classmethod
    def for_run(cls, level: str, *, in_sweep: bool) -> "PlotWorkers | None":
        """Workers for a single run that will draw plots, on a machine with a spare core,
        unless this process has imported matplotlib already (drawing here is cheaper then)."""
        if level == "off" or in_sweep or usable_cpus() < 2 or "matplotlib" in sys.modules:
            return None
        workers = cls(WORKERS)
        return workers if workers.workers else None

    @property
    def procs(self) -> list[subprocess.Popen[bytes]]:
        return [w.proc for w in self.workers]

    def submit(self, out_dir: Path, task: Task) -> int | None:
        """Send ``task`` to the worker likely to draw it first; its ticket, or None when no
        worker can take it (the caller draws it)."""
        name, args = task
        # The arguments travel as bytes of their own, unpickled by the worker inside the task:
        # data it cannot rebuild fails that task, not the worker and the tasks behind it.
        data = pickle.dumps(args)
        with self.lock:
            alive = [w for w in self.workers if w.proc.poll() is None] if not self.closed else []
            if not alive:
                return None
            worker = min(alive, key=lambda w: w.pending + (0 if w.ready else IMPORT_COST))
            ticket = self.tickets
            self.tickets += 1
            worker.pending += 1
            worker.answers[ticket] = ("missing", None)
            worker.outbox.put(pickle.dumps((ticket, str(out_dir), name, data)))
            return ticket

    def finish(self) -> dict[int, list[str]]:
        """The files each ticket's task wrote, once every worker has drawn its tasks; unused
        workers are stopped. A plot that failed raises here, with its error; tasks a worker
        could not read, and those of a worker that died, are left out (the caller draws
        them)."""
        with self.lock:
            self.closed = True
        try:
            for w in self.workers:
                if not w.pending:
                    w.proc.kill()  # nothing (more) to draw: maybe still importing
                w.outbox.put(None)  # its stdin closes after its tasks: it ends
            files: dict[int, list[str]] = {}
            deadline = time.monotonic() + TIMEOUT_S
            for w in self.workers:
                try:
                    w.proc.wait(max(deadline - time.monotonic(), 0.0))
                except subprocess.TimeoutExpired:
                    raise RuntimeError(
                        f"the plot worker had not drawn its plots {TIMEOUT_S:g} s after the run"
                    ) from None
                for t in w.threads:
                    t.join()
                for ticket, (status, value) in sorted(w.answers.items()):
                    if status == "ok":
                        files[ticket] = value
                    elif status == "error":
                        raise RuntimeError(f"the plot worker failed: {value}")
            return files
        finally:
            self.close()

    def close(self) -> None:
        with self.lock:
            self.closed = True  # the list of workers is final
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.kill()
        for w in self.workers:
            w.proc.wait()
            w.outbox.put(None)
            for t in w.threads:
                t.join()
            for stream in (w.proc.stdin, w.proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):  # unwritten tasks of a killed worker
                        stream.close()
        self.workers = []


class RunPlots:
    """The plots of one run, in the order they were asked for: each is sent to ``workers``
    at once when there are any (``out_dir`` is where they write), else drawn by
    :meth:`files` at the end of the run. A task's arguments are plain data that must not
    change afterwards (they may be pickled at once or read at the end)."""

    def __init__(self, out_dir: Path | None = None, workers: PlotWorkers | None = None) -> None:
        if workers is not None and out_dir is None:
            workers.close()
            raise ValueError("RunPlots: workers need the out_dir they write to")
        self.out_dir = out_dir
        self.workers = workers
        self.entries: list[tuple[int | None, Task]] = []  # (ticket, or None: drawn here; task)

    def add(self, name: str, *args: Any) -> None:
        ticket = None
        if self.workers is not None:  # then out_dir is set (__init__)
            assert self.out_dir is not None
            ticket = self.workers.submit(self.out_dir, (name, args))
        self.entries.append((ticket, (name, args)))

    def files(self, out_dir: Path) -> list[str]:
        """The files the plots wrote, in the order they were asked for: collected from the
        workers, the rest — and any whose worker died — drawn here into ``out_dir``."""
        drawn = self.workers.finish() if self.workers is not None else {}
        written: list[str] = []
        for ticket, task in self.entries:
            written += drawn[ticket] if ticket in drawn else _draw(task, out_dir)
        return written

    def close(self) -> None:
        """Stop the workers (the run failed or was interrupted)."""
        if self.workers is not None:
            self.workers.close()


def _same_kernbench_env() -> dict[str, str]:
    """The environment for a worker that imports the kernbench this process runs, whatever
    the working directory holds (``-P`` keeps it off ``sys.path``)."""
    import kernbench

    root = str(Path(kernbench.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, path] if path else [root])}


def _draw(task: Task, out_dir: Path) -> list[str]:
    from kernbench.report import plots

    name, args = task
    return getattr(plots, name)(*args, out_dir)


def _serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """A worker: import matplotlib, then draw the tasks read from ``stdin`` until it closes."""
    from kernbench.report import plots  # the import this process exists to pay early

    plots.warm_up()
    stdout.write(READY)
    stdout.flush()
    while True:
        try:
            ticket, out_dir, name, data = pickle.load(stdin)
        except EOFError:
            return
        answer: tuple[str, Any]
        try:
            args = pickle.loads(data)
        except Exception as exc:  # e.g. a class only the run can import: the run draws it
            answer = ("unread", f"{type(exc).__name__}: {exc}")
        else:
            try:
                answer = ("ok", _draw((name, args), Path(out_dir)))
            except Exception as exc:  # the run fails with it, as if it had drawn the plot
                answer = ("error", f"{type(exc).__name__}: {exc}")
        stdout.write(pickle.dumps((ticket, *answer)))
        stdout.flush()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's; it kills us
    _serve(sys.stdin.buffer, sys.stdout.buffer)
    os._exit(0)  # the run waits for this exit: skip tearing down matplotlib's modules
