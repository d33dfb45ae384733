"""Memory calls of the kernel language: ``load``/``store`` through pointer blocks and block
pointers (``make_block_ptr``, ``advance``) and the ``atomic_*`` read-modify-writes.

A block pointer is turned into a pointer block plus a mask here (its boundary check), so the
runtime sees one kind of access. An atomic hands the runtime an ``update`` function: the runtime
reads the touched elements, applies ``update`` to them at the memory and writes them back
(kernbench.runtime.kernel); this module decides what each lane does.
"""

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from kernbench.core.errors import KernelError
from kernbench.lang.core import Block, Pointer, _array, _program, _shape_str, pointer_type
from kernbench.lang.promotion import is_float, operand

_PADDING = ("", "zero", "nan")


def _ints(name: str, what: str, values: Any) -> tuple[int, ...]:
    seq = values if isinstance(values, Sequence) else (values,)
    try:
        return tuple(int(v) for v in seq)
    except (TypeError, ValueError):
        raise KernelError(f"tl.{name}: {what} must be integers, got {values!r}") from None


class BlockPointer:
    """A block pointer (``tl.make_block_ptr``): the tensor behind ``base`` seen as an n-D array
    of ``shape`` with ``strides`` (in elements) from ``base``, and a ``block_shape`` window of
    it at ``offsets``. Immutable; ``advance`` returns a moved copy."""

    __slots__ = ("target", "base", "shape", "strides", "offsets", "block_shape", "order")

    def __init__(
        self,
        target: Any,
        base: int,
        shape: tuple[int, ...],
        strides: tuple[int, ...],
        offsets: tuple[int, ...],
        block_shape: tuple[int, ...],
        order: tuple[int, ...],
    ):
        self.target = target
        self.base = base
        self.shape = shape
        self.strides = strides
        self.offsets = offsets
        self.block_shape = block_shape
        self.order = order

    @property
    def dtype(self) -> pointer_type:
        return pointer_type(self.target.dtype)

    def __repr__(self) -> str:
        return (
            f"BlockPointer({self.target!r}, block {_shape_str(self.block_shape)} at "
            f"{self.offsets} of {_shape_str(self.shape)})"
        )

    def advance(self, offsets: Sequence[Any]) -> "BlockPointer":
        return advance(self, offsets)

    def elements(self, checked: Sequence[int]) -> tuple[Pointer, np.ndarray | None]:
        """The pointer block of the window and, if ``checked`` names dimensions, the mask of
        the elements inside ``shape`` along them."""
        index = np.ix_(
            *(o + np.arange(b) for o, b in zip(self.offsets, self.block_shape, strict=True))
        )
        flat = np.full(self.block_shape, self.base, np.int64)
        for i, s in zip(index, self.strides, strict=True):
            flat = flat + i.astype(np.int64) * s
        mask = None
        for d in checked:
            inside = (index[d] >= 0) & (index[d] < self.shape[d])
            mask = inside if mask is None else mask & inside
        if mask is not None:
            mask = np.broadcast_to(mask, self.block_shape)
        return Pointer(self.target, flat), mask


def make_block_ptr(
    base: Any,
    shape: Sequence[Any],
    strides: Sequence[Any],
    offsets: Sequence[Any],
    block_shape: Sequence[int],
    order: Sequence[int],
) -> BlockPointer:
    """A block pointer into the tensor ``base`` points at (address generation: dispatch
    only). ``order`` must be a permutation of the dimensions; it describes the layout and does
    not change which elements are read."""
    if not isinstance(base, Pointer) or base.offsets.ndim != 0:
        raise KernelError(
            f"tl.make_block_ptr: base must be a scalar pointer (a tensor argument, possibly plus "
            f"an integer offset), got {base!r}"
        )
    sh = _ints("make_block_ptr", "shape", shape)
    st = _ints("make_block_ptr", "strides", strides)
    off = _ints("make_block_ptr", "offsets", offsets)
    bs = _ints("make_block_ptr", "block_shape", block_shape)
    od = _ints("make_block_ptr", "order", order)
    if not len(sh) == len(st) == len(off) == len(bs) == len(od) >= 1:
        raise KernelError(
            "tl.make_block_ptr: shape, strides, offsets, block_shape and order must have the "
            f"same length, got {len(sh)}, {len(st)}, {len(off)}, {len(bs)} and {len(od)}"
        )
    if any(b < 1 for b in bs):
        raise KernelError(f"tl.make_block_ptr: block_shape must be positive, got {bs}")
    if sorted(od) != list(range(len(od))):
        raise KernelError(
            f"tl.make_block_ptr: order must be a permutation of 0..{len(od) - 1}, got {od}"
        )
    _program().compute("make_block_ptr", 0, 0)
    return BlockPointer(base.target, int(base.offsets), sh, st, off, bs, od)


def advance(base: BlockPointer, offsets: Sequence[Any]) -> BlockPointer:
    """``base`` moved by ``offsets`` elements per dimension (address generation: dispatch
    only)."""
    if not isinstance(base, BlockPointer):
        raise KernelError(f"tl.advance needs a block pointer (tl.make_block_ptr), got {base!r}")
    off = _ints("advance", "offsets", offsets)
    if len(off) != len(base.offsets):
        raise KernelError(
            f"tl.advance: {len(off)} offsets for a {len(base.offsets)}-D block pointer"
        )
    _program().compute("advance", 0, 0)
    return BlockPointer(
        base.target,
        base.base,
        base.shape,
        base.strides,
        tuple(a + b for a, b in zip(base.offsets, off, strict=True)),
        base.block_shape,
        base.order,
    )


def _boundary_check(name: str, boundary_check: Any, ndim: int) -> tuple[int, ...]:
    if boundary_check is None or boundary_check == ():
        return ()
    dims = _ints(name, "boundary_check", boundary_check)
    if any(not 0 <= d < ndim for d in dims) or len(set(dims)) != len(dims):
        raise KernelError(
            f"tl.{name}: boundary_check must name distinct dimensions in 0..{ndim - 1}, got "
            f"{boundary_check!r}"
        )
    return tuple(sorted(dims))


def _given(boundary_check: Any) -> bool:
    if boundary_check is None:
        return False
    return not isinstance(boundary_check, Sequence) or len(boundary_check) > 0


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


def load(
    pointer: Pointer | BlockPointer,
    mask: Any = None,
    other: Any = None,
    boundary_check: Any = (),
    padding_option: str = "",
    cache_modifier: str = "",
    eviction_policy: str = "",
    volatile: bool = False,
) -> Block:
    """Load the elements ``pointer`` points at; where ``mask`` is false, ``other`` (default 0).
    Through a block pointer, elements outside its ``shape`` along the ``boundary_check``
    dimensions are not read and read as ``padding_option`` ("zero", the default here, or
    "nan"). The cache and volatility hints have no effect.

    Costs dispatch, then one DMA read of the address runs the block covers (local or remote
    HBM), then the TCM write of the bytes.
    """
    if isinstance(pointer, BlockPointer):
        if mask is not None or other is not None:
            raise KernelError(
                "tl.load: mask and other cannot be given with a block pointer; use "
                "boundary_check and padding_option"
            )
        if padding_option not in _PADDING:
            raise KernelError(
                f"tl.load: padding_option must be one of {_PADDING}, got {padding_option!r}"
            )
        dt = pointer.target.dtype
        if padding_option == "nan" and not is_float(dt):
            raise KernelError(f"tl.load: padding_option 'nan' needs a float tensor, not {dt}")
        checked = _boundary_check("load", boundary_check, len(pointer.block_shape))
        ptr, m = pointer.elements(checked)
        post = None
        if padding_option == "nan" and m is not None and not m.all():
            nan = np.asarray(np.nan).astype(dt)

            def post(values: np.ndarray) -> np.ndarray:
                return np.where(m, values, nan)

        return _loaded(_program().load(ptr, m, _site()), post)
    if not isinstance(pointer, Pointer):
        raise KernelError(f"tl.load needs a pointer (a tensor argument + offsets), got {pointer!r}")
    if _given(boundary_check) or padding_option:
        raise KernelError(
            "tl.load: boundary_check and padding_option apply only to block pointers "
            "(tl.make_block_ptr); mask a pointer block instead"
        )
    shape = pointer.shape
    m = _mask("load", mask, shape)
    post = None
    if m is not None and other is not None and not m.all():
        fill = np.asarray(_array(other)).astype(pointer.target.dtype)

        def post(values: np.ndarray) -> np.ndarray:
            return np.where(m, values, fill)

    return _loaded(_program().load(pointer, m, _site()), post)


def _site() -> Any:
    """Where in the kernel this ``tl.load`` is (the caller's code and instruction): a
    pipelined PE keeps ``num_stages`` buffers per load site, as Triton's pipeliner does per
    load of a loop."""
    frame = sys._getframe(2)
    return (frame.f_code, frame.f_lasti)


def _loaded(result: Any, post: Any) -> Block:
    """The block of a load: its values at once (a blocking PE), or a pending block whose first
    read waits for the data (a pipelined PE; ``post`` is applied when they arrive)."""
    if isinstance(result, np.ndarray):
        return Block(result if post is None else post(result), tcm=True, what="tl.load")
    result.post = post
    return Block.pending(result, result.placeholder, "tl.load")


def store(
    pointer: Pointer | BlockPointer,
    value: Any,
    mask: Any = None,
    boundary_check: Any = (),
    cache_modifier: str = "",
    eviction_policy: str = "",
) -> None:
    """Store ``value`` (cast to the tensor's dtype) where ``mask`` is true. Through a block
    pointer, ``value`` must have the block's shape and the tensor's dtype (as in Triton), and
    elements outside ``shape`` along the ``boundary_check`` dimensions are not written. The
    write is posted: the program goes on once the DMA has read the block from TCM; the launch
    completes only after every store has been committed."""
    if isinstance(pointer, BlockPointer):
        if mask is not None:
            raise KernelError(
                "tl.store: mask cannot be given with a block pointer; use boundary_check"
            )
        dt = pointer.target.dtype
        raw, vdt, _ = operand(_array(value))
        if isinstance(value, Block) and value.shape != pointer.block_shape:
            raise KernelError(
                f"tl.store: a {_shape_str(value.shape)} block through a block pointer of "
                f"block_shape {_shape_str(pointer.block_shape)}"
            )
        if vdt != dt:
            raise KernelError(
                f"tl.store: a {vdt} value into a block pointer of {dt} elements; cast it first "
                f"(.to(...)), as Triton requires"
            )
        checked = _boundary_check("store", boundary_check, len(pointer.block_shape))
        ptr, m = pointer.elements(checked)
        data = np.broadcast_to(np.asarray(raw, dt), pointer.block_shape)
        _program().store(ptr, data, m, value)
        return
    if not isinstance(pointer, Pointer):
        raise KernelError(
            f"tl.store needs a pointer (a tensor argument + offsets), got {pointer!r}"
        )
    if _given(boundary_check):
        raise KernelError(
            "tl.store: boundary_check applies only to block pointers (tl.make_block_ptr); mask "
            "a pointer block instead"
        )
    shape = pointer.shape
    raw = np.asarray(_array(value))
    try:
        with np.errstate(all="ignore"):
            data = np.broadcast_to(raw, shape).astype(pointer.target.dtype)
    except ValueError:
        raise KernelError(
            f"tl.store: a value of shape {_shape_str(raw.shape)} does not fit the pointer block "
            f"{_shape_str(shape)}"
        ) from None
    _program().store(pointer, data, _mask("store", mask, shape), value)


# -- atomics -------------------------------------------------------------------------------
# sem -> whether the atomic first waits for the program's posted stores (release semantics).
_SEMANTICS = {None: True, "": True, "acq_rel": True, "release": True, "acquire": False,
              "relaxed": False}  # fmt: skip
_SCOPES = (None, "", "gpu", "cta", "sys")

_UPDATE = {
    "add": np.add,
    "max": np.maximum,
    "min": np.minimum,
    "and": np.bitwise_and,
    "or": np.bitwise_or,
    "xor": np.bitwise_xor,
    "xchg": lambda _old, val: val,
}


def read_modify_write(
    op: str, current: np.ndarray, lanes: np.ndarray, val: np.ndarray, cmp: np.ndarray | None
) -> np.ndarray:
    """Apply lane ``k``'s ``op`` with ``val[k]`` to ``current[lanes[k]]``, one lane after
    another in row-major order, and return each lane's old value. ``current`` holds the
    memory's values of the touched elements and is updated in place."""
    with np.errstate(all="ignore"):
        if np.unique(lanes).size == lanes.size:  # every element touched once: all at once
            old = current[lanes]
            new = np.where(old == cmp, val, old) if op == "cas" else _UPDATE[op](old, val)
            current[lanes] = new
            return old
        old = np.empty(lanes.size, current.dtype)
        fn = _UPDATE.get(op)
        for k, j in enumerate(lanes.tolist()):
            o = current[j]
            old[k] = o
            if op == "cas":
                if o == cmp[k]:
                    current[j] = val[k]
            else:
                current[j] = fn(o, val[k])
        return old


def _atomic_dtype(name: str, op: str, dt: np.dtype) -> None:
    """Triton's element types for atomics (``atom_red_typechecking_impl``, ``atomic_cas``)."""
    bits = 1 if dt.kind == "b" else dt.itemsize * 8
    if op == "cas":
        ok = bits in (16, 32, 64)
    elif bits < 16 or (dt.kind in "iu" and bits == 16):
        ok = False
    elif dt.itemsize == 2:  # fp16, bf16
        ok = op == "add"
    elif op in ("and", "or", "xor"):
        ok = dt.kind in "iu"
    else:
        ok = True
    if not ok:
        raise KernelError(f"tl.{name} does not support {dt} elements (as in Triton)")


def _lanes(name: str, what: str, value: Any, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
    raw = np.asarray(_array(value))
    try:
        with np.errstate(all="ignore"):
            return np.broadcast_to(raw, shape).astype(dt).reshape(-1)
    except ValueError:
        raise KernelError(
            f"tl.{name}: {what} of shape {_shape_str(raw.shape)} does not broadcast to the "
            f"pointer block {_shape_str(shape)}"
        ) from None


def atomic(
    op: str, pointer: Any, val: Any, mask: Any, sem: Any, scope: Any, cmp: Any = None
) -> Block:
    """One ``tl.atomic_<op>``: see :func:`read_modify_write` for the values and
    ``PeWorker.atomic`` for the cost."""
    name = f"atomic_{op}"
    if not isinstance(pointer, Pointer):
        raise KernelError(
            f"tl.{name} needs a pointer (a tensor argument + offsets), got {pointer!r}"
        )
    if sem not in _SEMANTICS:
        raise KernelError(
            f"tl.{name}: sem must be 'acquire', 'release', 'acq_rel' or 'relaxed', got {sem!r}"
        )
    if scope not in _SCOPES:
        raise KernelError(f"tl.{name}: scope must be 'gpu', 'cta' or 'sys', got {scope!r}")
    dt = pointer.target.dtype
    _atomic_dtype(name, op, dt)
    shape = pointer.shape
    vals = _lanes(name, "val", val, shape, dt)
    cmps = None if cmp is None else _lanes(name, "cmp", cmp, shape, dt)
    m = _mask(name, mask, shape)

    def update(current: np.ndarray, lanes: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
        v = vals if valid is None else vals[valid]
        c = cmps if cmps is None or valid is None else cmps[valid]
        return read_modify_write(op, current, lanes, v, c)

    old = _program().atomic(name, pointer, m, _SEMANTICS[sem], update)
    return Block(old, tcm=True, what=f"tl.{name}")


def atomic_add(
    pointer: Pointer, val: Any, mask: Any = None, sem: Any = None, scope: Any = None
) -> Block:
    """``*pointer += val`` at the memory, lane by lane; returns the old values."""
    return atomic("add", pointer, val, mask, sem, scope)


def atomic_max(
    pointer: Pointer, val: Any, mask: Any = None, sem: Any = None, scope: Any = None
) -> Block:
    """``*pointer = max(*pointer, val)``; returns the old values."""
    return atomic("max", pointer, val, mask, sem, scope)


def atomic_min(
    pointer: Pointer, val: Any, mask: Any = None, sem: Any = None, scope: Any = None
) -> Block:
    """``*pointer = min(*pointer, val)``; returns the old values."""
    return atomic("min", pointer, val, mask, sem, scope)


def atomic_and(
    pointer: Pointer, val: Any, mask: Any = None, sem: Any = None, scope: Any = None
) -> Block:
    """``*pointer &= val`` (integers); returns the old values."""
    return atomic("and", pointer, val, mask, sem, scope)


def atomic_or(
    pointer: Pointer, val: Any, mask: Any = None, sem: Any = None, scope: Any = None
) -> Block:
    """``*pointer |= val`` (integers); returns the old values."""
    return atomic("or", pointer, val, mask, sem, scope)


def atomic_xor(
    pointer: Pointer, val: Any, mask: Any = None, sem: Any = None, scope: Any = None
) -> Block:
    """``*pointer ^= val`` (integers); returns the old values."""
    return atomic("xor", pointer, val, mask, sem, scope)


def atomic_xchg(
    pointer: Pointer, val: Any, mask: Any = None, sem: Any = None, scope: Any = None
) -> Block:
    """``*pointer = val``; returns the old values."""
    return atomic("xchg", pointer, val, mask, sem, scope)


def atomic_cas(pointer: Pointer, cmp: Any, val: Any, sem: Any = None, scope: Any = None) -> Block:
    """``*pointer = val`` where ``*pointer == cmp``; returns the old values (no mask, as in
    Triton)."""
    return atomic("cas", pointer, val, None, sem, scope, cmp=cmp)
