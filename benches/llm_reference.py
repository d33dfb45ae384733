"""The decoder layer of benches/llm_layer.py in numpy: its inputs (seeded weights, input and
KV cache history) and its output, rounded to the model's dtype wherever a kernel stores a
result, so the device and the reference differ by accumulation order only."""

from typing import Any

import numpy as np

from kernbench.bench import ModelSpec


def layer_weights(
    model: ModelSpec, dt: np.dtype, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """A layer's weights as ``[in, out]`` matrices scaled by 1/sqrt(in), and its two norm
    gains."""
    h, kvd, hid, ffn = model.heads * model.head_dim, model.kv_dim, model.hidden, model.ffn

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(rows)).astype(dt)

    return {
        "wq": mat(hid, h), "wk": mat(hid, kvd), "wv": mat(hid, kvd), "wo": mat(h, hid),
        "wg": mat(hid, ffn), "wu": mat(hid, ffn), "wd": mat(ffn, hid),
        "norm1": (1 + 0.1 * rng.standard_normal(hid)).astype(dt),
        "norm2": (1 + 0.1 * rng.standard_normal(hid)).astype(dt),
    }  # fmt: skip


def cache_history(
    model: ModelSpec, p: Any, dt: np.dtype, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A layer's K and V caches ``[batch, max_ctx, kv_dim]``: zeros in prefill; in decode a
    random history before ``context`` and room for the new token."""
    max_ctx = p.seq_len if p.phase == "prefill" else p.context + 1
    k_hist = np.zeros((p.batch, max_ctx, model.kv_dim), dt)
    v_hist = np.zeros((p.batch, max_ctx, model.kv_dim), dt)
    if p.phase == "decode":
        shape = (p.batch, p.context, model.kv_dim)
        k_hist[:, : p.context] = rng.standard_normal(shape).astype(dt)
        v_hist[:, : p.context] = rng.standard_normal(shape).astype(dt)
    return k_hist, v_hist


def make_weights(
    model: ModelSpec, p: Any, dt: np.dtype, sip: int
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """``(weights, x, k_cache, v_cache)`` of one layer: :func:`layer_weights`, the input
    ``[tokens, hidden]`` and :func:`cache_history`, seeded by ``p.seed + sip``."""
    rng = np.random.default_rng(p.seed + sip)
    w = layer_weights(model, dt, rng)
    x = rng.standard_normal((p.batch * p.tokens_per_seq, model.hidden)).astype(dt)
    return (w, x, *cache_history(model, p, dt, rng))


def head_weights(
    model: ModelSpec, dt: np.dtype, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The final RMSNorm's gain ``[hidden]`` and the LM head ``[hidden, vocab]``."""
    norm = (1 + 0.1 * rng.standard_normal(model.hidden)).astype(dt)
    lm_head = rng.standard_normal((model.hidden, model.vocab)) / np.sqrt(model.hidden)
    return norm, lm_head.astype(dt)


def head_reference(
    model: ModelSpec,
    x: np.ndarray,
    norm: np.ndarray,
    lm_head: np.ndarray,
    tokens: int,
    dt: np.dtype,
) -> np.ndarray:
    """The logits ``[batch, vocab]`` (float64 of the dtype's values) of each sequence's last
    token (every ``tokens``-th row of ``x``, the last of each group)."""
    f = np.float32
    last = x[tokens - 1 :: tokens].astype(f)
    hn = last / np.sqrt((last * last).mean(axis=-1, keepdims=True) + model.norm_eps) * norm
    hn = hn.astype(dt).astype(f)
    return (hn @ lm_head.astype(f)).astype(dt).astype(np.float64)


def layer_reference(
    model: ModelSpec,
    p: Any,
    w: dict[str, np.ndarray],
    x: np.ndarray,
    k_hist: np.ndarray,
    v_hist: np.ndarray,
    dt: np.dtype,
) -> np.ndarray:
    """The layer's output ``[tokens, hidden]`` (float64 of the dtype's values)."""
    f = np.float32

    def rnd(a: np.ndarray) -> np.ndarray:
        return a.astype(dt).astype(f)

    def rms(a: np.ndarray, g: np.ndarray) -> np.ndarray:
        a = a.astype(f)
        return rnd(a / np.sqrt((a * a).mean(axis=-1, keepdims=True) + model.norm_eps) * g)

    def mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return rnd(a.astype(f) @ b.astype(f))

    hd, n_h, n_kv = model.head_dim, model.heads, model.kv_heads
    t_seq = p.tokens_per_seq
    pos0 = 0 if p.phase == "prefill" else p.context
    hn = rms(x, w["norm1"])
    q, k, v = mm(hn, w["wq"]), mm(hn, w["wk"]), mm(hn, w["wv"])
    pos = pos0 + np.arange(q.shape[0]) % t_seq
    half = hd // 2
    angle = pos[:, None] * model.rope_theta ** (-2.0 * np.arange(half) / hd)[None, :]
    cos, sin = np.cos(angle).astype(f), np.sin(angle).astype(f)

    def rope(a: np.ndarray, heads: int) -> np.ndarray:
        a = a.reshape(a.shape[0], heads, hd)
        x1, x2 = a[..., :half], a[..., half:]
        c, s = cos[:, None, :], sin[:, None, :]
        return rnd(np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)).reshape(
            a.shape[0], heads * hd
        )

    q, k = rope(q, n_h), rope(k, n_kv)
    group = n_h // n_kv
    o = np.zeros_like(q)
    for b in range(p.batch):
        rows = slice(b * t_seq, (b + 1) * t_seq)
        if p.phase == "prefill":
            keys, vals = k[rows], v[rows]
        else:
            keys = np.concatenate([k_hist[b, : p.context].astype(f), k[rows]])
            vals = np.concatenate([v_hist[b, : p.context].astype(f), v[rows]])
        n_keys = keys.shape[0]
        for hh in range(n_h):
            g = hh // group
            qh = q[rows, hh * hd : (hh + 1) * hd].astype(np.float64)
            kh = keys[:, g * hd : (g + 1) * hd].astype(np.float64)
            vh = vals[:, g * hd : (g + 1) * hd].astype(np.float64)
            s = qh @ kh.T / np.sqrt(hd)
            # causal: query i (at position pos0 + i) sees keys at positions <= its own
            allowed = np.arange(n_keys)[None, :] <= (n_keys - t_seq + np.arange(t_seq))[:, None]
            s = np.where(allowed, s, -np.inf)
            e = np.exp(s - s.max(axis=1, keepdims=True))
            o[rows, hh * hd : (hh + 1) * hd] = (e / e.sum(axis=1, keepdims=True)) @ vh
    o = rnd(o)
    x1 = rnd(x.astype(f) + mm(o, w["wo"]))
    hn2 = rms(x1, w["norm2"])
    gate, up = mm(hn2, w["wg"]), mm(hn2, w["wu"])
    act = rnd(gate / (1 + np.exp(-gate)) * up)
    return rnd(x1 + mm(act, w["wd"])).astype(np.float64)
