"""Tensor parallelism in the style of Megatron-LM, over the ranks of ``spawn``.

``initialize_model_parallel(tensor_model_parallel_size)`` makes the tensor-parallel group (here
all ranks: one SIP each); ``get_tensor_model_parallel_rank`` / ``_world_size`` read it.

- :class:`ColumnParallelLinear` ``y = x W^T + b`` with ``W`` of shape ``(out, in)`` keeps the
  rows ``out_r`` of ``W`` (output features) on rank ``r`` and returns its slice of ``y``
  (``gather_output=False``), the input of a following :class:`RowParallelLinear`; no
  communication.
- :class:`RowParallelLinear` keeps the columns ``in_r`` of ``W`` (input features), multiplies
  the slice of ``x`` it gets, all-reduces the partial products over the ranks and adds the bias
  once.

Each forward launches :func:`linear_kernel` (a Triton-style tiled GEMM with a fused bias and
activation) on the PEs of cube 0 of the rank's device. Weights are stored transposed
(``in x out``, row-major) and split by columns over those PEs, outputs likewise; program ``k``
computes column block ``k % PEs`` and runs on PE ``k % PEs``, so it reads its weight columns
and writes its outputs in its own HBM slice. The input of the first layer is replicated over
the cube's PEs (a local copy each); the second layer reads its input blocks from the PE of the
cube that produced them.
"""

from typing import Any

import numpy as np

import kernbench.lang as tl
from kernbench.core.errors import KernelError
from kernbench.runtime import dist
from kernbench.runtime.device import Device
from kernbench.runtime.kernels import matmul_tile
from kernbench.runtime.tensor import Placement, Tensor

ACTIVATIONS = ("", "relu", "gelu")


@tl.jit
def linear_kernel(
    x_ptr: Any,
    w_ptr: Any,
    b_ptr: Any,
    y_ptr: Any,
    M: int,
    N: int,
    K: int,
    HAS_BIAS: tl.constexpr,
    ACTIVATION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
) -> None:
    """``y[M, N] = act(x[M, K] @ w[K, N] + b[N])``, one output tile per program, fp32
    accumulation, all row-major."""
    pid = tl.program_id(axis=0)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    pid_m = pid // num_pid_n
    pid_n = pid % num_pid_n
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m, mask_n = offs_m[:, None] < M, offs_n[None, :] < N
    acc = matmul_tile(x_ptr, w_ptr, offs_m, offs_n, mask_m, mask_n, K, K, 1, N, 1, BLOCK_K)
    if HAS_BIAS:
        bias = tl.load(b_ptr + offs_n, mask=offs_n < N, other=0.0)
        acc = acc + bias[None, :].to(tl.float32)
    if ACTIVATION == "relu":
        acc = tl.maximum(acc, 0.0)
    if ACTIVATION == "gelu":
        acc = 0.5 * acc * (1.0 + tanh(0.7978845608028654 * (acc + 0.044715 * acc * acc * acc)))
    y_ptrs = y_ptr + offs_m[:, None] * N + offs_n[None, :]
    tl.store(y_ptrs, acc, mask=mask_m & mask_n)


def tanh(x: Any) -> Any:
    """tanh from exp, as kernels write it: ``1 - 2 / (exp(2x) + 1)``."""
    return 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)


def gelu_reference(x: np.ndarray) -> np.ndarray:
    """The tanh approximation of GeLU that :func:`linear_kernel` computes, in numpy."""
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))


CUBE = 0  # the cube of each rank's device that runs the tensor-parallel GEMMs


def on_cube(pes: str) -> Placement:
    """A placement over the PEs of the GEMM cube: ``replicate``, ``row`` or ``col``."""
    return Placement(pes=pes, cube_ids=(CUBE,))


def linear(
    dev: Device,
    x: Tensor,
    w_t: Tensor,
    bias: Tensor | None,
    activation: str = "",
    out_dtype: Any = None,
    block_m: int = 64,
    block_k: int = 64,
) -> Tensor:
    """``act(x @ w_t + bias)`` on the PEs of cube :data:`CUBE`; blocks until done. ``w_t``,
    ``bias`` and the output are split by columns over those PEs (:func:`on_cube`)."""
    if activation not in ACTIVATIONS:
        raise KernelError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if x.ndim != 2 or w_t.ndim != 2 or x.shape[1] != w_t.shape[0]:
        raise KernelError(
            f"linear: x {x.shape} and weight^T {w_t.shape} do not multiply (need x[M, K] and "
            "w^T[K, N])"
        )
    m, k = x.shape
    n = w_t.shape[1]
    if bias is not None and bias.shape != (n,):
        raise KernelError(f"linear: bias shape {bias.shape} should be ({n},)")
    pes = dev.pes_per_cube
    y = dev.empty((m, n), out_dtype or x.dtype, placement=on_cube("col"))
    block_n = tl.cdiv(n, pes)
    grid = (tl.cdiv(m, block_m) * tl.cdiv(n, block_n),)
    dev.launch(
        linear_kernel, grid, x, w_t, bias if bias is not None else x, y, m, n, k,
        pes=[(CUBE, p) for p in range(pes)], HAS_BIAS=bias is not None, ACTIVATION=activation,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
    )  # fmt: skip
    dev.synchronize()
    return y


# -- parallel state ------------------------------------------------------------------------
def initialize_model_parallel(tensor_model_parallel_size: int | None = None) -> None:
    """Make the tensor-parallel group: every rank of this spawn (one SIP each)."""
    ctx = dist._joined("initialize_model_parallel")
    world = ctx.group.world_size
    size = world if tensor_model_parallel_size is None else tensor_model_parallel_size
    if size != world:
        raise KernelError(
            f"initialize_model_parallel: tensor_model_parallel_size={size} must equal the world "
            f"size {world} (tensor parallelism only; one rank per SIP)"
        )
    ctx.group.tp_size = size


def _tp(what: str) -> dist.RankContext:
    ctx = dist._joined(what)
    if ctx.group.tp_size is None:
        raise KernelError(f"{what}: call initialize_model_parallel() first")
    return ctx


def get_tensor_model_parallel_rank() -> int:
    return _tp("get_tensor_model_parallel_rank").rank


def get_tensor_model_parallel_world_size() -> int:
    ctx = _tp("get_tensor_model_parallel_world_size")
    assert ctx.group.tp_size is not None
    return ctx.group.tp_size


def _shard(
    layer: str, in_features: int, out_features: int, weight: np.ndarray, split: int
) -> tuple[slice, int]:
    """This rank's slice of ``weight`` (``out x in``) along axis ``split`` (0: output features,
    1: input features) and its size, after checking the shapes against the group."""
    ctx = _tp(layer)
    world, rank = ctx.group.tp_size or 1, ctx.rank
    name, n = ("out_features", out_features) if split == 0 else ("in_features", in_features)
    if n % world:
        raise KernelError(
            f"{layer}: {name}={n} is not divisible by the tensor-parallel size {world}"
        )
    if weight.shape != (out_features, in_features):
        raise KernelError(
            f"{layer}: weight shape {weight.shape} should be ({out_features}, {in_features})"
        )
    part = n // world
    return slice(rank * part, (rank + 1) * part), part


class ColumnParallelLinear:
    """``y = x W^T + b`` with the output features split over the ranks. ``weight`` is the full
    ``(out_features, in_features)`` matrix (every rank passes the same); the rank keeps its
    rows. ``forward`` returns the rank's ``(tokens, out_features / world)`` slice."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        gather_output: bool = False,
        activation: str = "",
        dtype: Any = "fp16",
    ):
        if gather_output:
            raise KernelError("ColumnParallelLinear: gather_output=True is not available")
        rows, part = _shard("ColumnParallelLinear", in_features, out_features, weight, split=0)
        dev = self.device = dist.device()
        self.activation = activation
        self.out_per_rank = part
        self.weight_t = dev.tensor(weight[rows].T, dtype, placement=on_cube("col"), name="w1_t")
        self.bias = (
            None
            if bias is None
            else dev.tensor(bias[rows], "fp32", placement=on_cube("row"), name="b1")
        )

    def forward(self, x: Tensor) -> Tensor:
        return linear(self.device, x, self.weight_t, self.bias, self.activation)

    __call__ = forward


class RowParallelLinear:
    """``y = x W^T + b`` with the input features split over the ranks (``input_is_parallel``:
    ``x`` is this rank's ``(tokens, in_features / world)`` slice). ``forward`` all-reduces the
    partial products and adds the bias once; every rank returns the full ``y``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        input_is_parallel: bool = True,
        dtype: Any = "fp16",
    ):
        if not input_is_parallel:
            raise KernelError("RowParallelLinear: only input_is_parallel=True is available")
        cols, _part = _shard("RowParallelLinear", in_features, out_features, weight, split=1)
        dev = self.device = dist.device()
        self.weight_t = dev.tensor(weight[:, cols].T, dtype, placement=on_cube("col"), name="w2_t")
        self.bias = (
            None if bias is None else dev.tensor(bias, "fp32", placement=on_cube("row"), name="b2")
        )

    def forward(self, x: Tensor) -> Tensor:
        partial = linear(self.device, x, self.weight_t, None, out_dtype="fp32")
        dist.all_reduce(partial)
        if self.bias is None:
            return partial
        return add_bias(self.device, partial, self.bias)

    __call__ = forward


@tl.jit
def bias_kernel(y_ptr: Any, b_ptr: Any, M: int, N: int, BLOCK_M: tl.constexpr) -> None:
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, N)
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    ptrs = y_ptr + offs_m[:, None] * N + offs_n[None, :]
    y = tl.load(ptrs, mask=mask, other=0.0)
    b = tl.load(b_ptr + offs_n)
    tl.store(ptrs, y + b[None, :], mask=mask)


def add_bias(dev: Device, y: Tensor, bias: Tensor, block_m: int = 16) -> Tensor:
    """``y += bias`` (broadcast over rows), in place, on the PEs of cube :data:`CUBE`."""
    m, n = y.shape
    pes = [(CUBE, p) for p in range(dev.pes_per_cube)]
    dev.launch(bias_kernel, (tl.cdiv(m, block_m),), y, bias, m, n, pes=pes, BLOCK_M=block_m)
    dev.synchronize()
    return y
