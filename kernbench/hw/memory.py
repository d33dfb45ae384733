"""The bytes held by simulated memories (HBM slices, SRAM).

Fidelity: a sparse byte store per die, allocated in pages on first write; unwritten bytes read
as zero. Timing lives in the components that move data; this only holds values.
"""

import numpy as np

PAGE_BYTES = 1 << 16


class MemoryStore:
    """Sparse byte-addressed memory keyed by physical address."""

    def __init__(self) -> None:
        self._pages: dict[int, np.ndarray] = {}

    def write(self, addr: int, data: np.ndarray) -> None:
        data = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        pos = 0
        while pos < data.size:
            page, off = divmod(addr + pos, PAGE_BYTES)
            n = min(PAGE_BYTES - off, data.size - pos)
            buf = self._pages.get(page)
            if buf is None:
                buf = self._pages[page] = np.zeros(PAGE_BYTES, dtype=np.uint8)
            buf[off : off + n] = data[pos : pos + n]
            pos += n

    def fill(self, addr: int, size_bytes: int, value: int) -> None:
        pos = 0
        while pos < size_bytes:
            page, off = divmod(addr + pos, PAGE_BYTES)
            n = min(PAGE_BYTES - off, size_bytes - pos)
            buf = self._pages.get(page)
            if buf is None:
                buf = self._pages[page] = np.zeros(PAGE_BYTES, dtype=np.uint8)
            buf[off : off + n] = value
            pos += n

    def read(self, addr: int, size_bytes: int) -> np.ndarray:
        out = np.zeros(size_bytes, dtype=np.uint8)
        pos = 0
        while pos < size_bytes:
            page, off = divmod(addr + pos, PAGE_BYTES)
            n = min(PAGE_BYTES - off, size_bytes - pos)
            buf = self._pages.get(page)
            if buf is not None:
                out[pos : pos + n] = buf[off : off + n]
            pos += n
        return out

    def read_runs(self, runs: list[tuple[int, int]]) -> list[np.ndarray]:
        """The bytes of each ``(addr, size)`` run, as views into one new array."""
        sizes = [n for _a, n in runs]
        out = np.zeros(sum(sizes), dtype=np.uint8)
        pos = 0
        pages = self._pages
        for addr, n in runs:
            page, off = divmod(addr, PAGE_BYTES)
            if off + n <= PAGE_BYTES:  # the common case: the run lies in one page
                buf = pages.get(page)
                if buf is not None:
                    out[pos : pos + n] = buf[off : off + n]
            else:
                out[pos : pos + n] = self.read(addr, n)
            pos += n
        views, pos = [], 0
        for n in sizes:
            views.append(out[pos : pos + n])
            pos += n
        return views

    @property
    def resident_bytes(self) -> int:
        return len(self._pages) * PAGE_BYTES
