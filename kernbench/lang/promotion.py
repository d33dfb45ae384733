"""Triton's type rules for the operands of arithmetic, as NumPy dtypes.

Triton does not promote as NumPy does: an int32 block plus an fp32 block is fp32 (NumPy: fp64),
fp16 divided by fp16 is fp32, and a Python scalar joins a block's type unless it is of a higher
kind. :func:`computation_type` is Triton's ``computation_type_impl`` (``semantic.py``) and
:func:`scalar_dtype` its ``to_tensor_type``; every binary operator, ``where``, ``maximum``,
``minimum`` and ``fma`` run through them.

A Python scalar here is always a "weak" literal, as Triton's constexprs and literals are; NumPy
scalars are typed 0-d blocks (as a Triton runtime argument is a typed scalar).
"""

from typing import Any

import numpy as np

from kernbench.core.errors import KernelError
from kernbench.lang.dtypes import bfloat16

FLOAT16 = np.dtype(np.float16)
FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)
BOOL = np.dtype(np.bool_)

_FP_MIN32, _FP_MAX32 = 2.0**-126, (2 - 2.0**-23) * 2.0**127


def is_float(dt: np.dtype) -> bool:
    return dt.kind == "f" or dt == bfloat16


def is_int(dt: np.dtype) -> bool:
    """Integers and bool (Triton's int1 is an unsigned 1-bit integer)."""
    return dt.kind in "biu"


def _kind(dt: np.dtype) -> int:
    """bool < uint < int < float, Triton's ``dtype.kind()`` order."""
    if dt.kind == "b":
        return 0
    if dt.kind == "u":
        return 1
    if dt.kind == "i":
        return 2
    return 3


def _bits(dt: np.dtype) -> int:
    return 1 if dt.kind == "b" else dt.itemsize * 8


def _signed(dt: np.dtype) -> bool:
    return dt.kind == "i"


def scalar_dtype(x: bool | int | float) -> np.dtype:
    """The dtype Triton gives a Python scalar: bool -> int1, int -> int32 (uint32, int64 or
    uint64 if it does not fit), float -> fp32 (fp64 beyond fp32's normal range)."""
    if isinstance(x, bool):
        return BOOL
    if isinstance(x, int):
        for lo, hi, dt in (
            (-(2**31), 2**31, np.int32),
            (2**31, 2**32, np.uint32),
            (-(2**63), 2**63, np.int64),
            (2**63, 2**64, np.uint64),
        ):
            if lo <= x < hi:
                return np.dtype(dt)
        raise KernelError(f"the integer {x} fits no Triton integer type (64 bits at most)")
    a = abs(x)
    if a in (0.0, float("inf")) or x != x or _FP_MIN32 <= a <= _FP_MAX32:
        return FLOAT32
    return FLOAT64


def integer_promote(a: np.dtype, b: np.dtype) -> np.dtype:
    """C's usual arithmetic conversions between two integer types (bool is unsigned)."""
    if _signed(a) == _signed(b):
        return a if _bits(a) > _bits(b) else b
    if not _signed(a):
        return a if _bits(a) >= _bits(b) else b
    return b if _bits(b) >= _bits(a) else a


def computation_type(
    a: np.dtype, a_scalar: bool, b: np.dtype, b_scalar: bool, div_or_mod: bool = False
) -> np.dtype:
    """The type both operands are cast to (Triton's ``computation_type_impl``)."""
    if a_scalar != b_scalar:
        s, t = (a, b) if a_scalar else (b, a)
        if _kind(s) <= _kind(t):
            if div_or_mod and t in (FLOAT16, bfloat16):
                return FLOAT32
            return t
    if FLOAT64 in (a, b):
        return FLOAT64
    if FLOAT32 in (a, b):
        return FLOAT32
    if FLOAT16 in (a, b):
        return FLOAT32 if div_or_mod else FLOAT16
    if a == bfloat16 and b == bfloat16:
        return FLOAT32 if div_or_mod else bfloat16
    if bfloat16 in (a, b):
        return FLOAT32
    if not (is_int(a) and is_int(b)):
        raise KernelError(f"no arithmetic between {a} and {b}")
    if div_or_mod and _signed(a) != _signed(b):
        raise KernelError(
            f"cannot use /, // or % with {a} and {b}: they differ in signedness (as in Triton); "
            "cast one of them"
        )
    return integer_promote(a, b)


def operand(x: Any) -> tuple[Any, np.dtype, bool]:
    """``(value, dtype, is_python_scalar)`` of an operand that is a block's array, a Python
    scalar or a NumPy value."""
    if isinstance(x, bool | int | float) and not isinstance(x, np.generic):
        return x, scalar_dtype(x), True
    arr = np.asarray(x)
    return arr, arr.dtype, False


def cast_operand(value: Any, is_scalar: bool, dtype: np.dtype) -> np.ndarray:
    """``value`` as ``dtype``; a Python scalar must be representable (Triton's check)."""
    if is_scalar and dtype.kind in "iu":
        if value < 0 and dtype.kind == "u":
            raise KernelError(
                f"a negative scalar ({value}) with an unsigned block ({dtype}); cast one of them"
            )
        info = np.iinfo(dtype)
        if not info.min <= value <= info.max:
            raise KernelError(f"the scalar {value} is out of range for {dtype}")
    with np.errstate(all="ignore"):
        return np.asarray(value).astype(dtype, copy=False)
