"""Ctrl-C and SIGTERM: a run or sweep stopped by either ends as KILLED, says so in one line and
exits ``128 + signal``.

- :func:`install` makes SIGTERM raise :class:`Interrupted` (a ``KeyboardInterrupt``, so every
  ``except KeyboardInterrupt`` that closes a run handles both signals); Ctrl-C raises a plain
  ``KeyboardInterrupt`` as usual.
- :func:`deferred` holds the first signal while a block that must not be cut in half runs
  (opening the store and creating the run: cut there, a run would leave no record, or a new
  store half migrated), then raises it; a second signal raises at once.
- :func:`exit_code` and :func:`signal_name` turn the exception into the exit code and the
  signal's name for the one line the command prints.
"""

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

EXIT_INTERRUPTED = 128 + signal.SIGINT


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or another signal) delivered as a ``KeyboardInterrupt``."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum

    def __reduce__(self) -> tuple[type["Interrupted"], tuple[int]]:
        # A job's interrupt crosses back from a joblib worker pickled: keep the signal.
        return (Interrupted, (self.signum,))


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install() -> None:
    """SIGTERM raises :class:`Interrupted` in this process (only the main thread can set a
    handler; elsewhere, e.g. a Ray actor's thread, nothing changes)."""
    if _in_main_thread():
        signal.signal(signal.SIGTERM, _raise)


def signum_of(exc: BaseException) -> int:
    return exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT)


def exit_code(exc: BaseException) -> int:
    """``128 + signal``, as a shell reports a process the signal ended: 130 Ctrl-C, 143 SIGTERM."""
    return 128 + signum_of(exc)


def signal_name(exc: BaseException) -> str:
    signum = signum_of(exc)
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def report(exc: BaseException) -> int:
    """Print the one line of a command that ``exc`` stopped (with the notes a run added to it:
    where its results are) and return its exit code."""
    where = "; ".join(getattr(exc, "__notes__", []))
    print(f"killed by {signal_name(exc)}" + (f": {where}" if where else ""), file=sys.stderr)
    return exit_code(exc)


@contextmanager
def deferred(what: str) -> Iterator[None]:
    """Hold a Ctrl-C or SIGTERM that arrives inside the block until it ends, then raise it;
    a second one raises at once. ``what`` completes "... until <what>" in the note printed
    when a signal is held. Outside the main thread signals are not delivered here anyway."""
    if not _in_main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        if held:
            raise _exception(signum)
        held.append(signum)
        print(
            f"interrupted: waiting until {what} (again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    previous = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if held:
        raise _exception(held[0])


def _exception(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if signum == signal.SIGINT else Interrupted(signum)
