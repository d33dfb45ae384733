"""What each op of benches/llm_layer.py must at least do: FLOPs on pe_gemm, elementwise
operations on pe_math and bytes through HBM (every operand read once, every result written
once), and the analytic bound they give on the PEs used (docs/llm.md, "Roofline")."""

from dataclasses import dataclass
from typing import Any, Literal

from kernbench.bench import ModelSpec
from kernbench.hw import HwSpec

Op = Literal["norm", "qkv", "rope", "attention", "out_proj", "residual", "mlp"]
OPS: tuple[Op, ...] = ("norm", "qkv", "rope", "attention", "out_proj", "residual", "mlp")


@dataclass(frozen=True)
class Cost:
    flops: float  # matrix FLOPs (tl.dot on pe_gemm)
    math: float  # elementwise and reduction operations (pe_math)
    bytes: float  # HBM bytes, each operand once
    compute_ns: float
    hbm_ns: float


def layer_costs(model: ModelSpec, p: Any, hw: HwSpec, slices: int) -> dict[Op, Cost]:
    e = model.dtype_bytes
    h, kvd, hid, ffn = model.heads * model.head_dim, model.kv_dim, model.hidden, model.ffn
    t = p.batch * p.tokens_per_seq
    if p.phase == "prefill":
        pairs = p.batch * p.seq_len * (p.seq_len + 1) / 2  # causal (query, key) pairs
        cache_read = 2 * t * kvd
    else:
        pairs = p.batch * (p.context + 1)
        cache_read = 2 * p.batch * (p.context + 1) * kvd
    raw: dict[Op, tuple[float, float, float]] = {
        "norm": (0.0, 2 * 4 * t * hid, e * 2 * (2 * t * hid + hid)),
        "qkv": (2 * t * hid * (h + 2 * kvd), 0.0, e * (t * hid + hid * (h + 2 * kvd)
                                                       + t * (h + 2 * kvd))),
        "rope": (0.0, 3 * t * (h + kvd), e * 2 * t * (h + kvd)),
        "attention": (
            4 * pairs * model.heads * model.head_dim,
            5 * pairs * model.heads,
            e * (2 * t * h + 2 * t * kvd + 2 * t * kvd + cache_read),
        ),
        "out_proj": (2 * t * h * hid, 0.0, e * (t * h + h * hid + t * hid)),
        "residual": (0.0, 2 * t * hid, e * 2 * 3 * t * hid),
        "mlp": (
            2 * t * hid * ffn * 3,
            4 * t * ffn,
            e * (t * hid + 3 * hid * ffn + 6 * t * ffn + t * hid),
        ),
    }  # fmt: skip
    gemm = hw.pe.gemm_tflops_fp16 * 1e3 * (0.5 if model.dtype == "fp32" else 1.0) * p.pes
    math = hw.pe.math_tflops * 1e3 * p.pes
    bw = hw.hbm.effective_bw_gbs * slices
    return {
        op: Cost(fl, ma, by, fl / gemm + ma / math, by / bw) for op, (fl, ma, by) in raw.items()
    }
