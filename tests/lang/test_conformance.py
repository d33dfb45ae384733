"""Conformance of the kernel language with Triton's semantics, against NumPy.

Each function runs in a kernel on the simulator on odd shapes (7x13, 1x1, 1x129, blocks the
next powers of two, so masks matter) and its result is compared with a NumPy expression written
here, never with the simulator's own output. Types follow Triton's rules (``semantic.py``,
``math.py``, ``standard.py``): the expected dtypes below are Triton's, not NumPy's.
"""

import math

import ml_dtypes
import numpy as np
import pytest

import kernbench.lang as tl
from kernbench.core.errors import KernelError
from kernbench.runtime import Placement

SHAPES = [(7, 13), (1, 1), (1, 129)]


def p2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def run(topo, new_device, kernel, *args, grid=1, pes=((0, 0),), **meta):
    """Deploy the NumPy arrays among ``args``, launch, wait; return the device and the tensors
    (the other arguments pass through)."""
    dev = new_device(topo)
    targs = [dev.tensor(a) if isinstance(a, np.ndarray) else a for a in args]
    dev.launch(kernel, grid, *targs, pes=list(pes), **meta)
    dev.synchronize()
    return dev, targs


# -- elementwise functions -----------------------------------------------------------------
@tl.jit
def apply2d(x_ptr, y_ptr, out_ptr, R, C, BR: tl.constexpr, BC: tl.constexpr, FN: tl.constexpr):
    rows = tl.arange(0, BR)[:, None]
    cols = tl.arange(0, BC)[None, :]
    mask = (rows < R) & (cols < C)
    offs = rows * C + cols
    x = tl.load(x_ptr + offs, mask=mask, other=1.0)
    y = tl.load(y_ptr + offs, mask=mask, other=1.0)
    tl.store(out_ptr + offs, FN(x, y), mask=mask)


UNARY = {
    "exp": (lambda x, y: tl.exp(x), np.exp, (-5, 5)),
    "exp2": (lambda x, y: tl.exp2(x), np.exp2, (-5, 5)),
    "log": (lambda x, y: tl.log(x), np.log, (0.01, 10)),
    "log2": (lambda x, y: tl.log2(x), np.log2, (0.01, 10)),
    "sqrt": (lambda x, y: tl.sqrt(x), np.sqrt, (0, 10)),
    "rsqrt": (lambda x, y: tl.rsqrt(x), lambda x: 1 / np.sqrt(x), (0.01, 10)),
    "sin": (lambda x, y: tl.sin(x), np.sin, (-10, 10)),
    "cos": (lambda x, y: tl.cos(x), np.cos, (-10, 10)),
    "erf": (lambda x, y: tl.erf(x), np.vectorize(math.erf), (-3, 3)),
    "sigmoid": (lambda x, y: tl.sigmoid(x), lambda x: 1 / (1 + np.exp(-x)), (-8, 8)),
    "floor": (lambda x, y: tl.floor(x), np.floor, (-10, 10)),
    "ceil": (lambda x, y: tl.ceil(x), np.ceil, (-10, 10)),
    "sqrt_rn": (lambda x, y: tl.sqrt_rn(x), np.sqrt, (0, 10)),
    "fma": (lambda x, y: tl.fma(x, y, x), None, (-4, 4)),
    "fdiv": (lambda x, y: tl.fdiv(x, y), None, (1, 4)),
    "div_rn": (lambda x, y: tl.div_rn(x, y), None, (1, 4)),
    "x.exp()": (lambda x, y: x.exp(), np.exp, (-5, 5)),  # Triton's tensor member function
    "tl.math.exp2": (lambda x, y: tl.math.exp2(x), np.exp2, (-5, 5)),
}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", list(UNARY))
def test_math_functions_match_numpy_in_fp32(topo1x1, new_device, name, shape):
    fn, ref, (lo, hi) = UNARY[name]
    rng = np.random.default_rng(abs(hash(name)) % 1000)
    x = rng.uniform(lo, hi, shape).astype(np.float32)
    y = rng.uniform(lo, hi, shape).astype(np.float32)
    r, c = shape
    _, (_, _, out, *_) = run(
        topo1x1, new_device, apply2d, x, y, np.zeros(shape, np.float32), r, c,
        BR=p2(r), BC=p2(c), FN=fn,
    )  # fmt: skip
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    if name == "fma":
        expected = x64 * y64 + x64
    elif name in ("fdiv", "div_rn"):
        expected = x64 / y64
    else:
        expected = ref(x64)
    got = out.numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-6)


def test_fma_rounds_once(topo1x1, new_device):
    """a*b + c with a*b not representable in fp32: fma keeps the product's low bits."""
    a = np.float32(1 + 2**-12)
    c = -np.float32(1 + 2**-11)  # a*a = 1 + 2**-11 + 2**-24; rounded in fp32 it would cancel
    x = np.full((1, 1), a, np.float32)
    _, (_, _, out, *_) = run(
        topo1x1, new_device, apply2d, x, x, np.zeros((1, 1), np.float32), 1, 1, BR=1, BC=1,
        FN=lambda u, v: tl.fma(u, v, c),
    )  # fmt: skip
    assert out.numpy()[0, 0] == np.float32(2**-24)


@pytest.mark.parametrize(
    "name, fn, ref",
    [
        ("maximum", lambda x, y: tl.maximum(x, y), np.fmax),
        ("minimum", lambda x, y: tl.minimum(x, y), np.fmin),
        ("maximum ALL", lambda x, y: tl.maximum(x, y, tl.PropagateNan.ALL), np.maximum),
        (
            "minimum ALL",
            lambda x, y: tl.minimum(x, y, propagate_nan=tl.PropagateNan.ALL),
            np.minimum,
        ),
        (
            "where",
            lambda x, y: tl.where(x > y, x - y, 0.5),
            lambda x, y: np.where(x > y, x - y, 0.5),
        ),
    ],  # fmt: skip
)
def test_extrema_with_nans_and_where(topo1x1, new_device, name, fn, ref):
    """Triton's maximum/minimum return the other operand for a NaN unless
    ``propagate_nan=ALL``."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((7, 13)).astype(np.float32)
    y = rng.standard_normal((7, 13)).astype(np.float32)
    x[1, 2] = y[3, 4] = np.nan
    _, (_, _, out, *_) = run(
        topo1x1, new_device, apply2d, x, y, np.zeros((7, 13), np.float32), 7, 13, BR=8, BC=16,
        FN=fn,
    )  # fmt: skip
    np.testing.assert_array_equal(out.numpy(), ref(x, y))


@pytest.mark.parametrize("name", ["exp", "sqrt", "rsqrt", "sin", "erf", "log2", "sigmoid"])
@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.int32])
def test_math_functions_refuse_what_triton_refuses(topo1x1, new_device, name, dtype):
    """Triton's math functions take fp32 and fp64 only (``_check_dtype``); the error says to
    cast."""
    x = np.ones((1, 4), dtype)
    with pytest.raises(KernelError, match=r"fp32 or fp64.*x\.to\(tl\.float32\)"):
        run(
            topo1x1, new_device, apply2d, x, x, np.zeros((1, 4), dtype), 1, 4, BR=1, BC=4,
            FN=lambda u, v: getattr(tl, name)(u),
        )  # fmt: skip


# -- Triton's type promotion ---------------------------------------------------------------
observed: dict = {}


@tl.jit
def promotion(x_ptr):
    i32 = tl.full((2, 3), -7, tl.int32)
    i8 = tl.full((2, 3), 100, tl.int8)
    u8 = tl.full((2, 3), 200, tl.uint8)
    h = tl.full((2, 3), 1.5, tl.float16)
    b = tl.full((2, 3), 1.5, tl.bfloat16)
    f = tl.full((2, 3), 1.5, tl.float32)
    observed["int32 + fp16"] = (i32 + h).dtype
    observed["int32 + fp32"] = (i32 + f).dtype
    observed["int8 + int32"] = (i8 + i32).dtype
    observed["int8 + uint8"] = (i8 + u8).dtype
    observed["int32 + 1.5"] = (i32 + 1.5).dtype
    observed["int8 + 1"] = (i8 + 1).dtype
    observed["int8 * 2 wraps"] = int((i8 * 2)[0, 0])
    observed["fp16 * 2.5"] = (h * 2.5).dtype
    observed["fp16 / fp16"] = (h / h).dtype
    observed["fp16 / 2"] = (h / 2).dtype
    observed["fp16 + bf16"] = (h + b).dtype
    observed["bf16 + bf16"] = (b + b).dtype
    observed["bf16 / bf16"] = (b / b).dtype
    observed["int32 / int32"] = (i32 / i32).dtype
    observed["-7 // 2"] = int((i32 // 2)[0, 0])
    observed["-7 % 2"] = int((i32 % 2)[0, 0])
    observed["-7.5 % 2"] = float(((i32 - 0.5) % 2.0)[0, 0])
    observed["where(scalars)"] = tl.where(i32 > 0, 1.0, 0.0).dtype
    observed["where(int32, 0.5)"] = tl.where(i32 > 0, i32, 0.5).dtype
    observed["maximum(bf16, bf16)"] = tl.maximum(b, b).dtype
    observed["exp(1.0)"] = tl.exp(1.0).dtype
    observed["fma(fp16, fp16, 1.0)"] = tl.fma(h, h, 1.0).dtype
    observed["max fp16"] = tl.max(h, axis=1).dtype
    observed["max int8"] = tl.max(i8).dtype
    observed["max bf16 with indices"] = tuple(v.dtype for v in tl.max(b, 1, return_indices=True))
    observed["max fp16 with indices"] = tl.max(h, 0, return_indices=True)[0].dtype
    observed["sum fp16"] = tl.sum(h, axis=0).dtype
    observed["sum uint8"] = tl.sum(u8).dtype
    observed["sum uint8 value"] = int(tl.sum(u8))
    observed["sum int8 dtype=int8"] = tl.sum(i8, dtype=tl.int8).dtype
    observed["cumsum int8"] = tl.cumsum(i8, axis=1).dtype
    observed["cumsum bf16"] = tl.cumsum(b, axis=1).dtype
    observed["cumprod int8"] = tl.cumprod(i8, axis=1).dtype
    observed["argmax"] = tl.argmax(h, axis=1).dtype
    observed["argmax keep_dims"] = tl.argmax(h, axis=0, keep_dims=True).shape
    observed["softmax fp16"] = tl.softmax(h).dtype
    observed["expand_dims"] = tl.expand_dims(f, (0, -1)).shape
    observed["x.expand_dims"] = f.expand_dims(1).shape
    observed["zeros_like"] = (tl.zeros_like(h).dtype, tl.zeros_like(h).shape)
    observed["full_like"] = tl.full_like(i8, 3).value.tolist()
    observed["full_like dtype"] = tl.full_like(i8, 0.25, tl.float32).dtype
    observed["bitcast"] = int(tl.full((1,), 1.0, tl.float32).to(tl.int32, bitcast=True)[0])
    observed["x.sum(axis=0)"] = f.sum(axis=0).shape
    observed["x.reshape(3, 2)"] = f.reshape(3, 2).shape
    observed["reshape(f, 3, 2)"] = tl.reshape(f, 3, 2).shape
    observed["ravel"] = tl.ravel(f).shape
    observed["view"] = tl.view(f, (6, 1)).shape
    observed["trans 3-D"] = tl.trans(tl.expand_dims(f, 0), 2, 0, 1).shape
    observed["permute"] = tl.permute(f, (1, 0)).shape
    observed["broadcast_to(x, 4, 2, 3)"] = tl.broadcast_to(f, 4, 2, 3).shape
    observed["fdiv fp16"] = tl.fdiv(h, h).dtype  # no fp32 upcast, unlike /
    observed["tl.tensor"] = isinstance(f, tl.tensor)
    observed["int1"] = (i32 > 0).dtype == tl.int1
    observed["max_constancy"] = tl.max_constancy(f, 2) is f
    tl.static_assert(True, "never fails")


def test_types_follow_triton(topo1x1, new_device):
    run(topo1x1, new_device, promotion, np.zeros(1, np.float32))
    assert observed == {
        "int32 + fp16": np.float16,
        "int32 + fp32": np.float32,  # NumPy: float64
        "int8 + int32": np.int32,
        "int8 + uint8": np.uint8,  # C's rules: same width, unsigned wins (NumPy: int16)
        "int32 + 1.5": np.float32,  # a float scalar is of a higher kind (NumPy: float64)
        "int8 + 1": np.int8,  # an int scalar joins the block's type
        "int8 * 2 wraps": -56,
        "fp16 * 2.5": np.float16,
        "fp16 / fp16": np.float32,  # fp16 division is done in fp32
        "fp16 / 2": np.float32,
        "fp16 + bf16": np.float16,  # fp16 wins over bf16 in Triton's rules
        "bf16 + bf16": ml_dtypes.bfloat16,
        "bf16 / bf16": np.float32,
        "int32 / int32": np.float32,
        "-7 // 2": -3,  # rounds toward zero, as C (NumPy: -4)
        "-7 % 2": -1,  # sign of the dividend (NumPy: 1)
        "-7.5 % 2": -1.5,
        "where(scalars)": np.float32,  # NumPy: float64
        "where(int32, 0.5)": np.float32,
        "maximum(bf16, bf16)": np.float32,  # promoted to fp32 first
        "exp(1.0)": np.float32,
        "fma(fp16, fp16, 1.0)": np.float16,
        "max fp16": np.float32,  # 16-bit floats reduce to fp32
        "max int8": np.int32,
        "max bf16 with indices": (np.float32, np.int32),
        "max fp16 with indices": np.float16,  # with indices only bf16 is promoted
        "sum fp16": np.float16,
        "sum uint8": np.uint32,
        "sum uint8 value": 1200,
        "sum int8 dtype=int8": np.int8,
        "cumsum int8": np.int32,
        "cumsum bf16": np.float32,
        "cumprod int8": np.int8,
        "argmax": np.int32,
        "argmax keep_dims": (1, 3),
        "softmax fp16": np.float32,  # max promotes to fp32, so the rest follows
        "expand_dims": (1, 2, 3, 1),
        "x.expand_dims": (2, 1, 3),
        "zeros_like": (np.float16, (2, 3)),
        "full_like": [[3, 3, 3], [3, 3, 3]],
        "full_like dtype": np.float32,
        "bitcast": 0x3F800000,
        "x.sum(axis=0)": (3,),
        "x.reshape(3, 2)": (3, 2),
        "reshape(f, 3, 2)": (3, 2),
        "ravel": (6,),
        "view": (6, 1),
        "trans 3-D": (3, 1, 2),
        "permute": (3, 2),
        "broadcast_to(x, 4, 2, 3)": (4, 2, 3),
        "fdiv fp16": np.float16,
        "tl.tensor": True,
        "int1": True,
        "max_constancy": True,
    }


@tl.jit
def bad_op(x_ptr, FN: tl.constexpr):
    FN(tl.full((2, 2), 3, tl.int8), tl.full((2, 2), 1.5, tl.float32))


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda i, f: i + 300, "300 is out of range for int8"),
        (lambda i, f: f // 2.0, "// needs integer operands"),
        (lambda i, f: f & 1, "& needs integer operands"),
        (lambda i, f: ~f, "~ needs an integer"),
        (lambda i, f: i / tl.full((2, 2), 1, tl.uint32), "differ in signedness"),
        (lambda i, f: tl.fma(i, i, i), "floating-point operands"),
        (lambda i, f: tl.argmax(f, None), "needs an axis"),
        (lambda i, f: tl.cumsum(f, axis=2), "axis 2 is out of range"),
        (lambda i, f: tl.expand_dims(f, (0, 0)), "duplicate axes"),
        (lambda i, f: tl.softmax(tl.full((2, 3), 1.0, tl.float32), dim=1), "do not broadcast"),
        (lambda i, f: tl.fdiv(i, i), "floating-point operands"),
        (lambda i, f: tl.div_rn(f.to(tl.float16), f), "takes fp32 values"),
        (lambda i, f: tl.trans(f, 0, 0), "not a permutation"),
        (lambda i, f: tl.static_assert(False, "the block is too small"), "too small"),
    ],
)
def test_what_triton_refuses_is_refused(topo1x1, new_device, fn, match):
    with pytest.raises(KernelError, match=match):
        run(topo1x1, new_device, bad_op, np.zeros(1, np.float32), FN=fn)


# -- reductions, scans, softmax ------------------------------------------------------------
@tl.jit
def rows_op(x_ptr, out_ptr, R, C, BR: tl.constexpr, BC: tl.constexpr, FN: tl.constexpr,
            OTHER: tl.constexpr, OUT: tl.constexpr):  # fmt: skip
    """FN of a masked R x C block (padding OTHER); OUT says which part to store: "full" (the
    block), "rows" (one per row) or "cols" (one per column)."""
    rows = tl.arange(0, BR)
    cols = tl.arange(0, BC)
    mask = (rows[:, None] < R) & (cols[None, :] < C)
    x = tl.load(x_ptr + rows[:, None] * C + cols[None, :], mask=mask, other=OTHER)
    y = FN(x)
    if OUT == "full":
        tl.store(out_ptr + rows[:, None] * C + cols[None, :], y, mask=mask)
    elif OUT == "rows":
        tl.store(out_ptr + rows, y, mask=rows < R)
    else:
        tl.store(out_ptr + cols, y, mask=cols < C)


def _ties(shape, seed):
    """Small integers as fp32: many ties for argmax/argmin."""
    return np.random.default_rng(seed).integers(-3, 4, shape).astype(np.float32)


REDUCTIONS = {
    "sum axis=1": (lambda x: tl.sum(x, axis=1), lambda a: a.sum(1), 0.0, "rows"),
    "sum axis=0": (lambda x: tl.sum(x, axis=0), lambda a: a.sum(0), 0.0, "cols"),
    "max axis=1": (lambda x: tl.max(x, axis=1), lambda a: a.max(1), -np.inf, "rows"),
    "min axis=0": (lambda x: tl.min(x, axis=0), lambda a: a.min(0), np.inf, "cols"),
    "argmax axis=1": (lambda x: tl.argmax(x, axis=1), lambda a: a.argmax(1), -np.inf, "rows"),
    "argmax axis=0": (lambda x: tl.argmax(x, 0), lambda a: a.argmax(0), -np.inf, "cols"),
    "argmin axis=1": (lambda x: tl.argmin(x, 1), lambda a: a.argmin(1), np.inf, "rows"),
    "argmin axis=-2": (lambda x: tl.argmin(x, -2), lambda a: a.argmin(0), np.inf, "cols"),
    "argmax keep_dims": (lambda x: tl.reshape(tl.argmax(x, 1, keep_dims=True), (x.shape[0],)),
                         lambda a: a.argmax(1), -np.inf, "rows"),
    "max return_indices": (lambda x: tl.max(x, 1, return_indices=True)[1],
                           lambda a: a.argmax(1), -np.inf, "rows"),
    "argmax tie_break_left=False": (lambda x: tl.argmax(x, 1, tie_break_left=False),
                                    lambda a: a.argmax(1), -np.inf, "rows"),
    "cumsum axis=1": (lambda x: tl.cumsum(x, axis=1), lambda a: a.cumsum(1), 0.0, "full"),
    "cumsum axis=0": (lambda x: tl.cumsum(x), lambda a: a.cumsum(0), 0.0, "full"),
    "cumsum reverse": (lambda x: tl.cumsum(x, 1, reverse=True),
                       lambda a: np.flip(np.flip(a, 1).cumsum(1), 1), 0.0, "full"),
    "cumprod axis=1": (lambda x: tl.cumprod(x, 1), lambda a: a.cumprod(1), 1.0, "full"),
    "cumprod reverse axis=0": (lambda x: tl.cumprod(x, 0, reverse=True),
                               lambda a: np.flip(np.flip(a, 0).cumprod(0), 0), 1.0, "full"),
    "x.cumsum(1)": (lambda x: x.cumsum(1), lambda a: a.cumsum(1), 0.0, "full"),
}  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", list(REDUCTIONS))
def test_reductions_and_scans_match_numpy(topo1x1, new_device, name, shape):
    """Masked blocks padded with the operation's neutral element; argmax/argmin on data full
    of ties must return the lowest index, as NumPy does."""
    fn, ref, other, out = REDUCTIONS[name]
    x = _ties(shape, 9) if "arg" in name or "indices" in name else (
        np.random.default_rng(10).uniform(0.5, 1.5, shape).astype(np.float32))  # fmt: skip
    r, c = shape
    expected = ref(x.astype(np.float64))
    size = {"full": shape, "rows": (r,), "cols": (c,)}[out]
    is_index = "arg" in name or "indices" in name
    _, (_, y, *_) = run(
        topo1x1, new_device, rows_op, x, np.zeros(size, np.int32 if is_index else np.float32),
        r, c, BR=p2(r), BC=p2(c), FN=fn, OTHER=other, OUT=out,
    )  # fmt: skip
    if is_index:
        np.testing.assert_array_equal(y.numpy(), expected)
    else:
        np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5)


def test_int8_cumsum_widens_to_int32(topo1x1, new_device):
    """Without Triton's widening the sums of 100s would wrap in int8."""
    x = np.full((3, 13), 100, np.int8)
    _, (_, y, *_) = run(
        topo1x1, new_device, rows_op, x, np.zeros((3, 13), np.int32), 3, 13, BR=4, BC=16,
        FN=lambda b: tl.cumsum(b, axis=1), OTHER=0, OUT="full",
    )  # fmt: skip
    np.testing.assert_array_equal(y.numpy(), np.cumsum(np.full((3, 13), 100), axis=1))


def test_max_ignores_nan_as_triton(topo1x1, new_device):
    x = np.arange(7 * 13, dtype=np.float32).reshape(7, 13)
    x[2, 12] = np.nan  # the row's max would be this lane
    x[4, :] = np.nan  # all NaN: the padding lanes' -inf
    _, (_, y, *_) = run(
        topo1x1, new_device, rows_op, x, np.zeros(7, np.float32), 7, 13, BR=8, BC=16,
        FN=lambda b: tl.max(b, axis=1), OTHER=-np.inf, OUT="rows",
    )  # fmt: skip
    expected = np.arange(7 * 13, dtype=np.float32).reshape(7, 13).max(axis=1)
    expected[2] = x[2, 11]
    expected[4] = -np.inf
    np.testing.assert_array_equal(y.numpy(), expected)


def numpy_softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize(
    "name, fn, axis, other",
    [
        ("dim=1 keep_dims", lambda x: tl.softmax(x, dim=1, keep_dims=True), 1, -np.inf),
        ("default dim=0", lambda x: tl.softmax(x), 0, -np.inf),
        ("x.softmax(-1, True)", lambda x: x.softmax(-1, True), 1, -np.inf),
    ],
)
def test_softmax_matches_numpy(topo1x1, new_device, shape, name, fn, axis, other):
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    r, c = shape
    _, (_, y, *_) = run(
        topo1x1, new_device, rows_op, x, np.zeros(shape, np.float32), r, c, BR=p2(r),
        BC=p2(c), FN=fn, OTHER=other, OUT="full",
    )  # fmt: skip
    np.testing.assert_allclose(y.numpy(), numpy_softmax(x.astype(np.float64), axis), rtol=1e-5)


def test_expand_dims_broadcasts_a_row_statistic(topo1x1, new_device):
    x = np.random.default_rng(12).standard_normal((7, 13)).astype(np.float32)
    _, (_, y, *_) = run(
        topo1x1, new_device, rows_op, x, np.zeros((7, 13), np.float32), 7, 13, BR=8, BC=16,
        FN=lambda b: b - tl.expand_dims(tl.sum(b, axis=1), 1), OTHER=0.0, OUT="full",
    )  # fmt: skip
    np.testing.assert_allclose(y.numpy(), x - x.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)


@tl.jit
def apply1d(x_ptr, out_ptr, n, BLOCK: tl.constexpr, FN: tl.constexpr, OTHER: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n, other=OTHER)
    y = FN(x)
    if len(y.shape) == 0:
        tl.store(out_ptr, y)
    else:
        tl.store(out_ptr + offs, y, mask=offs < n)


ONE_D = {
    "rsqrt": (tl.rsqrt, lambda a: 1 / np.sqrt(a), 1.0),
    "exp2": (tl.exp2, np.exp2, 0.0),
    "cumsum": (tl.cumsum, np.cumsum, 0.0),
    "cumprod reverse": (lambda x: tl.cumprod(x, 0, reverse=True),
                        lambda a: np.cumprod(a[::-1])[::-1], 1.0),
    "softmax": (tl.softmax, lambda a: np.exp(a - a.max()) / np.exp(a - a.max()).sum(), -np.inf),
    "sum": (tl.sum, np.sum, 0.0),
    "argmax": (lambda x: tl.argmax(x, 0), np.argmax, -np.inf),
    "argmin keep_dims": (lambda x: tl.argmin(x, 0, keep_dims=True)[0], np.argmin, np.inf),
}  # fmt: skip


@pytest.mark.parametrize("n", [1, 129])
@pytest.mark.parametrize("name", list(ONE_D))
def test_one_dimensional_blocks(topo1x1, new_device, name, n):
    fn, ref, other = ONE_D[name]
    x = np.random.default_rng(16).uniform(0.5, 1.5, n).astype(np.float32)
    index = name.startswith("arg")
    scalar = name in ("sum",) or index
    out = np.zeros(1 if scalar else n, np.int32 if index else np.float32)
    _, (_, y, *_) = run(topo1x1, new_device, apply1d, x, out, n, BLOCK=p2(n), FN=fn, OTHER=other)
    expected = np.atleast_1d(ref(x.astype(np.float64)))
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5)


# -- block pointers ------------------------------------------------------------------------
@tl.jit
def tile_copy(x_ptr, out_ptr, pad_ptr, M, N, SM, SN, BM: tl.constexpr, BN: tl.constexpr,
              CHECK: tl.constexpr, PAD: tl.constexpr, START: tl.constexpr):  # fmt: skip
    """Walk an SM x SN window of the M x N tensor x (row-major) in BM x BN tiles through block
    pointers: store every loaded tile to out (the same window) and to pad, a tile-grid-sized
    buffer that keeps the padding."""
    src = tl.make_block_ptr(x_ptr, (SM, SN), (N, 1), START, (BM, BN), (1, 0))
    dst = tl.make_block_ptr(out_ptr, (SM, SN), (N, 1), START, (BM, BN), order=(1, 0))
    tiles_n = tl.cdiv(SN - START[1], BN)
    rows = tl.arange(0, BM)[:, None]
    cols = tl.arange(0, BN)[None, :]
    for i in range(tl.cdiv(SM - START[0], BM)):
        row_src, row_dst = src, dst
        for j in range(tiles_n):
            tile = tl.load(row_src, boundary_check=CHECK, padding_option=PAD)
            tl.store(row_dst, tile, boundary_check=CHECK)
            pad = pad_ptr + (i * BM + rows) * (tiles_n * BN) + j * BN + cols
            tl.store(pad, tile)
            row_src = tl.advance(row_src, (0, BN))
            row_dst = row_dst.advance((0, BN))
        src = tl.advance(src, [BM, 0])
        dst = tl.advance(dst, [BM, 0])


@pytest.mark.parametrize(
    "m, n, window, block, start, pad",
    [
        (7, 13, (7, 13), (4, 8), (0, 0), "zero"),  # ragged in both dimensions
        (7, 13, (7, 13), (8, 16), (0, 0), "nan"),  # one tile larger than the tensor
        (7, 13, (5, 9), (2, 4), (0, 0), "zero"),  # a sub-window: memory beyond it is padding
        (1, 129, (1, 129), (1, 32), (0, 0), "nan"),
        (7, 13, (7, 13), (4, 8), (-2, -3), "zero"),  # negative offsets are out of bounds
        (7, 13, (6, 11), (4, 4), (1, 2), ""),  # "" pads with zero here (undefined in Triton)
    ],
)
def test_block_pointers_with_boundary_checks_on_ragged_tiles(
    topo1x1, new_device, m, n, window, block, start, pad
):
    x = np.arange(1, m * n + 1, dtype=np.float32).reshape(m, n)
    sm, sn = window
    bm, bn = block
    tiles_m, tiles_n = -(-(sm - start[0]) // bm), -(-(sn - start[1]) // bn)
    sentinel = -1.0
    _, (_, out, padded, *_) = run(
        topo1x1, new_device, tile_copy, x, np.full((m, n), sentinel, np.float32),
        np.zeros((tiles_m * bm, tiles_n * bn), np.float32), m, n, sm, sn,
        BM=bm, BN=bn, CHECK=(0, 1), PAD=pad, START=start,
    )  # fmt: skip
    # what the tiles cover, inside the window and the tensor: copied; the rest untouched
    r = np.arange(start[0], start[0] + tiles_m * bm)
    c = np.arange(start[1], start[1] + tiles_n * bn)
    inside = ((r >= 0) & (r < sm))[:, None] & ((c >= 0) & (c < sn))[None, :]
    r0, c0 = max(start[0], 0), max(start[1], 0)
    expected_out = np.full((m, n), sentinel, np.float32)
    expected_out[r0:sm, c0:sn] = x[r0:sm, c0:sn]
    np.testing.assert_array_equal(out.numpy(), expected_out)
    fill = np.nan if pad == "nan" else 0.0
    expected_pad = np.full(inside.shape, fill, np.float32)
    expected_pad[inside] = x[np.ix_(r[(r >= 0) & (r < sm)], c[(c >= 0) & (c < sn)])].reshape(-1)
    np.testing.assert_array_equal(padded.numpy(), expected_pad)


def test_boundary_check_on_one_dimension_reads_the_rest_of_memory(topo1x1, new_device):
    """Only dimension 0 is checked: columns past the window's width are read from memory (the
    next row's elements), as Triton does."""
    x = np.arange(1, 7 * 13 + 1, dtype=np.float32).reshape(7, 13)
    _, (_, out, padded, *_) = run(
        topo1x1, new_device, tile_copy, x, np.zeros((7, 13), np.float32),
        np.zeros((8, 8), np.float32), 7, 13, 7, 5, BM=8, BN=8, CHECK=(0,), PAD="zero",
        START=(0, 0),
    )  # fmt: skip
    flat = x.reshape(-1)
    expected = np.zeros((8, 8), np.float32)
    for i in range(7):
        expected[i] = flat[i * 13 : i * 13 + 8]
    np.testing.assert_array_equal(padded.numpy(), expected)


@tl.jit
def block_ptr_matmul(a_ptr, b_ptr, c_ptr, M, N, K, BM: tl.constexpr, BN: tl.constexpr,
                     BK: tl.constexpr):  # fmt: skip
    """Triton's block-pointer matmul: make_block_ptr for A, B and C, advance along K."""
    pid = tl.program_id(0)
    pid_m, pid_n = pid // tl.cdiv(N, BN), pid % tl.cdiv(N, BN)
    a = tl.make_block_ptr(a_ptr, (M, K), (K, 1), (pid_m * BM, 0), (BM, BK), (1, 0))
    b = tl.make_block_ptr(b_ptr, (K, N), (N, 1), (0, pid_n * BN), (BK, BN), (1, 0))
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for _ in range(0, K, BK):
        acc += tl.dot(tl.load(a, boundary_check=(0, 1)), tl.load(b, boundary_check=(0, 1)))
        a = tl.advance(a, (0, BK))
        b = tl.advance(b, (BK, 0))
    c = tl.make_block_ptr(c_ptr, (M, N), (N, 1), (pid_m * BM, pid_n * BN), (BM, BN), (1, 0))
    tl.store(c, acc.to(tl.float16), boundary_check=(0, 1))


def test_block_pointer_matmul_matches_numpy(topo1x1, new_device):
    rng = np.random.default_rng(13)
    m, n, k = 37, 29, 70
    a = rng.standard_normal((m, k)).astype(np.float16)
    b = rng.standard_normal((k, n)).astype(np.float16)
    _, (_, _, c, *_) = run(
        topo1x1, new_device, block_ptr_matmul, a, b, np.zeros((m, n), np.float16), m, n, k,
        BM=16, BN=16, BK=32, grid=3 * 2, pes=[(0, p) for p in range(4)],
    )  # fmt: skip
    ref = a.astype(np.float32) @ b.astype(np.float32)
    np.testing.assert_allclose(c.numpy().astype(np.float32), ref, rtol=2.0**-10, atol=1e-2)


@tl.jit
def block_ptr_misuse(x_ptr, FN: tl.constexpr):
    FN(tl.make_block_ptr(x_ptr, (4, 4), (4, 1), (0, 0), (2, 2), (1, 0)), x_ptr)


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda bp, p: tl.load(bp, mask=True), "mask and other cannot be given"),
        (lambda bp, p: tl.load(bp, padding_option="inf"), "padding_option must be one of"),
        (lambda bp, p: tl.load(bp, boundary_check=(2,)), "distinct dimensions in 0..1"),
        (lambda bp, p: tl.load(bp, boundary_check=(0, 0)), "distinct dimensions"),
        (lambda bp, p: tl.store(bp, tl.full((2, 2), 1, tl.float16)), "cast it first"),
        (lambda bp, p: tl.store(bp, tl.full((2, 3), 1, tl.float32)), "block_shape 2x2"),
        (lambda bp, p: tl.load(p + tl.arange(0, 2), boundary_check=(0,)), "only to block"),
        (
            lambda bp, p: tl.make_block_ptr(p + tl.arange(0, 2), (4,), (1,), (0,), (2,), (0,)),
            "scalar pointer",
        ),
        (lambda bp, p: tl.make_block_ptr(p, (4, 4), (4, 1), (0, 0), (2, 2), (0, 0)), "permutation"),
        (lambda bp, p: tl.advance(bp, (1,)), "1 offsets for a 2-D"),
        (lambda bp, p: tl.load(bp), "out of bounds"),  # 2x2 at (0, 0) of a 1-element tensor
    ],  # fmt: skip
)
def test_block_pointer_misuse_is_refused(topo1x1, new_device, fn, match):
    with pytest.raises(KernelError, match=match):
        run(topo1x1, new_device, block_ptr_misuse, np.zeros(1, np.float32), FN=fn)


def test_nan_padding_of_an_integer_tensor_is_refused(topo1x1, new_device):
    with pytest.raises(KernelError, match="'nan' needs a float tensor"):
        run(
            topo1x1, new_device, block_ptr_misuse, np.zeros(16, np.int32),
            FN=lambda bp, p: tl.load(bp, boundary_check=(0,), padding_option="nan"),
        )  # fmt: skip


# -- atomics -------------------------------------------------------------------------------
@tl.jit
def atomic_kernel(mem_ptr, idx_ptr, val_ptr, cmp_ptr, mask_ptr, old_ptr, R, C,
                  BR: tl.constexpr, BC: tl.constexpr, OP: tl.constexpr,
                  SEM: tl.constexpr):  # fmt: skip
    rows = tl.arange(0, BR)[:, None]
    cols = tl.arange(0, BC)[None, :]
    inside = (rows < R) & (cols < C)
    lanes = rows * C + cols
    idx = tl.load(idx_ptr + lanes, mask=inside, other=0)
    val = tl.load(val_ptr + lanes, mask=inside, other=0)
    mask = inside & (tl.load(mask_ptr + lanes, mask=inside, other=0) != 0)
    if OP == "cas":
        cmp = tl.load(cmp_ptr + lanes, mask=inside, other=0)
        old = tl.atomic_cas(mem_ptr + idx, cmp, val, sem=SEM)
    elif OP == "add method":
        old = (mem_ptr + idx).atomic_add(val, mask=mask)
    else:
        old = getattr(tl, "atomic_" + OP)(mem_ptr + idx, val, mask=mask, sem=SEM)
    tl.store(old_ptr + lanes, old, mask=inside)


REFERENCE = {
    "add": lambda a, v: a + v,
    "add method": lambda a, v: a + v,
    "max": max,
    "min": min,
    "and": lambda a, v: a & v,
    "or": lambda a, v: a | v,
    "xor": lambda a, v: a ^ v,
    "xchg": lambda a, v: v,
}


def sequential(op, memory, idx, val, cmp, mask):
    """The reference: lane after lane in row-major order, each an indivisible
    read-modify-write; masked-off lanes return 0 and change nothing."""
    mem = memory.copy()
    old = np.zeros(idx.size, memory.dtype)
    for k, (i, v, c, m) in enumerate(zip(idx.flat, val.flat, cmp.flat, mask.flat, strict=True)):
        if not m:
            continue
        old[k] = mem[i]
        if op == "cas":
            mem[i] = v if mem[i] == c else mem[i]
        else:
            mem[i] = REFERENCE[op](mem[i], v)
    return mem, old.reshape(idx.shape)


@pytest.mark.parametrize("shape", [(3, 5), (1, 1), (1, 13)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize(
    "op, dtype",
    [("add", np.int32), ("add", np.float32), ("add method", np.float32), ("max", np.int32),
     ("max", np.float32), ("min", np.float32), ("min", np.int32), ("and", np.int32),
     ("or", np.int32), ("xor", np.int32), ("xchg", np.float32), ("cas", np.int32)],
)  # fmt: skip
def test_atomics_with_duplicate_indices_and_masks(topo1x1, new_device, op, dtype, shape):
    """Lanes that share an element apply one after the other in row-major order; each returns
    the value it replaced. Values are small integers, so float sums are exact in any order."""
    rng = np.random.default_rng(14)
    n_elems = 4
    memory = rng.integers(0, 8, n_elems).astype(dtype)
    idx = rng.integers(0, n_elems, shape).astype(np.int32)  # duplicates on purpose
    val = rng.integers(0, 8, shape).astype(dtype)
    cmp = np.where(rng.random(shape) < 0.5, memory[idx], val).astype(dtype)
    mask = (rng.random(shape) < 0.7) if op != "cas" else np.ones(shape, bool)
    r, c = shape
    _, (mem, _, _, _, _, old, *_) = run(
        topo1x1, new_device, atomic_kernel, memory, idx, val, cmp, mask.astype(np.int32),
        np.full(shape, 99, dtype), r, c, BR=p2(r), BC=p2(c), OP=op, SEM=None,
    )  # fmt: skip
    exp_mem, exp_old = sequential(op, memory, idx, val, cmp, mask)
    np.testing.assert_array_equal(mem.numpy(), exp_mem)
    np.testing.assert_array_equal(old.numpy(), exp_old)


def test_atomic_add_by_hand(topo1x1, new_device):
    """Three lanes on element 1, one masked off, written out by hand."""
    idx = np.array([[1, 0, 1, 1, 2]], np.int32)
    val = np.array([[10, 20, 30, 40, 50]], np.int32)
    mask = np.array([[1, 1, 0, 1, 1]], np.int32)
    _, (mem, _, _, _, _, old, *_) = run(
        topo1x1, new_device, atomic_kernel, np.array([1, 2, 3], np.int32), idx, val, val,
        mask, np.full((1, 5), 99, np.int32), 1, 5, BR=1, BC=8, OP="add", SEM="relaxed",
    )  # fmt: skip
    np.testing.assert_array_equal(mem.numpy(), [1 + 20, 2 + 10 + 40, 3 + 50])
    np.testing.assert_array_equal(old.numpy(), [[2, 1, 0, 12, 3]])


@tl.jit
def histogram(x_ptr, hist_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    bins = tl.load(x_ptr + offs, mask=offs < n, other=0)
    tl.atomic_add(hist_ptr + bins, 1, mask=offs < n)


def test_atomics_of_programs_on_different_pes_do_not_lose_updates(topo1x1, new_device):
    """Eight PEs add into the same counters at the same simulated time: each read-modify-write
    is indivisible, so no update is lost."""
    x = np.random.default_rng(15).integers(0, 5, 1000).astype(np.int32)
    _, (_, hist, *_) = run(
        topo1x1, new_device, histogram, x, np.zeros(5, np.int32), 1000, BLOCK=64,
        grid=tl.cdiv(1000, 64), pes=[(0, p) for p in range(8)],
    )  # fmt: skip
    np.testing.assert_array_equal(hist.numpy(), np.bincount(x, minlength=5))


@tl.jit
def locked_accumulate(lock_ptr, acc_ptr, N: tl.constexpr):
    """Triton tutorial 05's spin lock (its backward pass): take the lock with atomic_cas, add
    to a shared block with a plain load and store, release with atomic_xchg. The release's
    default sem (acq_rel) makes the store visible before the lock is free."""
    cols = tl.arange(0, N)
    part = tl.full((N,), 1.0, tl.float32) * (tl.program_id(0) + 1)
    while tl.atomic_cas(lock_ptr, 0, 1) == 1:
        pass
    acc = tl.load(acc_ptr + cols)
    tl.store(acc_ptr + cols, acc + part)
    tl.debug_barrier()
    tl.atomic_xchg(lock_ptr, 0)


def test_a_spin_lock_serialises_read_modify_write_across_pes(topo1x1, new_device):
    _, (lock, acc, *_) = run(
        topo1x1, new_device, locked_accumulate, np.zeros(1, np.int32), np.zeros(5, np.float32),
        N=5, grid=6, pes=[(0, p) for p in range(6)],
    )  # fmt: skip
    np.testing.assert_array_equal(acc.numpy(), np.full(5, 1 + 2 + 3 + 4 + 5 + 6, np.float32))
    assert lock.numpy()[0] == 0


@tl.jit
def atomic_misuse(x_ptr, FN: tl.constexpr):
    FN(x_ptr + tl.arange(0, 2))


@pytest.mark.parametrize(
    "dtype, fn, match",
    [
        (np.float32, lambda p: tl.atomic_and(p, 1), "atomic_and does not support float32"),
        (np.float16, lambda p: tl.atomic_max(p, 1.0), "atomic_max does not support float16"),
        (np.int8, lambda p: tl.atomic_add(p, 1), "atomic_add does not support int8"),
        (np.int32, lambda p: tl.atomic_add(p, 1, sem="seq_cst"), "sem must be"),
        (np.int32, lambda p: tl.atomic_add(p, 1, scope="world"), "scope must be"),
        (np.int32, lambda p: tl.atomic_add(p, tl.full((3,), 1, tl.int32)), "does not broadcast"),
    ],
)
def test_atomics_refuse_what_triton_refuses(topo1x1, new_device, dtype, fn, match):
    with pytest.raises(KernelError, match=match):
        run(topo1x1, new_device, atomic_misuse, np.zeros(2, dtype), FN=fn)


@tl.jit
def store_then_atomic(x_ptr, out_ptr, N: tl.constexpr, SEM: tl.constexpr):
    tl.store(x_ptr + tl.arange(0, N), tl.full((N,), 5, tl.int32))  # 64 KiB: slow to commit
    tl.store(out_ptr, tl.atomic_add(x_ptr, 1, sem=SEM))


@pytest.mark.parametrize("sem, old", [(None, 5), ("release", 5), ("relaxed", 0)])
def test_an_atomic_with_release_semantics_sees_the_programs_posted_stores(
    topo1x1, new_device, sem, old
):
    """With release semantics (the default acq_rel, or release) the atomic waits until the
    program's posted stores have committed, so it reads the 5 the program stored. A relaxed
    atomic does not wait: its 4-byte read overtakes the 64 KiB store, and its write (0 + 1),
    behind the store on the PE's write channel, overwrites the 5."""
    n = 16384
    dev = new_device(topo1x1)
    x = dev.tensor(np.zeros(n, np.int32), placement=Placement.single(0, 5))
    out = dev.tensor(np.zeros(1, np.int32))
    dev.launch(store_then_atomic, 1, x, out, N=n, SEM=sem, pes=[(0, 0)])
    dev.synchronize()
    assert out.numpy()[0] == old
    assert x.numpy()[0] == old + 1


def test_fp16_atomic_add_rounds_after_each_lane(topo1x1, new_device):
    """Each lane's add is rounded to fp16 in turn: 2048 + 1 + 1 stays 2048 (1 is half an ulp
    and ties to even), where one fp32 sum would give 2050."""
    _, (mem, _, _, _, _, old, *_) = run(
        topo1x1, new_device, atomic_kernel, np.array([2048], np.float16),
        np.zeros((1, 2), np.int32), np.ones((1, 2), np.float16), np.ones((1, 2), np.float16),
        np.ones((1, 2), np.int32), np.zeros((1, 2), np.float16), 1, 2, BR=1, BC=2, OP="add",
        SEM=None,
    )  # fmt: skip
    assert mem.numpy()[0] == 2048
    np.testing.assert_array_equal(old.numpy(), [[2048, 2048]])
