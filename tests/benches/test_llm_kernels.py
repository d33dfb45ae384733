"""The decoder-layer kernels (benches/llm_kernels.py, benches/attention_kernels.py) against NumPy
references written here in fp32 from fp16 inputs, on one cube with odd sizes (masks matter),
launched over several PEs, blocking (num_stages=1) and pipelined (num_stages=3)."""

import numpy as np
import pytest
from kernbench.benches.attention_kernels import (
    decode_partials,
    launch_flash_attn_prefill,
    launch_flash_decode,
    launch_kv_cache_write,
)
from kernbench.benches.llm_kernels import (
    launch_residual_add,
    launch_rmsnorm,
    launch_rope,
    launch_swiglu,
)

from kernbench.core.errors import KernelError

PES = [(0, p) for p in range(4)]
F32 = np.float32


@pytest.fixture(scope="module", params=[1, 3], ids=["blocking", "pipelined"])
def topo(request, make_topology):
    """One cube; blocking, or pipelined with the default four DMAs in flight per channel."""
    stages = request.param
    return make_topology(1, 1, num_stages=stages, dma_outstanding=1 if stages == 1 else 4)


def fp16(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float16)


def assert_fp16_close(got, ref, atol=2e-3, rtol=4e-3):
    """An fp16 result against an fp32 reference: a few fp16 ulps (2^-11 relative) plus what
    fp16 intermediates (attention's probabilities) add."""
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(F32), ref, atol=atol, rtol=rtol)


# -- references ----------------------------------------------------------------------------
def rmsnorm_ref(x, w, eps):
    xf = x.astype(F32)
    return xf / np.sqrt(np.mean(xf * xf, axis=-1, keepdims=True) + eps) * w.astype(F32)


def rope_ref(x, positions, n_heads, theta):
    """Rotate-half RoPE of ``x [T, n_heads * hd]``, token ``r`` at ``positions[r]``."""
    t = x.shape[0]
    hd = x.shape[1] // n_heads
    xs = x.astype(np.float64).reshape(t, n_heads, hd)
    freq = 1.0 / theta ** (np.arange(0, hd, 2) / hd)
    ang = np.asarray(positions, np.float64)[:, None, None] * freq[None, None, :]
    a, b = xs[..., : hd // 2], xs[..., hd // 2 :]
    out = np.concatenate([a * np.cos(ang) - b * np.sin(ang), b * np.cos(ang) + a * np.sin(ang)], -1)
    return out.reshape(t, n_heads * hd).astype(F32)


def attention_ref(q, k, v, n_heads, n_kv, q_pos):
    """One sequence: query ``i`` (at position ``q_pos[i]``) attends keys ``0..q_pos[i]``; query
    head ``h`` uses KV head ``h * n_kv // n_heads``."""
    hd = q.shape[1] // n_heads
    out = np.zeros(q.shape, F32)
    keys = np.arange(k.shape[0])
    for h in range(n_heads):
        kv = h * n_kv // n_heads
        qh = q[:, h * hd : (h + 1) * hd].astype(F32)
        kh = k[:, kv * hd : (kv + 1) * hd].astype(F32)
        vh = v[:, kv * hd : (kv + 1) * hd].astype(F32)
        s = qh @ kh.T / np.sqrt(hd)
        s = np.where(keys[None, :] <= np.asarray(q_pos)[:, None], s, -np.inf)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        out[:, h * hd : (h + 1) * hd] = (p / p.sum(axis=1, keepdims=True)) @ vh
    return out


# -- RMSNorm, SwiGLU, residual ---------------------------------------------------------------
@pytest.mark.parametrize(
    "m, n, block_m, block_n", [(13, 40, 4, 16), (5, 24, 2, 32)], ids=["looped", "one-block"]
)
def test_rmsnorm_matches_numpy(topo, new_device, m, n, block_m, block_n):
    rng = np.random.default_rng(1)
    x, w = fp16(rng, m, n, scale=3.0), fp16(rng, n)
    dev = new_device(topo)
    tx, tw = dev.tensor(x, placement="row"), dev.tensor(w)
    ty = dev.empty((m, n), "fp16", placement="row")
    launch_rmsnorm(dev, tx, tw, ty, eps=1e-5, block_m=block_m, block_n=block_n, pes=PES)
    assert_fp16_close(ty.numpy(), rmsnorm_ref(x, w, 1e-5))


def test_rmsnorm_eps_counts(topo1x1, new_device):
    """A row of zeros but one small element: eps dominates the mean square."""
    x = np.zeros((3, 9), np.float16)
    x[:, 4] = 0.01
    w = np.ones(9, np.float16)
    dev = new_device(topo1x1)
    ty = dev.empty((3, 9), "fp16")
    launch_rmsnorm(dev, dev.tensor(x), dev.tensor(w), ty, eps=1e-2, block_n=4, pes=PES[:2])
    assert_fp16_close(ty.numpy(), rmsnorm_ref(x, w, 1e-2))
    assert ty.numpy()[0, 4] == pytest.approx(0.01 / np.sqrt(0.01**2 / 9 + 1e-2), rel=1e-3)


def test_swiglu_and_residual_add_match_numpy(topo, new_device):
    rng = np.random.default_rng(2)
    gate, up = fp16(rng, 7, 45, scale=3.0), fp16(rng, 7, 45)
    x, res = fp16(rng, 7, 45), fp16(rng, 7, 45)
    dev = new_device(topo)
    tg, tu, tx, tr = (dev.tensor(a, placement="row") for a in (gate, up, x, res))
    out = dev.empty((7, 45), "fp16", placement="row")
    launch_swiglu(dev, tg, tu, out, block=64, pes=PES)
    launch_residual_add(dev, tx, tr, tr, block=64, pes=PES)  # in place, into the residual
    g = gate.astype(F32)
    assert_fp16_close(out.numpy(), g / (1 + np.exp(-g)) * up.astype(F32))
    assert_fp16_close(tr.numpy(), x.astype(F32) + res.astype(F32), atol=0, rtol=2**-11)


# -- RoPE ----------------------------------------------------------------------------------
def test_rope_prefill_in_place_matches_numpy(topo, new_device):
    rng = np.random.default_rng(3)
    batch, seq, heads, kv_heads, hd = 2, 7, 4, 2, 16
    q, k = fp16(rng, batch * seq, heads * hd), fp16(rng, batch * seq, kv_heads * hd)
    dev = new_device(topo)
    tq, tk = dev.tensor(q), dev.tensor(k)
    launch_rope(dev, tq, tk, seq, heads, kv_heads, theta=10000.0, block_t=4, pes=PES)
    pos = np.tile(np.arange(seq), batch)
    assert_fp16_close(tq.numpy(), rope_ref(q, pos, heads, 10000.0))
    assert_fp16_close(tk.numpy(), rope_ref(k, pos, kv_heads, 10000.0))


def test_rope_decode_offset_and_theta_into_output_buffers(topo1x1, new_device):
    """One token per sequence at position ``pos0``; the inputs stay as they were."""
    rng = np.random.default_rng(4)
    batch, heads, kv_heads, hd, pos0, theta = 3, 2, 1, 32, 45, 500000.0
    q, k = fp16(rng, batch, heads * hd), fp16(rng, batch, kv_heads * hd)
    dev = new_device(topo1x1)
    tq, tk = dev.tensor(q), dev.tensor(k)
    qo, ko = dev.empty(q.shape, "fp16"), dev.empty(k.shape, "fp16")
    launch_rope(dev, tq, tk, 1, heads, kv_heads, pos0=pos0, theta=theta, q_out=qo, k_out=ko,
                pes=PES)  # fmt: skip
    pos = np.full(batch, pos0)
    assert_fp16_close(qo.numpy(), rope_ref(q, pos, heads, theta))
    assert_fp16_close(ko.numpy(), rope_ref(k, pos, kv_heads, theta))
    assert np.array_equal(tq.numpy(), q) and np.array_equal(tk.numpy(), k)
    assert not np.allclose(qo.numpy(), q, atol=1e-2)  # position 45 really rotates


# -- KV cache --------------------------------------------------------------------------------
def test_kv_cache_write_puts_rows_at_their_positions_and_nothing_else(topo1x1, new_device):
    rng = np.random.default_rng(5)
    batch, seq, max_ctx, width, pos0 = 2, 5, 11, 24, 3
    k, v = fp16(rng, batch * seq, width), fp16(rng, batch * seq, width)
    k_cache = np.full((batch, max_ctx, width), 7, np.float16)
    v_cache = np.full((batch, max_ctx, width), -7, np.float16)
    dev = new_device(topo1x1)
    tkc, tvc = dev.tensor(k_cache), dev.tensor(v_cache)
    launch_kv_cache_write(dev, dev.tensor(k), dev.tensor(v), tkc, tvc, seq, pos0=pos0,
                          block_t=2, block_c=16, pes=PES)  # fmt: skip
    k_cache[:, pos0 : pos0 + seq] = k.reshape(batch, seq, width)
    v_cache[:, pos0 : pos0 + seq] = v.reshape(batch, seq, width)
    assert np.array_equal(tkc.numpy(), k_cache)
    assert np.array_equal(tvc.numpy(), v_cache)


def test_kv_cache_write_past_the_end_is_refused(topo1x1, new_device):
    dev = new_device(topo1x1)
    k = dev.tensor(np.ones((2, 8), np.float16))
    cache = dev.empty((2, 4, 8), "fp16")
    with pytest.raises(KernelError, match="positions 4..4 exceed the cache's 4"):
        launch_kv_cache_write(dev, k, k, cache, cache, 1, pos0=4, pes=PES)
        dev.synchronize()


# -- attention -------------------------------------------------------------------------------
@pytest.mark.parametrize("block_m, block_n", [(16, 16), (8, 16), (16, 8)])
def test_causal_prefill_with_gqa_matches_numpy(topo, new_device, block_m, block_n):
    rng = np.random.default_rng(6)
    batch, seq, heads, kv_heads, hd = 2, 37, 4, 2, 16
    q = fp16(rng, batch * seq, heads * hd)
    k, v = fp16(rng, batch * seq, kv_heads * hd), fp16(rng, batch * seq, kv_heads * hd)
    dev = new_device(topo)
    tq, tk, tv = dev.tensor(q), dev.tensor(k, placement="row"), dev.tensor(v, placement="row")
    to = dev.empty(q.shape, "fp16")
    launch_flash_attn_prefill(dev, tq, tk, tv, to, batch, seq, heads, kv_heads,
                              block_m=block_m, block_n=block_n, pes=PES)  # fmt: skip
    got = to.numpy()
    for b in range(batch):
        r = slice(b * seq, (b + 1) * seq)
        ref = attention_ref(q[r], k[r], v[r], heads, kv_heads, np.arange(seq))
        assert_fp16_close(got[r], ref)


@pytest.mark.parametrize("ctx, splits", [(45, 3), (45, 4), (9, 4)], ids=["45/3", "45/4", "empty"])
def test_decode_over_the_cache_matches_numpy(topo, new_device, ctx, splits):
    """One query token per sequence attends the first ``ctx`` cache positions; the cache holds
    garbage (large values) beyond them, which must not leak in. ``9/4``: splits of 3, the last
    one empty."""
    rng = np.random.default_rng(7)
    batch, heads, kv_heads, hd, max_ctx = 2, 4, 2, 32, 50
    q = fp16(rng, batch, heads * hd)
    kc = fp16(rng, batch, max_ctx, kv_heads * hd)
    vc = fp16(rng, batch, max_ctx, kv_heads * hd)
    kc[:, ctx:], vc[:, ctx:] = 100, 100
    dev = new_device(topo)
    tq, tkc, tvc = dev.tensor(q), dev.tensor(kc), dev.tensor(vc)
    to = dev.empty(q.shape, "fp16")
    parts = decode_partials(dev, batch, heads, hd, splits)
    launch_flash_decode(dev, tq, tkc, tvc, to, ctx, heads, kv_heads, parts, splits,
                        block_n=8, pes=PES)  # fmt: skip
    got = to.numpy()
    for b in range(batch):
        ref = attention_ref(q[b : b + 1], kc[b, :ctx], vc[b, :ctx], heads, kv_heads, [ctx - 1])
        assert_fp16_close(got[b : b + 1], ref[:1])


def test_prefill_writing_the_cache_then_one_decode_step_equals_a_longer_prefill(topo, new_device):
    """Prefill n tokens (RoPE, cache write, attention from the cache), then decode token n + 1
    (RoPE at position n, cache append, split attention): its output equals the last row of a
    prefill of all n + 1 tokens, and both equal NumPy."""
    rng = np.random.default_rng(8)
    batch, n, heads, kv_heads, hd, max_ctx, theta = 2, 20, 4, 2, 16, 24, 10000.0
    q = fp16(rng, batch, n + 1, heads * hd)
    k = fp16(rng, batch, n + 1, kv_heads * hd)
    v = fp16(rng, batch, n + 1, kv_heads * hd)
    width = kv_heads * hd
    dev = new_device(topo)

    def rows(a, lo, hi):  # tokens lo..hi-1 of every sequence as a [batch * (hi - lo), :] tensor
        return dev.tensor(np.ascontiguousarray(a[:, lo:hi].reshape(-1, a.shape[-1])))

    kc, vc = dev.zeros((batch, max_ctx, width), "fp16"), dev.zeros((batch, max_ctx, width), "fp16")
    tq, tk, tv = rows(q, 0, n), rows(k, 0, n), rows(v, 0, n)
    o_prompt = dev.empty(tq.shape, "fp16")
    launch_rope(dev, tq, tk, n, heads, kv_heads, theta=theta, pes=PES)
    launch_kv_cache_write(dev, tk, tv, kc, vc, n, pes=PES)
    launch_flash_attn_prefill(dev, tq, kc, vc, o_prompt, batch, n, heads, kv_heads,
                              kv_rows=max_ctx, pes=PES)  # fmt: skip

    dq, dk, dv = rows(q, n, n + 1), rows(k, n, n + 1), rows(v, n, n + 1)
    o_step = dev.empty(dq.shape, "fp16")
    launch_rope(dev, dq, dk, 1, heads, kv_heads, pos0=n, theta=theta, pes=PES)
    launch_kv_cache_write(dev, dk, dv, kc, vc, 1, pos0=n, pes=PES)
    parts = decode_partials(dev, batch, heads, hd, 3)
    launch_flash_decode(dev, dq, kc, vc, o_step, n + 1, heads, kv_heads, parts, 3, block_n=4,
                        pes=PES)  # fmt: skip

    fq, fk, fv = rows(q, 0, n + 1), rows(k, 0, n + 1), rows(v, 0, n + 1)
    o_full = dev.empty(fq.shape, "fp16")
    launch_rope(dev, fq, fk, n + 1, heads, kv_heads, theta=theta, pes=PES)
    launch_flash_attn_prefill(dev, fq, fk, fv, o_full, batch, n + 1, heads, kv_heads, pes=PES)

    full = o_full.numpy().reshape(batch, n + 1, -1)
    step, prompt = o_step.numpy(), o_prompt.numpy().reshape(batch, n, -1)
    np.testing.assert_allclose(step.astype(F32), full[:, n].astype(F32), atol=2e-3, rtol=4e-3)
    np.testing.assert_allclose(prompt.astype(F32), full[:, :n].astype(F32), atol=2e-3, rtol=4e-3)
    pos = np.arange(n + 1)
    for b in range(batch):
        rq = rope_ref(q[b], pos, heads, theta).astype(np.float16)
        rk = rope_ref(k[b], pos, kv_heads, theta).astype(np.float16)
        ref = attention_ref(rq, rk, v[b], heads, kv_heads, pos)
        assert_fp16_close(step[b : b + 1], ref[n:])
        assert_fp16_close(prompt[b], ref[:n])
    # the cache holds K rotated at its positions, as the longer prefill rotated it, and V
    assert np.array_equal(kc.numpy()[:, : n + 1], fk.numpy().reshape(batch, n + 1, -1))
    assert np.array_equal(vc.numpy()[:, : n + 1], v)
    assert not kc.numpy()[:, n + 1 :].any()


def test_decode_splits_over_pes_and_pipelining_shorten_phase_one(make_topology, new_device):
    """The point of splitting the context: 4 splits on 4 PEs take well under the time of one
    split on one PE; and overlapping loads with compute (num_stages=3) beats blocking."""
    rng = np.random.default_rng(9)
    batch, heads, kv_heads, hd, ctx = 1, 8, 2, 64, 256
    q = fp16(rng, batch, heads * hd)
    kc, vc = fp16(rng, batch, ctx, kv_heads * hd), fp16(rng, batch, ctx, kv_heads * hd)

    def phase_one_ns(stages, splits):
        topo = make_topology(1, 1, num_stages=stages, dma_outstanding=1 if stages == 1 else 4)
        dev = new_device(topo)
        tq, to = dev.tensor(q), dev.empty(q.shape, "fp16")
        tkc, tvc = dev.tensor(kc, placement="row"), dev.tensor(vc, placement="row")
        parts = decode_partials(dev, batch, heads, hd, splits)
        first, _ = launch_flash_decode(dev, tq, tkc, tvc, to, ctx, heads, kv_heads, parts,
                                       splits, block_n=64, pes=PES[:splits])  # fmt: skip
        dev.synchronize()
        return first.end_ns - first.start_ns

    one, four = phase_one_ns(1, 1), phase_one_ns(1, 4)
    assert four < one / 2
    assert phase_one_ns(3, 4) < four
