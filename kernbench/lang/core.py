"""Blocks, pointers and the calls of the kernel language.

A kernel sees two kinds of values besides Python scalars:

- :class:`Block`: an n-dimensional array of one dtype (Triton's tensor). Arithmetic on blocks
  is elementwise with NumPy broadcasting and Triton's type promotion
  (:mod:`kernbench.lang.promotion`).
- :class:`Pointer`: a tensor argument plus an array of element offsets (``base + offsets`` as
  in Triton). ``ptr + offs`` with a block of offsets makes a block of pointers; ``tl.load``
  and ``tl.store`` move the elements they point at.

Every call reaches the program that runs it through :func:`_program`, an object the runtime
puts on the running greenlet; it charges the call's time on the PE and moves the data. This
module knows nothing about the hardware.
"""

from collections.abc import Callable, Sequence
from typing import Any

import greenlet
import numpy as np

from kernbench.core.errors import KernelError
from kernbench.lang.promotion import cast_operand, computation_type, is_int, operand

Scalar = int | float | bool


def _program() -> Any:
    prog = getattr(greenlet.getcurrent(), "kernel_program", None)
    if prog is None:
        raise KernelError(
            "tl.* calls run only inside a kernel started with launch(kernel, grid, ...)"
        )
    return prog


def _shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape) if len(shape) else "scalar"


class Block:
    """A block of values in a kernel. ``tcm`` blocks hold data and occupy the PE's TCM while
    they are alive; index and mask blocks do not (they live in address-generator registers).

    ``ready`` is the simulated time at which the block's value exists on the PE (the end of the
    call that made it): a pipelined PE issues calls before their operands are ready
    (docs/kernels.md, "The PE pipeline"). A block from an asynchronous ``tl.load`` is
    *pending* until its value is first read: reading it waits for the DMA."""

    __slots__ = ("_value", "_tcm", "_prog", "_base", "ready", "_load", "_stage")

    def __init__(
        self, value: np.ndarray, tcm: bool = False, what: str = "block", ready: float = 0.0
    ):
        self._value = value
        self._tcm = 0
        self._prog = None
        self._base = None
        self._load = None
        self._stage = None
        self.ready = ready
        if tcm:
            prog = _program()
            shape = _shape_str(value.shape)
            prog.tcm_alloc(value.nbytes, f"{what} of a {shape} {value.dtype} block")
            self._tcm = value.nbytes
            self._prog = prog

    @classmethod
    def pending(cls, load: Any, placeholder: np.ndarray, what: str) -> "Block":
        """The block of an asynchronous load: ``placeholder`` gives its shape and dtype, and
        ``load.values()`` its value once the data have arrived (``load.ready``)."""
        block = cls(placeholder, tcm=True, what=what)
        block._load = block._stage = load
        return block

    def __del__(self) -> None:
        if self._tcm and self._prog is not None:
            if self._stage is not None:  # a pipelined load's buffer: its stage frees it
                self._stage.drop(self._tcm)
            else:
                self._prog.tcm_free(self._tcm)

    @property
    def value(self) -> np.ndarray:
        """The block's values (for a pending load: once its data have arrived)."""
        load = self._load
        if load is not None:
            self._value = load.values()
            self.ready = load.ready
            self._load = None
        return self._value

    def _view(self, arr: np.ndarray) -> "Block":
        """A block that shows this block's data differently (no data move, no time)."""
        out = Block(np.asarray(arr), ready=self.ready)
        out._base = self
        return out

    def root(self) -> "Block":
        """The block whose buffer this one views (itself if it is not a view)."""
        b = self
        while b._base is not None:
            b = b._base
        return b

    # -- properties ------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._value.shape

    @property
    def dtype(self) -> np.dtype:
        return self._value.dtype

    @property
    def numel(self) -> int:
        return int(self._value.size)

    @property
    def is_data(self) -> bool:
        return bool(self._tcm) or (self._base is not None and self._base.is_data)

    def __repr__(self) -> str:
        return f"Block({_shape_str(self.shape)}, {self.dtype})"

    def to(
        self, dtype: Any, fp_downcast_rounding: str | None = None, bitcast: bool = False
    ) -> "Block":
        """Cast (pe_math: one operation per element). ``bitcast=True`` reinterprets the bits
        (same element size); ``fp_downcast_rounding`` accepts only round-to-nearest ("rtne")."""
        dt = np.dtype(dtype)
        if fp_downcast_rounding not in (None, "rtne"):
            raise KernelError(
                f"Block.to: fp_downcast_rounding={fp_downcast_rounding!r} is not modelled; "
                "casts round to nearest even (rtne)"
            )
        if bitcast:
            if dt.itemsize != self.dtype.itemsize:
                raise KernelError(f"Block.to(bitcast=True): {self.dtype} and {dt} differ in size")
            return _charge("bitcast", self.value.view(dt), (self,))
        with np.errstate(all="ignore"):
            return _charge("to", self.value.astype(dt), (self,))

    def __getitem__(self, index: Any) -> "Block":
        """Views such as ``x[:, None]``: no data moves, so no time is charged."""
        try:
            view = self.value[index]
        except (IndexError, TypeError, ValueError) as exc:
            raise KernelError(
                f"indexing a {_shape_str(self.shape)} block with {index!r}: {exc}"
            ) from None
        return self._view(view)

    def __len__(self) -> int:
        return len(self._value)

    def _scalar(self) -> Any:
        if self.value.size != 1:
            raise KernelError(
                f"a {_shape_str(self.shape)} block has no single truth value or number; "
                "use tl.where or a reduction"
            )
        return self.value.reshape(-1)[0]

    def __bool__(self) -> bool:
        return bool(self._scalar())

    def __int__(self) -> int:
        return int(self._scalar())

    def __float__(self) -> float:
        return float(self._scalar())

    def __index__(self) -> int:
        return int(self._scalar())

    # -- arithmetic ------------------------------------------------------------------------
    def __add__(self, o: Any) -> Any:
        if isinstance(o, Pointer):  # offsets + ptr, as Triton allows
            return o + self
        return _binary("+", self, o)

    def __radd__(self, o: Any) -> "Block":
        return _binary("+", o, self)

    def __sub__(self, o: Any) -> "Block":
        return _binary("-", self, o)

    def __rsub__(self, o: Any) -> "Block":
        return _binary("-", o, self)

    def __mul__(self, o: Any) -> "Block":
        return _binary("*", self, o)

    def __rmul__(self, o: Any) -> "Block":
        return _binary("*", o, self)

    def __truediv__(self, o: Any) -> "Block":
        return _binary("/", self, o)

    def __rtruediv__(self, o: Any) -> "Block":
        return _binary("/", o, self)

    def __floordiv__(self, o: Any) -> "Block":
        return _binary("//", self, o)

    def __rfloordiv__(self, o: Any) -> "Block":
        return _binary("//", o, self)

    def __mod__(self, o: Any) -> "Block":
        return _binary("%", self, o)

    def __rmod__(self, o: Any) -> "Block":
        return _binary("%", o, self)

    def __lshift__(self, o: Any) -> "Block":
        return _binary("<<", self, o)

    def __rshift__(self, o: Any) -> "Block":
        return _binary(">>", self, o)

    def __and__(self, o: Any) -> "Block":
        return _binary("&", self, o)

    def __rand__(self, o: Any) -> "Block":
        return _binary("&", o, self)

    def __or__(self, o: Any) -> "Block":
        return _binary("|", self, o)

    def __ror__(self, o: Any) -> "Block":
        return _binary("|", o, self)

    def __xor__(self, o: Any) -> "Block":
        return _binary("^", self, o)

    def __rxor__(self, o: Any) -> "Block":
        return _binary("^", o, self)

    def __rlshift__(self, o: Any) -> "Block":
        return _binary("<<", o, self)

    def __rrshift__(self, o: Any) -> "Block":
        return _binary(">>", o, self)

    def __lt__(self, o: Any) -> "Block":
        return _binary("<", self, o)

    def __le__(self, o: Any) -> "Block":
        return _binary("<=", self, o)

    def __gt__(self, o: Any) -> "Block":
        return _binary(">", self, o)

    def __ge__(self, o: Any) -> "Block":
        return _binary(">=", self, o)

    def __eq__(self, o: Any) -> "Block":  # type: ignore[override]
        return _binary("==", self, o)

    def __ne__(self, o: Any) -> "Block":  # type: ignore[override]
        return _binary("!=", self, o)

    def __neg__(self) -> "Block":
        return _charge("-", np.negative(self.value), (self,))

    def __pos__(self) -> "Block":
        return self

    def __invert__(self) -> "Block":
        if not is_int(self.dtype):
            raise KernelError(f"operator ~ needs an integer or bool block, got {self.dtype}")
        return _charge("~", np.invert(self.value), (self,))

    __hash__ = None  # type: ignore[assignment]


class pointer_type:
    """The type of a pointer argument; ``element_ty`` is the tensor's dtype (as in Triton)."""

    def __init__(self, element_ty: np.dtype):
        self.element_ty = element_ty

    def __repr__(self) -> str:
        return f"pointer<{self.element_ty}>"


class Pointer:
    """A tensor argument and a block of element offsets into it (row-major, in elements)."""

    __slots__ = ("target", "offsets")

    def __init__(self, target: Any, offsets: np.ndarray | None = None):
        self.target = target
        self.offsets = np.zeros((), np.int64) if offsets is None else offsets

    @property
    def dtype(self) -> pointer_type:
        return pointer_type(self.target.dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.offsets.shape

    def __repr__(self) -> str:
        return f"Pointer({self.target!r}, {_shape_str(self.shape)})"

    def _moved(self, op: str, o: Any, sign: int) -> "Pointer":
        if isinstance(o, Pointer):
            raise KernelError(f"pointer {op} pointer is not defined; add offsets to one pointer")
        off = o.value if isinstance(o, Block) else np.asarray(o)
        if not np.issubdtype(off.dtype, np.integer):
            raise KernelError(f"pointer offsets must be integers, got {off.dtype}")
        try:
            new = self.offsets + sign * off.astype(np.int64)
        except ValueError:
            raise KernelError(
                f"pointer {op} offsets: shapes {_shape_str(self.shape)} and "
                f"{_shape_str(off.shape)} do not broadcast"
            ) from None
        # Address generation: dispatch only, like index arithmetic.
        _program().compute("pointer " + op, 0, 0)
        return Pointer(self.target, new)

    def __add__(self, o: Any) -> "Pointer":
        return self._moved("+", o, 1)

    __radd__ = __add__

    def __sub__(self, o: Any) -> "Pointer":
        return self._moved("-", o, -1)

    def __getitem__(self, index: Any) -> "Pointer":
        return Pointer(self.target, np.asarray(self.offsets[index]))


def _array(x: Any) -> Any:
    if isinstance(x, Block):
        return x.value
    if isinstance(x, Pointer):
        raise KernelError("a pointer cannot take part in arithmetic except + and - offsets")
    return x


def _shapes(args: Sequence[Any]) -> str:
    return ", ".join(_shape_str(a.shape) for a in args if isinstance(a, Block))


def _charge(name: str, out: Any, inputs: Sequence[Any], ops: int | None = None) -> Block:
    """Charge one call for ``out`` and wrap it; data in means data out (TCM). Data costs pe_math
    time; index and mask arithmetic runs in the address generator: dispatch only."""
    out = np.asarray(out)
    data = any(isinstance(i, Block) and i.is_data for i in inputs)
    work = (out.size if ops is None else ops) if data else 0
    ready = _program().compute(name, work, out.nbytes if data else 0, inputs)
    return Block(out, tcm=data, what=f"the result of {name}", ready=ready)


def _c_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer division rounding toward zero, as C and Triton (NumPy floors)."""
    q = np.floor_divide(a, b)
    inexact = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
    return np.where(inexact, q + 1, q).astype(q.dtype, copy=False)


_ARITHMETIC = {"+": np.add, "-": np.subtract, "*": np.multiply}
_BITWISE = {
    "&": np.bitwise_and,
    "|": np.bitwise_or,
    "^": np.bitwise_xor,
    "<<": np.left_shift,
    ">>": np.right_shift,
}
_COMPARE = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}


def promoted(name: str, a: Any, b: Any, div_or_mod: bool = False) -> tuple[Any, Any, np.dtype]:
    """Both operands cast to Triton's computation type of ``a`` and ``b``, and that type."""
    (va, da, sa), (vb, db, sb) = operand(_array(a)), operand(_array(b))
    try:
        ct = computation_type(da, sa, db, sb, div_or_mod)
        return cast_operand(va, sa, ct), cast_operand(vb, sb, ct), ct
    except KernelError as exc:
        raise KernelError(f"operator {name}: {exc}") from None


def _binary(name: str, a: Any, b: Any) -> Block:
    """A Python operator on blocks with Triton's types: operands are cast to their computation
    type (:mod:`kernbench.lang.promotion`); ``/`` of integers is fp32; ``//`` and ``%`` round
    toward zero as in C; bitwise operators take integers only; comparisons give bool."""
    div_or_mod = name in ("/", "//", "%")
    xa, xb, ct = promoted(name, a, b, div_or_mod)
    if (name in _BITWISE or name == "//") and not is_int(ct):
        raise KernelError(f"operator {name} needs integer operands (as in Triton), got {ct}")
    try:
        with np.errstate(all="ignore"):
            if name == "/":
                if is_int(ct):
                    xa, xb = xa.astype(np.float32), xb.astype(np.float32)
                out = np.true_divide(xa, xb)
            elif name == "//":
                out = _c_divide(xa, xb)
            elif name == "%":
                out = np.fmod(xa, xb)
            elif name in _COMPARE:
                out = _COMPARE[name](xa, xb)
            else:
                out = (_ARITHMETIC.get(name) or _BITWISE[name])(xa, xb)
    except ValueError:
        raise KernelError(
            f"operator {name}: block shapes {_shapes((a, b))} do not broadcast"
        ) from None
    if name not in _COMPARE:
        out = np.asarray(out).astype(
            ct if name != "/" or not is_int(ct) else np.float32, copy=False
        )
    return _charge(name, out, (a, b))


def _elementwise(name: str, fn: Callable[..., Any], *args: Any) -> Block:
    try:
        with np.errstate(all="ignore"):
            out = fn(*(_array(a) for a in args))
    except ValueError:
        raise KernelError(f"tl.{name}: block shapes {_shapes(args)} do not broadcast") from None
    return _charge(name, out, args)
