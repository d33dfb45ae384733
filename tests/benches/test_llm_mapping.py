"""The full-size mapping of bench=llm_layer (issue 16, "Speed at full size"): the layer over
the PEs of several cubes keeps its numerics (against the float64 reference of
test_llm_layer.py), decode reads its weights weight-stationary (one program per PE on the
columns of its own slice), and the block sizes and decode splits are chosen by size."""

import numpy as np
import pytest
from kernbench.benches.llm_layer import LlmLayerParams, layer_program
from kernbench.benches.llm_program import _block, attn_block, decode_splits
from kernbench.benches.llm_reference import make_weights
from test_llm_layer import reference64

from kernbench.bench import BenchContext, ModelSpec
from kernbench.core import BenchError
from kernbench.lang.dtypes import dtype_of
from kernbench.topology import SystemSpec, TopologySpec

TINY = ModelSpec()
TWO_CUBES = SystemSpec(topology=TopologySpec(name="2x1", mesh_w=2, mesh_h=1))


def run_layer(spec: SystemSpec, **params):
    p = LlmLayerParams(**params)
    ((_dev, run),) = BenchContext.from_spec(spec).run_devices(layer_program(p, TINY))
    return p, run


@pytest.mark.parametrize(
    "params",
    [
        dict(phase="prefill", batch=1, seq_len=300, pes=16),  # attention blocks of 64
        dict(phase="decode", batch=2, context=200, pes=16),  # auto splits, weight-stationary
    ],
    ids=["prefill", "decode"],
)
def test_the_layer_over_two_cubes_matches_numpy(params):
    p, run = run_layer(TWO_CUBES, **params)
    w, x, k_hist, v_hist = make_weights(TINY, p, dtype_of(TINY.dtype), 0)
    want = reference64(TINY, p, w, x, k_hist, v_hist)
    assert np.abs(run["out"].astype(np.float64) - want).max() <= 2e-2 * np.abs(want).max()
    assert run["slices"] == 16


def test_decode_gemms_run_one_program_per_pe_on_its_own_columns():
    _p, run = run_layer(TWO_CUBES, phase="decode", context=64, pes=16)
    for launch in run["launches"]["qkv"] + run["launches"]["out_proj"]:
        assert launch.grid == (16, 1, 1)


def test_block_sizes_and_splits_follow_the_size():
    assert [_block(d) for d in (1, 16, 17, 100, 128, 200, 4096)] == [16, 16, 32, 128, 128,
                                                                      256, 256]  # fmt: skip
    assert _block(11008, 512) == 512
    assert [attn_block(s) for s in (128, 256, 512, 1024, 2048)] == [16, 16, 64, 64, 128]
    full = LlmLayerParams(phase="decode", context=2048, pes=128)
    assert decode_splits(full, 32) == 4  # llama2_7b: 4 splits x 32 KV heads = 128 programs
    assert decode_splits(LlmLayerParams(phase="decode", context=100, pes=128), 2) == 1
    assert decode_splits(LlmLayerParams(phase="decode", splits=3), 32) == 3


def test_negative_splits_are_refused_naming_the_key():
    with pytest.raises(BenchError, match=r"bench\.splits: must be a non-negative integer"):
        LlmLayerParams(splits=-1)
