"""bench=llm_layer (issue 16, in part): one decoder layer of the model group's model in prefill
and decode, against a numpy reference written here (float64 throughout, no intermediate
rounding: a different route from the bench's own check), and the plausibility the issue asks
for: MFU and MBU at most 1, prefill's GEMMs compute-bound and decode's memory-bound by the
roofline, decode no faster than its weights at the HBM bandwidth of the PEs used."""

import numpy as np
import pytest
from kernbench.benches.llm_layer import LlmLayerParams, layer_program
from kernbench.benches.llm_reference import make_weights

from kernbench.bench import BenchContext, ModelSpec, get_bench
from kernbench.core import BenchError
from kernbench.lang.dtypes import dtype_of
from kernbench.topology import SystemSpec, TopologySpec

TINY = ModelSpec()
ONE_CUBE = SystemSpec(topology=TopologySpec(name="1x1", mesh_w=1, mesh_h=1))


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


def run_bench(**params):
    info = get_bench("llm_layer")
    return info.fn(BenchContext.from_spec(ONE_CUBE), info.params(**params))


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
        (dict(tp=2), "bench.tp: tensor parallelism across SIPs is not built yet"),
    ],
)
def test_bad_parameters_name_their_key(params, message):
    with pytest.raises(BenchError, match=message):
        LlmLayerParams(**params)
