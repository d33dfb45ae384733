"""A Llama-style model's layers and head on one device (one tensor-parallel rank): where its
tensors live, and the launches that run a step of tokens through them. benches/llm_layer.py
runs one layer of it, benches/llm.py the model; docs/llm.md describes the mapping.

A :class:`Step` is one pass of new tokens: a prompt (prefill) or one token per sequence
(decode) at positions ``pos0 ...`` after the tokens already in the KV cache.
:class:`RankModel` deploys a rank's share of each layer (Megatron's split: its heads' columns
of wq, wk, wv and the rows of wo for them, its ``ffn / world`` columns of wg and wu and the
rows of wd, its heads' columns of the KV cache) and of the head (its ``vocab / world`` columns
of the LM head), and launches them. Activations are split by rows and weights by columns over
the PEs' HBM slices, rows padded (``Placement.pad``); the caches by rows, or by columns where
decode reads them (a KV head's columns on the PEs its split programs run on).
"""

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernbench.bench import ModelSpec
from kernbench.runtime import Device, Placement, dist

from .attention_kernels import (
    decode_partials,
    launch_flash_attn_prefill,
    launch_flash_decode,
    launch_kv_cache_write,
)
from .gemm import pe_set
from .llm_kernels import launch_residual_add, launch_rmsnorm, launch_rope, launch_swiglu
from .matmul_kernels import matmul_kernel

PHASES = ("prefill", "decode")


@dataclass(frozen=True)
class Step:
    """``tokens`` new tokens of each of ``batch`` sequences, at positions ``pos0 ...``: the
    prompt in prefill (``pos0 = 0``), one token after ``pos0`` cached ones in decode."""

    phase: str
    batch: int
    tokens: int
    pos0: int

    @classmethod
    def of(cls, p: Any) -> "Step":
        """The step a bench's parameters describe (``phase``, ``batch``, ``seq_len``,
        ``context``)."""
        if p.phase == "prefill":
            return cls("prefill", p.batch, p.seq_len, 0)
        return cls("decode", p.batch, 1, p.context)

    @property
    def rows(self) -> int:
        """Rows of the step's activations: token ``t`` of sequence ``b`` on row ``b·tokens+t``."""
        return self.batch * self.tokens


def _block(dim: int, cap: int = 256) -> int:
    """A GEMM tile side for ``dim``: the power of two covering it, at least 16, at most
    ``cap``. Larger tiles than the tuned GEMM's 128 halve the loads (DMAs, flows and ``tl``
    calls) per FLOP at full size; 3 stages of 256-wide fp16 tiles take 0.8 MiB of TCM."""
    b = 16
    while b < dim and b < cap:
        b *= 2
    return b


def gemm(dev: Device, a: Any, b: Any, c: Any, pes: list[tuple[int, int]]) -> Any:
    """``c = a @ b`` with the matmul kernel on ``pes``.

    Few rows (decode, the LM head: ``M`` at most 16): weight-stationary, one program per PE on
    a ``BLOCK_N = N / len(pes)`` column block, which is the block of ``b`` (and ``c``) its own
    HBM slice holds under the weights' column placement: the weights are read once, from
    every slice at once, and never cross a cube. Else tiles of up to 256 in the diagonal
    order of :func:`matmul_kernel`."""
    (m, k), n = a.shape, b.shape[1]
    if m <= 16 and n % len(pes) == 0:
        bm, bn, bk = _block(m), n // len(pes), _block(k, 512)
    else:
        bm, bn, bk = _block(m), _block(n), _block(k)
    grid = (-(-m // bm) * -(-n // bn),)
    return dev.launch(
        matmul_kernel, grid, a, b, c, m, n, k, *a.stride(), *b.stride(), *c.stride(),
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, pes=pes,
    )  # fmt: skip


def attn_block(seq_len: int) -> int:
    """Flash-attention block (queries and keys) for a prompt of ``seq_len``: 16 up to 256
    tokens, 64 up to 1024, then 128 — fewer, larger ``tl.dot`` calls at full size."""
    return 16 if seq_len <= 256 else 64 if seq_len <= 1024 else 128


def decode_splits(p: Any, kv_heads: int) -> int:
    """Context splits of flash decoding: ``p.splits``, or (0) enough for one program per PE
    (``pes / (kv_heads * batch)``, at least 1), each split at least 64 positions."""
    if p.splits:
        return p.splits
    want = max(1, p.pes // (kv_heads * p.batch))
    return max(1, min(want, (p.context + 1) // 64))


def shard(
    model: ModelSpec, w: dict[str, np.ndarray], rank: int, world: int
) -> dict[str, np.ndarray]:
    """Rank ``rank``'s part of a layer's weights (``wq`` ... ``wd``, the norms) or of the
    head's (``lm_head``: its vocabulary columns) in Megatron's split; all of them for one
    rank."""
    if world == 1:
        return w
    h, kvd, ffn = (n // world for n in (model.heads * model.head_dim, model.kv_dim, model.ffn))
    qs, kvs, fs = (slice(rank * n, (rank + 1) * n) for n in (h, kvd, ffn))
    vs = model.vocab // world
    cols = {"wq": qs, "wk": kvs, "wv": kvs, "wg": fs, "wu": fs,
            "lm_head": slice(rank * vs, (rank + 1) * vs)}  # fmt: skip
    rows = {"wo": qs, "wd": fs}
    return {n: np.ascontiguousarray(a[:, cols[n]]) if n in cols else a[rows[n]] if n in rows
            else a for n, a in w.items()}  # fmt: skip


def shard_cache(model: ModelSpec, cache: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rank ``rank``'s columns (its KV heads) of a cache ``[batch, max_ctx, kv_dim]``."""
    if world == 1:
        return cache
    kvd = model.kv_dim // world
    return np.ascontiguousarray(cache[..., rank * kvd : (rank + 1) * kvd])


class RankModel:
    """One rank's share of the model on ``dev``, run on its first ``pes`` PEs.

    ``add_layer`` and ``add_head`` deploy weights (the full, unsharded arrays: the rank takes
    its part); ``run_layer`` and ``run_head`` launch a step through them and return at once.
    Every launch is recorded under its op in ``launches`` (``norm``, ``qkv``, ``rope``,
    ``attention``, ``out_proj``, ``all_reduce``, ``residual``, ``mlp``, ``lm_head``), in
    launch order."""

    def __init__(
        self,
        dev: Device,
        model: ModelSpec,
        pes: int,
        rank: int = 0,
        world: int = 1,
        cache_by_columns: bool = False,
    ):
        self.dev, self.model, self.rank, self.world = dev, model, rank, world
        self.pes = pe_set(pes, dev.cubes, dev.pes_per_cube)
        cube_ids = tuple(sorted({c for c, _ in self.pes}))
        pe_ids = tuple(sorted({i for _, i in self.pes}))
        where = {"cube_ids": cube_ids, "pe_ids": pe_ids, "pad": True}
        self.rows, self.cols = Placement("row", "row", **where), Placement("col", "col", **where)
        split = ("col", "col") if cache_by_columns else ("row", "row")
        self.cache = Placement(*split, cube_ids=cube_ids, pe_ids=pe_ids)
        self.n_h, self.n_kv = model.heads // world, model.kv_heads // world
        self.h, self.kvd = self.n_h * model.head_dim, self.n_kv * model.head_dim
        self.ffn = model.ffn // world
        self.layers: list[dict[str, Any]] = []
        self.head: dict[str, Any] | None = None
        self.launches: dict[str, list[Any]] = defaultdict(list)
        self._acts: dict[tuple[str, int, int], Any] = {}
        self._partials: dict[tuple[int, int], Any] = {}

    @property
    def slices(self) -> int:
        """HBM slices (one per PE) the weights and activations are spread over."""
        return len(self.pes)

    def tensor(self, a: np.ndarray, placement: Placement, name: str) -> Any:
        return self.dev.tensor(a, placement=placement, name=name)

    def add_layer(self, w: dict[str, np.ndarray], k_cache: np.ndarray, v_cache: np.ndarray) -> None:
        """Deploy a layer: its weights ``[in, out]`` and norm gains, and its KV caches
        ``[batch, max_ctx, kv_dim]`` (zeros, or a history before the first step)."""
        i = len(self.layers)
        ws = shard(self.model, w, self.rank, self.world)
        layer = {n: self.tensor(a, self.cols if a.ndim == 2 else self.rows, f"{n}.{i}")
                 for n, a in ws.items()}  # fmt: skip
        for name, cache in (("k_cache", k_cache), ("v_cache", v_cache)):
            part = shard_cache(self.model, cache, self.rank, self.world)
            layer[name] = self.tensor(part, self.cache, f"{name}.{i}")
        self.layers.append(layer)

    def add_head(self, norm: np.ndarray, lm_head: np.ndarray) -> None:
        """Deploy the final RMSNorm's gain and the LM head ``[hidden, vocab]``."""
        ws = shard(self.model, {"lm_head": lm_head}, self.rank, self.world)
        self.head = {
            "norm": self.tensor(norm, self.rows, "final_norm"),
            "lm_head": self.tensor(ws["lm_head"], self.cols, "lm_head"),
        }

    def act(self, name: str, rows: int, width: int, dtype: str | None = None) -> Any:
        """The activation ``name`` of ``rows x width``, allocated once per shape."""
        key = (name, rows, width)
        if key not in self._acts:
            self._acts[key] = self.dev.empty(
                (rows, width), dtype or self.model.dtype, placement=self.rows, name=name
            )
        return self._acts[key]

    def _run(self, op: str, *launched: Any) -> None:
        self.launches[op].extend(launched)

    def _all_reduce(self, t: Any) -> None:
        if self.world > 1:
            first = len(self.dev.launches)
            dist.all_reduce(t)
            self._run("all_reduce", *self.dev.launches[first:])

    def run_layer(self, i: int, x: Any, step: Step, splits: int = 1) -> None:
        """Launch layer ``i`` on the residual stream ``x [step.rows, hidden]`` in place; decode
        attention runs in ``splits`` context splits."""
        dev, model, pes, lw = self.dev, self.model, self.pes, self.layers[i]
        rows, hid, eps = step.rows, model.hidden, model.norm_eps
        hn, q, k, v = (self.act(n, rows, w) for n, w in
                       (("h", hid), ("q", self.h), ("k", self.kvd), ("v", self.kvd)))  # fmt: skip
        attn, proj = self.act("o", rows, self.h), self.act("proj", rows, hid)
        gate, up = self.act("gate", rows, self.ffn), self.act("up", rows, self.ffn)
        kc, vc = lw["k_cache"], lw["v_cache"]
        self._run("norm", launch_rmsnorm(dev, x, lw["norm1"], hn, eps, pes=pes))
        self._run("qkv", *(gemm(dev, hn, lw[n], out, pes)
                           for n, out in (("wq", q), ("wk", k), ("wv", v))))  # fmt: skip
        self._run("rope", launch_rope(dev, q, k, step.tokens, self.n_h, self.n_kv, step.pos0,
                                      model.rope_theta, pes=pes))  # fmt: skip
        self._run(
            "attention", launch_kv_cache_write(dev, k, v, kc, vc, step.tokens, step.pos0, pes=pes)
        )
        if step.phase == "prefill":
            block = attn_block(step.tokens)
            self._run("attention", launch_flash_attn_prefill(
                dev, q, kc, vc, attn, step.batch, step.tokens, self.n_h, self.n_kv,
                kv_rows=kc.shape[1], block_m=block, block_n=block, pes=pes))  # fmt: skip
        else:
            key = (step.batch, splits)
            if key not in self._partials:
                self._partials[key] = decode_partials(
                    dev, step.batch, self.n_h, model.head_dim, splits, self.rows
                )
            self._run("attention", *launch_flash_decode(
                dev, q, kc, vc, attn, step.pos0 + 1, self.n_h, self.n_kv, self._partials[key],
                splits, block_n=attn_block(step.pos0), pes=pes))  # fmt: skip
        self._run("out_proj", gemm(dev, attn, lw["wo"], proj, pes))
        self._all_reduce(proj)
        self._run("residual", launch_residual_add(dev, proj, x, x, pes=pes))
        self._run("norm", launch_rmsnorm(dev, x, lw["norm2"], hn, eps, pes=pes))
        self._run("mlp", gemm(dev, hn, lw["wg"], gate, pes), gemm(dev, hn, lw["wu"], up, pes))
        self._run("mlp", launch_swiglu(dev, gate, up, gate, pes=pes))
        self._run("mlp", gemm(dev, gate, lw["wd"], proj, pes))
        self._all_reduce(proj)
        self._run("residual", launch_residual_add(dev, proj, x, x, pes=pes))

    def run_head(self, x: Any, step: Step) -> Any:
        """Launch the final RMSNorm of each sequence's last token of ``x`` and the LM head;
        return the logits ``[batch, vocab / world]`` (this rank's vocabulary columns)."""
        assert self.head is not None, "add_head first"
        model, pes = self.model, self.pes
        last = self.act("last", step.batch, model.hidden)
        logits = self.dev.empty((step.batch, model.vocab // self.world), model.dtype,
                                placement=self.cols, name="logits")  # fmt: skip
        self._run("norm", launch_rmsnorm(self.dev, x, self.head["norm"], last, model.norm_eps,
                                         last_of=step.tokens, pes=pes))  # fmt: skip
        self._run("lm_head", gemm(self.dev, last, self.head["lm_head"], logits, pes))
        return logits


def op_times(start: float, launches: dict[str, list[Any]]) -> dict[str, float]:
    """Each op's share of the timeline: from the end of what ran before it to the end of its
    last launch (launches run one after another, in stream order)."""
    order = sorted(
        ((launch.end_ns, op) for op, ls in launches.items() for launch in ls), key=lambda e: e[0]
    )
    times = {op: 0.0 for op in launches}
    last = start
    for end, op in order:
        times[op] += end - last
        last = end
    return times
