"""Elementwise math, reductions and scans of the kernel language, with Triton's types.

Costs (pe_math, docs/kernels.md): an elementwise function costs one operation per output
element, whatever the function (``exp`` as ``+``); a reduction or a scan one per input element.
``softmax`` is the five calls it is made of in Triton (max, subtract, exp, sum, divide).

Types follow Triton (``triton/language/math.py``, ``standard.py``):

- ``exp``, ``exp2``, ``log``, ``log2``, ``sin``, ``cos``, ``sqrt``, ``rsqrt``, ``erf``,
  ``floor``, ``ceil`` and ``sigmoid`` take fp32 or fp64 blocks only, ``sqrt_rn`` and ``div_rn``
  fp32 only (Triton raises for fp16, bf16 and integers; cast first). A Python float is an fp32
  scalar.
- ``maximum``/``minimum`` promote bf16 to fp32 and ignore a NaN operand unless
  ``propagate_nan=tl.PropagateNan.ALL``; ``max``/``min`` reductions return fp32 for 16-bit
  floats and int32 for narrower integers and ignore NaNs; ``sum`` and ``cumsum`` return int32
  (uint32) for narrower signed (unsigned) integers and the input type for floats, bf16 scans in
  fp32; ``argmax``/``argmin`` return int32 indices, ties to the lowest index.
"""

import math as _math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kernbench.core.errors import KernelError
from kernbench.lang.core import Block, _array, _charge, _shape_str, _shapes, promoted
from kernbench.lang.dtypes import bfloat16
from kernbench.lang.promotion import (
    FLOAT16,
    FLOAT32,
    FLOAT64,
    computation_type,
    is_float,
    is_int,
    operand,
)


class PropagateNan:
    """How ``maximum``/``minimum`` treat NaN (Triton's ``tl.PropagateNan``): ``NONE`` returns
    the other operand, ``ALL`` returns NaN."""

    NONE = 0
    ALL = 0xFFFF


def _erf(v: np.ndarray) -> np.ndarray:
    return np.frompyfunc(_math.erf, 1, 1)(v.astype(np.float64)).astype(np.float64)


_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "exp": np.exp,
    "exp2": np.exp2,
    "log": np.log,
    "log2": np.log2,
    "sin": np.sin,
    "cos": np.cos,
    "sqrt": np.sqrt,
    "rsqrt": lambda v: 1 / np.sqrt(v),
    "erf": _erf,
    "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
    "floor": np.floor,
    "ceil": np.ceil,
    "sqrt_rn": np.sqrt,
}
_FP32_ONLY = ("sqrt_rn", "div_rn")


def _float_operand(name: str, x: Any) -> tuple[Any, np.dtype]:
    if not isinstance(x, Block | bool | int | float | np.generic):
        raise KernelError(f"tl.{name} needs a block or a scalar, got {x!r}")
    value, dt, _ = operand(_array(x))
    allowed = (FLOAT32,) if name in _FP32_ONLY else (FLOAT32, FLOAT64)
    if dt not in allowed:
        what = "fp32" if name in _FP32_ONLY else "fp32 or fp64"
        raise KernelError(
            f"tl.{name} takes {what} values, as Triton's math functions do, got {dt}; "
            f"cast first: tl.{name}(x.to(tl.float32))"
        )
    return value, dt


def unary(name: str, x: Any) -> Block:
    """One of Triton's libdevice-style math functions on fp32/fp64 values."""
    value, dt = _float_operand(name, x)
    with np.errstate(all="ignore"):
        out = np.asarray(_FUNCTIONS[name](np.asarray(value, dt))).astype(dt, copy=False)
    return _charge(name, out, (x,))


def exp(x: Any) -> Block:
    return unary("exp", x)


def exp2(x: Any) -> Block:
    return unary("exp2", x)


def log(x: Any) -> Block:
    return unary("log", x)


def log2(x: Any) -> Block:
    return unary("log2", x)


def sin(x: Any) -> Block:
    return unary("sin", x)


def cos(x: Any) -> Block:
    return unary("cos", x)


def sqrt(x: Any) -> Block:
    return unary("sqrt", x)


def sqrt_rn(x: Any) -> Block:
    """Square root rounded to nearest (fp32 only, as Triton); the same as ``sqrt`` here."""
    return unary("sqrt_rn", x)


def rsqrt(x: Any) -> Block:
    """``1 / sqrt(x)``."""
    return unary("rsqrt", x)


def erf(x: Any) -> Block:
    """The error function."""
    return unary("erf", x)


def floor(x: Any) -> Block:
    return unary("floor", x)


def ceil(x: Any) -> Block:
    return unary("ceil", x)


def sigmoid(x: Any) -> Block:
    """``1 / (1 + exp(-x))``, one call."""
    return unary("sigmoid", x)


def fdiv(x: Any, y: Any, ieee_rounding: bool = False) -> Block:
    """``x / y`` of floating-point operands in their own type (no fp32 upcast of fp16 as
    ``/`` does); rounded to nearest whatever ``ieee_rounding``."""
    xa, ya, ct = promoted("tl.fdiv", x, y)
    if not is_float(ct) or not all(
        is_float(operand(_array(v))[1]) for v in (x, y) if isinstance(v, Block)
    ):
        raise KernelError(f"tl.fdiv needs floating-point operands, got {ct}")
    return _divide("fdiv", xa, ya, ct, (x, y))


def div_rn(x: Any, y: Any) -> Block:
    """``x / y`` rounded to nearest, fp32 only (as Triton)."""
    for v in (x, y):
        _float_operand("div_rn", v)
    xa, ya, ct = promoted("tl.div_rn", x, y)
    return _divide("div_rn", xa, ya, ct, (x, y))


def _divide(name: str, xa: Any, ya: Any, ct: np.dtype, inputs: tuple[Any, ...]) -> Block:
    try:
        with np.errstate(all="ignore"):
            out = np.true_divide(xa, ya).astype(ct, copy=False)
    except ValueError:
        raise KernelError(f"tl.{name}: block shapes {_shapes(inputs)} do not broadcast") from None
    return _charge(name, out, inputs)


def abs(x: Any) -> Block:  # noqa: A001 - Triton's name
    """Absolute value, any numeric type (unsigned integers unchanged)."""
    return _charge("abs", np.abs(_array(x)), (x,))


def fma(x: Any, y: Any, z: Any) -> Block:
    """``x * y + z`` rounded once: computed in fp64 and rounded to the operands' common type
    (for fp32 and fp16 the product is exact in fp64, so only the sum can double-round)."""
    (vx, dx, sx), (vy, dy, sy), (vz, dz, sz) = (operand(_array(a)) for a in (x, y, z))
    t1 = computation_type(dx, sx, dy, sy)
    t2 = computation_type(dz, sz, t1, False)
    if not is_float(t2):
        raise KernelError(f"tl.fma needs floating-point operands, got {dx}, {dy} and {dz}")
    wide = np.float64 if t2 != FLOAT64 else np.longdouble
    try:
        with np.errstate(all="ignore"):
            out = (
                np.asarray(vx, t2).astype(wide) * np.asarray(vy, t2).astype(wide)
                + np.asarray(vz, t2).astype(wide)
            ).astype(t2)
    except ValueError:
        raise KernelError(f"tl.fma: block shapes {_shapes((x, y, z))} do not broadcast") from None
    return _charge("fma", out, (x, y, z))


def _no_bf16(x: Any) -> Any:
    if isinstance(x, Block) and x.dtype == bfloat16:
        return x.value.astype(np.float32)
    return _array(x)


def _extremum(name: str, x: Any, y: Any, propagate_nan: int) -> Block:
    if propagate_nan not in (PropagateNan.NONE, PropagateNan.ALL):
        raise KernelError(
            f"tl.{name}: propagate_nan must be a tl.PropagateNan, got {propagate_nan!r}"
        )
    xa, ya, ct = promoted(f"tl.{name}", _no_bf16(x), _no_bf16(y))
    if is_float(ct) and propagate_nan == PropagateNan.NONE:
        fn = np.fmax if name == "maximum" else np.fmin
    else:
        fn = np.maximum if name == "maximum" else np.minimum
    try:
        out = fn(xa, ya)
    except ValueError:
        raise KernelError(f"tl.{name}: block shapes {_shapes((x, y))} do not broadcast") from None
    return _charge(name, out, (x, y))


def maximum(x: Any, y: Any, propagate_nan: int = PropagateNan.NONE) -> Block:
    return _extremum("maximum", x, y, propagate_nan)


def minimum(x: Any, y: Any, propagate_nan: int = PropagateNan.NONE) -> Block:
    return _extremum("minimum", x, y, propagate_nan)


def where(condition: Any, x: Any, y: Any) -> Block:
    """``x`` where ``condition``, else ``y``; ``x`` and ``y`` take their computation type."""
    cond = np.asarray(_array(condition)).astype(bool, copy=False)
    xa, ya, _ct = promoted("tl.where", x, y)
    try:
        out = np.where(cond, xa, ya)
    except ValueError:
        raise KernelError(
            f"tl.where: block shapes {_shapes((condition, x, y))} do not broadcast"
        ) from None
    return _charge("where", out, (condition, x, y))


def cdiv(x: Any, div: Any) -> Any:
    """Ceiling division ``(x + div - 1) // div``: free on Python ints, three operations on
    blocks (as Triton's)."""
    if isinstance(x, Block) or isinstance(div, Block):
        return (x + div - 1) // div
    return -(-x // div)


# -- reductions ----------------------------------------------------------------------------
def _block(name: str, x: Any) -> Block:
    if not isinstance(x, Block):
        raise KernelError(f"tl.{name} needs a block, got {x!r}")
    return x


def _axis(name: str, x: Block, axis: Any, required: bool = False) -> int | None:
    if axis is None:
        if required:
            raise KernelError(f"tl.{name} needs an axis (as in Triton)")
        return None
    nd = x.value.ndim
    if not isinstance(axis, int | np.integer) or not -nd <= axis < nd:
        raise KernelError(
            f"tl.{name}: axis {axis!r} is out of range for a {nd}-D block ({_shape_str(x.shape)})"
        )
    return int(axis) % nd


def _sum_dtype(dt: np.dtype, dtype: Any) -> np.dtype:
    """Triton's ``_pick_sum_dtype``: narrower integers widen to 32 bits."""
    if dtype is not None:
        return np.dtype(dtype)
    if dt.kind == "i" and dt.itemsize < 4:
        return np.dtype(np.int32)
    if dt.kind in "ub" and (dt.kind == "b" or dt.itemsize < 4):
        return np.dtype(np.uint32)
    return dt


def _accumulate(v: np.ndarray, out_dt: np.dtype) -> np.ndarray:
    """16-bit floats are reduced in fp32 (then rounded once to ``out_dt``)."""
    return v.astype(np.float32) if v.dtype in (FLOAT16, bfloat16) else v.astype(out_dt, copy=False)


def sum(  # noqa: A001 - Triton's name
    input: Block, axis: int | None = None, keep_dims: bool = False, dtype: Any = None
) -> Block:
    x = _block("sum", input)
    ax = _axis("sum", x, axis)
    out_dt = _sum_dtype(x.dtype, dtype)
    with np.errstate(all="ignore"):
        acc = _accumulate(x.value, out_dt)
        out = np.sum(acc, axis=ax, keepdims=keep_dims, dtype=acc.dtype).astype(out_dt)
    return _charge("sum", out, (x,), ops=x.numel)


def _widened(v: np.ndarray) -> np.ndarray:
    """Triton's max/min without indices: 16-bit floats in fp32, narrower integers in int32."""
    if is_float(v.dtype) and v.dtype.itemsize < 4:
        return v.astype(np.float32)
    if is_int(v.dtype) and (v.dtype.kind == "b" or v.dtype.itemsize < 4):
        return v.astype(np.int32)
    return v


def _extreme(
    name: str,
    input: Block,
    axis: int | None,
    return_indices: bool,
    keep_dims: bool,
) -> Any:
    x = _block(name, input)
    biggest = name in ("max", "argmax")
    if return_indices:
        ax = _axis(name, x, axis, required=True)
        v = x.value.astype(np.float32) if x.dtype == bfloat16 else x.value
        idx = (np.argmax if biggest else np.argmin)(v, axis=ax, keepdims=True)
        values = np.take_along_axis(v, idx, axis=ax)
        if not keep_dims:
            values, idx = values.squeeze(ax), idx.squeeze(ax)
        return values, idx.astype(np.int32)
    ax = _axis(name, x, axis)
    v = _widened(x.value)
    fn = (
        (np.fmax if biggest else np.fmin)
        if is_float(v.dtype)
        else (np.maximum if biggest else np.minimum)
    )
    if v.size == 0:
        raise KernelError(f"tl.{name} of an empty block")
    out = fn.reduce(v, axis=ax, keepdims=keep_dims) if ax is not None else fn.reduce(v.reshape(-1))
    if ax is None and keep_dims:
        out = np.reshape(out, (1,) * v.ndim)
    return out


def max(  # noqa: A001 - Triton's name
    input: Block,
    axis: int | None = None,
    return_indices: bool = False,
    return_indices_tie_break_left: bool = True,
    keep_dims: bool = False,
) -> Any:
    """Maximum along ``axis`` (NaNs ignored); with ``return_indices`` also its int32 index
    (the lowest among ties)."""
    out = _extreme("max", input, axis, return_indices, keep_dims)
    if return_indices:
        return _pair("max", *out, input)
    return _charge("max", out, (input,), ops=input.numel)


def min(  # noqa: A001 - Triton's name
    input: Block,
    axis: int | None = None,
    return_indices: bool = False,
    return_indices_tie_break_left: bool = True,
    keep_dims: bool = False,
) -> Any:
    """Minimum along ``axis`` (NaNs ignored); with ``return_indices`` also its int32 index
    (the lowest among ties)."""
    out = _extreme("min", input, axis, return_indices, keep_dims)
    if return_indices:
        return _pair("min", *out, input)
    return _charge("min", out, (input,), ops=input.numel)


def _pair(name: str, values: np.ndarray, idx: np.ndarray, x: Block) -> tuple[Block, Block]:
    """One reduction call that yields values and their indices (both in TCM for data)."""
    first = _charge(name, values, (x,), ops=x.numel)
    idx_block = Block(np.asarray(idx), tcm=x.is_data, what=f"the indices of {name}")
    idx_block.ready = first.ready
    return first, idx_block


def argmax(input: Block, axis: int, tie_break_left: bool = True, keep_dims: bool = False) -> Block:
    """Index (int32) of the maximum along ``axis``; ties go to the lowest index (also when
    ``tie_break_left=False``, where Triton may pick any of them)."""
    _values, idx = _extreme("argmax", input, axis, True, keep_dims)
    return _charge("argmax", idx, (input,), ops=input.numel)


def argmin(input: Block, axis: int, tie_break_left: bool = True, keep_dims: bool = False) -> Block:
    """Index (int32) of the minimum along ``axis``; ties go to the lowest index."""
    _values, idx = _extreme("argmin", input, axis, True, keep_dims)
    return _charge("argmin", idx, (input,), ops=input.numel)


def _scan(name: str, input: Block, axis: int, reverse: bool, dtype: Any) -> Block:
    x = _block(name, input)
    if x.value.ndim == 0:
        raise KernelError(f"tl.{name} needs a block of at least one dimension")
    ax = _axis(name, x, axis)
    v = x.value.astype(np.float32) if x.dtype == bfloat16 else x.value
    out_dt = _sum_dtype(v.dtype, dtype) if name == "cumsum" else v.dtype
    acc = _accumulate(v, out_dt)
    fn = np.cumsum if name == "cumsum" else np.cumprod
    with np.errstate(all="ignore"):
        if reverse:
            out = np.flip(fn(np.flip(acc, ax), axis=ax, dtype=acc.dtype), ax)
        else:
            out = fn(acc, axis=ax, dtype=acc.dtype)
    return _charge(name, np.ascontiguousarray(out).astype(out_dt), (x,), ops=x.numel)


def cumsum(input: Block, axis: int = 0, reverse: bool = False, dtype: Any = None) -> Block:
    """Inclusive prefix sum along ``axis`` (from the end with ``reverse``)."""
    return _scan("cumsum", input, axis, reverse, dtype)


def cumprod(input: Block, axis: int = 0, reverse: bool = False) -> Block:
    """Inclusive prefix product along ``axis`` (from the end with ``reverse``)."""
    return _scan("cumprod", input, axis, reverse, None)


def softmax(
    x: Block, dim: int | None = None, keep_dims: bool = False, ieee_rounding: bool = False
) -> Block:
    """Triton's ``tl.softmax``, call for call: ``z = x - max(x, dim)``, ``exp(z) / sum(...)``.
    ``dim`` defaults to 0, as in Triton. As there, a ``dim`` other than 0 needs
    ``keep_dims=True`` for the reduced block to broadcast back along ``dim``."""
    _block("softmax", x)
    d = 0 if dim is None else dim
    z = x - max(x, d, keep_dims=keep_dims)
    num = exp(z)
    den = sum(num, d, keep_dims=keep_dims)
    return fdiv(num, den, ieee_rounding)


def expand_dims(input: Block, axis: int | Sequence[int]) -> Block:
    """``input`` with new length-1 axes at ``axis`` (a view: free, like indexing)."""
    x = _block("expand_dims", input)
    axes = list(axis) if isinstance(axis, Sequence) else [axis]
    nd = x.value.ndim + len(axes)
    norm = []
    for a in axes:
        if not isinstance(a, int | np.integer) or not -nd <= a < nd:
            raise KernelError(f"tl.expand_dims: axis {a!r} is out of range for {nd} dimensions")
        norm.append(int(a) % nd)
    if len(set(norm)) != len(norm):
        raise KernelError(f"tl.expand_dims: duplicate axes {tuple(norm)}")
    return x._view(np.expand_dims(x.value, tuple(norm)))
