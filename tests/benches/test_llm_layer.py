"""bench=llm_layer (issue 16, in part): one decoder layer of the model group's model in prefill
and decode, against a numpy reference written here (float64 throughout, no intermediate
rounding: a different route from the bench's own check), and the plausibility the issue asks
for: MFU and MBU at most 1, prefill's GEMMs compute-bound and decode's memory-bound by the
roofline, decode no faster than its weights at the HBM bandwidth of the PEs used; and tensor
parallelism over SIPs (Megatron's split): every rank's output equals the unsharded layer."""

import numpy as np
import pytest
from kernbench.benches.llm_layer import LlmLayerParams, layer_program, run_ranks
from kernbench.benches.llm_reference import make_weights

from kernbench.bench import BenchContext, ModelSpec, get_bench
from kernbench.core import BenchError, ConfigError
from kernbench.lang.dtypes import dtype_of
from kernbench.topology import SystemSpec, TopologySpec

TINY = ModelSpec()
ONE_CUBE = SystemSpec(topology=TopologySpec(name="1x1", mesh_w=1, mesh_h=1))
TWO_SIPS = SystemSpec(topology=TopologySpec(name="2s1x1", sips=2, mesh_w=1, mesh_h=1))
OPS = ("norm", "qkv", "rope", "attention", "out_proj", "residual", "mlp")


def reference64(model: ModelSpec, p: LlmLayerParams, w, x, k_hist, v_hist) -> np.ndarray:
    """The layer in float64: RMSNorm, Q/K/V, RoPE as a complex rotation of (i, i + half)
    pairs, softmax attention with GQA (causal in prefill; over the history plus the new token
    in decode), output projection, residual, RMSNorm, SwiGLU MLP, residual."""
    d = np.float64
    hd, nh, nkv = model.head_dim, model.heads, model.kv_heads
    t = p.tokens_per_seq
    pos0 = 0 if p.phase == "prefill" else p.context
    W = {k: v.astype(d) for k, v in w.items()}
    x = x.astype(d)

    def norm(a, g):
        return a / np.sqrt(np.mean(a**2, axis=1, keepdims=True) + model.norm_eps) * g

    def rotate(a, heads):
        a = a.reshape(len(a), heads, hd)
        z = a[..., : hd // 2] + 1j * a[..., hd // 2 :]
        pos = pos0 + np.arange(len(a)) % t
        freq = model.rope_theta ** (-np.arange(hd // 2) * 2.0 / hd)
        z = z * np.exp(1j * pos[:, None, None] * freq[None, None, :])
        return np.concatenate([z.real, z.imag], axis=-1).reshape(len(a), heads * hd)

    hn = norm(x, W["norm1"])
    q, k, v = rotate(hn @ W["wq"], nh), rotate(hn @ W["wk"], nkv), hn @ W["wv"]
    o = np.zeros_like(q)
    for b in range(p.batch):
        r = slice(b * t, (b + 1) * t)
        keys, vals = k[r], v[r]
        if p.phase == "decode":
            keys = np.vstack([k_hist[b, : p.context].astype(d), keys])
            vals = np.vstack([v_hist[b, : p.context].astype(d), vals])
        n = len(keys)
        for head in range(nh):
            g = head // (nh // nkv)
            s = q[r, head * hd : (head + 1) * hd] @ keys[:, g * hd : (g + 1) * hd].T
            s /= np.sqrt(hd)
            s[np.arange(n)[None, :] > (n - t + np.arange(t))[:, None]] = -np.inf
            pr = np.exp(s - s.max(axis=1, keepdims=True))
            o[r, head * hd : (head + 1) * hd] = (
                pr / pr.sum(axis=1, keepdims=True) @ vals[:, g * hd : (g + 1) * hd]
            )
    x1 = x + o @ W["wo"]
    h2 = norm(x1, W["norm2"])
    gate = h2 @ W["wg"]
    return x1 + (gate / (1 + np.exp(-gate)) * (h2 @ W["wu"])) @ W["wd"]


@pytest.mark.parametrize(
    "params",
    [
        dict(phase="prefill", batch=2, seq_len=24, pes=4),
        dict(phase="decode", batch=2, context=37, pes=4, splits=3),
    ],
    ids=["prefill", "decode"],
)
def test_the_layer_output_matches_numpy(params):
    p = LlmLayerParams(**params)
    ctx = BenchContext.from_spec(ONE_CUBE)
    ((_dev, run),) = ctx.run_devices(layer_program(p, TINY))
    dt = dtype_of(TINY.dtype)
    w, x, k_hist, v_hist = make_weights(TINY, p, dt, 0)
    want = reference64(TINY, p, w, x, k_hist, v_hist)
    got = run["out"].astype(np.float64)
    # fp16 storage after every kernel: a few fp16 ulps of the output's magnitude
    assert np.abs(got - want).max() <= 2e-2 * np.abs(want).max()
    assert not np.allclose(got, x.astype(np.float64), atol=1e-3)  # the layer did something


def run_bench(spec=ONE_CUBE, **params):
    info = get_bench("llm_layer")
    return info.fn(BenchContext.from_spec(spec), info.params(**params))


def test_prefill_is_compute_bound_and_decode_memory_bound_with_mfu_and_mbu_at_most_1():
    pre = run_bench(phase="prefill", seq_len=128, pes=8)
    dec = run_bench(phase="decode", context=128, pes=8)
    for r in (pre, dec):
        assert r.passed, r.checks
        assert 0 < r.metrics["mfu"] <= 1 and 0 < r.metrics["mbu"] <= 1
        ops = sum(r.metrics[f"op/{op}_ns"] for op in ("norm", "qkv", "rope", "attention",
                                                      "out_proj", "residual", "mlp"))  # fmt: skip
        assert ops == pytest.approx(r.metrics["layer_ns"], rel=1e-9)
    table = {row[0]: row for row in pre.tables[0].rows}
    assert {table[op][7] for op in ("qkv", "out_proj", "mlp")} == {"compute"}
    assert {row[7] for row in dec.tables[0].rows} == {"hbm"}
    # decode at batch 1 reads every weight once: no faster than the weights at the HBM
    # bandwidth of the PEs used
    hw = ONE_CUBE.hw
    m = TINY
    weights = (m.hidden * (m.heads * m.head_dim + 2 * m.kv_dim) + m.heads * m.head_dim
               * m.hidden + 3 * m.hidden * m.ffn) * m.dtype_bytes  # fmt: skip
    assert dec.metrics["layer_ns"] >= weights / (hw.hbm.effective_bw_gbs * 8)
    assert dec.metrics["tpot_ns_extrapolated"] == m.layers * dec.metrics["layer_ns"]
    assert pre.metrics["ttft_ns_extrapolated"] == m.layers * pre.metrics["layer_ns"]


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(phase="train"), "bench.phase: must be prefill or decode"),
        (dict(seq_len=0), "bench.seq_len: must be a positive integer"),
        (dict(tp=0), "bench.tp: must be a positive integer"),
    ],
)
def test_bad_parameters_name_their_key(params, message):
    with pytest.raises(BenchError, match=message):
        LlmLayerParams(**params)


@pytest.mark.parametrize(
    "params",
    [
        dict(phase="prefill", batch=2, seq_len=24, pes=4, tp=2),
        dict(phase="decode", batch=2, context=37, pes=4, splits=3, tp=2),
    ],
    ids=["prefill", "decode"],
)
def test_every_tensor_parallel_rank_outputs_the_unsharded_layer(params):
    p = LlmLayerParams(**params)
    runs = run_ranks(BenchContext.from_spec(TWO_SIPS), p, TINY, layer_program, "tp")
    assert len(runs) == 2
    # the unsharded layer on the full weights (the ranks share SIP 0's seed)
    w, x, k_hist, v_hist = make_weights(TINY, p, dtype_of(TINY.dtype), 0)
    want = reference64(TINY, p, w, x, k_hist, v_hist)
    for run in runs:
        got = run["out"].astype(np.float64)
        assert np.abs(got - want).max() <= 2e-2 * np.abs(want).max()
    assert not np.allclose(runs[0]["out"].astype(np.float64), x.astype(np.float64), atol=1e-3)


def test_two_ranks_prefill_faster_than_one_and_report_the_all_reduce():
    kw = dict(phase="prefill", seq_len=128, pes=2)
    one, two = run_bench(TWO_SIPS, tp=1, **kw), run_bench(TWO_SIPS, tp=2, **kw)
    assert one.passed and two.passed, (one.checks, two.checks)
    assert two.metrics["layer_ns"] < one.metrics["layer_ns"]
    assert "all_reduce_share" not in one.metrics and "op/all_reduce_ns" not in one.metrics
    ar = two.metrics["op/all_reduce_ns"]
    assert 0 < two.metrics["all_reduce_share"] == pytest.approx(ar / two.metrics["layer_ns"])
    ops = sum(two.metrics[f"op/{op}_ns"] for op in (*OPS, "all_reduce"))
    assert ops == pytest.approx(two.metrics["layer_ns"], rel=1e-9)
    m, hw, t = TINY, TWO_SIPS.hw, 128
    # each of the two all-reduces of [t, hidden] fp16 sends at least half of it over each
    # rank's switch port, and receives the other rank's half
    partial = t * m.hidden * m.dtype_bytes
    assert ar >= 2 * partial / 2 / hw.switch.link_bw_gbs
    # MFU over the PEs of both ranks: the whole layer's matrix FLOPs, written out here
    h = m.heads * m.head_dim
    flops = (2 * t * m.hidden * (h + 2 * m.kv_dim) + 4 * t * (t + 1) / 2 * h
             + 2 * t * h * m.hidden + 6 * t * m.hidden * m.ffn)  # fmt: skip
    peak = hw.pe.gemm_tflops_fp16 * 1e3 * 2 * 2  # FLOP/ns of 2 PEs on each of 2 SIPs
    assert two.metrics["mfu"] == pytest.approx(flops / two.metrics["layer_ns"] / peak)
    assert one.metrics["mfu"] == pytest.approx(flops / one.metrics["layer_ns"] / (peak / 2))


@pytest.mark.parametrize(
    "spec, tp, message",
    [
        (TWO_SIPS, 3, "bench.tp: 3 ranks cannot split model.heads"),
        (ONE_CUBE, 2, r"bench.tp: 2 ranks need 2 SIPs .* \(topology.sips\)"),
    ],
    ids=["heads", "sips"],
)
def test_tensor_parallel_degrees_that_cannot_run_are_refused_before_simulating(spec, tp, message):
    info = get_bench("llm_layer")
    ctx = BenchContext.from_spec(spec)
    with pytest.raises(ConfigError, match=message):
        info.fn(ctx, info.params(phase="prefill", seq_len=16, pes=2, tp=tp))
    assert ctx.systems == []  # nothing was simulated
