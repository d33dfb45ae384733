"""Placements: every policy pair round-trips any shape, and each shard's bytes sit in the HBM
slice the placement gives it.

The expected layout is rebuilt here from the placement's definition (docs/kernels.md: rows are
the leading axes, columns the last; each level replicates or cuts contiguous chunks with
``numpy.array_split`` sizes), not from Tensor.layout.
"""

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import kernbench.lang as tl
from kernbench.core.errors import ConfigError, KernelError
from kernbench.runtime import Placement

POLICIES = ["replicate", "row", "col"]
DTYPES = [np.float16, ml_dtypes.bfloat16, np.float32, np.int8, np.int32]
SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def topo1x2(make_topology):
    """Two cubes, 16 PEs: more owners than many of the shapes below have rows or columns."""
    return make_topology(1, 2)


def expected_parts(shape, placement, cubes, pes):
    """(cube, pe) -> (r0, r1, c0, c1) for every slice that holds a non-empty part."""
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else shape[0]
    cols = shape[-1] if len(shape) > 1 else 1
    cube_ids = list(placement.cube_ids) if placement.cube_ids is not None else list(range(cubes))
    pe_ids = list(placement.pe_ids) if placement.pe_ids is not None else list(range(pes))

    def split(policy, r, c, owners):
        if policy == "replicate":
            return [(o, r, c) for o in owners]
        if policy == "row":
            parts = np.array_split(np.arange(r[0], r[1]), len(owners))
            return [
                (o, (p[0], p[-1] + 1) if p.size else (0, 0), c)
                for o, p in zip(owners, parts, strict=True)
            ]
        parts = np.array_split(np.arange(c[0], c[1]), len(owners))
        return [
            (o, r, (p[0], p[-1] + 1) if p.size else (0, 0))
            for o, p in zip(owners, parts, strict=True)
        ]

    out = {}
    for cube, r, c in split(placement.cubes, (0, rows), (0, cols), cube_ids):
        for pe, r2, c2 in split(placement.pes, r, c, pe_ids):
            if r2[1] > r2[0] and c2[1] > c2[0]:
                out[(cube, pe)] = (int(r2[0]), int(r2[1]), int(c2[0]), int(c2[1]))
    return out


def random_array(seed, shape, dtype):
    rng = np.random.default_rng(seed)
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return (rng.standard_normal(shape) * 100).astype(dtype)


def id_subsets(n):
    return st.none() | st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True).map(
        tuple
    )


placements = st.builds(
    Placement,
    cubes=st.sampled_from(POLICIES),
    pes=st.sampled_from(POLICIES),
    cube_ids=id_subsets(2),
    pe_ids=id_subsets(8),
)
shapes = st.lists(st.integers(1, 9), min_size=1, max_size=3).map(tuple)


def check_round_trip(dev, shape, placement, dtype, seed):
    a = random_array(seed, shape, dtype)
    t = dev.tensor(a, placement=placement)

    back = t.numpy()
    assert back.shape == a.shape and back.dtype == a.dtype
    assert back.tobytes() == a.tobytes()

    matrix = a.reshape(t.rows, t.cols)
    expected = expected_parts(shape, Placement.of(placement), dev.cubes, dev.pes_per_cube)
    held = {}
    for shard in t.shards:
        for (cube, pe), addr in shard.copies.items():
            assert (cube, pe) not in held, "a slice holds two shards of one tensor"
            held[(cube, pe)] = (shard.r0, shard.r1, shard.c0, shard.c1)
            size = shard.elements * a.dtype.itemsize
            loc = dev.system.topology.address.decode_hbm(addr, size)
            assert (loc.sip, loc.cube, loc.pe) == (dev.sip, cube, pe)
            part = matrix[shard.r0 : shard.r1, shard.c0 : shard.c1]
            assert dev.system.memory.read(addr, size).tobytes() == part.tobytes()
    assert held == expected


@SETTINGS
@given(
    shape=shapes,
    placement=placements,
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_and_shard_locations(topo1x2, new_device, shape, placement, dtype, seed):
    assume(len(shape) > 1 or "col" not in (placement.cubes, placement.pes))
    check_round_trip(new_device(topo1x2), shape, placement, dtype, seed)


@pytest.mark.parametrize(
    "cubes, pes, shape",
    [
        (cubes, pes, shape)
        for cubes in POLICIES
        for pes in POLICIES
        for shape in [(3,), (40,), (5, 7), (40, 3), (2, 3, 17)]
        if len(shape) > 1 or "col" not in (cubes, pes)  # 1-D col: refused, tested below
    ],
)
def test_every_policy_pair(topo1x2, new_device, cubes, pes, shape):
    check_round_trip(new_device(topo1x2), shape, Placement(cubes, pes), np.float32, 0)


@pytest.mark.parametrize("placement", [None, Placement.single(1, 6), "row", "col", "replicate"])
def test_shorthand_placements(topo1x2, new_device, placement):
    check_round_trip(new_device(topo1x2), (20, 9), placement, np.int8, 1)


def test_col_placement_of_a_1d_tensor_is_refused(topo1x2, new_device):
    dev = new_device(topo1x2)
    with pytest.raises(KernelError, match=r"placement.pes=col needs a tensor of 2 or more dims"):
        dev.tensor(np.zeros(8, np.float32), placement=Placement(pes="col"), name="v")


def test_unknown_policy_is_refused():
    with pytest.raises(ConfigError, match=r"placement.cubes: unknown policy 'diagonal'"):
        Placement(cubes="diagonal")
    with pytest.raises(ConfigError, match=r"placement: expected a Placement"):
        Placement.of("rows")


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"cube_ids": ()}, "cube_ids"),
        ({"cubes": "row", "cube_ids": ()}, "cube_ids"),
        ({"pes": "row", "pe_ids": ()}, "pe_ids"),
        ({"cubes": "row", "cube_ids": (0, 0)}, "cube_ids"),
        ({"pe_ids": (1, 2, 1)}, "pe_ids"),
    ],
)
def test_empty_or_repeated_ids_are_refused(kwargs, key):
    """An empty list would hold no data (or divide by zero); a repeated id would put two
    shards of one tensor into one slice."""
    with pytest.raises(ConfigError, match=rf"placement.{key}: must list distinct ids"):
        Placement(**kwargs)
    assert Placement(cube_ids=[1, 0]).cube_ids == (1, 0)  # any sequence, kept as a tuple


@tl.jit
def copy_kernel(src_ptr, dst_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(dst_ptr + offs, tl.load(src_ptr + offs, mask=offs < n), mask=offs < n)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shape=st.lists(st.integers(1, 9), min_size=2, max_size=3).map(tuple),
    src=placements,
    dst=placements.filter(lambda p: p.cubes != "replicate" and p.pes != "replicate"),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
    block=st.sampled_from([4, 16, 64]),
    pe=st.tuples(st.integers(0, 1), st.integers(0, 7)),
)
def test_kernels_address_logical_offsets_in_any_placement(
    topo1x2, new_device, shape, src, dst, dtype, seed, block, pe
):
    """A copy kernel knows nothing of placements: copying between any two of them (over
    slices local and remote to the PE) reproduces the array."""
    a = random_array(seed, shape, dtype)
    dev = new_device(topo1x2)
    ts = dev.tensor(a, placement=src)
    td = dev.empty(shape, a.dtype, placement=dst)
    dev.launch(copy_kernel, tl.cdiv(a.size, block), ts, td, a.size, BLOCK=block, pes=[pe])
    dev.synchronize()
    assert td.numpy().tobytes() == a.tobytes()


# -- padded rows (Placement.pad) -------------------------------------------------------------
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.integers(1, 12),
    cols=st.sampled_from([3, 64, 100, 128, 300, 512, 1024]),
    cubes=st.sampled_from(POLICIES),
    pes=st.sampled_from(POLICIES),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
)
def test_padded_rows_sit_an_odd_number_of_bursts_apart_and_round_trip(
    topo1x2, new_device, rows, cols, cubes, pes, dtype, seed
):
    """With pad=True each shard's row r starts r * pitch after its first; the pitch is the
    row rounded up to an odd number of bursts when the row is at least a burst, else the row
    itself. Every row holds its data, the tensor reads back, and a copy kernel between a
    padded and a plain placement reproduces the array."""
    burst = topo1x2.spec.hw.hbm.burst_bytes
    a = random_array(seed, (rows, cols), dtype)
    dev = new_device(topo1x2)
    t = dev.tensor(a, placement=Placement(cubes, pes, pad=True))
    assert t.numpy().tobytes() == a.tobytes()
    size = a.dtype.itemsize
    for shard in t.shards:
        row = (shard.c1 - shard.c0) * size
        if row >= burst:
            pitch = shard.row_stride * size
            assert pitch % burst == 0 and (pitch // burst) % 2 == 1
            assert row <= pitch < row + 2 * burst
        else:
            assert shard.row_stride == shard.c1 - shard.c0
        for addr in shard.copies.values():
            for r in range(shard.r0, shard.r1):
                at = addr + (r - shard.r0) * shard.row_stride * size
                want = a[r, shard.c0 : shard.c1].tobytes()
                assert dev.system.memory.read(at, row).tobytes() == want
    out = dev.empty((rows, cols), a.dtype, placement=Placement("row", "col"))
    dev.launch(copy_kernel, tl.cdiv(a.size, 64), t, out, a.size, BLOCK=64, pes=[(1, 3)])
    dev.synchronize()
    assert out.numpy().tobytes() == a.tobytes()


@tl.jit
def column_tile(x_ptr, LD: tl.constexpr, R: tl.constexpr, C: tl.constexpr):
    tl.load(x_ptr + tl.arange(0, R)[:, None] * LD + tl.arange(0, C)[None, :])


@pytest.mark.parametrize("model", ["flit", "fluid"])
def test_padding_spreads_a_tiles_rows_over_the_pseudo_channels(make_topology, new_device, model):
    """Rows of 8 bursts put a 128 x 64 fp16 tile's 128 runs on one pseudo-channel; padded, on
    all 8: the load is then at least 4x faster (one channel's 25.6 GB/s against the slice's
    204.8 GB/s, less the fixed latency)."""
    topo = make_topology(1, 1, model=model)
    times = {}
    for pad in (False, True):
        dev = new_device(topo)
        x = dev.tensor(np.zeros((256, 1024), np.float16), placement=Placement(
            cube_ids=(0,), pe_ids=(0,), pad=pad))  # fmt: skip
        launch = dev.launch(column_tile, 1, x, LD=1024, R=128, C=64, pes=[(0, 0)])
        dev.synchronize()
        times[pad] = launch.pes[0].end_ns - launch.pes[0].start_ns
    hbm = topo.spec.hw.hbm
    one_channel = 128 * 128 / (hbm.pc_bw_gbs * hbm.efficiency)  # 128 runs of 128 B, in turn
    assert times[False] >= one_channel
    assert times[True] * 4 < times[False]
