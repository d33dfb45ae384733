"""The 51-bit physical address (MODEL.md §4, ADR 0003): layout, round trip and errors."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernbench.core.errors import AddressError, ConfigError
from kernbench.topology import AddressMap, HbmLocation

GIB = 1 << 30
SLICE = 6 * GIB  # 48 GiB per cube in 8 slices
PES = 8

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None)


def model_md_address(sip: int, die: int, offset: int) -> int:
    """MODEL.md §4 by hand: bits [50:47] SIP, [46:42] die, [41:0] offset."""
    assert 0 <= sip < 16 and 0 <= die < 32 and 0 <= offset < 1 << 42
    return sip << 47 | die << 42 | offset


def hex_in(message: str, addr: int) -> bool:
    return re.search(rf"\b0x0*{addr:x}\b", message, re.IGNORECASE) is not None


@pytest.fixture(scope="module")
def amap2sip(topo2sip) -> AddressMap:
    return topo2sip.address


@pytest.fixture(scope="module")
def amap8x8(make_topology) -> AddressMap:
    return make_topology(8, 8).address


# -- layout -----------------------------------------------------------------------------------


@given(
    sip=st.integers(0, 1),
    cube=st.integers(0, 3),
    pe=st.integers(0, PES - 1),
    offset=st.integers(0, SLICE - 1),
)
@PROPERTY
def test_round_trip_and_model_md_layout(amap2sip, sip, cube, pe, offset):
    addr = amap2sip.hbm(sip, cube, pe, offset)
    assert addr == model_md_address(sip, cube, pe * SLICE + offset)
    assert addr < 1 << 51
    assert amap2sip.decode_hbm(addr) == HbmLocation(sip, cube, pe, offset)
    # The whole rest of the slice is one valid range.
    assert amap2sip.decode_hbm(addr, SLICE - offset) == HbmLocation(sip, cube, pe, offset)


def test_layout_at_the_field_edges(topo4x4):
    amap = topo4x4.address
    top = amap.hbm(0, 15, 7, SLICE - 1)
    assert top == 15 << 42 | (8 * SLICE - 1)
    assert amap.decode_hbm(top) == HbmLocation(0, 15, 7, SLICE - 1)
    assert amap.hbm(0, 0, 0, 0) == 0
    assert amap.hbm(0, 1, 0, 0) == 1 << 42


def test_distinct_slices_do_not_overlap(amap2sip):
    starts = sorted(amap2sip.hbm(s, c, p) for s in range(2) for c in range(4) for p in range(PES))
    assert len(set(starts)) == 2 * 4 * PES
    assert all(b - a >= SLICE for a, b in zip(starts, starts[1:], strict=False))


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("die", [16, 17, 18, 19, 20])
def test_io_chiplet_dies_are_not_hbm(amap2sip, die):
    addr = model_md_address(0, die, 0x1234)
    with pytest.raises(AddressError) as info:
        amap2sip.decode_hbm(addr)
    assert hex_in(str(info.value), addr)
    assert "IO" in str(info.value)


@pytest.mark.parametrize("die", [4, 9, 15, 21, 31])
def test_dies_beyond_the_mesh_or_reserved_raise(amap2sip, die):
    addr = model_md_address(1, die, 0x40)
    with pytest.raises(AddressError) as info:
        amap2sip.decode_hbm(addr)
    assert hex_in(str(info.value), addr)


@pytest.mark.parametrize("sip", [2, 7, 15])
def test_sips_beyond_the_topology_raise(amap2sip, sip):
    addr = model_md_address(sip, 0, 0)
    with pytest.raises(AddressError) as info:
        amap2sip.decode_hbm(addr)
    assert hex_in(str(info.value), addr)
    assert str(sip) in str(info.value)


def test_offset_beyond_the_eight_slices_raises(amap2sip):
    addr = model_md_address(0, 1, PES * SLICE)  # 48 GiB: one past the last slice
    with pytest.raises(AddressError) as info:
        amap2sip.decode_hbm(addr)
    assert hex_in(str(info.value), addr)


@pytest.mark.parametrize(
    ("offset", "size"),
    [(SLICE - 1, 2), (SLICE - 256, 257), (0, SLICE + 1), (SLICE // 2, SLICE)],
)
def test_range_crossing_a_slice_raises(amap2sip, offset, size):
    addr = amap2sip.hbm(1, 2, 3, offset)
    assert amap2sip.decode_hbm(addr, SLICE - offset).pe == 3
    with pytest.raises(AddressError) as info:
        amap2sip.decode_hbm(addr, size)
    assert hex_in(str(info.value), addr)


@pytest.mark.parametrize("addr", [-1, 1 << 51, (1 << 51) + 0x100])
def test_not_a_51_bit_address(amap2sip, addr):
    with pytest.raises(AddressError) as info:
        amap2sip.decode_hbm(addr)
    assert f"{addr:#x}" in str(info.value)


@pytest.mark.parametrize(
    ("sip", "cube", "pe", "offset"),
    [(2, 0, 0, 0), (0, 4, 0, 0), (0, 0, 8, 0), (0, 0, 0, SLICE), (0, 0, 0, -1), (-1, 0, 0, 0)],
)
def test_hbm_rejects_what_the_topology_lacks(amap2sip, sip, cube, pe, offset):
    with pytest.raises(AddressError):
        amap2sip.hbm(sip, cube, pe, offset)


def test_hbm_that_does_not_fit_the_offset_is_a_config_error():
    # 16 cubes leave a 42-bit (4 TiB) offset; 8 slices of 1 TiB do not fit.
    with pytest.raises(ConfigError, match="hw.hbm.slice_bytes"):
        AddressMap(1, 16, 8, 1 << 40)


# -- wider meshes -----------------------------------------------------------------------------


def test_8x8_decodes_every_cube(amap8x8):
    # 64 cube dies + 5 IO dies need 7 die bits: [46:40], leaving a 40-bit offset (ADR 0003).
    seen = set()
    for cube in range(64):
        for pe in range(PES):
            for offset in (0, 0x1000, SLICE - 1):
                addr = amap8x8.hbm(0, cube, pe, offset)
                assert addr >> 47 == 0
                assert (addr >> 40) & 0x7F == cube
                assert addr & ((1 << 40) - 1) == pe * SLICE + offset
                assert amap8x8.decode_hbm(addr) == HbmLocation(0, cube, pe, offset)
                seen.add(addr)
    assert len(seen) == 64 * PES * 3


@pytest.mark.parametrize("die", [64, 65, 68, 69, 127])
def test_8x8_dies_beyond_the_cubes_raise(amap8x8, die):
    addr = die << 40
    with pytest.raises(AddressError) as info:
        amap8x8.decode_hbm(addr)
    assert hex_in(str(info.value), addr)


@given(
    cube=st.integers(0, 63),
    pe=st.integers(0, PES - 1),
    offset=st.integers(0, SLICE - 1),
    size=st.integers(1, 1 << 20),
)
@PROPERTY
def test_8x8_round_trip(amap8x8, cube, pe, offset, size):
    addr = amap8x8.hbm(0, cube, pe, offset)
    if offset + size <= SLICE:
        assert amap8x8.decode_hbm(addr, size) == HbmLocation(0, cube, pe, offset)
    else:
        with pytest.raises(AddressError):
            amap8x8.decode_hbm(addr, size)


@pytest.mark.parametrize(
    ("cubes", "die_bits", "io_base"),
    [(1, 5, 16), (16, 5, 16), (17, 6, 32), (32, 6, 32), (36, 7, 64), (64, 7, 64)],
)
def test_die_field_widens_only_beyond_16_cubes(cubes, die_bits, io_base):
    # ADR 0003: IO dies start at the next power of two >= max(16, cubes); the die field holds
    # them; the SIP field stays at [50:47] and the offset shrinks.
    amap = AddressMap(2, cubes, PES, SLICE)
    offset_bits = 47 - die_bits
    last = amap.hbm(1, cubes - 1, PES - 1, SLICE - 1)
    assert last == 1 << 47 | (cubes - 1) << offset_bits | (PES * SLICE - 1)
    assert amap.decode_hbm(last) == HbmLocation(1, cubes - 1, PES - 1, SLICE - 1)
    for die in (cubes, io_base, io_base + 4, (1 << die_bits) - 1):
        addr = 1 << 47 | die << offset_bits
        with pytest.raises(AddressError) as info:
            amap.decode_hbm(addr)
        assert hex_in(str(info.value), addr)
    io_msg = str(pytest.raises(AddressError, amap.decode_hbm, io_base << offset_bits).value)
    assert "IO" in io_msg
