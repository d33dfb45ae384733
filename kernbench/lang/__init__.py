"""The kernel language, in the style of Triton: ``import kernbench.lang as tl``.

A kernel is a plain Python function (optionally decorated with :func:`jit`) whose tensor
arguments arrive as pointers. It runs once per program instance of its launch grid, each
instance on one PE, and every call below costs simulated time on that PE (docs/kernels.md):
dispatch on pe_cpu and pe_scheduler, then DMA (``load``/``store``/atomics), pe_gemm (``dot``)
or pe_math (arithmetic, ``exp``, reductions, ...). Values are real NumPy data.

Types follow Triton's rules (:mod:`kernbench.lang.promotion`). Differences from Triton, all
listed in docs/kernels.md: ``program_id`` returns a Python int and Python scalars are always
weak (as constexprs); ``dot`` accumulates in fp32 (int32 for int8); a kernel runs as Python, so
``constexpr`` is only an annotation.
"""

import builtins
import math as _pymath
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from kernbench.core.errors import KernelError
from kernbench.lang.autotune import Autotuner, Config, autotune
from kernbench.lang.control import (
    assume,
    constexpr,
    debug_barrier,
    jit,
    max_constancy,
    max_contiguous,
    multiple_of,
    range,
    static_assert,
    static_range,
)
from kernbench.lang.core import (
    Block,
    Pointer,
    Scalar,
    _array,
    _charge,
    _program,
    _shape_str,
    pointer_type,
)
from kernbench.lang.dtypes import (
    bfloat16,
    float16,
    float32,
    float64,
    int1,
    int8,
    int16,
    int32,
    int64,
    uint8,
    uint16,
    uint32,
    uint64,
)
from kernbench.lang.memory import (
    BlockPointer,
    advance,
    atomic_add,
    atomic_and,
    atomic_cas,
    atomic_max,
    atomic_min,
    atomic_or,
    atomic_xchg,
    atomic_xor,
    load,
    make_block_ptr,
    store,
)
from kernbench.lang.ops import (
    PropagateNan,
    abs,
    argmax,
    argmin,
    cdiv,
    ceil,
    cos,
    cumprod,
    cumsum,
    div_rn,
    erf,
    exp,
    exp2,
    expand_dims,
    fdiv,
    floor,
    fma,
    log,
    log2,
    max,
    maximum,
    min,
    minimum,
    rsqrt,
    sigmoid,
    sin,
    softmax,
    sqrt,
    sqrt_rn,
    sum,
    where,
)

__all__ = [
    "ceil",
    "div_rn",
    "fdiv",
    "floor",
    "int1",
    "math",
    "max_constancy",
    "permute",
    "ravel",
    "sqrt_rn",
    "tensor",
    "view",
    "Autotuner",
    "Block",
    "BlockPointer",
    "Config",
    "Pointer",
    "PropagateNan",
    "abs",
    "advance",
    "arange",
    "argmax",
    "argmin",
    "assume",
    "atomic_add",
    "atomic_and",
    "atomic_cas",
    "atomic_max",
    "atomic_min",
    "atomic_or",
    "atomic_xchg",
    "atomic_xor",
    "autotune",
    "bfloat16",
    "broadcast_to",
    "cat",
    "cdiv",
    "constexpr",
    "cos",
    "cumprod",
    "cumsum",
    "debug_barrier",
    "dot",
    "erf",
    "exp",
    "exp2",
    "expand_dims",
    "float16",
    "float32",
    "float64",
    "fma",
    "full",
    "full_like",
    "int8",
    "int16",
    "int32",
    "int64",
    "jit",
    "load",
    "log",
    "log2",
    "make_block_ptr",
    "max",
    "max_contiguous",
    "maximum",
    "min",
    "minimum",
    "multiple_of",
    "neighbor",
    "num_programs",
    "pe_id",
    "pointer_type",
    "program_id",
    "range",
    "recv",
    "reshape",
    "rsqrt",
    "send",
    "sigmoid",
    "sin",
    "softmax",
    "sqrt",
    "static_assert",
    "static_range",
    "store",
    "sum",
    "timestamp",
    "trans",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "where",
    "zeros",
    "zeros_like",
]


# -- program -------------------------------------------------------------------------------
def program_id(axis: int = 0) -> int:
    """The index of this program instance along ``axis`` (0, 1 or 2) of the launch grid."""
    return _program().program_id(axis)


def num_programs(axis: int = 0) -> int:
    """The launch grid's size along ``axis``."""
    return _program().num_programs(axis)


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
    nbytes = _pymath.prod(shape) * dtype.itemsize
    prog = _program()
    prog.tcm_alloc(nbytes, f"tl.{name} of a {_shape_str(shape)} {dtype} block")
    prog.tcm_free(nbytes)


def zeros(shape: Any, dtype: Any = float32) -> Block:
    """A block of zeros (data: occupies TCM)."""
    shape = _check_shape("zeros", shape)
    _reserve("zeros", shape, np.dtype(dtype))
    value = np.zeros(shape, np.dtype(dtype))
    ready = _program().compute("zeros", value.size, value.nbytes, ())
    return Block(value, tcm=True, what="tl.zeros", ready=ready)


def full(shape: Any, value: Scalar, dtype: Any) -> Block:
    """A block filled with ``value`` (data: occupies TCM)."""
    shape = _check_shape("full", shape)
    _reserve("full", shape, np.dtype(dtype))
    arr = np.full(shape, value, np.dtype(dtype))
    ready = _program().compute("full", arr.size, arr.nbytes, ())
    return Block(arr, tcm=True, what="tl.full", ready=ready)


def zeros_like(input: Block) -> Block:
    """``zeros(input.shape, input.dtype)``."""
    if not isinstance(input, Block):
        raise KernelError(f"tl.zeros_like needs a block, got {input!r}")
    return zeros(input.shape, input.dtype)


def full_like(input: Block, value: Scalar, dtype: Any = None) -> Block:
    """``full(input.shape, value, dtype or input.dtype)`` (not in triton.language; Gluon and
    NumPy have it)."""
    if not isinstance(input, Block):
        raise KernelError(f"tl.full_like needs a block, got {input!r}")
    return full(input.shape, value, input.dtype if dtype is None else dtype)


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
    inputs = (a, b) if acc is None else (a, b, acc)
    ready = prog.gemm(m, n, k, a.value.nbytes + b.value.nbytes, a.dtype.name, inputs)
    return Block(out, tcm=True, what="tl.dot", ready=ready)


# -- shape ---------------------------------------------------------------------------------
def _shape_args(shape: tuple[Any, ...]) -> tuple[Any, ...]:
    """Triton's ``*shape``: ``f(x, 4, 8)`` or ``f(x, (4, 8))``."""
    if len(shape) == 1 and isinstance(shape[0], Sequence):
        return tuple(shape[0])
    return shape


def trans(input: Block, *dims: Any) -> Block:
    """The block with its dimensions permuted by ``dims`` (default: a 2-D transpose); pe_math:
    one operation per element."""
    if not isinstance(input, Block):
        raise KernelError("tl.trans needs a block")
    perm = _shape_args(dims)
    if not perm:
        if input.value.ndim != 2:
            raise KernelError(
                f"tl.trans without dims needs a 2-D block, got {_shape_str(input.shape)}"
            )
        perm = (1, 0)
    if sorted(perm) != list(builtins.range(input.value.ndim)):
        raise KernelError(
            f"tl.trans: dims {perm} are not a permutation of the {input.value.ndim} dimensions"
        )
    return _charge("trans", np.ascontiguousarray(np.transpose(input.value, perm)), (input,))


def permute(input: Block, *dims: Any) -> Block:
    """``trans(input, *dims)``."""
    return trans(input, *dims)


def reshape(input: Block, *shape: Any, can_reorder: bool = False) -> Block:
    """A view with another shape (free); the element order is always kept."""
    new = _shape_args(shape)
    try:
        out = input.value.reshape(tuple(new))
    except (ValueError, TypeError):
        raise KernelError(
            f"tl.reshape: cannot reshape a {_shape_str(input.shape)} block to {tuple(new)}"
        ) from None
    return input._view(out)


def view(input: Block, *shape: Any) -> Block:
    """``reshape`` (Triton's older name)."""
    return reshape(input, *shape)


def ravel(x: Block, can_reorder: bool = False) -> Block:
    """A flat view (free)."""
    return reshape(x, (x.numel,))


def broadcast_to(input: Any, *shape: Any) -> Block:
    new = tuple(_shape_args(shape))
    try:
        out = np.broadcast_to(_array(input), new).copy()
    except ValueError:
        raise KernelError(f"tl.broadcast_to: cannot broadcast to {new}") from None
    return _charge("broadcast_to", out, (input,))


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
    _program().send(dst, value.value, value.ready)


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


# -- member functions, as Triton's tensor methods (x.exp(), x.sum(axis=0), p.advance(...)) ----
for _name, _fn in {
    "abs": abs,
    "argmax": argmax,
    "argmin": argmin,
    "cdiv": cdiv,
    "cos": cos,
    "cumprod": cumprod,
    "cumsum": cumsum,
    "erf": erf,
    "exp": exp,
    "exp2": exp2,
    "expand_dims": expand_dims,
    "log": log,
    "log2": log2,
    "max": max,
    "min": min,
    "rsqrt": rsqrt,
    "sigmoid": sigmoid,
    "sin": sin,
    "softmax": softmax,
    "sqrt": sqrt,
    "sum": sum,
    "trans": trans,
    "permute": permute,
    "reshape": reshape,
    "view": view,
    "ravel": ravel,
    "broadcast_to": broadcast_to,
    "floor": floor,
    "ceil": ceil,
}.items():
    setattr(Block, _name, _fn)
for _name, _fn in {
    "atomic_add": atomic_add,
    "atomic_and": atomic_and,
    "atomic_cas": atomic_cas,
    "atomic_max": atomic_max,
    "atomic_min": atomic_min,
    "atomic_or": atomic_or,
    "atomic_xchg": atomic_xchg,
    "atomic_xor": atomic_xor,
}.items():
    setattr(Pointer, _name, _fn)
del _name, _fn


# Triton's ``tl.math`` namespace (``tl.math.exp2(x)``, ...): the same functions.
math = SimpleNamespace(
    abs=abs, ceil=ceil, cos=cos, div_rn=div_rn, erf=erf, exp=exp, exp2=exp2, fdiv=fdiv,
    floor=floor, fma=fma, log=log, log2=log2, rsqrt=rsqrt, sin=sin, sqrt=sqrt, sqrt_rn=sqrt_rn,
)  # fmt: skip
tensor = Block  # Triton's name for a block (isinstance(x, tl.tensor))
