"""The kernel language, in the style of Triton: ``import kernbench.lang as tl``.

A kernel is a plain Python function (optionally decorated with :func:`jit`) whose tensor
arguments arrive as pointers. It runs once per program instance of its launch grid, each
instance on one PE, and every call below costs simulated time on that PE (docs/kernels.md):
dispatch on pe_cpu and pe_scheduler, then DMA (``load``/``store``), pe_gemm (``dot``) or pe_math
(arithmetic, ``exp``, reductions, ...). Values are real NumPy data.

Differences from Triton, all documented in docs/kernels.md: ``program_id`` returns a Python
int; blocks follow NumPy promotion; ``dot`` accumulates in fp32 (int32 for int8); a kernel
runs as Python, so ``constexpr`` is only an annotation.
"""

import builtins
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kernbench.core.errors import KernelError
from kernbench.lang.core import (
    Block,
    Pointer,
    Scalar,
    _array,
    _charge,
    _elementwise,
    _program,
    _shape_str,
    pointer_type,
)
from kernbench.lang.dtypes import bfloat16, float16, float32, int8, int32, int64, uint8

__all__ = [
    "Block",
    "Pointer",
    "abs",
    "arange",
    "assume",
    "bfloat16",
    "broadcast_to",
    "cat",
    "cdiv",
    "constexpr",
    "dot",
    "exp",
    "float16",
    "float32",
    "full",
    "int8",
    "int32",
    "int64",
    "jit",
    "load",
    "log",
    "max",
    "max_contiguous",
    "maximum",
    "min",
    "neighbor",
    "pe_id",
    "recv",
    "send",
    "minimum",
    "multiple_of",
    "num_programs",
    "pointer_type",
    "program_id",
    "range",
    "reshape",
    "sigmoid",
    "sqrt",
    "static_range",
    "store",
    "sum",
    "timestamp",
    "trans",
    "uint8",
    "where",
    "zeros",
]


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
    arg1: int, arg2: int | None = None, step: int | None = None, **_hints: Any
) -> builtins.range:
    """A loop range, as ``tl.range``; ``num_stages`` and the other pipelining hints have no
    effect (a kernel does not overlap its DMA with its compute)."""
    if arg2 is None:
        return builtins.range(arg1)
    return builtins.range(arg1, arg2, 1 if step is None else step)


def assume(_condition: Any) -> None:
    """A compiler hint in Triton; no effect here."""


def multiple_of(x: Any, _values: Any) -> Any:
    """A compiler hint in Triton; no effect here."""
    return x


def max_contiguous(x: Any, _values: Any) -> Any:
    """A compiler hint in Triton; no effect here."""
    return x


# -- program -------------------------------------------------------------------------------
def program_id(axis: int = 0) -> int:
    """The index of this program instance along ``axis`` (0, 1 or 2) of the launch grid."""
    return _program().program_id(axis)


def num_programs(axis: int = 0) -> int:
    """The launch grid's size along ``axis``."""
    return _program().num_programs(axis)


def cdiv(a: Any, b: Any) -> Any:
    """Ceiling division; free on Python ints, elementwise on blocks."""
    if isinstance(a, Block) or isinstance(b, Block):
        return _elementwise("cdiv", lambda x, y: -(-x // y), a, b)
    return -(-a // b)


# -- creation ------------------------------------------------------------------------------
def _check_shape(name: str, shape: Any) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not all(isinstance(s, int | np.integer) and s >= 0 for s in shape):
        raise KernelError(f"tl.{name}: shape must be non-negative ints, got {shape!r}")
    return tuple(int(s) for s in shape)


def arange(start: int, end: int) -> Block:
    """``[start, end)`` as an int32 block (an index block: it does not occupy TCM)."""
    if not (isinstance(start, int) and isinstance(end, int)) or end <= start:
        raise KernelError(f"tl.arange: needs ints with start < end, got {start!r}, {end!r}")
    return _charge("arange", np.arange(start, end, dtype=np.int32), ())


def _reserve(name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Refuse a block that cannot fit TCM before NumPy allocates (and fills) it."""
    nbytes = math.prod(shape) * dtype.itemsize
    prog = _program()
    prog.tcm_alloc(nbytes, f"tl.{name} of a {_shape_str(shape)} {dtype} block")
    prog.tcm_free(nbytes)


def zeros(shape: Any, dtype: Any = float32) -> Block:
    """A block of zeros (data: occupies TCM)."""
    shape = _check_shape("zeros", shape)
    _reserve("zeros", shape, np.dtype(dtype))
    value = np.zeros(shape, np.dtype(dtype))
    _program().compute("zeros", value.size, value.nbytes)
    return Block(value, tcm=True, what="tl.zeros")


def full(shape: Any, value: Scalar, dtype: Any) -> Block:
    """A block filled with ``value`` (data: occupies TCM)."""
    shape = _check_shape("full", shape)
    _reserve("full", shape, np.dtype(dtype))
    arr = np.full(shape, value, np.dtype(dtype))
    _program().compute("full", arr.size, arr.nbytes)
    return Block(arr, tcm=True, what="tl.full")


# -- memory --------------------------------------------------------------------------------
def _mask(name: str, mask: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    m = _array(mask)
    try:
        return np.broadcast_to(np.asarray(m, dtype=bool), shape)
    except ValueError:
        raise KernelError(
            f"tl.{name}: mask of shape {_shape_str(np.shape(m))} does not broadcast to the "
            f"pointer block {_shape_str(shape)}"
        ) from None


def load(pointer: Pointer, mask: Any = None, other: Any = None, **_hints: Any) -> Block:
    """Load the elements ``pointer`` points at; where ``mask`` is false, ``other`` (default 0).

    Costs dispatch, then one DMA read of the address runs the block covers (local or remote
    HBM), then the TCM write of the bytes.
    """
    if not isinstance(pointer, Pointer):
        raise KernelError(f"tl.load needs a pointer (a tensor argument + offsets), got {pointer!r}")
    shape = pointer.shape
    m = _mask("load", mask, shape)
    prog = _program()
    values = prog.load(pointer, m)
    if m is not None and other is not None and not m.all():
        fill = np.asarray(_array(other)).astype(values.dtype)
        values = np.where(m, values, fill)
    return Block(values, tcm=True, what="tl.load")


def store(pointer: Pointer, value: Any, mask: Any = None, **_hints: Any) -> None:
    """Store ``value`` (cast to the tensor's dtype) where ``mask`` is true. The write is posted:
    the program goes on once the DMA has read the block from TCM; the launch completes only
    after every store has been committed."""
    if not isinstance(pointer, Pointer):
        raise KernelError(
            f"tl.store needs a pointer (a tensor argument + offsets), got {pointer!r}"
        )
    shape = pointer.shape
    raw = np.asarray(_array(value))
    try:
        data = np.broadcast_to(raw, shape).astype(pointer.target.dtype)
    except ValueError:
        raise KernelError(
            f"tl.store: a value of shape {_shape_str(raw.shape)} does not fit the pointer block "
            f"{_shape_str(shape)}"
        ) from None
    _program().store(pointer, data, _mask("store", mask, shape))


# -- compute -------------------------------------------------------------------------------
_DOT_TYPES = {
    np.dtype(np.float16): np.dtype(np.float32),
    np.dtype(bfloat16): np.dtype(np.float32),
    np.dtype(np.float32): np.dtype(np.float32),
    np.dtype(np.int8): np.dtype(np.int32),
}


def dot(a: Block, b: Block, acc: Block | None = None, **_options: Any) -> Block:
    """Matrix product of an ``m x k`` and a ``k x n`` block, accumulated in fp32 (int32 for
    int8), plus ``acc`` if given. Costs dispatch and pe_gemm time (docs/kernels.md)."""
    if not (isinstance(a, Block) and isinstance(b, Block)):
        raise KernelError("tl.dot needs two blocks")
    if a.value.ndim != 2 or b.value.ndim != 2:
        raise KernelError(
            f"tl.dot needs 2-D blocks, got {_shape_str(a.shape)} and {_shape_str(b.shape)}"
        )
    (m, k), (k2, n) = a.shape, b.shape
    if k != k2:
        raise KernelError(
            f"tl.dot: inner dimensions differ: a is {_shape_str(a.shape)}, b is "
            f"{_shape_str(b.shape)}"
        )
    if a.dtype != b.dtype:
        raise KernelError(f"tl.dot: operand dtypes differ: {a.dtype} and {b.dtype}")
    out_dt = _DOT_TYPES.get(a.dtype)
    if out_dt is None:
        raise KernelError(
            f"tl.dot: unsupported dtype {a.dtype}; use float16, bfloat16, float32 or int8"
        )
    if acc is not None and (not isinstance(acc, Block) or acc.shape != (m, n)):
        got = _shape_str(acc.shape) if isinstance(acc, Block) else repr(acc)
        raise KernelError(f"tl.dot: acc must be a {m}x{n} block, got {got}")
    out = a.value.astype(out_dt) @ b.value.astype(out_dt)
    if acc is not None:
        out = (out + acc.value).astype(np.result_type(out_dt, acc.dtype))
    prog = _program()
    prog.gemm(m, n, k, a.value.nbytes + b.value.nbytes, a.dtype == np.float32)
    return Block(out, tcm=True, what="tl.dot")


def exp(x: Any) -> Block:
    return _elementwise("exp", np.exp, x)


def log(x: Any) -> Block:
    return _elementwise("log", np.log, x)


def sqrt(x: Any) -> Block:
    return _elementwise("sqrt", np.sqrt, x)


def abs(x: Any) -> Block:  # noqa: A001 - Triton's name
    return _elementwise("abs", np.abs, x)


def sigmoid(x: Any) -> Block:
    return _elementwise("sigmoid", lambda v: 1 / (1 + np.exp(-v)), x)


def maximum(x: Any, y: Any) -> Block:
    return _elementwise("maximum", np.maximum, x, y)


def minimum(x: Any, y: Any) -> Block:
    return _elementwise("minimum", np.minimum, x, y)


def where(condition: Any, x: Any, y: Any) -> Block:
    return _elementwise("where", np.where, condition, x, y)


def _reduce(name: str, fn: Callable[..., Any], x: Any, axis: int | None, keep_dims: bool) -> Block:
    if not isinstance(x, Block):
        raise KernelError(f"tl.{name} needs a block, got {x!r}")
    if axis is not None and not -x.value.ndim <= axis < x.value.ndim:
        raise KernelError(f"tl.{name}: axis {axis} is out of range for a {x.value.ndim}-D block")
    v = x.value
    if np.issubdtype(v.dtype, np.floating) and v.dtype.itemsize < 4:
        out = fn(v.astype(np.float32), axis=axis, keepdims=keep_dims).astype(v.dtype)
    elif name == "sum" and np.issubdtype(v.dtype, np.integer) and v.dtype.itemsize <= 4:
        # As Triton: integer sums accumulate in int32 (NumPy would widen to int64).
        out = fn(v, axis=axis, keepdims=keep_dims, dtype=np.int32)
    else:
        out = fn(v, axis=axis, keepdims=keep_dims)
    return _charge(name, out, (x,), ops=x.numel)


def sum(x: Block, axis: int | None = None, keep_dims: bool = False, **_options: Any) -> Block:  # noqa: A001
    return _reduce("sum", np.sum, x, axis, keep_dims)


def max(x: Block, axis: int | None = None, keep_dims: bool = False, **_options: Any) -> Block:  # noqa: A001
    return _reduce("max", np.max, x, axis, keep_dims)


def min(x: Block, axis: int | None = None, keep_dims: bool = False, **_options: Any) -> Block:  # noqa: A001
    return _reduce("min", np.min, x, axis, keep_dims)


# -- shape ---------------------------------------------------------------------------------
def trans(x: Block) -> Block:
    if not isinstance(x, Block) or x.value.ndim != 2:
        raise KernelError("tl.trans needs a 2-D block")
    return _charge("trans", np.ascontiguousarray(x.value.T), (x,))


def reshape(x: Block, shape: Sequence[int]) -> Block:
    try:
        out = x.value.reshape(tuple(shape))
    except ValueError:
        raise KernelError(
            f"tl.reshape: cannot reshape a {_shape_str(x.shape)} block to {tuple(shape)}"
        ) from None
    view = Block(out)
    view._base = x
    return view


def broadcast_to(x: Any, shape: Sequence[int]) -> Block:
    try:
        out = np.broadcast_to(_array(x), tuple(shape)).copy()
    except ValueError:
        raise KernelError(f"tl.broadcast_to: cannot broadcast to {tuple(shape)}") from None
    return _charge("broadcast_to", out, (x,))


def timestamp(name: str) -> None:
    """Record this PE's simulated time under ``name`` (free; not in Triton). The host reads it in
    ``Launch.pes[i].marks``: a way to time a phase of a kernel."""
    _program().timestamp(str(name))


# -- inter-PE queues (IPCQ) ----------------------------------------------------------------
def pe_id() -> tuple[int, int, int]:
    """This program's PE as ``(sip, cube, pe)``."""
    return _program().pe_id()


def neighbor(direction: str) -> tuple[int, int, int] | None:
    """The PE next to this one in direction ``"N"``, ``"E"``, ``"S"`` or ``"W"`` of the PE grid
    (None at its edge); neighbours may be in another cube or another SIP."""
    return _program().neighbor(direction)


def send(value: Any, dst: Any) -> None:
    """Send a block to PE ``dst`` (``(sip, cube, pe)`` or a direction) over IPCQ. Posted: the
    program goes on once the block has been read from TCM and a credit was free for each
    slot-sized chunk (docs/collectives.md)."""
    if not isinstance(value, Block):
        value = Block(np.asarray(value))
    _program().send(dst, value.value)


def recv(src: Any) -> Block:
    """Receive the next block PE ``src`` sent to this PE; blocks until all of it has arrived."""
    prog = _program()
    data = prog.recv(src)
    return Block(data, tcm=True, what="tl.recv")


def cat(a: Block, b: Block, **_options: Any) -> Block:
    """``a`` and ``b`` joined along axis 0 (pe_math: one operation per element)."""
    if not (isinstance(a, Block) and isinstance(b, Block)):
        raise KernelError("tl.cat needs two blocks")
    if a.shape[1:] != b.shape[1:]:
        raise KernelError(
            f"tl.cat: shapes {_shape_str(a.shape)} and {_shape_str(b.shape)} differ beyond axis 0"
        )
    return _charge("cat", np.concatenate([a.value, b.value]), (a, b))
