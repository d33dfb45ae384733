"""bench=llm (issue 16): the model end to end — its layers, the final RMSNorm and the LM head —
against the float64 layer reference of test_llm_layer.py chained over the layers and a float64
head written here; the KV cache a prefill leaves behind is the one decode needs (prefill of n
tokens then one decode step equals a prefill of n + 1, at the layer level); time to first
token and per output token are the simulated time, or say they are extrapolated."""

import numpy as np
import pytest
from kernbench.benches.llm import LlmParams, model_program
from kernbench.benches.llm_program import RankModel, Step
from kernbench.benches.llm_reference import cache_history, head_weights, layer_weights
from test_llm_layer import ONE_CUBE, OPS, TINY, TWO_SIPS, reference64

from kernbench.bench import BenchContext, get_bench
from kernbench.core import BenchError, ConfigError
from kernbench.lang.dtypes import dtype_of

DT = dtype_of(TINY.dtype)


def run_llm(spec=ONE_CUBE, **params):
    info = get_bench("llm")
    ctx = BenchContext.from_spec(spec)
    return info.fn(ctx, info.params(**params)), ctx


def run_llm_layer(spec=ONE_CUBE, **params):
    info = get_bench("llm_layer")
    ctx = BenchContext.from_spec(spec)
    return info.fn(ctx, info.params(**params)), ctx


def model64(p: LlmParams, layers: int):
    """The bench's seeded inputs (drawn in its order), through ``layers`` float64 layers and
    the head: the hidden state and the logits of each sequence's last token."""
    rng = np.random.default_rng(p.seed)
    x = rng.standard_normal((p.batch * p.tokens_per_seq, TINY.hidden)).astype(DT)
    h = x.astype(np.float64)
    for _ in range(layers):
        w = layer_weights(TINY, DT, rng)
        k_hist, v_hist = cache_history(TINY, p, DT, rng)
        h = reference64(TINY, p, w, h, k_hist, v_hist)
    norm, lm_head = head_weights(TINY, DT, rng)
    last = h[p.tokens_per_seq - 1 :: p.tokens_per_seq]
    hn = last / np.sqrt(np.mean(last**2, axis=1, keepdims=True) + TINY.norm_eps) * norm
    return h, hn @ lm_head.astype(np.float64)


@pytest.mark.parametrize(
    "spec, params",
    [
        (ONE_CUBE, dict(phase="prefill", batch=2, seq_len=20, pes=4)),
        (ONE_CUBE, dict(phase="decode", batch=2, context=30, pes=4, splits=2)),
        (TWO_SIPS, dict(phase="prefill", batch=1, seq_len=16, pes=2, tp=2)),
    ],
    ids=["prefill", "decode", "prefill-tp2"],
)
def test_the_model_output_and_logits_match_numpy(spec, params):
    p = LlmParams(**params)
    result, ctx = run_llm(spec, **params)
    assert result.passed, result.checks
    h, logits = model64(p, TINY.layers)
    # every layer and the head ran, and gave the float64 model's numbers to fp16 accuracy
    assert result.metrics["layers"] == TINY.layers
    assert result.metrics["max_abs_err"] <= 2e-2 * max(np.abs(h).max(), np.abs(logits).max())
    # the bench's own check used its own reference; check the device's numbers here directly
    assert result.metrics["max_abs_err"] <= result.metrics["tolerance"]
    assert result.metrics["mfu"] <= 1 and result.metrics["mbu"] <= 1


def test_the_device_state_is_the_float64_model():
    p = LlmParams(phase="prefill", batch=1, seq_len=24, pes=4)
    ((_dev, run),) = BenchContext.from_spec(ONE_CUBE).run_devices(model_program(p, TINY))
    h, logits = model64(p, TINY.layers)
    assert np.abs(run["out"].astype(np.float64) - h).max() <= 2e-2 * np.abs(h).max()
    assert np.abs(run["logits"].astype(np.float64) - logits).max() <= 2e-2 * np.abs(logits).max()
    assert run["logits"].shape == (1, TINY.vocab)


def test_times_are_simulated_or_say_they_are_extrapolated():
    full, _ = run_llm(phase="prefill", seq_len=32, pes=4)
    part, _ = run_llm(phase="prefill", seq_len=32, pes=4, layers=1)
    dec, _ = run_llm(phase="decode", context=32, pes=4, layers=1)
    m = full.metrics
    assert "ttft_ns" in m and "ttft_ns_extrapolated" not in m
    # the ops (every layer's, the final norm's and the LM head's) partition the time to first
    # token, all of it simulated
    ops = sum(m[f"op/{op}_ns"] for op in (*OPS, "lm_head"))
    assert ops == pytest.approx(m["ttft_ns"], rel=1e-9)
    assert m["ttft_ns"] == pytest.approx(TINY.layers * m["layer_ns"] + m["head_ns"])
    assert m["tokens_per_s"] == pytest.approx(32 / m["ttft_ns"] * 1e9)
    assert 0 < m["op/lm_head_ns"] <= m["head_ns"]
    q = part.metrics
    assert "ttft_ns" not in q and q["layers"] == 1
    assert q["ttft_ns_extrapolated"] == pytest.approx(TINY.layers * q["layer_ns"] + q["head_ns"])
    d = dec.metrics
    assert "tpot_ns" not in d
    assert d["tpot_ns_extrapolated"] == pytest.approx(TINY.layers * d["layer_ns"] + d["head_ns"])
    assert d["tokens_per_s"] == pytest.approx(1 / d["tpot_ns_extrapolated"] * 1e9)


@pytest.mark.parametrize(
    "params, error, message",
    [
        (dict(layers=3), ConfigError, r"bench.layers: 3 layers asked, model 'tiny' has 2"),
        (dict(layers=-1), BenchError, r"bench.layers: must be a non-negative integer"),
    ],
)
def test_layer_counts_that_cannot_run_are_refused_before_simulating(params, error, message):
    info = get_bench("llm")
    ctx = BenchContext.from_spec(ONE_CUBE)
    with pytest.raises(error, match=message):
        info.fn(ctx, info.params(seq_len=16, pes=2, **params))
    assert ctx.systems == []


def test_prefill_then_one_decode_step_equals_a_prefill_one_token_longer():
    """The KV cache prefill writes is the one decode reads: the last token's output of a
    prefill of n + 1 tokens equals one decode step after a prefill of the first n."""
    n, batch, hid = 20, 2, TINY.hidden
    rng = np.random.default_rng(7)
    w = layer_weights(TINY, DT, rng)
    xs = rng.standard_normal((batch, n + 1, hid)).astype(DT)
    empty = np.zeros((batch, n + 1, TINY.kv_dim), DT)

    def program(dev):
        short = RankModel(dev, TINY, 4)
        short.add_layer(w, empty, empty)
        prompt = dev.tensor(np.ascontiguousarray(xs[:, :n]).reshape(batch * n, hid),
                            placement=short.rows)  # fmt: skip
        short.run_layer(0, prompt, Step("prefill", batch, n, 0))
        new = dev.tensor(np.ascontiguousarray(xs[:, n]), placement=short.rows)
        short.run_layer(0, new, Step("decode", batch, 1, n), splits=2)
        long = RankModel(dev, TINY, 4)
        long.add_layer(w, empty, empty)
        whole = dev.tensor(xs.reshape(batch * (n + 1), hid), placement=long.rows)
        long.run_layer(0, whole, Step("prefill", batch, n + 1, 0))
        dev.synchronize()
        return new.numpy(), whole.numpy().reshape(batch, n + 1, hid)[:, n]

    ((_dev, (decoded, prefilled)),) = BenchContext.from_spec(ONE_CUBE).run_devices(program)
    decoded, prefilled = decoded.astype(np.float64), prefilled.astype(np.float64)
    assert np.abs(decoded - prefilled).max() <= 2e-2 * np.abs(prefilled).max()
    # not trivially: the step changed its input
    assert not np.allclose(decoded, xs[:, n].astype(np.float64), atol=1e-2)


def test_the_step_energy_covers_static_power_and_reading_every_weight_once():
    layer, ctx = run_llm_layer(phase="decode", context=32, pes=4)
    model, hw = TINY, ONE_CUBE.hw
    en, topo = hw.energy, ONE_CUBE.topology
    m = layer.metrics
    step_pj = m["layer_energy_uj"] * 1e6
    # static: every PE, cube and IO chiplet of the topology for the layer's time
    per_cube = en.cube_static_w + hw.cube.pes * en.pe_static_w
    static_w = topo.sips * (en.io_static_w + topo.cubes * per_cube)
    static_pj = static_w * m["layer_ns"] * 1e3
    # decode reads every weight of the layer from HBM at least once
    h = model.heads * model.head_dim
    weights = (model.hidden * (h + 2 * model.kv_dim) + h * model.hidden
               + 3 * model.hidden * model.ffn) * model.dtype_bytes  # fmt: skip
    assert step_pj >= static_pj + 8 * weights * en.hbm_read_pj_per_bit
    # the window is the layer's, not the run's: deploying the weights before it took longer
    run_static_pj = sum(s.now for s in ctx.systems) * static_w * 1e3
    assert step_pj < run_static_pj
    assert m["tokens_per_j"] == pytest.approx(1 / (step_pj * 1e-12 * model.layers))


def test_the_model_step_energy_is_extrapolated_at_the_steps_average_power():
    full, _ = run_llm(phase="decode", context=32, pes=4)
    part, _ = run_llm(phase="decode", context=32, pes=4, layers=1)
    for r, name in ((full, "tpot_ns"), (part, "tpot_ns_extrapolated")):
        m = r.metrics
        span = m["layers"] * m["layer_ns"] + m["head_ns"]
        joules = m["step_energy_uj"] * 1e-6 * m[name] / span
        assert m["tokens_per_j"] == pytest.approx(1 / joules)
    # one layer and the head spend less than two layers and the head
    assert part.metrics["step_energy_uj"] < full.metrics["step_energy_uj"]
