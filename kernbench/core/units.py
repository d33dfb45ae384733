"""Byte and time units. Time is float nanoseconds; bandwidth in GB/s equals bytes per ns."""

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


def fmt_bytes(n: int) -> str:
    """Human-readable size with binary units, e.g. ``64 KiB``."""
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def fmt_ns(ns: float) -> str:
    """Nanoseconds with a precision that suits the magnitude."""
    if ns >= 1e6:
        return f"{ns / 1e6:,.3f} ms"
    if ns >= 1e4:
        return f"{ns / 1e3:,.2f} us"
    return f"{ns:,.2f} ns"
