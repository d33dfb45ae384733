"""The kernel language's compile-time and control names: ``jit``, ``constexpr``, loop ranges
(``range`` with its ``num_stages``: docs/kernels.md, "The PE pipeline"), compiler hints and
``static_assert``."""

import builtins
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kernbench.core.errors import KernelError
from kernbench.lang.core import _program


class constexpr:
    """Marks a compile-time parameter (``BLOCK: tl.constexpr``); here only an annotation."""

    def __init__(self, value: Any):
        self.value = value


def jit(fn: Callable[..., Any] | None = None, **_options: Any) -> Any:
    """Mark ``fn`` as a kernel (as ``@triton.jit``); the function is returned unchanged."""
    if fn is None:
        return jit
    fn.__kernbench_kernel__ = True  # type: ignore[attr-defined]
    return fn


def static_range(*args: int) -> builtins.range:
    return builtins.range(*args)


def range(  # noqa: A001 - Triton's name
    arg1: int,
    arg2: int | None = None,
    step: int | None = None,
    num_stages: int | None = None,
    **_hints: Any,
) -> Iterable[int]:
    """A loop range, as ``tl.range``. ``num_stages`` sets the pipelining depth of the loads in
    the loop's body (buffers per load; 1 = each load blocks), in place of the launch's; the
    other hints (``loop_unroll_factor``, ``warp_specialize``, ...) have no effect."""
    if arg2 is None:
        r = builtins.range(arg1)
    else:
        r = builtins.range(arg1, arg2, 1 if step is None else step)
    if num_stages is None:
        return r
    if isinstance(num_stages, bool) or not isinstance(num_stages, int) or num_stages < 1:
        raise KernelError(f"tl.range: num_stages must be a positive integer, got {num_stages!r}")
    return _staged(r, num_stages)


def _staged(r: builtins.range, depth: int) -> Iterator[int]:
    prog = _program()
    previous = prog.stages(depth)
    try:
        yield from r
    finally:
        prog.stages(previous)


def assume(_condition: Any) -> None:
    """A compiler hint in Triton; no effect here."""


def multiple_of(x: Any, _values: Any) -> Any:
    """A compiler hint in Triton; no effect here."""
    return x


def max_contiguous(x: Any, _values: Any) -> Any:
    """A compiler hint in Triton; no effect here."""
    return x


def max_constancy(x: Any, _values: Any) -> Any:
    """A compiler hint in Triton; no effect here."""
    return x


def debug_barrier() -> None:
    """Triton's barrier between a program's threads; free here: a program's calls already
    complete in order."""


def static_assert(cond: Any, msg: str = "") -> None:
    """Fails the kernel (a KernelError) if ``cond`` is false; free."""
    if not cond:
        raise KernelError(f"tl.static_assert failed{': ' + msg if msg else ''}")
