"""What each op of benches/llm_layer.py must at least do on one tensor-parallel rank: FLOPs on
pe_gemm, elementwise operations on pe_math, bytes through HBM (every operand read once, every
result written once) and, for the all-reduces, bytes over the rank's switch port; and the
analytic bound they give on the PEs used (docs/llm.md, "Roofline")."""

from dataclasses import dataclass
from typing import Any, Literal

from kernbench.bench import ModelSpec
from kernbench.hw import HwSpec

Op = Literal[
    "norm", "qkv", "rope", "attention", "out_proj", "residual", "mlp", "all_reduce", "lm_head"
]


@dataclass(frozen=True)
class Cost:
    flops: float  # matrix FLOPs (tl.dot on pe_gemm)
    math: float  # elementwise and reduction operations (pe_math)
    bytes: float  # HBM bytes, each operand once
    compute_ns: float
    hbm_ns: float
    link_ns: float = 0.0  # bytes sent over the rank's switch port at its bandwidth

    def __add__(self, other: "Cost") -> "Cost":
        """Both ops' work; the bound of the sum is the larger of its summed times."""
        return Cost(*(a + b for a, b in zip(self.values(), other.values(), strict=True)))

    def __mul__(self, n: float) -> "Cost":
        """``n`` times the op (``n`` identical layers)."""
        return Cost(*(a * n for a in self.values()))

    def values(self) -> tuple[float, ...]:
        return (self.flops, self.math, self.bytes, self.compute_ns, self.hbm_ns, self.link_ns)

    @property
    def roofline_ns(self) -> float:
        return max(self.compute_ns, self.hbm_ns, self.link_ns)

    @property
    def bound(self) -> str:
        if self.link_ns > max(self.compute_ns, self.hbm_ns):
            return "link"
        return "compute" if self.compute_ns >= self.hbm_ns else "hbm"


def layer_costs(model: ModelSpec, p: Any, hw: HwSpec, slices: int) -> dict[Op, Cost]:
    """The ops of one rank of ``p.tp``: its ``heads / tp`` query and ``kv_heads / tp`` key/value
    heads, ``ffn / tp`` MLP columns, the full-width norms and residual adds, and (tp > 1) two
    ring all-reduces of the ``[tokens, hidden]`` partial products."""
    e, tp = model.dtype_bytes, p.tp
    h, kvd, hid = model.heads * model.head_dim // tp, model.kv_dim // tp, model.hidden
    ffn, heads = model.ffn // tp, model.heads // tp
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
            4 * pairs * heads * model.head_dim,
            5 * pairs * heads,
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
    # a ring all-reduce adds (tp - 1) / tp of the tensor and sends 2 (tp - 1) / tp of it
    if tp > 1:
        raw["all_reduce"] = (0.0, 2 * (tp - 1) / tp * t * hid, e * 2 * 2 * t * hid)
    return _costs(raw, model, p, hw, slices)


def head_costs(model: ModelSpec, p: Any, hw: HwSpec, slices: int) -> dict[Op, Cost]:
    """The final RMSNorm (``norm``) and the LM head (``lm_head``) of one rank, on each
    sequence's last token: ``vocab / tp`` columns of the logits."""
    e, hid, b, vocab = model.dtype_bytes, model.hidden, p.batch, model.vocab // p.tp
    raw: dict[Op, tuple[float, float, float]] = {
        "norm": (0.0, 2 * 4 * b * hid, e * (2 * b * hid + hid)),
        "lm_head": (2 * b * hid * vocab, 0.0, e * (b * hid + hid * vocab + b * vocab)),
    }
    return _costs(raw, model, p, hw, slices)


def _costs(
    raw: dict[Op, tuple[float, float, float]], model: ModelSpec, p: Any, hw: HwSpec, slices: int
) -> dict[Op, Cost]:
    """Each op's (FLOPs, math operations, HBM bytes) as a :class:`Cost` on ``p.pes`` PEs and
    ``slices`` HBM slices; the all-reduce's bytes also over the rank's switch port."""
    e, tp, t, hid = model.dtype_bytes, p.tp, p.batch * p.tokens_per_seq, model.hidden
    link = 2 * 2 * (tp - 1) / tp * t * hid * e / hw.switch.link_bw_gbs
    gemm = hw.pe.gemm_tflops_fp16 * 1e3 * (0.5 if model.dtype == "fp32" else 1.0) * p.pes
    math = hw.pe.math_tflops * 1e3 * p.pes
    bw = hw.hbm.effective_bw_gbs * slices
    return {
        op: Cost(fl, ma, by, fl / gemm + ma / math, by / bw, link if op == "all_reduce" else 0.0)
        for op, (fl, ma, by) in raw.items()
    }
