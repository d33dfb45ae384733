"""The 51-bit physical address and its decoding.

Layout: bits [50:47] SIP, then the die field, then the offset within the die. With up to 16
cubes per SIP this is MODEL.md's layout exactly: die in [46:42] (cubes 0-15, IO-chiplet dies
16-20), offset in [41:0]. Larger meshes widen the die field by the bits they need and narrow
the offset accordingly (ADR 0003). In a cube die the offset selects the HBM slice:
``offset // slice_bytes`` is the owning PE. Decoding is a pure function of the address and the
topology; an address outside every window raises an :class:`AddressError` naming it.
"""

from dataclasses import dataclass

from kernbench.core.errors import AddressError, ConfigError

ADDRESS_BITS = 51
SIP_BITS = 4
IO_DIES = 5


@dataclass(frozen=True, slots=True)
class HbmLocation:
    """Where an HBM address lives: the owning PE's slice and the offset inside it."""

    sip: int
    cube: int
    pe: int
    slice_offset: int


class AddressMap:
    def __init__(self, sips: int, cubes: int, pes: int, slice_bytes: int):
        self.sips = sips
        self.cubes = cubes
        self.pes = pes
        self.slice_bytes = slice_bytes
        self.io_die_base = max(16, 1 << (cubes - 1).bit_length())
        self.die_bits = max(5, (self.io_die_base + IO_DIES - 1).bit_length())
        self.offset_bits = ADDRESS_BITS - SIP_BITS - self.die_bits
        self.sip_shift = ADDRESS_BITS - SIP_BITS
        if pes * slice_bytes > 1 << self.offset_bits:
            raise ConfigError(
                "hw.hbm.slice_bytes",
                f"{pes} slices of {slice_bytes} bytes exceed the {self.offset_bits}-bit die offset "
                f"of a {cubes}-cube SIP; use at most {(1 << self.offset_bits) // pes} bytes",
            )

    def encode(self, sip: int, die: int, offset: int) -> int:
        return (sip << self.sip_shift) | (die << self.offset_bits) | offset

    def hbm(self, sip: int, cube: int, pe: int, offset: int = 0) -> int:
        """Address of ``offset`` inside the HBM slice of PE ``pe`` of ``cube`` on ``sip``."""
        if not (0 <= sip < self.sips and 0 <= cube < self.cubes and 0 <= pe < self.pes):
            raise AddressError(
                f"no HBM slice for sip={sip} cube={cube} pe={pe}: this topology has "
                f"{self.sips} SIP(s), {self.cubes} cubes per SIP and {self.pes} PEs per cube"
            )
        if not 0 <= offset < self.slice_bytes:
            raise AddressError(
                f"offset {offset:#x} is outside the {self.slice_bytes}-byte HBM slice"
            )
        return self.encode(sip, cube, pe * self.slice_bytes + offset)

    def decode_hbm(self, addr: int, size_bytes: int = 1) -> HbmLocation:
        """The slice holding ``[addr, addr + size_bytes)``; the range must not cross slices."""
        if not 0 <= addr < 1 << ADDRESS_BITS:
            raise AddressError(f"address {addr:#x} is not a {ADDRESS_BITS}-bit physical address")
        sip = addr >> self.sip_shift
        die = (addr >> self.offset_bits) & ((1 << self.die_bits) - 1)
        offset = addr & ((1 << self.offset_bits) - 1)
        if sip >= self.sips:
            raise AddressError(
                f"address {addr:#x} names SIP {sip}, but this topology has {self.sips} SIP(s)"
            )
        if die >= self.cubes:
            kind = (
                "an IO-chiplet die"
                if self.io_die_base <= die < self.io_die_base + IO_DIES
                else (
                    "a reserved die"
                    if die >= self.io_die_base
                    else "a cube this mesh does not have"
                )
            )
            raise AddressError(
                f"address {addr:#x} names die {die} ({kind}); HBM lives in cube dies "
                f"0-{self.cubes - 1}"
            )
        pe, slice_offset = divmod(offset, self.slice_bytes)
        if pe >= self.pes:
            raise AddressError(
                f"address {addr:#x} is at offset {offset:#x} of cube {die}, beyond its "
                f"{self.pes} HBM slices of {self.slice_bytes} bytes"
            )
        if slice_offset + size_bytes > self.slice_bytes:
            raise AddressError(
                f"range {addr:#x} + {size_bytes} bytes runs past the end of the HBM slice of "
                f"sip{sip}.cube{die}.pe{pe}"
            )
        return HbmLocation(sip, die, pe, slice_offset)
